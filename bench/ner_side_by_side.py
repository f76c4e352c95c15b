"""WNUT-17 side by side: `bertfit ner`'s defaults against the Trainer with run_ner's logic and settings.

    python bench/ner_side_by_side.py ../shared/data/ner/wnut17 --seeds 1,2,3

Both sides fine-tune the embedded model on train.conll and keep the final model (neither chooses on dev);
each side's predictions for every word of dev.conll and test.conll are scored by seqeval itself (entity F1,
its default mode), so the two are compared by the same code. Each side and seed runs in a child process.
- bertfit: `finetune_ner` as `bertfit ner --train-file train.conll --eval-file dev.conll` runs it, its defaults
  (settings.NER_DEFAULTS, 128-token windows with every word predicted); the kept model then tags test.conll.
- the Trainer: transformers' run_ner.py logic (labels on each word's first sub-token, -100 elsewhere,
  DataCollatorForTokenClassification, sentences cut at the tokenizer's 512 tokens, the label list sorted)
  with its defaults: 3 epochs at 5e-5, batch 8, no warmup or weight decay, fp32. run_ner scores only the
  words that kept a label; any word it cut off is counted here as predicted O, so both sides score every word.
--max-train-samples / --max-eval-samples and --epochs make a smoke run on a few sentences.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RUN_NER = dict(epochs=3, lr=5e-5, batch_size=8, warmup_ratio=0.0, weight_decay=0.0, precision="fp32",
               eval_batch_size=8, train_batches="random", max_seq_length=512)


def read(args, split: str, limit: int | None):
    from bertfit.tasks import tagged_files

    return tagged_files.read_tagged_file(Path(args.data_dir) / f"{split}.conll").take(limit)


def seqeval_f1(gold, predicted) -> float:
    from seqeval.metrics import f1_score

    return 100 * float(f1_score(gold, predicted))


def bertfit_side(args) -> dict:
    from dataclasses import asdict, replace

    import torch

    from bertfit.pretrained import load_pretrained
    from bertfit.recipes.ner import NerOptions, finetune_ner, predict_tags
    from bertfit.settings import NER_DEFAULTS
    from bertfit.tasks import tagging

    chosen = replace(NER_DEFAULTS, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    data = Path(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="ner-side-bertfit-") as run_dir:
        start = time.perf_counter()
        results = finetune_ner(NerOptions(train_file=str(data / "train.conll"), eval_file=str(data / "dev.conll"),
                                          max_train_samples=args.max_train_samples,
                                          max_eval_samples=args.max_eval_samples, output_dir=run_dir,
                                          overwrite=True, quiet=True), chosen)
        seconds = time.perf_counter() - start
        labels = results["settings"]["labels"]
        model, tokenizer = load_pretrained(Path(run_dir) / "model", head="tagging", num_labels=len(labels))
        scored = {}
        for split in ("dev", "test"):
            sentences = read(args, split, args.max_eval_samples)
            encoded = tagging.encode(sentences.words, tokenizer, NerOptions.max_seq_length, NerOptions.stride)
            predicted = predict_tags(model, encoded, sentences, labels, tokenizer.token_to_id("[PAD]"),
                                     torch.device("cpu"), chosen)
            scored[split] = seqeval_f1(sentences.tags, predicted)
    return {"dev_f1": scored["dev"], "test_f1": scored["test"], "train_seconds": results["train_seconds"],
            "wall_seconds": seconds, "steps": results["steps"],
            "settings": {**asdict(chosen), "precision": common.resolved_precision(chosen.precision),
                         "max_seq_length": NerOptions.max_seq_length, "optimizer": common.LAZY_ADAMW
                         if chosen.lazy_embeddings else common.EXACT_ADAMW,
                         "train_batches": common.BERTFIT_BATCHES}}


def peer_side(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments, set_seed)

    from bertfit.pretrained import embedded_model_path

    settings = {**RUN_NER, **({"epochs": args.epochs} if args.epochs else {})}
    train = read(args, "train", args.max_train_samples)
    labels = sorted({t for tags in train.tags for t in tags})  # run_ner: get_label_list sorts
    index = {label: i for i, label in enumerate(labels)}
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize_and_align_labels(words, tags):
        encoded = tokenizer(words, truncation=True, max_length=settings["max_seq_length"], is_split_into_words=True)
        all_labels = []
        for i, sentence_tags in enumerate(tags):
            previous, row = None, []
            for word in encoded.word_ids(batch_index=i):
                row.append(-100 if word is None or word == previous else index.get(sentence_tags[word], -100))
                previous = word
            all_labels.append(row)
        encoded["labels"] = all_labels
        return encoded

    set_seed(args.seed)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                                            label2id=index)
    scored = {}
    with tempfile.TemporaryDirectory(prefix="ner-side-peer-") as output_dir:
        trainer = Trainer(model=model, args=TrainingArguments(
            output_dir=output_dir, use_cpu=True, per_device_train_batch_size=settings["batch_size"],
            per_device_eval_batch_size=settings["eval_batch_size"], learning_rate=settings["lr"],
            num_train_epochs=settings["epochs"], warmup_steps=0, weight_decay=0.0, lr_scheduler_type="linear",
            save_strategy="no", report_to=[], logging_steps=50, dataloader_num_workers=0, seed=args.seed),
            train_dataset=Dataset.from_dict(dict(tokenize_and_align_labels(train.words, train.tags))),
            processing_class=tokenizer, data_collator=DataCollatorForTokenClassification(tokenizer))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        for split in ("dev", "test"):
            sentences = read(args, split, args.max_eval_samples)
            encoded = tokenize_and_align_labels(sentences.words, [["O"] * len(w) for w in sentences.words])
            logits = trainer.predict(Dataset.from_dict(dict(encoded))).predictions
            predicted = []
            for i, words in enumerate(sentences.words):
                tags, previous = ["O"] * len(words), None
                for position, word in enumerate(encoded.word_ids(batch_index=i)):
                    if word is not None and word != previous:
                        tags[word] = labels[int(np.argmax(logits[i][position]))]
                    previous = word
                predicted.append(tags)
            scored[split] = seqeval_f1(sentences.tags, predicted)
    return {"dev_f1": scored["dev"], "test_f1": scored["test"], "train_seconds": train_seconds,
            "wall_seconds": train_seconds, "steps": trainer.state.global_step,
            "settings": {**settings, "seed": args.seed, "optimizer": common.EXACT_ADAMW,
                         "attention_dropout": common.model_attention_dropout(), "threads": torch.get_num_threads()}}


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="the WNUT-17 folder: train.conll, dev.conll, test.conll")
    parser.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",") if x.strip()], default=[1, 2, 3],
                        help="one run per side per seed (default 1,2,3)")
    parser.add_argument("--seed", type=int, default=1, help=argparse_hidden())
    parser.add_argument("--max-train-samples", type=int, help="a smoke run: the first N training sentences")
    parser.add_argument("--max-eval-samples", type=int, help="a smoke run: the first N dev and test sentences")
    parser.add_argument("--epochs", type=float, help="a smoke run: this many epochs on both sides")
    args = parser.parse_args(argv)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        figures = {"bertfit": bertfit_side, "peer": peer_side}[args.side](args)
        Path(args.result_file).write_text(json.dumps(figures))
        return
    print(common.cpu_line(common.cpu_kind()))
    child = common._without_options(argv, ("--json", "--figures-dir", "--seeds", "--seed"))
    results = {"bertfit": [], "peer": []}
    for seed in args.seeds:
        for side in results:
            results[side].append(common.run_side(__file__, [*child, "--seed", str(seed)], side))
    settings = {side: {k: v for k, v in runs[0]["settings"].items() if k != "seed"} for side, runs in results.items()}
    for line in common.settings_lines("defaults", settings):
        print(line)
    rows = {side: common.over_seeds([{k: v for k, v in r.items() if k != "settings"} for r in runs],
                                    ("dev_f1", "test_f1")) for side, runs in results.items()}
    common.print_table(f"WNUT-17, seeds {','.join(map(str, args.seeds))}: entity F1 ×100 by seqeval (default mode)",
                       {"bertfit": rows["bertfit"], "Trainer (run_ner)": rows["peer"]},
                       [("side", "side", ""), ("dev F1", "dev_f1", ".2f"), ("test F1", "test_f1", ".2f"),
                        ("steps", "steps", ".0f"), ("train s", "train_seconds", ".0f")])
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": common.cpu_kind(), "seeds": args.seeds, "runs": results},
                                              indent=2) + "\n")
    ratio = rows["peer"]["train_seconds"] / max(rows["bertfit"]["train_seconds"], 1e-9)
    print(f"training time, Trainer / bertfit: {ratio:.2f}x")


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main(sys.argv[1:])
