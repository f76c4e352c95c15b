"""The `bertfit` command: a thin layer over the Python API, one function per command."""
from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import fields
from pathlib import Path

from .errors import BertfitError
from .settings import TrainSettings

DEFAULTS = TrainSettings()


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainSettings = DEFAULTS) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--model", help="model folder, tutorial .pth file, hub name, or 'embedded' (default)")
    group.add_argument("--tokenizer", help="tokenizer file, when it is not beside the model")
    group.add_argument("--num-heads", type=int, help="attention heads of a tutorial .pth (default: hidden size / 64)")
    group.add_argument("--output-dir", help="run directory (default runs/glue-<task> or runs/squad-v<version>)")
    add_settings_options(group, defaults)
    group.add_argument("--max-train-samples", type=int)
    group.add_argument("--max-eval-samples", type=int)
    group.add_argument("--skip-bad-examples", action="store_true", help="skip malformed rows, counted, instead of stopping")
    group.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming in --output-dir")
    group.add_argument("--quiet", action="store_true")


def add_settings_options(group, defaults: TrainSettings) -> None:
    """An option for each TrainSettings field (batch_size: --batch-size), with its type, help and default."""
    hints = typing.get_type_hints(TrainSettings)
    for f in fields(TrainSettings):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if hints[f.name] is bool:  # a switch; one that is on by default has its --no- form too
            action = argparse.BooleanOptionalAction if f.default else "store_true"
            group.add_argument(flag, action=action, default=default, **f.metadata)
        else:
            value_type = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
            group.add_argument(flag, type=value_type, default=default, **f.metadata)


def given_settings(args: argparse.Namespace) -> dict:
    """The TrainSettings fields on the command line; None is an option not given (`glue` parses so for `glue all`)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainSettings) if getattr(args, f.name, None) is not None}


def settings_from(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(**given_settings(args))


def options_from(args: argparse.Namespace, options_class):
    """A recipe's options (GlueOptions, SquadOptions) from the parsed options of the same names; one not
    given keeps the field's default, so the defaults live in the dataclass alone."""
    return options_class(**{f.name: getattr(args, f.name) for f in fields(options_class)
                            if getattr(args, f.name, None) is not None})


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def int_list(text: str) -> list[int]:
    return [int(item) for item in comma_list(text)]


def column_names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def cmd_glue(args: argparse.Namespace) -> None:
    from .recipes.glue import GlueOptions, finetune_glue, predict_glue

    if args.task.lower() == "ax":
        if not args.model:
            raise BertfitError("bertfit glue ax needs --model: the run dir (or model folder) of an MNLI fine-tune")
        for path in predict_glue(args.model, "test", args.data_dir, args.output_dir, task_name="ax"):
            print(f"wrote {path}")
        return
    options = options_from(args, GlueOptions)
    if args.task.lower() == "all":
        from .suite import run_glue_suite

        run_glue_suite(options, given_settings(args), args.tasks or (), args.seeds or ())
        return
    if args.tasks or args.seeds:
        raise BertfitError("--tasks and --seeds go with `bertfit glue all`")
    finetune_glue(options, settings_from(args))


def cmd_predict(args: argparse.Namespace) -> None:
    from .recipes.glue import predict_glue

    for path in predict_glue(args.run_dir, args.split, args.data_dir, args.output_dir):
        print(f"wrote {path}")


def cmd_classify(args: argparse.Namespace) -> None:
    from .recipes.glue import classify

    label, probability = classify(args.run_dir, args.text, args.text_pair)
    print(f"{label}\t{probability:.4f}")


def cmd_squad(args: argparse.Namespace) -> None:
    from .recipes.squad import SquadOptions, finetune_squad

    finetune_squad(options_from(args, SquadOptions), settings_from(args))


def cmd_evaluate_squad(args: argparse.Namespace) -> None:
    import json

    from .recipes.squad import evaluate_squad_file

    print(json.dumps(evaluate_squad_file(args.data_file, args.predictions_file, args.na_prob_file), indent=2))


def cmd_qa(args: argparse.Namespace) -> None:
    from .recipes.squad import answer

    if (args.context is None) == (args.context_file is None):
        raise BertfitError("give the context with exactly one of --context or --context-file")
    context = args.context if args.context is not None else Path(args.context_file).read_text(encoding="utf-8")
    result = answer(args.run_dir, args.question, context, args.null_threshold)
    if not result["answer"]:
        print(f"(no answer: null odds {result['null_odds']:.2f})")
        return
    start, end = result["char_start"], result["char_end"]
    before, after = context[max(0, start - 40) : start], context[end : end + 40]
    print(result["answer"])
    print(f"score {result['score']:.2f}  probability {result['probability']:.2f}  characters {start}-{end}  "
          f"(of {len(context)}, {result['windows']} window{'s' if result['windows'] > 1 else ''})")
    print(f"...{before}[{result['answer']}]{after}...".replace("\n", " "))


