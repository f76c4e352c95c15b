"""Pretraining by architecture: `bertfit pretrain --architecture bert`, `roberta` and `modernbert` in the same
time budget, at the same size, on the same text, scored on the same held-out file.

    python bench/pretrain_architectures.py --text-dir ../shared/data/text --max-time 60m --size mini

Each tokenizer kind is trained first (outside the clocks) by `bertfit tokenizer` on the training files with the
same --vocab-size, cased: BERT's WordPiece (`--kind wordpiece`) and the byte-level BPE (`--kind bpe`) that RoBERTa
and ModernBERT share. Then each architecture runs `recipes.pretrain.pretrain` in a fresh process, one after the
other, with the same threads, size preset, seed, --max-time, batch size, learning rate, schedule and sequence
length, and otherwise its own row of `bertfit.architectures`: BERT on packed blocks (MLM alone, no NSP), RoBERTa on
whole paragraphs packed across documents, ModernBERT as RoBERTa with its own network (pre-norm, rotary, GeGLU at
2/3 of the preset's width so the parameters stay the same, no biases, no dropout) and 30% of tokens masked.

Each run's own final evaluation on `valid.txt` masks at its own rate (bertfit's fixed masks, up to
--max-eval-samples sequences), and a loss at 30% masked is not one at 15%; so every saved model is also scored
at --eval-mlm-probability (default 0.15), on the same sequences with the same fixed masks: the column that
compares, and the ratios of the last line.

Held-out MLM loss is a mean over masked tokens, and WordPiece and byte-level BPE cut text into different tokens,
so BERT's loss per token and the others' compare slightly different tasks (RoBERTa's and ModernBERT's, on the
same tokenizer, compare directly); the table also gives each tokenizer's tokens per held-out word, and the fair
comparison downstream is fine-tuning the saved models (`RUN/model`, kept under --output-dir) on the same task:
the last lines but one print those commands.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402

ARCHITECTURES = ("bert", "roberta", "modernbert")


def train_files(args) -> list[str]:
    files = sorted(str(p) for p in Path(args.text_dir).glob("*.txt") if p.name != "valid.txt")
    return files[: args.files] if args.files else files


def tokenizer_path(args, architecture: str) -> Path:
    from bertfit.architectures import ARCHITECTURES as TABLE

    return Path(args.output_dir) / f"{TABLE[architecture].tokenizer}-{args.vocab_size}.json"


def pretrain_side(args, architecture: str) -> dict:
    from dataclasses import replace

    from bertfit.recipes.pretrain import PretrainOptions, pretrain
    from bertfit.settings import PRETRAIN_DEFAULTS

    settings = replace(PRETRAIN_DEFAULTS, max_time=args.max_time, max_steps=0, epochs=1000, batch_size=args.batch_size,
                       lr=args.lr, precision=args.precision, seed=args.seed, eval_every=args.eval_every, log_every=50)
    run_dir = Path(args.output_dir) / architecture
    options = PretrainOptions(train_files=tuple(train_files(args)),
                              validation_file=str(Path(args.text_dir) / "valid.txt"),
                              tokenizer=str(tokenizer_path(args, architecture)), size=args.size,
                              architecture=architecture, output_dir=str(run_dir), max_seq_length=args.max_seq_length,
                              max_eval_samples=args.max_eval_samples, overwrite=True, quiet=args.quiet)
    results = pretrain(options, settings)
    common_rate = evaluate_at(args, architecture, run_dir / "model", args.eval_mlm_probability)
    return {"architecture": architecture, **results["metrics"], "steps": results["steps"],
            "mlm_probability": results["settings"]["mlm_probability"],
            "at_eval_mlm_probability": {"mlm_probability": args.eval_mlm_probability, **common_rate},
            "train_seconds": results.get("train_seconds"), "train_tokens_seen": results.get("train_tokens_seen"),
            "train_sequences": results["train_sequences"], "eval_sequences": results["eval_sequences"],
            "train_sequence_counts": results["train_sequence_counts"], "out_of_time":
                (results.get("time_budget") or {}).get("out_of_time"), "model_dir": str(run_dir / "model")}


def evaluate_at(args, architecture: str, model_dir: Path, probability: float) -> dict:
    """The saved model's held-out MLM figures with `probability` of the tokens masked: on the sequences its run
    evaluated (valid.txt cut as the run cut it, the first --max-eval-samples), with the run's fixed masking seed."""
    from dataclasses import replace

    import numpy as np
    import torch

    from bertfit.architectures import ARCHITECTURES as TABLE
    from bertfit.files import tokens_cache_dir
    from bertfit.pretrained import load_pretrained
    from bertfit.recipes.pretrain import evaluate_mlm
    from bertfit.settings import PRETRAIN_DEFAULTS
    from bertfit.tasks import pretraining_data
    from bertfit.tokenization import special_ids

    model, tokenizer = load_pretrained(model_dir, head="mlm")
    ids = special_ids(tokenizer)
    tokens, _ = pretraining_data.tokenize_corpus([str(Path(args.text_dir) / "valid.txt")], tokenizer,
                                                 tokens_cache_dir(), quiet=True)
    cut = pretraining_data.full_sentence_features if TABLE[architecture].packing == "full-sentences" \
        else pretraining_data.packed_features
    held, _ = cut(tokens, args.max_seq_length, ids.cls, ids.sep)
    held = held.select(np.arange(min(len(held), args.max_eval_samples)))
    settings = replace(PRETRAIN_DEFAULTS, precision=args.precision)
    return evaluate_mlm(model, held, tokenizer, pretraining_data.special_token_ids(tokenizer), probability, False,
                        torch.device("cpu"), settings)


