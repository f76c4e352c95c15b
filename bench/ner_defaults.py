"""bertfit's NER defaults, chosen on part of WNUT-17's training file held out, never on dev or test.

    python bench/ner_defaults.py ../shared/data/ner/wnut17 --grid 8:3,32:5,16:5,16:3,8:5,32:3 --seeds 1 \
        --threads 1 --runs-file docs/figures/avx2/ner-defaults-choice.runs.jsonl

train.conll's sentences are shuffled (--split-seed, 0); the first 15% (--held-out) are the validation part
and the rest the training part. Each BATCH:EPOCHS of --grid trains `finetune_ner` on the training part with
settings.NER_DEFAULTS but that batch size, that number of epochs and --lr, keeps the final epoch's model
(nothing is chosen on the validation part during a run), and tags the validation part; its entity F1 is
seqeval's default mode on the predictions the run wrote. dev.conll and test.conll are never read. One line
per run, then the table over seeds and the candidate with the best mean validation F1. With --runs-file each
finished run is appended there and skipped when the command is run again (a run paused or stopped resumes);
--finished-only reports the runs there and lists the rest of the grid as not run.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def split_sentences(sentences, held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """(validation indices, training indices) of the file's sentences, shuffled by `seed`."""
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    cut = round(held_out * len(order))
    return sorted(order[:cut]), sorted(order[cut:])