def cmd_report(args: argparse.Namespace) -> None:
    from .reports import compare_runs, use_colour

    print(compare_runs(args.run_dirs, colour=use_colour(sys.stdout)))


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.output_dir, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertfit", description="Fine-tune BERT encoders on GLUE and SQuAD.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("glue", help="fine-tune and evaluate on a GLUE task (`ax`: diagnostic predictions; "
                                         "`all`: every task in --data-dir, with a leaderboard table)")
    p.add_argument("task", help="cola sst2 mrpc stsb qqp mnli qnli rte wnli ax all (GLUE spellings work too)")
    p.add_argument("--tasks", type=comma_list, help="with `all`: only these tasks, e.g. cola,mrpc")
    p.add_argument("--seeds", type=int_list, help="with `all`: one run per seed (TASK/seed-N), reported as mean ± std")
    p.add_argument("--data-dir", help="folder in the official GLUE layout (default: the hub dataset)")
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--train-file", help="your own CSV/TSV/JSONL training file")
    p.add_argument("--eval-file", help="your own evaluation file")
    p.add_argument("--text-columns", type=column_names, help="with --train-file: one or two column names, comma-separated")
    p.add_argument("--label-column", help="with --train-file: the label column")
    p.add_argument("--long-texts", choices=["truncate", "window"],
                   help="window: classify overlapping windows of long texts and average their logits")
    p.add_argument("--stride", type=int, help="overlap in tokens between windows")
    add_training_options(p)
    # None marks an option not given: `glue all` takes each task's own settings (suite.TASK_DEFAULTS) for those
    p.set_defaults(func=cmd_glue, **dict.fromkeys(f.name for f in fields(TrainSettings)))

    p = commands.add_parser("predict", help="write GLUE leaderboard files from a fine-tuned run")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "dev"], default="test")
    p.add_argument("--data-dir")
    p.add_argument("--output-dir")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("classify", help="label one text (or text pair) with a fine-tuned run")
    p.add_argument("run_dir")
    p.add_argument("text")
    p.add_argument("text_pair", nargs="?")
    p.set_defaults(func=cmd_classify)

    from .recipes.squad import SQUAD_DEFAULTS

    p = commands.add_parser("squad", help="fine-tune and evaluate on SQuAD v1.1 or v2.0")
    p.add_argument("--version", help="1.1 or 2.0")
    p.add_argument("--train-file", help="official SQuAD JSON (default: the hub dataset)")
    p.add_argument("--eval-file", help="official SQuAD JSON (default: the hub dataset)")
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--doc-stride", type=int, help="tokens consecutive windows of a long context share (run_qa's --doc_stride)")
    p.add_argument("--max-query-length", type=int)
    p.add_argument("--n-best", type=int)
    p.add_argument("--max-answer-length", type=int)
    p.add_argument("--null-threshold", type=float, help="v2.0: answer empty when null minus best span exceeds this")
    add_training_options(p, SQUAD_DEFAULTS)
    p.set_defaults(func=cmd_squad)

    p = commands.add_parser("evaluate-squad", help="score a predictions file with the official SQuAD definitions")
    p.add_argument("data_file")
    p.add_argument("predictions_file")
    p.add_argument("--na-prob-file", help="v2.0: id -> no-answer probability or null odds")
    p.set_defaults(func=cmd_evaluate_squad)

    p = commands.add_parser("qa", help="answer a question from a context with a fine-tuned SQuAD run")
    p.add_argument("run_dir")
    p.add_argument("--question", required=True)
    p.add_argument("--context")
    p.add_argument("--context-file")
    p.add_argument("--null-threshold", type=float)
    p.set_defaults(func=cmd_qa)

    p = commands.add_parser("report", help="compare finished runs (GLUE, SQuAD, or a `glue all` folder) in a table")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(func=cmd_report)

    p = commands.add_parser("demo", help="a short fine-tune of the embedded model on data bertfit writes itself")
    p.add_argument("--output-dir", default="runs/demo")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BertfitError as exc:
        print(f"bertfit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bertfit: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