def tokens_per_word(tokenizer_file: Path, valid: Path) -> float:
    """How finely a tokenizer cuts the held-out text: its tokens per whitespace-separated word."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    paragraphs = [line.strip() for line in valid.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(paragraphs, add_special_tokens=False))
    return tokens / max(1, sum(len(p.split()) for p in paragraphs))


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--text-dir", required=True, help="folder of .txt files and valid.txt (../shared/data/text)")
    parser.add_argument("--files", type=int, default=0, help="train on the first N files in name order (0: all)")
    parser.add_argument("--vocab-size", type=int, default=30522, help="of every tokenizer (default 30522)")
    parser.add_argument("--size", default="mini", help="the size preset of every model (default mini)")
    parser.add_argument("--max-time", default="60m", help="each side's training budget (default 60m)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=400, metavar="STEPS")
    parser.add_argument("--max-eval-samples", type=int, default=500, help="held-out sequences each evaluation reads")
    parser.add_argument("--eval-mlm-probability", type=float, default=0.15, metavar="P",
                        help="every saved model is also scored with this share of held-out tokens masked, the same "
                             "on every side (default 0.15)")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="every side; auto: bf16 on a CPU with native bf16, else fp32 (as bertfit's auto)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES),
                        help=f"which to run, in order (default {','.join(ARCHITECTURES)})")
    parser.add_argument("--output-dir", default="runs/pretrain-architectures",
                        help="the tokenizers and one run dir per architecture, kept for fine-tuning")
    parser.add_argument("--quiet", action="store_true", help="the runs print nothing but errors")
    args = parser.parse_args(argv)
    from bertfit.settings import parse_duration

    args.max_time = parse_duration(args.max_time)
    args.precision = common.resolved_precision(args.precision)
    architectures = [a for a in args.architectures.split(",") if a]
    sides = {a: (lambda arguments, a=a: pretrain_side(arguments, a)) for a in architectures}
    if args.side:
        common.run(__file__, args, argv, sides)
        return

    from bertfit.architectures import ARCHITECTURES as TABLE
    from bertfit.tokenizer_training import train_tokenizer

    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    valid = Path(args.text_dir) / "valid.txt"
    unknown = [a for a in architectures if a not in TABLE]
    if unknown or not architectures:
        sys.exit(f"--architectures: {', '.join(unknown) or 'none given'}; known: {', '.join(TABLE)}")
    for architecture in architectures:
        path = tokenizer_path(args, architecture)
        if path.exists():
            print(f"tokenizer: {path} (trained before)", file=sys.stderr)
            continue
        started = time.perf_counter()
        train_tokenizer(train_files(args), path, TABLE[architecture].tokenizer, vocab_size=args.vocab_size, quiet=True)
        print(f"tokenizer: {path} trained in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    runs = common.run(__file__, args, argv, sides, precisions=(args.precision,))
    figures = {a: runs[a][0] for a in architectures}
    for architecture in architectures:
        figures[architecture]["tokens_per_word"] = tokens_per_word(tokenizer_path(args, architecture), valid)

    print(common.cpu_line(common.cpu_kind()))
    budget = f"{args.max_time / 60:g} minutes" if args.max_time >= 60 else f"{args.max_time:g} seconds"
    print(f"pretraining by architecture: new {args.size} models, {budget} each, batch "
          f"{args.batch_size} x {args.max_seq_length} tokens, {args.precision}, lr {args.lr:g}, bertfit's pretraining "
          f"defaults otherwise (warmup 0.05, cosine), {args.threads} threads, "
          f"{len(train_files(args))} files of {args.text_dir}, held out: {valid}")
    differences = {
        "bert": "cased WordPiece, packed full blocks, token types, 15% masked, dropout 0.1",
        "roberta": "byte-level BPE, whole paragraphs packed across documents (padded), no token types, positions "
                   "after the padding id, 15% masked, dropout 0.1",
        "modernbert": "roberta's BPE and sequences; pre-norm, rotary positions, GeGLU at 2/3 of the preset's width, "
                      "no biases, no dropout, every third layer global and the others a 128-token window, 30% masked"}
    print("differences: " + "; ".join(f"{a}: {differences.get(a, TABLE[a].summary)}" for a in architectures) +
          f"; each tokenizer {args.vocab_size} tokens. MLM loss is per token of each side's own tokenizer")
    rate = f"{100 * args.eval_mlm_probability:g}%"
    header = ["architecture", "steps", "train s", "tokens seen", "masked", "held-out MLM loss", "acc",
              f"loss at {rate}", f"acc at {rate}", f"ppl at {rate}", "tokens/word"]
    rows = [[a, f["steps"], f"{f['train_seconds']:.0f}", f"{f['train_tokens_seen']:,}",
             f"{100 * f['mlm_probability']:g}%", f"{f['mlm_loss']:.4f}", f"{f['mlm_accuracy']:.4f}",
             f"{f['at_eval_mlm_probability']['mlm_loss']:.4f}", f"{f['at_eval_mlm_probability']['mlm_accuracy']:.4f}",
             f"{f['at_eval_mlm_probability']['perplexity']:.1f}", f"{f['tokens_per_word']:.3f}"]
            for a, f in figures.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    shared = {"size": args.size, "max_time_s": args.max_time, "batch_size": args.batch_size,
              "max_seq_length": args.max_seq_length, "lr": args.lr, "seed": args.seed, "vocab_size": args.vocab_size,
              "files": len(train_files(args)), "max_eval_samples": args.max_eval_samples, "eval_every": args.eval_every,
              "eval_mlm_probability": args.eval_mlm_probability}
    common.write_figures(
        "pretrain-architectures", __file__, argv, args.figures_dir, figures={"peak": runs["peak"], "sides": figures},
        settings={a: {**shared, "tokenizer": TABLE[a].tokenizer, "packing": TABLE[a].packing,
                      "mlm_probability": figures[a]["mlm_probability"]} for a in architectures},
        precision={a: args.precision for a in architectures}, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "cpu": common.cpu_kind(), "sides": figures},
                                              indent=1))
    for architecture in architectures:
        print(f"fine-tune: bertfit glue sst2 --data-dir ../shared/data/glue --max-train-samples 2000 "
              f"--model {figures[architecture]['model_dir']}")
    if len(figures) > 1:  # the last line: the ratios to the first (below 1: a lower loss than the first's)
        (first, f0), *others = figures.items()
        loss = lambda f: f["at_eval_mlm_probability"]["mlm_loss"]
        print(f"ratio held-out MLM loss at {rate} masked: " +
              ", ".join(f"{a}/{first} {loss(f) / loss(f0):.3f}" for a, f in others))


if __name__ == "__main__":
    main(sys.argv[1:])
