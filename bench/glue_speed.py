"""SST-2 fine-tuning speed and dev accuracy: bertfit against transformers' Trainer, side by side in one run.

    python bench/glue_speed.py --data-dir ../shared/data/glue --samples 2000                      # same math
    python bench/glue_speed.py --data-dir ../shared/data/glue --samples 2000 --attention-dropout 0.1
    python bench/glue_speed.py --data-dir ../shared/data/glue --samples 0 --compare defaults --seeds 1,2,3

Both sides fine-tune the embedded MiniLM on the first N SST-2 training examples, then predict the
dev set. Two comparisons (--compare):
- same-math (default): the same computation on both sides: --epochs (1), --lr (5e-5), 10% warmup
  then linear decay, weight decay 0.01, --batch-size (32), --max-seq-length (128), the precision
  (--precision auto: bf16 on CPUs with native bf16, else fp32), the attention dropout (bertfit's
  training default, 0, set in the Trainer's model config too; --attention-dropout 0.1 runs both at
  the model's own), and exact dense AdamW on bertfit's side (lazy_embeddings off);
- defaults: `bertfit glue sst2`'s defaults (settings.GLUE_DEFAULTS for the training-set size)
  against the Trainer with run_glue's README settings (lr 2e-5, 3 epochs, batch 32, max length 128,
  no warmup or weight decay, fp32, eval batch 8), both with dynamic padding.
Both sides' settings are printed first, every one that differs named. Tokenizing happens before
the clocks start on both sides. Training time is the wall clock of the train call: `training.fit`
(with a stub evaluation: inference is timed on its own afterwards) and `Trainer.train`. MFU is
measured against a matmul peak in each side's precision, in the same run. With --seeds both sides
run once per seed, the same seeds, and the dev accuracy is mean ± std. The last line is
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


BERTFIT_BATCHES = common.BERTFIT_BATCHES
RUN_GLUE = common.RUN_GLUE


def side_settings(args, train_size: int) -> dict[str, dict]:
    """What each side trains with under --compare, as common.SETTING_NAMES names them."""
    from bertfit.recipes.glue import GlueOptions
    from bertfit.settings import glue_settings

    if args.compare == "same-math":
        dropout = args.attention_dropout if args.attention_dropout is not None \
            else common.bertfit_default_attention_dropout()
        shared = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, warmup_ratio=0.1,
                      weight_decay=0.01, precision=common.resolved_precision(args.precision),
                      attention_dropout=dropout, optimizer=common.EXACT_ADAMW, max_seq_length=args.max_seq_length,
                      eval_batch_size=args.eval_batch_size, seed=args.seed)
        return {"bertfit": {**shared, "train_batches": BERTFIT_BATCHES},
                "peer": {**shared, "train_batches": "group_by_length"}}
    ours = glue_settings("sst2", train_size, {})
    bertfit = dict(epochs=ours.epochs, lr=ours.lr, batch_size=ours.batch_size, warmup_ratio=ours.warmup_ratio,
                   weight_decay=ours.weight_decay, precision=common.resolved_precision(ours.precision),
                   attention_dropout=ours.attention_dropout if args.attention_dropout is None else args.attention_dropout,
                   optimizer=common.LAZY_ADAMW if ours.lazy_embeddings else common.EXACT_ADAMW,
                   train_batches=BERTFIT_BATCHES, max_seq_length=GlueOptions.max_seq_length,
                   eval_batch_size=ours.eval_batch_size, seed=args.seed)
    peer = dict(**RUN_GLUE, optimizer=common.EXACT_ADAMW, seed=args.seed,
                attention_dropout=common.model_attention_dropout() if args.attention_dropout is None
                else args.attention_dropout)
    return {"bertfit": bertfit, "peer": peer}


def bertfit_side(args) -> dict:
    import torch

    from bertfit.pretrained import embedded_model_path, load_pretrained
    from bertfit.recipes.glue import loss_fn
    from bertfit.tasks import glue, glue_encoding
    from bertfit.tokenization import special_ids

    train_examples, dev_examples = read_examples(args)
    settings = side_settings(args, len(train_examples))["bertfit"]
    torch.manual_seed(args.seed)  # the new classifier's initialisation, as finetune_glue seeds it
    model, tokenizer = load_pretrained(embedded_model_path(), head="classification", num_labels=2)
    pad_id = special_ids(tokenizer).pad
    train, _ = glue_encoding.encode(train_examples, tokenizer, settings["max_seq_length"])
    dev, _ = glue_encoding.encode(dev_examples, tokenizer, settings["max_seq_length"])
    ours = common.bertfit_fit_and_predict(model, train, dev, loss_fn(glue.resolve_task("sst2")), pad_id, settings)
    result, (logits,) = ours["result"], ours["outputs"]

    train_lengths = common.length_stats(train.lengths)
    return {
        "train_set": len(train),
        "train_examples": result.train_examples_seen,  # over every epoch
        "train_steps": result.steps,
        "train_tokens": train_lengths["tokens"] * settings["epochs"],
        "train_seconds": ours["train_seconds"],
        "train_loop_seconds": result.train_seconds,  # first step to last, without setup and the final checkpoint
        "train_flops": common.training_flops(model.bert.config, **train_lengths) * settings["epochs"],
        "eval_examples": len(dev),
        "eval_tokens": int(dev.lengths.sum()),
        "eval_seconds": ours["eval_seconds"],
        "accuracy": float((logits.argmax(-1) == dev.columns["label_ids"]).mean()),
    }


def peer_datasets(tokenizer, max_length: int, *examples) -> list:
    """Each of `examples` (single sentences) as the Trainer's `datasets` rows, cut at `max_length` tokens by
    transformers' `tokenizer`, as run_glue tokenizes them."""
    from datasets import Dataset

    def tokenized(part):
        rows = Dataset.from_dict({"sentence": part.texts_a, "label": part.labels})
        return rows.map(lambda batch: tokenizer(batch["sentence"], truncation=True, max_length=max_length),
                        batched=True, remove_columns=["sentence"])

    return [tokenized(part) for part in examples]


