"""WNUT-17 side by side: `bertfit ner` against the Trainer with run_ner's logic, entity F1 and speed in one run.

    python bench/ner_side_by_side.py ../shared/data/ner/wnut17 --compare defaults --seeds 1,2,3
    python bench/ner_side_by_side.py ../shared/data/ner/wnut17 --compare same-math --seeds 1,2,3

Both sides fine-tune the embedded model on train.conll and keep the final model (neither chooses on dev);
each side's predictions for every word of dev.conll and test.conll are scored by seqeval itself (entity F1,
its default mode), so the two are compared by the same code. Each side and seed runs in a child process,
the sides alternating seed by seed, the same seeds on both. Two comparisons (--compare):
- defaults: `bertfit ner --train-file train.conll --eval-file dev.conll` with its defaults
  (settings.NER_DEFAULTS, 128-token windows with every word predicted; it scores dev after every epoch,
  inside its training clock) against transformers' run_ner.py logic and defaults: labels on each word's
  first sub-token, -100 elsewhere, DataCollatorForTokenClassification, sentences cut at 512 tokens, the
  label list sorted, 3 epochs at 5e-5, batch 8, no warmup or weight decay, fp32, random batches.
- same-math: the same computation on both sides: 3 epochs at 5e-5, batch 32, 10% warmup then linear decay,
  weight decay 0.01, 128 tokens, the precision --precision auto resolves to, attention dropout 0 (bertfit's
  training default, set in the Trainer's model config too), exact dense AdamW, length-grouped batches,
  labels on first sub-tokens; training timed without evaluation on both sides (`training.fit` with a stub
  evaluation, `Trainer.train`).
Inference is timed on both sides: dev and test tagged by `predict_tags` (bertfit) and `Trainer.predict`.
A word the Trainer's truncation cut off counts as predicted O, so both sides score every word; the notes say
how many. The last line is `ratio train X.XX eval Y.YY`, bertfit's throughput over the Trainer's; with
--untimed (the run shares the CPU with other work) the scores alone are reported.

Untimed runs take hours on a shared CPU: --runs-file appends each finished side and seed there and takes those
already in it (made with the same comparison, settings and sample limits) instead of running them again, and
with --peer-runs FIGURES the Trainer's rows are taken from an earlier figures file of this bench, after checks
that they were made by the same peer code (compared with the file's commit), settings, seeds and data sizes;
the table's notes and the figures file say which rows were reused and from which commit.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RUN_NER = dict(epochs=3, lr=5e-5, batch_size=8, warmup_ratio=0.0, weight_decay=0.0, precision="fp32",
               eval_batch_size=8, train_batches="random", max_seq_length=512)
SAME_MATH = dict(epochs=3, lr=5e-5, batch_size=32, warmup_ratio=0.1, weight_decay=0.01, max_seq_length=128,
                 eval_batch_size=128)
COLUMNS = [("side", "side", ""), ("dev F1", "dev_f1", ".2f"), ("test F1", "test_f1", ".2f"),
           ("train sent/s", "train_examples_per_s", ".1f"), ("train s", "train_seconds", ".1f"),
           ("MFU %", "train_mfu_percent", ".1f"), ("tag sent/s", "eval_examples_per_s", ".1f"),
           ("steps", "train_steps", ".0f"), ("peak RSS MB", "peak_rss_mb", ".0f")]


def side_settings(args) -> dict[str, dict]:
    """What each side trains with under --compare, as common.SETTING_NAMES names them."""
    from bertfit.recipes.ner import NerOptions
    from bertfit.settings import NER_DEFAULTS

    if args.compare == "same-math":
        dropout = args.attention_dropout if args.attention_dropout is not None \
            else common.bertfit_default_attention_dropout()
        shared = dict(SAME_MATH, precision=common.resolved_precision(args.precision), attention_dropout=dropout,
                      optimizer=common.EXACT_ADAMW, seed=args.seed)
        return {"bertfit": {**shared, "train_batches": common.BERTFIT_BATCHES},
                "peer": {**shared, "train_batches": "group_by_length"}}
    ours = NER_DEFAULTS
    bertfit = dict(epochs=ours.epochs, lr=ours.lr, batch_size=ours.batch_size, warmup_ratio=ours.warmup_ratio,
                   weight_decay=ours.weight_decay, precision=common.resolved_precision(ours.precision),
                   attention_dropout=ours.attention_dropout if args.attention_dropout is None
                   else args.attention_dropout,
                   optimizer=common.LAZY_ADAMW if ours.lazy_embeddings else common.EXACT_ADAMW,
                   train_batches=common.BERTFIT_BATCHES, max_seq_length=NerOptions.max_seq_length,
                   eval_batch_size=ours.eval_batch_size, seed=args.seed)
    peer = dict(**RUN_NER, optimizer=common.EXACT_ADAMW, seed=args.seed,
                attention_dropout=common.model_attention_dropout() if args.attention_dropout is None
                else args.attention_dropout)
    return {"bertfit": bertfit, "peer": peer}


def read(args, split: str, limit: int | None):
    from bertfit.tasks import tagged_files

    return tagged_files.read_tagged_file(Path(args.data_dir) / f"{split}.conll").take(limit)


def seqeval_f1(gold, predicted) -> float:
    from seqeval.metrics import f1_score

    return 100 * float(f1_score(gold, predicted))


def bertfit_side(args) -> dict:
    import torch

    from bertfit import devices, training
    from bertfit.pretrained import embedded_model_path, load_pretrained
    from bertfit.recipes.ner import NerOptions, finetune_ner, label_set, predict_tags, token_loss
    from bertfit.settings import NER_DEFAULTS
    from bertfit.tasks import tag_schemes, tagging
    from bertfit.tokenization import special_ids

    settings = side_settings(args)["bertfit"]
    # defaults: exactly what `bertfit ner` trains with; same-math: the shared settings
    train_settings = replace(NER_DEFAULTS, seed=args.seed) if args.compare == "defaults" \
        else common.training_settings(settings)
    train = read(args, "train", args.max_train_samples)
    stride = NerOptions.stride
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="ner-side-bertfit-") as run_dir:
        start = time.perf_counter()
        if args.compare == "defaults":
            results = finetune_ner(NerOptions(
                train_file=str(Path(args.data_dir) / "train.conll"), eval_file=str(Path(args.data_dir) / "dev.conll"),
                max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples,
                output_dir=run_dir, overwrite=True, quiet=True), train_settings)
            train_seconds = time.perf_counter() - start
            labels, steps = results["settings"]["labels"], results["steps"]
            model, tokenizer = load_pretrained(Path(run_dir) / "model", head="tagging", num_labels=len(labels))
        else:
            devices.tune_allocator(device)  # as `bertfit ner` tunes the process it owns
            labels = label_set(train.tags, tag_schemes.detect(train.tags))
            torch.manual_seed(args.seed)  # the new head's initialisation, as finetune_ner seeds it
            model, tokenizer = load_pretrained(embedded_model_path(), head="tagging", num_labels=len(labels))
            index = {label: i for i, label in enumerate(labels)}
            encoded = tagging.encode(train.words, tokenizer, settings["max_seq_length"], stride,
                                     label_ids=[[index[t] for t in tags] for tags in train.tags])
            start = time.perf_counter()
            result = training.fit(model, encoded.features, token_loss, lambda model: {"unused": 0.0},
                                  lambda model, metrics: None, train_settings, Path(run_dir),
                                  special_ids(tokenizer).pad, device, resume=False)
            train_seconds, steps = time.perf_counter() - start, result.steps
    pad_id = special_ids(tokenizer).pad
    train_encoded = tagging.encode(train.words, tokenizer, settings["max_seq_length"], stride)
    scored, eval_seconds, eval_examples, eval_tokens, windowed = {}, 0.0, 0, 0, 0
    for split in ("dev", "test"):
        sentences = read(args, split, args.max_eval_samples)
        start = time.perf_counter()
        encoded = tagging.encode(sentences.words, tokenizer, settings["max_seq_length"], stride)
        predicted = predict_tags(model, encoded, sentences, labels, pad_id, device, train_settings)
        eval_seconds += time.perf_counter() - start
        eval_examples += len(sentences)
        eval_tokens += int(encoded.features.lengths.sum())
        windowed += encoded.num_windowed
        scored[split] = seqeval_f1(sentences.tags, predicted)
    lengths = common.length_stats(train_encoded.features.lengths)
    return {"dev_f1": scored["dev"], "test_f1": scored["test"], "train_set": len(train),
            "train_examples": len(train) * settings["epochs"], "train_steps": steps,
            "train_tokens": lengths["tokens"] * settings["epochs"], "train_seconds": train_seconds,
            "train_flops": common.training_flops(model.bert.config, **lengths) * settings["epochs"],
            "eval_examples": eval_examples, "eval_tokens": eval_tokens, "eval_seconds": eval_seconds,
            "words_cut": 0, "windowed_sentences": windowed, "windowed_training_sentences": train_encoded.num_windowed}


def peer_side(args) -> dict:
    from datasets import Dataset
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments, set_seed)

    from bertfit.model import BertConfig
    from bertfit.pretrained import embedded_model_path

    settings = side_settings(args)["peer"]
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

    train_encoded = tokenize_and_align_labels(train.words, train.tags)
    set_seed(args.seed)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index,
        attention_probs_dropout_prob=settings["attention_dropout"])
    scored, eval_seconds, eval_examples, eval_tokens, words_cut = {}, 0.0, 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="ner-side-peer-") as output_dir:
        trainer = Trainer(model=model, args=TrainingArguments(
            output_dir=output_dir, use_cpu=True, bf16=settings["precision"] == "bf16",
            per_device_train_batch_size=settings["batch_size"], per_device_eval_batch_size=settings["eval_batch_size"],
            learning_rate=settings["lr"], num_train_epochs=settings["epochs"],
            warmup_steps=settings["warmup_ratio"],  # a float below 1 is a ratio in transformers 5
            weight_decay=settings["weight_decay"], lr_scheduler_type="linear",
            train_sampling_strategy=settings["train_batches"], save_strategy="no", report_to=[], logging_steps=50,
            dataloader_num_workers=0, seed=args.seed),
            train_dataset=Dataset.from_dict(dict(train_encoded)),
            processing_class=tokenizer, data_collator=DataCollatorForTokenClassification(tokenizer))
        start = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - start
        # group_by_length also reorders prediction batches; sequential keeps rows in dataset order
        trainer.args.train_sampling_strategy = "sequential"
        for split in ("dev", "test"):
            sentences = read(args, split, args.max_eval_samples)
            start = time.perf_counter()
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
            eval_seconds += time.perf_counter() - start
            eval_examples += len(sentences)
            eval_tokens += sum(len(ids) for ids in encoded["input_ids"])
            words_cut += sum(len(words) - len({w for w in encoded.word_ids(batch_index=i) if w is not None})
                             for i, words in enumerate(sentences.words))
            scored[split] = seqeval_f1(sentences.tags, predicted)
    hf = model.config
    config = BertConfig(hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size,
                        num_hidden_layers=hf.num_hidden_layers, num_attention_heads=hf.num_attention_heads)
    lengths = common.length_stats([len(ids) for ids in train_encoded["input_ids"]])
    return {"dev_f1": scored["dev"], "test_f1": scored["test"], "train_set": len(train),
            "train_examples": len(train) * settings["epochs"], "train_steps": output.global_step,
            "train_tokens": lengths["tokens"] * settings["epochs"], "train_seconds": train_seconds,
            "train_flops": common.training_flops(config, **lengths) * settings["epochs"],
            "eval_examples": eval_examples, "eval_tokens": eval_tokens, "eval_seconds": eval_seconds,
            "words_cut": words_cut}


# What the Trainer's side computes: a figures file whose commit has the same source for these is reused.
PEER_CODE = ("RUN_NER", "read", "seqeval_f1", "peer_side")


def peer_code(source: str) -> list[str]:
    """The source of PEER_CODE's definitions in a version of this file, in order."""
    tree = ast.parse(source)
    found = {}
    for node in tree.body:
        names = [node.name] if hasattr(node, "name") else [t.id for t in getattr(node, "targets", [])
                                                          if isinstance(t, ast.Name)]
        for name in names:
            found[name] = ast.get_source_segment(source, node)
    return [found.get(name, "") for name in PEER_CODE]


