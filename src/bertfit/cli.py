"""The `bertfit` command: a thin layer over the Python API, one function per command."""
from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import fields
from pathlib import Path

from . import __version__
from .architectures import ARCHITECTURES, TOKENIZER_KINDS
from .characters import argument_problem
from .errors import BertfitError, DataError, Interrupted
from .settings import NER_DEFAULTS, PRETRAIN_DEFAULTS, SQUAD_DEFAULTS, TrainSettings, glue_defaults_table

DEFAULTS = TrainSettings()
TABLE_SETTINGS = ("epochs", "lr", "batch_size")  # what GLUE's defaults table sets by task and size


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its text (not for flags, nor where there is none); epilogs as written."""

    def _get_help_string(self, action) -> str:
        help = action.help or ""
        if "%(default)" in help or "(default" in help or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return help
        return super()._get_help_string(action)


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainSettings = DEFAULTS,
                         table: bool = False) -> None:
    """The training options. `table`: every TrainSettings default is None, so `glue` can tell what was given;
    epochs, lr and batch size then come from GLUE's defaults table and the help says so."""
    group = parser.add_argument_group("training")
    group.add_argument("--model", help="model folder, tutorial .pth file, hub name, or 'embedded' (default)")
    group.add_argument("--tokenizer", help="tokenizer file, when it is not beside the model")
    group.add_argument("--num-heads", type=int, help="attention heads of a tutorial .pth (default: hidden size / 64)")
    group.add_argument("--output-dir", help="run directory (default: runs/glue-<task> or runs/squad-v<version>)")
    add_settings_options(group, defaults, table)
    group.add_argument("--max-train-samples", type=int, metavar="N",
                       help="train on the first N examples only (default: all)")
    group.add_argument("--max-eval-samples", type=int, metavar="N",
                       help="evaluate on the first N examples only (default: all)")
    group.add_argument("--skip-bad-examples", action="store_true",
                       help="skip malformed rows, counted, instead of stopping")
    group.add_argument("--overwrite", action="store_true",
                       help="start afresh in --output-dir instead of resuming the run there")
    group.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")


def add_settings_options(group, defaults: TrainSettings, table: bool = False) -> None:
    """An option for each TrainSettings field (batch_size: --batch-size), with its type, help and default.
    `table`: the defaults are None, and the help names the default the run will take."""
    hints = typing.get_type_hints(TrainSettings)
    for f in fields(TrainSettings):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        more = dict(f.metadata)
        switch = hints[f.name] is bool
        if table:
            shown = "by task and training-set size, see below" if f.name in TABLE_SETTINGS else default
            if not (switch and not f.default):  # a flag that is off says nothing
                more["help"] = f"{more.get('help') or ''} (default: {shown})".lstrip()
            default = None
        if switch:  # a switch; one that is on by default has its --no- form too
            action = argparse.BooleanOptionalAction if f.default else "store_true"
            group.add_argument(flag, action=action, default=default, **more)
        else:
            value_type = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
            convert = more.pop("type", None)
            group.add_argument(flag, type=told_by_argparse(convert) if convert else value_type, default=default, **more)


def told_by_argparse(convert):
    """A converter whose ConfigError argparse prints as a usage error, as it does its own."""
    def converted(text: str):
        try:
            return convert(text)
        except BertfitError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    converted.__name__ = convert.__name__
    return converted


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


