"""The `bertfit` command: a thin layer over the Python API, one function per command."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .errors import BertfitError
from .training import TrainSettings

DEFAULTS = TrainSettings()


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainSettings = DEFAULTS) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--model", help="model folder, tutorial .pth file, hub name, or 'embedded' (default)")
    group.add_argument("--tokenizer", help="tokenizer file, when it is not beside the model")
    group.add_argument("--num-heads", type=int, help="attention heads of a tutorial .pth (default: hidden size / 64)")
    group.add_argument("--output-dir", help="run directory (default runs/glue-<task> or runs/squad-v<version>)")
    group.add_argument("--epochs", type=float, default=defaults.epochs)
    group.add_argument("--lr", type=float, default=defaults.lr)
    group.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global batch size")
    group.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    group.add_argument("--warmup-ratio", type=float, default=defaults.warmup_ratio)
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    group.add_argument("--grad-accum", type=int, default=defaults.grad_accum)
    group.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=defaults.precision)
    group.add_argument("--eval-every", type=int, default=defaults.eval_every, metavar="STEPS",
                       help="evaluate every N optimizer steps (default: each epoch)")
    group.add_argument("--patience", type=int, default=defaults.patience,
                       help="stop after N evaluations without improvement (0: never)")
    group.add_argument("--save-every", type=int, default=defaults.save_every, metavar="STEPS")
    group.add_argument("--keep-checkpoints", type=int, default=defaults.keep_checkpoints)
    group.add_argument("--max-steps", type=int, default=defaults.max_steps)
    group.add_argument("--max-train-samples", type=int)
    group.add_argument("--max-eval-samples", type=int)
    group.add_argument("--attention-dropout", type=float, default=defaults.attention_dropout,
                       help="dropout on attention probabilities while training (default 0: long sequences "
                            "keep the fused attention kernel; BERT's original fine-tuning used 0.1)")
    group.add_argument("--lazy-embeddings", action=argparse.BooleanOptionalAction, default=defaults.lazy_embeddings,
                       help="AdamW moves an embedding row only in steps whose batch uses it (default, in one "
                            "CPU process without fp16; half the optimizer's memory traffic); "
                            "--no-lazy-embeddings: every row every step")
    group.add_argument("--skip-nonfinite", action="store_true", help="skip steps with a non-finite loss, counted")
    group.add_argument("--skip-bad-examples", action="store_true", help="skip malformed rows, counted, instead of stopping")
    group.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming in --output-dir")
    group.add_argument("--quiet", action="store_true")


def given_settings(args: argparse.Namespace) -> dict:
    """The TrainSettings fields on the command line; None is an option not given (`glue` parses so for `glue all`)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainSettings) if getattr(args, f.name, None) is not None}


def settings_from(args: argparse.Namespace) -> TrainSettings:
    return TrainSettings(**given_settings(args))


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def int_list(text: str) -> list[int]:
    return [int(item) for item in comma_list(text)]


def cmd_glue(args: argparse.Namespace) -> None:
    from .recipes.glue import GlueOptions, finetune_glue, predict_glue

    if args.task.lower() == "ax":
        if not args.model:
            raise BertfitError("bertfit glue ax needs --model: the run dir (or model folder) of an MNLI fine-tune")
        for path in predict_glue(args.model, "test", args.data_dir, args.output_dir, task_name="ax"):
            print(f"wrote {path}")
        return
    options = GlueOptions(
        task=args.task, model=args.model, data_dir=args.data_dir, output_dir=args.output_dir,
        max_seq_length=args.max_seq_length, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, train_file=args.train_file, eval_file=args.eval_file,
        text_columns=tuple(c for c in (args.text_columns or "").split(",") if c), label_column=args.label_column,
        long_texts=args.long_texts, stride=args.stride, skip_bad_examples=args.skip_bad_examples,
        overwrite=args.overwrite, tokenizer=args.tokenizer, num_heads=args.num_heads, quiet=args.quiet)
    if args.task.lower() == "all":
        from .suite import run_glue_suite

        run_glue_suite(options, given_settings(args), args.tasks or (), args.seeds or ())
        return
    if args.tasks or args.seeds:
        raise BertfitError("--tasks and --seeds go with `bertfit glue all`")
    finetune_glue(options, settings_from(args))


def cmd_predict(args: argparse.Namespace) -> None:
    from .recipes.glue import predict_glue

    for path in predict_glue(args.run_dir, args.split, args.data_dir, args.output_dir, engine=args.engine):
        print(f"wrote {path}")


def cmd_classify(args: argparse.Namespace) -> None:
    from .recipes.glue import classify

    label, probability = classify(args.run_dir, args.text, args.text_pair, engine=args.engine)
    print(f"{label}\t{probability:.4f}")


def cmd_squad(args: argparse.Namespace) -> None:
    from .recipes.squad import SquadOptions, finetune_squad

    options = SquadOptions(
        version=args.version, train_file=args.train_file, eval_file=args.eval_file, model=args.model,
        tokenizer=args.tokenizer, output_dir=args.output_dir, max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride, max_query_length=args.max_query_length, n_best=args.n_best,
        max_answer_length=args.max_answer_length, null_threshold=args.null_threshold,
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples,
        skip_bad_examples=args.skip_bad_examples, overwrite=args.overwrite, num_heads=args.num_heads,
        quiet=args.quiet)
    finetune_squad(options, settings_from(args))


def cmd_evaluate_squad(args: argparse.Namespace) -> None:
    import json

    from .recipes.squad import evaluate_squad_file

    print(json.dumps(evaluate_squad_file(args.data_file, args.predictions_file, args.na_prob_file), indent=2))