def peer_side(args) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from bertfit.pretrained import embedded_model_path

    train_examples, dev_examples = read_examples(args)
    settings = side_settings(args, len(train_examples))["peer"]
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    train, dev = peer_datasets(tokenizer, settings["max_seq_length"], train_examples, dev_examples)
    set_seed(args.seed)  # the new classifier's initialisation, as run_glue seeds it
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, attention_probs_dropout_prob=settings["attention_dropout"])

    peer = common.peer_fit_and_predict(model, tokenizer, train, dev, settings)
    output, config = peer["output"], peer["config"]
    train_lengths = common.length_stats([len(ids) for ids in train["input_ids"]])
    return {
        "train_set": len(train),
        "train_examples": len(train) * settings["epochs"],  # over every epoch
        "train_steps": output.global_step,
        "train_tokens": train_lengths["tokens"] * settings["epochs"],
        "train_seconds": peer["train_seconds"],
        "train_runtime": output.metrics["train_runtime"],  # the Trainer's own clock
        "train_flops": common.training_flops(config, **train_lengths) * settings["epochs"],
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
    parser.add_argument("--epochs", type=int, default=1, help="same-math: epochs of both sides (default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="same-math: both sides' batch (default 32)")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="same-math: both sides' (default 128)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="same-math: both sides' precision; auto: bf16 with native bf16 instructions, else "
                             "fp32, as bertfit decides (default auto)")
    parser.add_argument("--lr", type=float, default=5e-5, help="same-math: both sides' peak lr (default 5e-5)")
    parser.add_argument("--max-seq-length", type=int, default=128, help="same-math: both sides' (default 128)")
    common.add_comparison_options(parser)
    args = parser.parse_args(argv)

    settings = side_settings(args, len(read_examples(args)[0]))
    if not args.side:
        print(common.cpu_line(common.cpu_kind()))
        print("\n".join(common.settings_lines(args.compare, settings)), flush=True)
    results = common.run(__file__, args, argv, {"bertfit": bertfit_side, "peer": peer_side},
                         precisions={side["precision"] for side in settings.values()})
    if results is None:
        return
    peak = results.pop("peak")
    bertfit, peer = results["bertfit"][0], results["peer"][0]
    if bertfit["train_set"] != peer["train_set"] or bertfit["eval_examples"] != peer["eval_examples"]:
        sys.exit(f"the sides saw different data: {bertfit['train_set']} / {peer['train_set']} training and "
                 f"{bertfit['eval_examples']} / {peer['eval_examples']} dev examples")
    ours, theirs = settings["bertfit"], settings["peer"]
    notes = [f"SST-2: {len(read_examples(args)[0])} training examples, {ours['epochs']:g} / {theirs['epochs']:g} "
             f"epochs, batch {ours['batch_size']} / {theirs['batch_size']} ({bertfit['train_steps']} / "
             f"{peer['train_steps']} steps); {bertfit['eval_examples']} dev examples; {ours['precision']} / "
             f"{theirs['precision']}, {bertfit['threads']} / {peer['threads']} threads (bertfit / peer)",
             f"real tokens: train {bertfit['train_tokens']} / {peer['train_tokens']}, "
             f"dev {bertfit['eval_tokens']} / {peer['eval_tokens']} (bertfit / peer)",
             f"bertfit's loop alone (no setup, no final checkpoint): {bertfit['train_loop_seconds']:.1f}s; "
             f"the Trainer's own train_runtime: {peer['train_runtime']:.1f}s",
             "MFU counts the whole model's matmul FLOPs on real tokens for both sides; bertfit's last block "
             "computes [CLS] alone, which skips about 14% of them"]
    common.report(f"SST-2 fine-tuning, {args.compare}", args, peak, results, COLUMNS, notes, settings,
                  scores=("accuracy",), name=common.comparison_name("glue-speed", args), script=__file__, argv=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