def tune_training_process() -> None:
    """The CLI owns its process, so a training command keeps freed memory in it for the next step
    (devices.tune_allocator); `fit` and the recipes, as library calls, leave the allocator alone."""
    import torch

    from . import devices

    devices.tune_allocator(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def cmd_glue(args: argparse.Namespace) -> None:
    TrainSettings(**given_settings(args)).validate()  # a mistake is told at once, before torch loads
    from .recipes.glue import GlueOptions, finetune_glue

    if args.task.lower() == "ax":
        if not args.model:
            raise BertfitError("bertfit glue ax needs --model: the run dir (or model folder) of an MNLI fine-tune")
        from . import devices, inference

        run = inference.load_run(args.model, need="predict", device=devices.setup_distributed())
        for path in inference.predict(run, "test", args.data_dir, args.output_dir, task_name="ax"):
            print(f"wrote {path}")
        return
    options = options_from(args, GlueOptions)
    if args.task.lower() == "all":
        from .suite import run_glue_suite

        run_glue_suite(options, given_settings(args), args.tasks or (), args.seeds or ())
        return
    if args.tasks or args.seeds:
        raise BertfitError("--tasks and --seeds go with `bertfit glue all`")
    tune_training_process()
    finetune_glue(options, given_settings(args))  # what was not given: the defaults table's, by task and size


def load_for(args: argparse.Namespace, need: str, device=None):
    """The run of `args.run_dir` for `need` (classify, answer, fill-mask, predict) on the engine and precision
    asked. The CLI owns its process, so it tunes the allocator for it (a library call leaves that alone)."""
    import torch

    from . import devices, inference

    device = device or torch.device("cpu")
    run = inference.load_run(args.run_dir, getattr(args, "engine", "torch"), args.precision, need=need, device=device)
    devices.tune_allocator(device)
    return run


def say_precision(args: argparse.Namespace, run) -> None:
    """The precision the answer was computed in, on stderr so that stdout holds the answer alone; said once
    the answer is there, so that a refusal stays one line."""
    from . import devices

    asked = "the ONNX file's own" if run.engine == "onnx" else devices.precision_reason(args.precision, run.device)
    print(f"precision {run.precision} ({asked})", file=sys.stderr)


def cmd_predict(args: argparse.Namespace) -> None:
    from . import devices, inference

    run = load_for(args, "predict", devices.setup_distributed())
    if run.head == "tagging":
        cmd_predict_tags(args, run)
        return
    written = inference.predict(run, args.split, args.data_dir, args.output_dir)
    say_precision(args, run)
    for path in written:
        print(f"wrote {path}")


def cmd_predict_tags(args: argparse.Namespace, run) -> None:
    """`bertfit predict` with a `bertfit ner` run: tag --input-file, scored when its words all have tags."""
    from .recipes.ner import predict_file

    if not args.input_file:
        raise BertfitError(f"{args.run_dir}: a token-classification run; give the words to tag with --input-file "
                           f"(CoNLL, CoNLL-U or JSONL)")
    written, values = predict_file(run, args.input_file, args.output_dir)
    say_precision(args, run)
    for name, value in values.items():
        print(f"{name}\t{value:.4f}")
    print(f"wrote {written}")


def check_text_argument(text: str, name: str) -> None:
    """Refuse an empty text argument, or one whose bytes are not UTF-8, before any run is loaded."""
    if not text.strip():
        raise DataError(f"{name} is empty")
    if why := argument_problem(text):
        raise DataError(f"{name} {why}")


def cmd_classify(args: argparse.Namespace) -> None:
    from . import inference

    if args.text_pair is None:
        check_text_argument(args.text, "text 1")
    else:
        check_text_argument(args.text, "pair 1: its first text")
        check_text_argument(args.text_pair, "pair 1: its second text")
    run = load_for(args, "classify")
    pairs = [(args.text, args.text_pair)] if args.text_pair is not None else None
    (result,) = inference.classify(run, [args.text], pairs)
    say_precision(args, run)
    if "score" in result:  # regression
        print(f"score\t{result['score']:.4f}")
    else:
        print(f"{result['label']}\t{result['probability']:.4f}")


def cmd_fill_mask(args: argparse.Namespace) -> None:
    from . import inference

    for i, text in enumerate(args.texts, 1):
        check_text_argument(text, f"text {i}")
    run = load_for(args, "fill-mask")
    results = inference.fill_mask(run, args.texts, args.top_k, args.max_masks)
    say_precision(args, run)
    for text, masks in zip(args.texts, results):
        print(text)
        print(fill_mask_table(masks))


def fill_mask_table(masks: list[list[dict]]) -> str:
    """Each [MASK]'s candidates, one per line: token and probability, under the mask's number."""
    lines = []
    for number, candidates in enumerate(masks, 1):
        lines.append(f"  [MASK] {number} of {len(masks)}")
        width = max(len(c["token"]) for c in candidates)
        lines.extend(f"    {c['token']:<{width}}  {c['probability']:.4f}" for c in candidates)
    return "\n".join(lines)


def cmd_embed(args: argparse.Namespace) -> None:
    import json

    from . import inference
    from .embedding_files import check_output, read_texts, write_embeddings

    if bool(args.texts) == bool(args.input_file):
        raise DataError("give texts on the command line or --input-file, one of them")
    texts = args.texts or read_texts(args.input_file, args.text_field)
    for i, text in enumerate(args.texts, 1):  # told before the model loads
        check_text_argument(text, f"text {i}")
    if args.output:
        check_output(args.output)
    run = load_for(args, "embed")
    result = inference.embed(run, texts, args.normalize, args.batch_size)
    say_precision(args, run)
    print(f"{len(texts)} text{'s' if len(texts) > 1 else ''}, {result.vectors.shape[1]} dimensions, "
          f"{'normalised' if (run.sentence.normalize if args.normalize is None else args.normalize) else 'not normalised'}"
          f"; {result.num_truncated} cut to the model's {run.max_seq_length} tokens", file=sys.stderr)
    if args.output:
        print(f"wrote {write_embeddings(args.output, result.vectors, result.truncated, result.tokens)}", file=sys.stderr)
        return
    for i, (vector, cut, tokens) in enumerate(zip(result.vectors, result.truncated, result.tokens)):
        print(json.dumps({"index": i, "embedding": vector.tolist(), "tokens": tokens, "truncated": cut}))


def cmd_embed_train(args: argparse.Namespace) -> None:
    settings_from(args).validate()
    from .recipes.embed import EmbedOptions, finetune_embeddings

    tune_training_process()
    finetune_embeddings(options_from(args, EmbedOptions), settings_from(args))


def cmd_squad(args: argparse.Namespace) -> None:
    settings_from(args).validate()
    from .recipes.squad import SquadOptions, finetune_squad

    tune_training_process()
    finetune_squad(options_from(args, SquadOptions), settings_from(args))


def cmd_ner(args: argparse.Namespace) -> None:
    from dataclasses import replace

    settings = replace(NER_DEFAULTS, **given_settings(args))
    settings.validate()  # a mistake is told at once, before torch loads
    from .recipes.ner import NerOptions, finetune_ner

    tune_training_process()
    finetune_ner(options_from(args, NerOptions), settings)


def cmd_tag(args: argparse.Namespace) -> None:
    from . import inference

    check_text_argument(args.text, "the text")  # told before the model loads
    run = load_for(args, "tag")
    (entities,) = inference.tag(run, [args.text], args.aggregation)
    say_precision(args, run)
    if not entities:
        print("(no entities)")
    for e in entities:
        print(f"{e['start']}\t{e['end']}\t{e.get('entity_group', e.get('entity'))}\t{e['score']:.4f}\t"
              f"{args.text[e['start']:e['end']]}")


def cmd_evaluate_squad(args: argparse.Namespace) -> None:
    import json

    from .recipes.squad import evaluate_squad_file

    print(json.dumps(evaluate_squad_file(args.data_file, args.predictions_file, args.na_prob_file), indent=2))


def read_context_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (--context-file)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a text file (--context-file)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); --context-file takes a UTF-8 text file") from None
    if not text.strip():
        raise DataError(f"{path}: is empty; --context-file takes the text to find the answer in")
    return text