def cmd_qa(args: argparse.Namespace) -> None:
    from .recipes.squad import answer

    if (args.context is None) == (args.context_file is None):
        raise BertfitError("give the context with exactly one of --context or --context-file")
    context = args.context if args.context is not None else Path(args.context_file).read_text(encoding="utf-8")
    result = answer(args.run_dir, args.question, context, args.null_threshold, engine=args.engine)
    if not result["answer"]:
        print(f"(no answer: null odds {result['null_odds']:.2f})")
        return
    start, end = result["char_start"], result["char_end"]
    before, after = context[max(0, start - 40) : start], context[end : end + 40]
    print(result["answer"])
    print(f"score {result['score']:.2f}  probability {result['probability']:.2f}  characters {start}-{end}  "
          f"(of {len(context)}, {result['windows']} window{'s' if result['windows'] > 1 else ''})")
    print(f"...{before}[{result['answer']}]{after}...".replace("\n", " "))


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_onnx

    export_onnx(args.run_dir, args.output, args.quantize)


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve import ServeSettings, serve

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    serve(args.run_dirs, ServeSettings(**{f.name: getattr(args, f.name) for f in fields(ServeSettings)}))


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                        help="onnx: run the export of `bertfit export RUN` (RUN/onnx) with ONNX Runtime")


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
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--train-file", help="your own CSV/TSV/JSONL training file")
    p.add_argument("--eval-file", help="your own evaluation file")
    p.add_argument("--text-columns", help="with --train-file: one or two column names, comma-separated")
    p.add_argument("--label-column", help="with --train-file: the label column")
    p.add_argument("--long-texts", choices=["truncate", "window"], default="truncate",
                   help="window: classify overlapping windows of long texts and average their logits")
    p.add_argument("--stride", type=int, default=64, help="overlap in tokens between windows")
    add_training_options(p)
    # None marks an option not given: `glue all` takes each task's own settings (suite.TASK_DEFAULTS) for those
    p.set_defaults(func=cmd_glue, **dict.fromkeys(f.name for f in fields(TrainSettings)))

    p = commands.add_parser("predict", help="write GLUE leaderboard files from a fine-tuned run")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "dev"], default="test")
    p.add_argument("--data-dir")
    p.add_argument("--output-dir")
    add_engine_option(p)
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser("classify", help="label one text (or text pair) with a fine-tuned run")
    p.add_argument("run_dir")
    p.add_argument("text")
    p.add_argument("text_pair", nargs="?")
    add_engine_option(p)
    p.set_defaults(func=cmd_classify)

    from .recipes.squad import SQUAD_DEFAULTS

    p = commands.add_parser("squad", help="fine-tune and evaluate on SQuAD v1.1 or v2.0")
    p.add_argument("--version", default="1.1", help="1.1 or 2.0")
    p.add_argument("--train-file", help="official SQuAD JSON (default: the hub dataset)")
    p.add_argument("--eval-file", help="official SQuAD JSON (default: the hub dataset)")
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128, help="tokens consecutive windows of a long context share (run_qa's --doc_stride)")
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--n-best", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
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
    add_engine_option(p)
    p.set_defaults(func=cmd_qa)

    p = commands.add_parser("export", help="write a run's model as ONNX (optionally int8), checked against PyTorch")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (dynamic int8); "
                                                          "`--engine onnx` then runs it")
    p.add_argument("--output", help="export folder (default RUN/onnx)")
    p.set_defaults(func=cmd_export)

    from .serve import ServeSettings

    serving = ServeSettings()
    p = commands.add_parser("serve", help="serve fine-tuned runs over HTTP (POST /v1/classify, /v1/answer; page at /)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN", help="run dirs to serve; NAME=RUN names one")
    p.add_argument("--host", default=serving.host, help=f"address to listen on (default {serving.host}: this machine only)")
    p.add_argument("--port", type=int, default=serving.port, help=f"default {serving.port}; 0 picks a free one")
    p.add_argument("--engine", choices=["torch", "onnx"], default=serving.engine,
                   help="onnx: serve each run's export (`bertfit export`) with ONNX Runtime")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=serving.precision,
                   help="torch engine: auto is bf16 where the CPU runs it fast, else fp32")
    p.add_argument("--api-key", default=serving.api_key,
                   help="require Authorization: Bearer KEY on every route but /health and the page "
                        "(default: the BERTFIT_API_KEY environment variable, else none)")
    p.add_argument("--threads", type=int, help="torch threads for the model (default: torch's choice)")
    group = p.add_argument_group("batching and limits")
    group.add_argument("--max-batch-tokens", type=int, default=serving.max_batch_tokens,
                       help=f"tokens gathered into one model pass (default {serving.max_batch_tokens})")
    group.add_argument("--max-wait-ms", type=float, default=serving.max_wait_ms,
                       help=f"how long a request waits for others to share its pass (default {serving.max_wait_ms:g})")
    group.add_argument("--max-queue", type=int, default=serving.max_queue,
                       help=f"requests waiting for the model before 503 (default {serving.max_queue})")
    group.add_argument("--timeout", type=float, default=serving.timeout,
                       help=f"seconds a request may take before 504 (default {serving.timeout:g})")
    group.add_argument("--max-body-bytes", type=int, default=serving.max_body_bytes)
    group.add_argument("--max-inputs", type=int, default=serving.max_inputs,
                       help=f"texts, pairs or questions per request (default {serving.max_inputs})")
    group.add_argument("--max-text-chars", type=int, default=serving.max_text_chars)
    group.add_argument("--max-context-chars", type=int, default=serving.max_context_chars)
    group.add_argument("--batch-size", type=int, default=serving.batch_size,
                       help=f"sequences per forward inside a pass (default {serving.batch_size})")
    p.set_defaults(func=cmd_serve)

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
