"""Pretraining by architecture: `bertfit pretrain --architecture bert` against `--architecture roberta` in the same
time budget, at the same size, on the same text, scored on the same held-out file.

    python bench/pretrain_architectures.py --text-dir ../shared/data/text --max-time 60m --size mini

Each architecture gets its own tokenizer, trained first (outside the clocks) by `bertfit tokenizer` on the
training files with the same --vocab-size, cased on both sides: BERT's WordPiece (`--kind wordpiece`) and
RoBERTa's byte-level BPE (`--kind bpe`). Then each side runs `recipes.pretrain.pretrain` in a fresh process, one
after the other, with the same threads, size preset, seed, --max-time, batch size, learning rate, schedule and
sequence length: BERT on packed blocks (MLM alone, no NSP), RoBERTa on whole paragraphs packed across documents.
Each run's held-out figures are its own final evaluation on `valid.txt` (bertfit's fixed masks, up to
--max-eval-samples sequences).

Held-out MLM loss is a mean over masked tokens, and the two tokenizers cut text into different tokens (a BPE token
of byte-level BPE is not a WordPiece), so the loss per token compares two slightly different tasks; the table
also gives each tokenizer's tokens per held-out word, and the fair comparison downstream is fine-tuning both
saved models (`RUN/model`, kept under --output-dir) on the same task: the last lines print those commands.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402

ARCHITECTURES = ("bert", "roberta")


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
    return {"architecture": architecture, **results["metrics"], "steps": results["steps"],
            "train_seconds": results.get("train_seconds"), "train_tokens_seen": results.get("train_tokens_seen"),
            "train_sequences": results["train_sequences"], "eval_sequences": results["eval_sequences"],
            "train_sequence_counts": results["train_sequence_counts"], "out_of_time":
                (results.get("time_budget") or {}).get("out_of_time"), "model_dir": str(run_dir / "model")}


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
    parser.add_argument("--vocab-size", type=int, default=30522, help="of both tokenizers (default 30522)")
    parser.add_argument("--size", default="mini", help="the size preset of both models (default mini)")
    parser.add_argument("--max-time", default="60m", help="each side's training budget (default 60m)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=400, metavar="STEPS")
    parser.add_argument("--max-eval-samples", type=int, default=500, help="held-out sequences each evaluation reads")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="both sides; auto: bf16 on a CPU with native bf16, else fp32 (as bertfit's auto)")
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
          f"defaults otherwise (warmup 0.05, cosine, dropout 0.1), {args.threads} threads, "
          f"{len(train_files(args))} files of {args.text_dir}, held out: {valid}")
    print("differences: bert: cased WordPiece, packed full blocks, token types; roberta: byte-level BPE, whole "
          "paragraphs packed across documents (padded), no token types, positions after the padding id; each "
          f"tokenizer {args.vocab_size} tokens. MLM loss is per token of each side's own tokenizer")
    header = ["architecture", "steps", "train s", "tokens seen", "held-out MLM loss", "acc", "ppl", "tokens/word"]
    rows = [[a, f["steps"], f"{f['train_seconds']:.0f}", f"{f['train_tokens_seen']:,}", f"{f['mlm_loss']:.4f}",
             f"{f['mlm_accuracy']:.4f}", f"{f['perplexity']:.1f}", f"{f['tokens_per_word']:.3f}"]
            for a, f in figures.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    shared = {"size": args.size, "max_time_s": args.max_time, "batch_size": args.batch_size,
              "max_seq_length": args.max_seq_length, "lr": args.lr, "seed": args.seed, "vocab_size": args.vocab_size,
              "files": len(train_files(args)), "max_eval_samples": args.max_eval_samples, "eval_every": args.eval_every}
    common.write_figures(
        "pretrain-architectures", __file__, argv, args.figures_dir, figures={"peak": runs["peak"], "sides": figures},
        settings={a: {**shared, "tokenizer": TABLE[a].tokenizer, "packing": TABLE[a].packing} for a in architectures},
        precision={a: args.precision for a in architectures}, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "cpu": common.cpu_kind(), "sides": figures},
                                              indent=1))
    for architecture in architectures:
        print(f"fine-tune: bertfit glue sst2 --data-dir ../shared/data/glue --max-train-samples 2000 "
              f"--model {figures[architecture]['model_dir']}")
    if len(figures) == 2:  # the last line: the ratio (below 1: the first architecture reached the lower loss)
        (a, fa), (b, fb) = figures.items()
        print(f"ratio held-out MLM loss {a}/{b} {fa['mlm_loss'] / fb['mlm_loss']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