def write_conll(path: Path, sentences, indices: list[int]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in indices:
            f.write("".join(f"{w}\t{t}\n" for w, t in zip(sentences.words[i], sentences.tags[i])) + "\n")


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag sequences from a run's predictions.conll (word, gold tag, predicted tag)."""
    gold, predicted = [[]], [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line:
            gold.append([]), predicted.append([])
            continue
        _, g, p = line.rsplit("\t", 2)
        gold[-1].append(g), predicted[-1].append(p)
    keep = [i for i, tags in enumerate(gold) if tags]
    return [gold[i] for i in keep], [predicted[i] for i in keep]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="the WNUT-17 folder; only its train.conll is read")
    parser.add_argument("--grid", default="8:3,16:3,32:3,8:5,16:5,32:5", help="BATCH:EPOCHS pairs, comma-separated")
    parser.add_argument("--lr", type=float, default=5e-5, help="the learning rate of every candidate (default 5e-5)")
    parser.add_argument("--seeds", default="1", help="training seeds, comma-separated (the split keeps its own)")
    parser.add_argument("--held-out", type=float, default=0.15, help="fraction of train.conll's sentences held out")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the shuffle that splits train.conll")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--max-train-samples", type=int, help="a smoke run: the first N training-part sentences")
    parser.add_argument("--max-eval-samples", type=int, help="a smoke run: the first N validation sentences")
    parser.add_argument("--runs-file", help="append each finished run here (JSONL) and skip those already in it")
    parser.add_argument("--finished-only", action="store_true",
                        help="with --runs-file: run nothing, report the runs in it; the rest of the grid is listed "
                             "as not run")
    common.add_figures_option(parser)
    args = parser.parse_args(argv)
    if args.finished_only and not args.runs_file:
        parser.error("--finished-only needs --runs-file")

    import torch
    from seqeval.metrics import f1_score

    from bertfit.recipes.ner import NerOptions, finetune_ner
    from bertfit.settings import NER_DEFAULTS
    from bertfit.tasks import tagged_files

    torch.set_num_threads(args.threads)
    grid = [(int(b), float(e)) for b, e in (pair.split(":") for pair in args.grid.split(","))]
    seeds = [int(s) for s in args.seeds.split(",")]
    sentences = tagged_files.read_tagged_file(Path(args.data_dir) / "train.conll")
    validation, training = split_sentences(sentences, args.held_out, args.split_seed)
    training, validation = training[:args.max_train_samples], validation[:args.max_eval_samples]
    split = {"held_out": args.held_out, "split_seed": args.split_seed, "validation_sentences": len(validation),
             "training_sentences": len(training)}
    print(common.cpu_line(common.cpu_kind()))
    print(f"WNUT-17 train.conll: {len(sentences)} sentences -> {len(training)} to train on, {len(validation)} held "
          f"out to choose on (shuffle seed {args.split_seed}); dev and test unread")
    print(f"every candidate: NER_DEFAULTS ({asdict(NER_DEFAULTS)}) with its batch and epochs, lr {args.lr:g}, "
          f"{args.threads} thread(s)")
    done = []
    if args.runs_file and Path(args.runs_file).exists():
        done = [json.loads(line) for line in Path(args.runs_file).read_text().splitlines() if line.strip()]
    print(f"{'batch':>5} {'epochs':>6} {'lr':>7} {'seed':>4} {'steps':>5} {'val F1':>7} {'seconds':>7}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="ner-defaults-") as tmp:
        train_file, validation_file = Path(tmp) / "train-part.conll", Path(tmp) / "validation-part.conll"
        write_conll(train_file, sentences, training)
        write_conll(validation_file, sentences, validation)
        for batch, epochs in grid:
            for seed in seeds:
                key = dict(batch_size=batch, epochs=epochs, lr=args.lr, seed=seed, **split)
                run = next((r for r in done if all(r.get(k) == v for k, v in key.items())), None)
                if run is None and args.finished_only:
                    print(f"{batch:>5} {epochs:>6g} {args.lr:>7g} {seed:>4}   not run", flush=True)
                    continue
                if run is None:
                    start = time.perf_counter()
                    settings = replace(NER_DEFAULTS, batch_size=batch, epochs=epochs, lr=args.lr, seed=seed)
                    run_dir = Path(tmp) / "run"
                    results = finetune_ner(NerOptions(train_file=str(train_file), eval_file=str(validation_file),
                                                      output_dir=str(run_dir), overwrite=True, quiet=True), settings)
                    gold, predicted = read_predictions(run_dir / "predictions.conll")
                    assert len(gold) == len(validation), (len(gold), len(validation))
                    run = {**key, "steps": results["steps"], "validation_f1": 100 * float(f1_score(gold, predicted)),
                           "bertfit_f1": 100 * results["metrics"]["f1"], "seconds": time.perf_counter() - start,
                           "threads": torch.get_num_threads()}
                    if args.runs_file:
                        with open(args.runs_file, "a", encoding="utf-8") as f:
                            f.write(json.dumps(run) + "\n")
                runs.append(run)
                print(f"{batch:>5} {epochs:>6g} {args.lr:>7g} {seed:>4} {run['steps']:>5} {run['validation_f1']:>7.2f} "
                      f"{run['seconds']:>7.0f}", flush=True)
    candidates, not_run = [], []
    for batch, epochs in grid:
        values = [r["validation_f1"] for r in runs if (r["batch_size"], r["epochs"]) == (batch, epochs)]
        if len(values) < len(seeds):
            not_run.append({"batch_size": batch, "epochs": epochs, "lr": args.lr, "seeds_run": len(values)})
            continue
        candidates.append({"batch_size": batch, "epochs": epochs, "lr": args.lr, "seeds": seeds,
                           "validation_f1": float(np.mean(values)), "validation_f1_values": values,
                           "validation_f1_std": float(np.std(values, ddof=1)) if len(values) > 1 else None})
    candidates.sort(key=lambda c: -c["validation_f1"])
    print(f"entity F1 x100 (seqeval, default mode) on the {len(validation)} held-out sentences, over seeds "
          f"{args.seeds}, best first:")
    for c in candidates:
        std = f" ± {c['validation_f1_std']:.2f}" if c["validation_f1_std"] is not None else ""
        print(f"  batch {c['batch_size']:>2}, {c['epochs']:g} epochs, lr {c['lr']:g}: {c['validation_f1']:.2f}{std}")
    for c in not_run:
        print(f"  batch {c['batch_size']:>2}, {c['epochs']:g} epochs, lr {c['lr']:g}: not run (--finished-only)")
    best = candidates[0]
    print(f"chosen: batch {best['batch_size']}, {best['epochs']:g} epochs, lr {best['lr']:g}; "
          f"NER_DEFAULTS now: batch {NER_DEFAULTS.batch_size}, {NER_DEFAULTS.epochs:g} epochs, lr {NER_DEFAULTS.lr:g}")
    common.write_figures("ner-defaults-choice", __file__, argv, args.figures_dir,
                         figures={"split": split, "runs": runs, "candidates": candidates, "chosen": best,
                                  "not_run": not_run},
                         settings={"bertfit": {**asdict(NER_DEFAULTS), "grid": args.grid, "lr": args.lr}},
                         precision={"bertfit": common.resolved_precision(NER_DEFAULTS.precision)},
                         threads=args.threads)


if __name__ == "__main__":
    main(sys.argv[1:])
