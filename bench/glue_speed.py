"""SST-2 fine-tuning speed: bertfit against transformers' Trainer, same model, data and settings.

    python bench/glue_speed.py --data-dir ../shared/data/glue --samples 2000

Both sides fine-tune the embedded MiniLM on the first N SST-2 training examples for one epoch
(lr 5e-5, 10% warmup then linear decay, weight decay 0.01, batch 32, length-grouped batches,
bf16 autocast), then predict the dev set. Tokenizing happens before the clocks start on both
sides. Training time is the wall clock of the train call: `training.fit` (with a stub evaluation:
inference is timed on its own afterwards) and `Trainer.train`. The last line is
`ratio train X.XX eval Y.YY`, bertfit's throughput over the Trainer's (higher is better).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

COLUMNS = [
    ("side", "side", ""),
    ("train ex/s", "train_examples_per_s", ".1f"),
    ("train tok/s", "train_tokens_per_s", ".0f"),
    ("train s", "train_seconds", ".1f"),
    ("MFU %", "train_mfu_percent", ".1f"),
    ("eval ex/s", "eval_examples_per_s", ".1f"),
    ("eval tok/s", "eval_tokens_per_s", ".0f"),
    ("dev acc", "accuracy", ".4f"),
    ("peak RSS MB", "peak_rss_mb", ".0f"),
]


def read_examples(args):
    """The first N training and M dev examples of SST-2, read once for both sides alike."""
    from bertfit.tasks import glue_tsv

    def first(examples, n):
        return replace(examples, texts_a=examples.texts_a[:n], labels=examples.labels[:n],
                       indices=examples.indices[:n]) if n else examples

    train = first(glue_tsv.read_glue_split("sst2", args.data_dir, "train"), args.samples)
    dev = first(glue_tsv.read_glue_split("sst2", args.data_dir, "dev"), args.eval_samples)
    return train, dev


def bertfit_side(args) -> dict:
    import torch

    from bertfit.pretrained import embedded_model_path, load_pretrained
    from bertfit.recipes.glue import loss_fn
    from bertfit.tasks import glue, glue_encoding
    from bertfit.tokenization import special_ids

    train_examples, dev_examples = read_examples(args)
    torch.manual_seed(args.seed)  # the new classifier's initialisation, as finetune_glue seeds it
    model, tokenizer = load_pretrained(embedded_model_path(), head="classification", num_labels=2)
    pad_id = special_ids(tokenizer).pad
    train, _ = glue_encoding.encode(train_examples, tokenizer, args.max_seq_length)
    dev, _ = glue_encoding.encode(dev_examples, tokenizer, args.max_seq_length)
    ours = common.bertfit_fit_and_predict(model, train, dev, loss_fn(glue.resolve_task("sst2")), pad_id, args)
    result, (logits,) = ours["result"], ours["outputs"]

    train_lengths = common.length_stats(train.lengths)
    return {
        "train_examples": result.train_examples_seen,
        "train_steps": result.steps,
        "train_tokens": train_lengths["tokens"],
        "train_seconds": ours["train_seconds"],
        "train_loop_seconds": result.train_seconds,  # first step to last, without setup and the final checkpoint
        "train_flops": common.training_flops(model.bert.config, **train_lengths),
        "eval_examples": len(dev),
        "eval_tokens": int(dev.lengths.sum()),
        "eval_seconds": ours["eval_seconds"],
        "accuracy": float((logits.argmax(-1) == dev.columns["label_ids"]).mean()),
    }


def peer_side(args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from bertfit.pretrained import embedded_model_path

    train_examples, dev_examples = read_examples(args)
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenized(examples):
        rows = Dataset.from_dict({"sentence": examples.texts_a, "label": examples.labels})
        return rows.map(lambda batch: tokenizer(batch["sentence"], truncation=True, max_length=args.max_seq_length),
                        batched=True, remove_columns=["sentence"])

    train, dev = tokenized(train_examples), tokenized(dev_examples)
    set_seed(args.seed)  # the new classifier's initialisation, as run_glue seeds it
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    peer = common.peer_fit_and_predict(model, tokenizer, train, dev, args)
    output, config = peer["output"], peer["config"]
    train_lengths = common.length_stats([len(ids) for ids in train["input_ids"]])
    return {
        "train_examples": len(train),
        "train_steps": output.global_step,
        "train_tokens": train_lengths["tokens"],
        "train_seconds": peer["train_seconds"],
        "train_runtime": output.metrics["train_runtime"],  # the Trainer's own clock
        "train_flops": common.training_flops(config, **train_lengths),
        "eval_examples": len(dev),
        "eval_tokens": sum(len(ids) for ids in dev["input_ids"]),
        "eval_seconds": peer["eval_seconds"],
        "accuracy": float((peer["predictions"].argmax(-1) == np.asarray(dev["label"])).mean()),
    }


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the GLUE root, or its SST-2 folder")
    parser.add_argument("--samples", type=int, required=True, help="train on the first N training examples")
    parser.add_argument("--eval-samples", type=int, default=0, help="predict the first M dev examples (0: all 872)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    results = common.run(__file__, args, argv, {"bertfit": bertfit_side, "peer": peer_side})
    if results is None:
        return
    peak = results.pop("peak")
    bertfit, peer = results["bertfit"], results["peer"]
    if bertfit["train_examples"] != peer["train_examples"] or bertfit["eval_examples"] != peer["eval_examples"]:
        sys.exit(f"the sides saw different data: {bertfit['train_examples']} / {peer['train_examples']} training and "
                 f"{bertfit['eval_examples']} / {peer['eval_examples']} dev examples")
    notes = [f"SST-2: {bertfit['train_examples']} training examples, 1 epoch, batch {args.batch_size} "
             f"({bertfit['train_steps']} / {peer['train_steps']} steps); {bertfit['eval_examples']} dev examples; "
             f"{args.precision}, {bertfit['threads']} / {peer['threads']} threads (bertfit / peer)",
             f"real tokens: train {bertfit['train_tokens']} / {peer['train_tokens']}, "
             f"dev {bertfit['eval_tokens']} / {peer['eval_tokens']} (bertfit / peer)",
             f"bertfit's loop alone (no setup, no final checkpoint): {bertfit['train_loop_seconds']:.1f}s; "
             f"the Trainer's own train_runtime: {peer['train_runtime']:.1f}s",
             "MFU counts the whole model's matmul FLOPs on real tokens for both sides; bertfit's last block "
             "computes [CLS] alone, which skips about 14% of them"]
    common.report("SST-2 fine-tuning", args, peak, results, COLUMNS, notes)


if __name__ == "__main__":
    main(sys.argv[1:])
