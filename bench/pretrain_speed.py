"""MLM pretraining speed: `bertfit pretrain` against transformers' Trainer with run_mlm's logic, side by side.

    python bench/pretrain_speed.py --text-dir ../shared/data/text --files 3 --steps 300

Both sides train a new BERT of the same size (`--size`, mini: 4 layers, 256 wide) from the same seed,
with the same WordPiece tokenizer (trained here first by `bertfit tokenizer`, or --tokenizer), on
the same text files, in blocks of 128 tokens, batch 32, bf16 autocast, AdamW at 1e-4 with the same
warmup and cosine decay, clipping 1.0, weight decay 0.01, dropout 0.1 on hidden states and attention,
15% of tokens masked 80/10/10, for the same number of steps. Each side runs in a fresh process,
one after the other, with the same threads.

- bertfit: `recipes.pretrain.pretrain` (packed blocks from its token file, masking each step, the LM
  head at masked positions only, word embeddings tied to the output projection).
- peer: run_mlm's logic: `load_dataset("text")` lines tokenized with their [CLS]/[SEP], concatenated
  and cut into 128-token blocks (`group_texts`), `DataCollatorForLanguageModeling`,
  `BertForMaskedLM` (tied embeddings), `Trainer` with `bf16=True, use_cpu=True`.

Data preparation (tokenizing) is outside both clocks. Training tokens/s is steps x batch x 128 over
the training loop's time (bertfit: its log's rate at the last step, before the final evaluation;
peer: `train_runtime`). Then both saved models are scored by the same code, transformers'
`BertForMaskedLM` in fp32, on the same held-out blocks of `valid.txt` with the same masks. The last
line is `ratio train X.XX` (bertfit's tokens/s over the peer's).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402

SEQ_LEN = 128


def train_files(args) -> list[str]:
    files = sorted(str(p) for p in Path(args.text_dir).glob("*.txt") if p.name != "valid.txt")
    return files[: args.files] if args.files else files


def bertfit_side(args) -> dict:
    from dataclasses import replace

    from bertfit.recipes.pretrain import PretrainOptions, pretrain
    from bertfit.settings import PRETRAIN_DEFAULTS

    settings = replace(PRETRAIN_DEFAULTS, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       warmup_ratio=args.warmup_ratio, precision=args.precision, seed=args.seed, eval_every=0,
                       log_every=10)
    run_dir = Path(args.work_dir) / "bertfit"
    options = PretrainOptions(train_files=tuple(train_files(args)), validation_file=str(Path(args.text_dir) / "valid.txt"),
                              tokenizer=args.tokenizer, size=args.size, output_dir=str(run_dir),
                              max_seq_length=SEQ_LEN, max_eval_samples=32, overwrite=True)
    results = pretrain(options, settings)
    train_log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    last = [e for e in train_log if e.get("event") == "train"][-1]
    return {"tokens_per_s": last["examples_per_s"] * SEQ_LEN, "steps": results["steps"],
            "train_seconds": args.steps * args.batch_size / last["examples_per_s"],
            "blocks": results["train_sequences"], "model_dir": str(run_dir / "model")}


def peer_side(args) -> dict:
    import torch
    from datasets import load_dataset
    from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, PreTrainedTokenizerFast,
                              Trainer, TrainingArguments)

    from bertfit.model import pretrain_config

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=args.tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    raw = load_dataset("text", data_files={"train": train_files(args)})["train"]
    tokenized = raw.map(lambda batch: tokenizer(batch["text"], return_special_tokens_mask=True), batched=True,
                        remove_columns=["text"])

    def group_texts(examples):  # run_mlm's: concatenate everything, cut into blocks, drop the remainder
        joined = {k: sum(examples[k], []) for k in examples}
        total = len(joined["input_ids"]) // SEQ_LEN * SEQ_LEN
        return {k: [v[i : i + SEQ_LEN] for i in range(0, total, SEQ_LEN)] for k, v in joined.items()}

    blocks = tokenized.map(group_texts, batched=True, batch_size=1000)
    ours = pretrain_config(args.size, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id)
    config = BertConfig(vocab_size=ours.vocab_size, hidden_size=ours.hidden_size,
                        num_hidden_layers=ours.num_hidden_layers, num_attention_heads=ours.num_attention_heads,
                        intermediate_size=ours.intermediate_size, max_position_embeddings=ours.max_position_embeddings,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=ours.pad_token_id)
    torch.manual_seed(args.seed)
    model = BertForMaskedLM(config)
    out = Path(args.work_dir) / "peer"
    training_args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        max_steps=args.steps, warmup_steps=args.warmup_ratio, lr_scheduler_type="cosine", weight_decay=0.01,
        max_grad_norm=1.0, bf16=args.precision == "bf16", use_cpu=True, logging_steps=50, save_strategy="no",
        report_to=[], seed=args.seed, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=training_args, train_dataset=blocks,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15))
    metrics = trainer.train().metrics
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    return {"tokens_per_s": args.steps * args.batch_size * SEQ_LEN / metrics["train_runtime"],
            "steps": args.steps, "train_seconds": metrics["train_runtime"], "blocks": len(blocks),
            "model_dir": str(out / "model")}


def held_out_loss(model_dir: str, tokenizer_file: str, valid: Path, blocks: int, seed: int) -> dict:
    """MLM loss and accuracy of a saved model (transformers, fp32) on held-out blocks with fixed masks."""
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    from transformers import BertForMaskedLM

    tokenizer = Tokenizer.from_file(tokenizer_file)
    cls, sep, pad, mask, unk = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"))
    paragraphs = [line.strip() for line in valid.read_text(encoding="utf-8").splitlines() if line.strip()]
    stream = np.fromiter((t for e in tokenizer.encode_batch(paragraphs, add_special_tokens=False) for t in e.ids),
                         dtype=np.int64)
    body = SEQ_LEN - 2
    n = min(blocks, len(stream) // body)
    ids = torch.from_numpy(stream[: n * body].reshape(n, body))
    ids = torch.cat([torch.full((n, 1), cls), ids, torch.full((n, 1), sep)], dim=1)
    generator = torch.Generator().manual_seed(seed)
    special = torch.isin(ids, torch.tensor([cls, sep, pad, mask, unk]))
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special
    action = torch.rand(ids.shape, generator=generator)
    normal = torch.tensor([i for i in range(tokenizer.get_vocab_size()) if i not in (cls, sep, pad, mask, unk)])
    random_ids = normal[torch.randint(len(normal), ids.shape, generator=generator)]
    inputs = torch.where(chosen & (action < 0.8), mask, torch.where(chosen & (action < 0.9), random_ids, ids))
    model = BertForMaskedLM.from_pretrained(model_dir).eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, n, 64):
            logits = model(input_ids=inputs[start : start + 64]).logits
            where = chosen[start : start + 64]
            targets = ids[start : start + 64][where]
            picked = logits[where].float()
            loss_sum += float(torch.nn.functional.cross_entropy(picked, targets, reduction="sum"))
            correct += int((picked.argmax(-1) == targets).sum())
            count += int(where.sum())
    return {"mlm_loss": loss_sum / count, "mlm_accuracy": correct / count, "perplexity": math.exp(loss_sum / count),
            "masked_tokens": count, "eval_blocks": n}


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--text-dir", required=True, help="folder of .txt files and valid.txt (../shared/data/text)")
    parser.add_argument("--files", type=int, default=0, help="train on the first N files in name order (0: all)")
    parser.add_argument("--tokenizer", help="a WordPiece tokenizer JSON (default: train one on the files first)")
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--size", default="mini")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="both sides; auto: bf16 on a CPU with native bf16, else fp32 (as bertfit's auto)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--eval-blocks", type=int, default=1000, help="held-out blocks of valid.txt scored")
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.precision = common.resolved_precision(args.precision)
    if args.side:
        common.run(__file__, args, argv, {"bertfit": bertfit_side, "peer": peer_side})
        return

    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as work:
        if not args.tokenizer:
            from bertfit.tokenizer_training import train_wordpiece

            args.tokenizer = str(Path(work) / "wordpiece.json")
            started = time.perf_counter()
            train_wordpiece(train_files(args), args.tokenizer, vocab_size=args.vocab_size, lowercase=True, quiet=True)
            print(f"tokenizer: {args.vocab_size} WordPiece tokens trained on {len(train_files(args))} files in "
                  f"{time.perf_counter() - started:.0f}s", file=sys.stderr)
        child = [*argv, "--work-dir", work] + ([] if "--tokenizer" in argv else ["--tokenizer", args.tokenizer])
        runs = common.run(__file__, args, child, {"bertfit": bertfit_side, "peer": peer_side},
                          precisions=(args.precision,))
        sides = {"bertfit": runs["bertfit"][0], "peer": runs["peer"][0]}
        for side in ("bertfit", "peer"):
            sides[side].update(held_out_loss(sides[side]["model_dir"], args.tokenizer,
                                             Path(args.text_dir) / "valid.txt", args.eval_blocks, seed=args.seed))

    print(common.cpu_line(common.cpu_kind()))
    print(f"MLM pretraining, new {args.size} BERT, {args.steps} steps of {args.batch_size} x {SEQ_LEN} tokens, "
          f"{args.precision}, lr {args.lr:g} warmup {args.warmup_ratio:g} cosine, dropout 0.1 (attention too), "
          f"{args.threads} threads, files: {len(train_files(args))} of {args.text_dir}")
    print("differences: bertfit packs documents with one [SEP] between them and runs the LM head only at masked "
          "positions; the peer (run_mlm) keeps each line's [CLS]/[SEP] in its blocks and projects every position")
    header = ["side", "tokens/s", "train s", "steps", "blocks", "held-out MLM loss", "acc", "ppl", "peak RSS MB"]
    rows = [[side, f"{f['tokens_per_s']:.0f}", f"{f['train_seconds']:.1f}", f["steps"], f["blocks"],
             f"{f['mlm_loss']:.4f}", f"{f['mlm_accuracy']:.4f}", f"{f['perplexity']:.1f}", f"{f['peak_rss_mb']:.0f}"]
            for side, f in sides.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    shared = {"size": args.size, "steps": args.steps, "batch_size": args.batch_size, "seq_len": SEQ_LEN, "lr": args.lr,
              "warmup_ratio": args.warmup_ratio, "schedule": "cosine", "weight_decay": 0.01, "max_grad_norm": 1.0,
              "hidden_dropout": 0.1, "attention_dropout": 0.1, "mlm_probability": 0.15, "seed": args.seed,
              "files": len(train_files(args)), "vocab_size": args.vocab_size, "eval_blocks": args.eval_blocks}
    common.write_figures(
        "pretrain-speed", __file__, argv, args.figures_dir, figures={"peak": runs["peak"], "sides": sides},
        settings={"bertfit": {**shared, "blocks": "documents packed, one [SEP] between them",
                              "lm_head": "masked positions only"},
                  "peer": {**shared, "blocks": "run_mlm's group_texts (each line's [CLS]/[SEP] kept)",
                           "lm_head": "every position"}},
        precision={"bertfit": args.precision, "peer": args.precision}, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "cpu": common.cpu_kind(), "peak": runs["peak"], "sides": sides}, indent=1))
    print(f"ratio train {sides['bertfit']['tokens_per_s'] / sides['peer']['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