def cmd_qa(args: argparse.Namespace) -> None:
    from . import inference

    context = args.context if args.context is not None else read_context_file(args.context_file)
    check_text_argument(args.question, "the question")  # told before the model loads
    check_text_argument(context, "the context")
    run = load_for(args, "answer")
    (result,) = inference.answer(run, [(args.question, context)], args.null_threshold)
    say_precision(args, run)
    if not result["answer"]:
        print(f"(no answer: null odds {result['null_odds']:.2f})")
        return
    start, end = result["start"], result["end"]
    before, after = context[max(0, start - 40) : start], context[end : end + 40]
    print(result["answer"])
    print(f"score {result['score']:.2f}  probability {result['probability']:.2f}  characters {start}-{end}  "
          f"(of {len(context)}, {result['windows']} window{'s' if result['windows'] > 1 else ''})")
    print(f"...{before}[{result['answer']}]{after}...".replace("\n", " "))


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_onnx

    export_onnx(args.run_dir, args.output, args.quantize)


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve_settings import settings_from

    settings = settings_from(args)
    settings.validate()  # a mistake is told at once, before torch loads
    if args.threads is not None and args.threads < 1:
        raise BertfitError(f"--threads must be at least 1, not {args.threads}")
    from .serve import serve

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the CLI owns this process; serve() leaves torch as it finds it
    serve(args.run_dirs, settings)


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                        help="onnx: run the export of `bertfit export RUN` (RUN/onnx) with ONNX Runtime")