def reused_peer_runs(args, peer_settings: dict) -> dict:
    """The Trainer's runs for args' seeds from --peer-runs, refused unless made the same way as this run's."""
    record = json.loads(Path(args.peer_runs).read_text(encoding="utf-8"))
    figures, why = record["figures"], []
    if record["name"] != common.comparison_name("ner-side-by-side", args):
        why.append(f"it is {record['name']}, not {common.comparison_name('ner-side-by-side', args)}")
    if {k: v for k, v in record["settings"]["peer"].items() if k != "seed"} != \
            {k: v for k, v in peer_settings.items() if k != "seed"}:
        why.append(f"its peer settings {record['settings']['peer']} differ from {peer_settings}")
    if "peer_runs_from" in figures:
        why.append(f"its Trainer rows were themselves taken from {figures['peer_runs_from']['file']}: give that")
    seeds = args.seeds or [args.seed]
    if not set(seeds) <= set(figures["seeds"]):
        why.append(f"it has seeds {figures['seeds']}, not all of {seeds}")
    for option in ("--max-train-samples", "--max-eval-samples"):
        if option in record["command"].split() or getattr(args, option[2:].replace("-", "_")):
            why.append(f"{option} limits the data of one run or the other")
    then = subprocess.run(["git", "-C", str(common.ROOT), "show", f"{record['commit']}:bench/{Path(__file__).name}"],
                          capture_output=True, text=True)
    if record.get("dirty") is not False or then.returncode != 0:
        why.append(f"its commit {record['commit']} (dirty: {record.get('dirty')}) cannot be read back")
    elif peer_code(then.stdout) != peer_code(Path(__file__).read_text(encoding="utf-8")):
        why.append(f"the peer code ({', '.join(PEER_CODE)}) changed since its commit {record['commit'][:10]}")
    if why:
        sys.exit(f"--peer-runs {args.peer_runs}: not reused: " + "; ".join(why))
    runs = {seed: run for seed, run in zip(figures["seeds"], figures["runs"]["peer"])}
    return {"file": args.peer_runs, "commit": record["commit"], "date": record["date"], "threads": record["threads"],
            "seeds": seeds, "runs": [runs[seed] for seed in seeds]}