def add_precision_option(parser, default: str = "auto") -> None:
    """--precision for every command that answers from a run (classify, qa, predict, fill-mask, serve): one
    option, one default, resolved as training resolves it (inference.load_run checks the name)."""
    parser.add_argument("--precision", default=default, metavar="{auto,fp32,bf16,fp16}",
                        help="what the torch engine computes in: auto is bf16 on CPUs with bf16 instructions "
                             "(AVX-512 BF16 or AMX), else fp32, as for training; the choice is printed")


def cmd_tokenizer(args: argparse.Namespace) -> None:
    from .tokenizer_training import train_and_report

    print(train_and_report(args.train_file, args.output, args.vocab_size, args.lowercase, args.min_frequency,
                           args.text_field, args.quiet, args.kind))


def cmd_report(args: argparse.Namespace) -> None:
    from .reports import compare_runs, use_colour

    print(compare_runs(args.run_dirs, colour=use_colour(sys.stdout)))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from dataclasses import replace

    settings = replace(PRETRAIN_DEFAULTS, **given_settings(args))
    settings.validate()  # a mistake is told at once, before torch loads
    from .recipes.pretrain import PretrainOptions, pretrain

    tune_training_process()
    pretrain(options_from(args, PretrainOptions), settings)


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    tune_training_process()
    run_demo(args.output_dir, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertfit", formatter_class=HelpFormatter,
                                     description="Fine-tune BERT encoders on GLUE and SQuAD.",
                                     epilog="`bertfit COMMAND --help` shows a command's options; "
                                            "`bertfit demo` runs a short offline fine-tune to try things out.")
    parser.add_argument("--version", action="version", version=f"bertfit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = lambda name, help, **more: commands.add_parser(name, help=help, description=help,
                                                             formatter_class=HelpFormatter, **more)

    p = command("glue", "fine-tune and evaluate on a GLUE task (`ax`: diagnostic predictions; "
                        "`all`: every task in --data-dir, with a leaderboard table)", epilog=glue_defaults_table())
    p.add_argument("task", help="cola sst2 mrpc stsb qqp mnli qnli rte wnli ax all, GLUE's spellings too "
                                "(SST-2, MNLI-mm); `custom` with --train-file")
    p.add_argument("--tasks", type=comma_list, help="with `all`: only these tasks, e.g. cola,mrpc (default: all nine)")
    p.add_argument("--seeds", type=int_list, help="with `all`: one run per seed (TASK/seed-N), reported as mean ± std")
    p.add_argument("--data-dir", help="folder in the official GLUE layout (default: the hub dataset)")
    p.add_argument("--max-seq-length", type=int, help="tokens per example, longer ones are cut "
                                                       "(or windowed, see --long-texts) (default: 128)")
    p.add_argument("--train-file", help="your own CSV/TSV/JSONL training file")
    p.add_argument("--eval-file", help="your own evaluation file")
    p.add_argument("--text-columns", type=column_names, help="with --train-file: one or two column names, comma-separated")
    p.add_argument("--label-column", help="with --train-file: the label column")
    p.add_argument("--labels", type=column_names, metavar="A,B,...",
                   help="with --train-file: the labels a row may have, comma-separated, in id order (e.g. "
                        "negative,positive); a row with another is refused, or skipped with --skip-bad-examples "
                        "(default: every label the training file holds)")
    p.add_argument("--long-texts", choices=["truncate", "window"],
                   help="window: classify overlapping windows of long texts and average their logits "
                        "(default: truncate)")
    p.add_argument("--stride", type=int, help="with --long-texts window: overlap in tokens between windows "
                                              "(default: 64)")
    p.add_argument("--validation-fraction", type=float, metavar="F",
                   help="hold out this seeded share of the training examples (the same share of each label) and "
                        "keep the epoch that scores best on it; the dev scores are that model's (default: none: "
                        "the final epoch's model is kept and scored)")
    add_training_options(p, table=True)
    p.set_defaults(func=cmd_glue)

    p = command("predict", "write GLUE leaderboard files from a fine-tuned run")
    p.add_argument("run_dir", help="run dir of `bertfit glue` (or its model/ folder)")
    p.add_argument("--split", choices=["test", "dev"], default="test", help="test: leaderboard files; dev: "
                                                                           "predictions to inspect")
    p.add_argument("--data-dir", help="GLUE folder with the split's file (default: the run's own, else the hub)")
    p.add_argument("--input-file", help="`bertfit ner` runs: a CoNLL, CoNLL-U or JSONL file to tag (tags optional; "
                                        "when every word has one, the predictions are scored)")
    p.add_argument("--output-dir", help="where the files go (default: RUN_DIR/predictions)")
    add_engine_option(p)
    add_precision_option(p)
    p.set_defaults(func=cmd_predict)

    p = command("classify", "label one text (or text pair) with a fine-tuned run")
    p.add_argument("run_dir", help="run dir of `bertfit glue` (or its model/ folder)")
    p.add_argument("text", help="the text to label (the first sentence of a pair task)")
    p.add_argument("text_pair", nargs="?", help="the second sentence, for pair tasks (MRPC, RTE, MNLI, ...)")
    add_engine_option(p)
    add_precision_option(p)
    p.set_defaults(func=cmd_classify)

    from .serve_settings import ServeSettings

    p = command("fill-mask", "fill the [MASK]s of texts with a masked-language model (a pretraining run)")
    p.add_argument("run_dir", help="run dir of a pretraining run (or its model/ folder), or a BertForMaskedLM folder")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts with one [MASK] or more, e.g. 'Paris is the [MASK] "
                                                            "of France.'")
    p.add_argument("--top-k", type=int, default=5, help="candidates shown for each [MASK]")
    p.add_argument("--max-masks", type=int, default=ServeSettings.max_masks,
                   help="[MASK]s the texts may hold together (as `serve --max-masks`)")
    add_engine_option(p)
    add_precision_option(p)
    p.set_defaults(func=cmd_fill_mask)

    p = command("embed", "sentence embeddings of texts with a sentence-embedding model (a sentence-transformers "
                         "folder, e.g. 'embedded'), pooled as its folder says; JSONL on stdout, or --output")
    p.add_argument("run_dir", metavar="MODEL", help="a sentence-transformers folder (modules.json, 1_Pooling/), a run "
                                                    "dir of such a model, or 'embedded'")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed (or --input-file)")
    p.add_argument("--input-file", metavar="FILE", help="texts to embed: a text file (one a line) or .jsonl "
                                                         "(--text-field of each record)")
    p.add_argument("--text-field", default="text", help="the text field of .jsonl records")
    p.add_argument("--output", metavar="FILE", help="write FILE.npy (one row a text) or FILE.jsonl (one record a "
                                                    "text) instead of JSONL on stdout; never over an existing file")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction,
                   help="unit-length vectors (default: as the model's folder says: a Normalize module)")
    p.add_argument("--batch-size", type=int, default=128, help="texts per model pass, at most")
    add_engine_option(p)
    add_precision_option(p)
    p.set_defaults(func=cmd_embed)

    p = command("embed-train", "fine-tune a sentence-embedding model (a bi-encoder) on text pairs with in-batch "
                               "negatives, or on scored pairs with CoSENT or the cosine loss; saved as a "
                               "sentence-transformers folder")
    p.add_argument("--train-file", help="pairs: CSV/TSV/JSONL with two --text-columns (and a --label-column of "
                                        "scores for scored pairs; GLUE's STS-B train.tsv is one), or SQuAD JSON "
                                        "(each question and its paragraph)")
    p.add_argument("--eval-file", help="scored pairs (the Spearman correlation of their cosines), or SQuAD JSON "
                                       "(retrieval of each question's paragraph among all: MRR@10, recall@1 and @10)")
    p.add_argument("--text-columns", type=column_names, help="the two text columns (default: sentence1,sentence2)")
    p.add_argument("--label-column", help="the column of gold similarity scores (STS-B: score)")
    p.add_argument("--loss", choices=["mnrl", "cosent", "cosine"],
                   help="mnrl: in-batch negatives (MultipleNegativesRankingLoss); cosent, cosine: scored pairs "
                        "(default: mnrl for pairs, cosent for scored pairs)")
    p.add_argument("--max-seq-length", type=int, help="tokens per text (default: the model's own)")
    p.add_argument("--pooling", help="for a model without a pooling config: cls, mean, max, ... (default: mean)")
    add_training_options(p)
    p.set_defaults(func=cmd_embed_train)

    p = command("squad", "fine-tune and evaluate on SQuAD v1.1 or v2.0")
    p.add_argument("--version", help="1.1 or 2.0 (2.0 has unanswerable questions) (default: 1.1)")
    p.add_argument("--train-file", help="official SQuAD JSON (default: the hub dataset)")
    p.add_argument("--eval-file", help="official SQuAD JSON, scored at the model and threshold kept "
                                       "(default: the hub dataset)")
    p.add_argument("--validation-file", help="official SQuAD JSON to choose the best epoch and the v2.0 null "
                                             "threshold on (default: none: the final epoch's model, threshold 0)")
    p.add_argument("--max-seq-length", type=int, help="tokens per window: question, context, specials (default: 384)")
    p.add_argument("--doc-stride", type=int,
                   help="tokens consecutive windows of a long context share (run_qa's --doc_stride) (default: 128)")
    p.add_argument("--max-query-length", type=int, help="questions are cut to this many tokens (default: 64)")
    p.add_argument("--n-best", type=int, help="candidate starts and ends considered per window (default: 20)")
    p.add_argument("--max-answer-length", type=int, help="longest answer, in tokens (default: 30)")
    p.add_argument("--null-threshold", type=float,
                   help="v2.0: answer empty when null minus best span exceeds this (default: searched on "
                        "--validation-file, else 0)")
    add_training_options(p, SQUAD_DEFAULTS)
    p.set_defaults(func=cmd_squad)

    p = command("ner", "fine-tune and evaluate a tagger: named entities (BIO, IOB1, BIOES) or part of speech, from "
                       "CoNLL, CoNLL-U or JSONL files; entity scores as seqeval's")
    p.add_argument("--train-file", required=True, help="CoNLL (token ... tag a line, blank line between sentences), "
                                                       ".conllu, or .jsonl ({\"tokens\": [...], \"tags\": [...]})")
    p.add_argument("--eval-file", required=True, help="a file of the same kind, scored with the model kept; its "
                                                      "predictions go to RUN/predictions.conll")
    p.add_argument("--validation-file", help="a file to choose the best epoch on (default: none: the final "
                                             "epoch's model)")
    p.add_argument("--max-seq-length", type=int, help="tokens per window; longer sentences are read in "
                                                       "overlapping windows (default: 128)")
    p.add_argument("--stride", type=int, help="sub-tokens consecutive windows share (default: 32)")
    p.add_argument("--label-all-subtokens", action="store_true",
                   help="train every sub-token of a word on its label; without it, the first sub-token alone, as "
                        "run_ner")
    p.add_argument("--tag-scheme", choices=["auto", "bio", "iob1", "bioes", "none"],
                   help="the tags' scheme (auto: read off the training file); none: tags without entities "
                        "(part of speech), scored by accuracy (default: auto)")
    p.add_argument("--bad-tags", choices=["refuse", "repair"],
                   help="an entity run that does not parse (I- after O): refuse, naming the line, or repair "
                        "(start the entity there) (default: refuse)")
    p.add_argument("--pos-column", choices=["upos", "xpos"], help="CoNLL-U: the tag column (default: upos)")
    add_training_options(p, NER_DEFAULTS)
    p.set_defaults(func=cmd_ner)

    p = command("tag", "label the words of a text with a `bertfit ner` run: entities with character offsets")
    p.add_argument("run_dir", help="run dir of `bertfit ner` (or its model/ folder)")
    p.add_argument("text", help="the text to label")
    p.add_argument("--aggregation", choices=["none", "simple", "first", "average", "max"], default="first",
                   help="how sub-tokens become entities, as transformers' aggregation_strategy")
    add_engine_option(p)
    add_precision_option(p)
    p.set_defaults(func=cmd_tag)

    p = command("evaluate-squad", "score a predictions file with the official SQuAD definitions")
    p.add_argument("data_file", help="official SQuAD JSON with the answers")
    p.add_argument("predictions_file", help="JSON object: question id -> answer text")
    p.add_argument("--na-prob-file", help="v2.0: id -> no-answer probability or null odds")
    p.set_defaults(func=cmd_evaluate_squad)

    p = command("qa", "answer a question from a context with a fine-tuned SQuAD run; give the context with "
                      "--context or --context-file")
    p.add_argument("run_dir", help="run dir of `bertfit squad` (or its model/ folder)")
    p.add_argument("--question", required=True, help="the question to answer")
    context = p.add_mutually_exclusive_group(required=True)
    context.add_argument("--context", metavar="TEXT", help="the text to find the answer in (this or --context-file)")
    context.add_argument("--context-file", metavar="FILE", help="a UTF-8 text file to find the answer in")
    p.add_argument("--null-threshold", type=float,
                   help="v2.0: answer empty when null minus best span exceeds this (default: the run's)")
    add_engine_option(p)
    add_precision_option(p)
    p.set_defaults(func=cmd_qa)

    p = command("export", "write a run's model as ONNX (optionally int8), checked against PyTorch")
    p.add_argument("run_dir", help="run dir of `bertfit glue`, `bertfit squad` or `bertfit pretrain`")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="file format")
    p.add_argument("--quantize", choices=["int8"], help="also write model.int8.onnx (dynamic int8); "
                                                          "`--engine onnx` then runs it")
    p.add_argument("--output", help="export folder (default RUN/onnx); an existing one must be an earlier export "
                                     "of the same run, or empty")
    p.set_defaults(func=cmd_export)

    from .serve_settings import add_options as add_serve_options

    p = command("serve", "serve fine-tuned runs over HTTP (POST /v1/classify, /v1/answer, /v1/fill-mask, the "
                         "Hugging Face inference format at /models/NAME; sentence-embedding models at /embed and "
                         "/v1/embeddings, classification runs also at /rerank; page at /, metrics at /metrics)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN", help="run dirs (or sentence-embedding folders, 'embedded' "
                                                              "among them) to serve; NAME=RUN names one")
    p.add_argument("--threads", type=int, help="torch threads for the model (default: torch's choice)")
    add_serve_options(p)
    p.set_defaults(func=cmd_serve)

    p = command("pretrain", "pretrain a BERT, a RoBERTa or a ModernBERT on raw text with masked-language modelling "
                            "(and BERT's --nsp, next-sentence prediction): a new model from a size preset and a "
                            "tokenizer, or continued pretraining of --model")
    p.add_argument("--train-file", dest="train_files", nargs="+", required=True, metavar="FILE",
                   help="text files (a paragraph a line, a blank line between documents), JSONL files with a text "
                        "field, or hub dataset names (wikitext-2-raw-v1, wikitext-103-raw-v1)")
    p.add_argument("--validation-file", metavar="FILE", help="held-out text to evaluate on (default: "
                                                              "--validation-fraction of the documents)")
    p.add_argument("--validation-fraction", type=float, metavar="F",
                   help="without --validation-file: the fraction of documents held out (default: 0.01)")
    p.add_argument("--size", help="a new model: tutorial (12 layers, 768 wide), or a BERT miniature: tiny (2/128), "
                                  "mini (4/256), small (4/512), medium (8/512); needs --tokenizer")
    p.add_argument("--architecture", choices=ARCHITECTURES,
                   help="a new model's: bert (WordPiece, MLM on packed blocks, --nsp allowed, token types) or "
                        "roberta (byte-level BPE from `bertfit tokenizer --kind bpe`, MLM alone on whole paragraphs "
                        "packed across documents, no token types) or modernbert (as roberta, 30%% masked; pre-norm, "
                        "rotary, GeGLU, no biases, every third layer global, the others a 128-token window) "
                        "(default: bert)")
    p.add_argument("--tokenizer", help="tokenizer JSON (`bertfit tokenizer` trains one); with --model, one not "
                                       "beside the model")
    p.add_argument("--model", help="continue pretraining this model: folder, tutorial .pth, hub name or 'embedded'")
    p.add_argument("--num-heads", type=int, help="attention heads of a tutorial .pth (default: hidden size / 64)")
    p.add_argument("--output-dir", help="run directory (default: runs/pretrain)")
    p.add_argument("--max-seq-length", type=int, help="tokens per training sequence (default: 128)")
    p.add_argument("--mlm-probability", type=float, help="fraction of tokens masked, 80/10/10 (default: the "
                                                         "architecture's: 0.15, modernbert 0.3)")
    p.add_argument("--nsp", action="store_true", help="also next-sentence prediction on sentence pairs, as the "
                                                       "tutorial (without it: MLM on packed full-length sequences)")
    p.add_argument("--text-field", help="the text field of JSONL files (default: text)")
    p.add_argument("--max-eval-samples", type=int, metavar="N",
                   help="held-out sequences per evaluation (default: 2000)")
    p.add_argument("--name", help="the tutorial files' name: bert_model.pth and NAME_wordpiece.json (default: bertfit)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in --output-dir instead of resuming")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    add_settings_options(p.add_argument_group("training"), PRETRAIN_DEFAULTS)
    p.set_defaults(func=cmd_pretrain)

    p = command("tokenizer", "train a tokenizer on raw text, for pretraining from scratch: WordPiece (BERT's) or "
                             "byte-level BPE (RoBERTa's)")
    p.add_argument("--train-file", nargs="+", required=True, metavar="FILE",
                   help="text files (a paragraph per line, a blank line or a WikiText ` = Title = ` line between "
                        "documents), .jsonl files (a document per record), or a hub dataset such as wikitext")
    p.add_argument("--output", required=True, metavar="FILE.json", help="the tokenizer file to write")
    p.add_argument("--kind", default="wordpiece", choices=TOKENIZER_KINDS,
                   help="wordpiece: BERT's ([CLS] a [SEP] b [SEP], for --architecture bert); bpe: RoBERTa's byte-level "
                        "BPE (<s> a </s></s> b </s>, for --architecture roberta and modernbert) (default: wordpiece)")
    p.add_argument("--vocab-size", type=int, default=30522, help="tokens in the vocabulary, the 5 specials included")
    p.add_argument("--lowercase", action="store_true", help="lowercase the text first (an uncased tokenizer; "
                                                             "wordpiece only)")
    p.add_argument("--min-frequency", type=int, default=2, help="fewest occurrences for a merged piece to be kept")
    p.add_argument("--text-field", default="text", help="the text field of .jsonl records")
    p.add_argument("--quiet", action="store_true", help="no progress bar while training")
    p.set_defaults(func=cmd_tokenizer)

    p = command("report", "compare finished runs (GLUE, SQuAD, or a `glue all` folder) in a table")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dirs, suites, or folders holding runs")
    p.set_defaults(func=cmd_report)

    p = command("demo", "a short offline fine-tune of the embedded model on generated sentences, "
                        "to see the pipeline work")
    p.add_argument("--output-dir", default="runs/demo", help="run directory (written afresh)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "command", None) == "embed" and not any(u.startswith("-") for u in unknown):
        args.texts += unknown  # texts after an option: argparse fills a '*' positional before the options
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.func(args)
    except BertfitError as exc:
        print(f"bertfit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the user named or a folder bertfit writes: say which, without a traceback
        print(f"bertfit: error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # a training run says whether, and from where, rerunning the command resumes
        print(f"bertfit: {exc if isinstance(exc, Interrupted) else 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        dist = sys.modules.get("torch.distributed")  # loaded only if a command imported torch
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