def run_sides(args, argv: list[str], settings: dict[str, dict], reused: dict | None) -> dict:
    """common.run's parent, with --runs-file and --peer-runs: {"peak": ..., side: [figures per seed]}."""
    child_argv = common._without_options(argv, ("--json", "--figures-dir", "--seeds", "--seed", "--runs-file",
                                                "--peer-runs"))
    precisions = sorted({side["precision"] for side in settings.values()})
    results: dict = {"peak": {p: common.run_side(__file__, child_argv, f"peak-{p}") for p in precisions}}
    key = {"compare": args.compare, "settings": settings, "max_train_samples": args.max_train_samples,
           "max_eval_samples": args.max_eval_samples, "threads": args.threads}
    done = []
    if args.runs_file and Path(args.runs_file).exists():
        done = [json.loads(line) for line in Path(args.runs_file).read_text(encoding="utf-8").splitlines() if line]
    for i, seed in enumerate(args.seeds or [args.seed]):
        for side in ("bertfit", "peer"):
            seed_key = {**key, "settings": {name: {**s, "seed": seed} for name, s in settings.items()}}
            if side == "peer" and reused:
                figures = reused["runs"][i]
            elif (earlier := next((r for r in done if r["side"] == side and r["seed"] == seed
                                   and all(r[k] == v for k, v in seed_key.items())), None)):
                figures = earlier["figures"]
                print(f"seed {seed} {side}: taken from {args.runs_file}", file=sys.stderr)
            else:
                figures = common.run_side(__file__, [*child_argv, "--seed", str(seed)], side)
                if args.runs_file:
                    with open(args.runs_file, "a", encoding="utf-8") as log:  # appends: never replaces a line
                        log.write(json.dumps({"side": side, "seed": seed, **seed_key, "figures": figures}) + "\n")
            print(f"seed {seed} {side}: dev F1 {figures['dev_f1']:.2f} test F1 {figures['test_f1']:.2f}",
                  file=sys.stderr, flush=True)
            results.setdefault(side, []).append(figures)
    return results


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="the WNUT-17 folder: train.conll, dev.conll, test.conll")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="same-math: both sides' precision; auto: bf16 with native bf16 instructions, else "
                             "fp32, as bertfit decides (default auto)")
    parser.add_argument("--max-train-samples", type=int, help="a smoke run: the first N training sentences")
    parser.add_argument("--max-eval-samples", type=int, help="a smoke run: the first N dev and test sentences")
    parser.add_argument("--untimed", action="store_true",
                        help="the run shares the CPU with other work: report the scores, no timing")
    parser.add_argument("--runs-file", help="append each finished side and seed to this JSON-lines file, and take "
                                            "those already in it instead of running them again (a long run resumes)")
    parser.add_argument("--peer-runs", metavar="FIGURES",
                        help="with --untimed: take the Trainer's rows from this earlier figures file of the bench "
                             "(same comparison, settings, seeds, data sizes and peer code) and run bertfit's alone")
    common.add_comparison_options(parser)
    args = parser.parse_args(argv)
    if args.peer_runs and not args.untimed:
        parser.error("--peer-runs needs --untimed: rows of another run are no timing of this one")
    settings = side_settings(args)
    if not args.side:
        print(common.cpu_line(common.cpu_kind()))
        print("\n".join(common.settings_lines(args.compare, settings)), flush=True)
    sides = {"bertfit": bertfit_side, "peer": peer_side}
    if args.side:
        common.run(__file__, args, argv, sides)
        return
    reused = reused_peer_runs(args, settings["peer"]) if args.peer_runs else None
    results = run_sides(args, argv, settings, reused)
    peak = results.pop("peak")
    bertfit, peer = results["bertfit"][0], results["peer"][0]
    if bertfit["train_set"] != peer["train_set"] or bertfit["eval_examples"] != peer["eval_examples"]:
        sys.exit(f"the sides saw different data: {bertfit['train_set']} / {peer['train_set']} training and "
                 f"{bertfit['eval_examples']} / {peer['eval_examples']} evaluation sentences")
    ours, theirs = settings["bertfit"], settings["peer"]
    notes = [f"WNUT-17: {bertfit['train_set']} training sentences, {ours['epochs']:g} / {theirs['epochs']:g} epochs, "
             f"batch {ours['batch_size']} / {theirs['batch_size']} ({bertfit['train_steps']} / {peer['train_steps']} "
             f"steps); {bertfit['eval_examples']} dev + test sentences tagged; {ours['precision']} / "
             f"{theirs['precision']}, {bertfit['threads']} / {peer['threads']} threads (bertfit / Trainer)",
             "entity F1 ×100 by seqeval's default mode on every word of dev and test, the final model of each side",
             f"dev + test words the Trainer's truncation at {theirs['max_seq_length']} tokens cut off (counted as "
             f"O): {peer['words_cut']}; dev + test sentences bertfit cut into overlapping windows (every word "
             f"predicted once): {bertfit['windowed_sentences']}"]
    if reused:
        notes.append(f"the Trainer's rows (seeds {', '.join(map(str, reused['seeds']))}) are those of {reused['file']}, "
                     f"measured at commit {reused['commit'][:10]} on {reused['date'][:10]} with {reused['threads']} "
                     f"threads; its peer code and settings are unchanged since; bertfit's rows were measured in "
                     f"this run")
    if args.compare == "defaults":
        notes.append("bertfit's training clock includes its evaluation of dev after every epoch; the Trainer's "
                     "has none")
    common.report(f"WNUT-17 tagging, {args.compare}", args, peak, results, COLUMNS, notes, settings,
                  scores=("dev_f1", "test_f1"), name=common.comparison_name("ner-side-by-side", args),
                  script=__file__, argv=argv, untimed=args.untimed,
                  extra={"peer_runs_from": {k: v for k, v in reused.items() if k != "runs"}} if reused else None)


if __name__ == "__main__":
    main(sys.argv[1:])
