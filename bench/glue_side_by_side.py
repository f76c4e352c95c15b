"""The GLUE tasks side by side: `bertfit glue TASK`'s defaults against the Trainer with run_glue's README settings.

    python bench/glue_side_by_side.py --data-dir ../shared/data/glue --seeds 1,2,3
    python bench/glue_side_by_side.py --data-dir ../shared/data/glue --seeds 1,2,3 --max-train-samples 1000
    python bench/glue_side_by_side.py --data-dir ../shared/data/glue --tasks cola,stsb --runs-file glue-runs.jsonl

Defaults vs defaults, each task in its own pair of child processes per seed, the same seeds on both
sides:
- bertfit: `finetune_glue` exactly as `bertfit glue TASK --seed S` runs it (settings.GLUE_DEFAULTS for
  the task and its training-set size, the final epoch's model, no selection on dev);
- the Trainer: run_glue's README example (lr 2e-5, 3 epochs, batch 32, max length 128, no warmup or
  weight decay, fp32, the model's own dropout) with dynamic padding, the final model.
Both sides read the same rows with bertfit's reader (the first --max-train-samples of the training
file, every dev row) and are scored by the same metric code (`glue_metrics`, checked against
scikit-learn and SciPy in the tests). The table gives each task's score (the mean of its metrics, as
the GLUE leaderboard does) as mean ± sample std over the seeds, and the GLUE average of each side.
Times are each side's training call, measured on a quiet machine one run at a time.
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

TASKS = ("cola", "sst2", "mrpc", "stsb", "rte")
RUN_GLUE = common.RUN_GLUE


def read(task_name: str, args):
    """The training rows (the first --max-train-samples) and the dev rows, as bertfit reads them."""
    from bertfit.recipes.glue import GlueOptions, _limit, read_split
    from bertfit.tasks.glue import resolve_task

    task = resolve_task(task_name)
    options = GlueOptions(task=task.name, data_dir=args.data_dir)
    train = _limit(read_split(task, options, "train"), args.max_train_samples)
    dev = _limit(read_split(task, options, "dev"), args.max_eval_samples)
    return task, train, dev


def bertfit_side(args) -> dict:
    from dataclasses import asdict

    from bertfit.recipes.glue import GlueOptions, finetune_glue
    from bertfit.settings import glue_settings

    task, train, _ = read(args.task, args)
    with tempfile.TemporaryDirectory(prefix="glue-side-bertfit-") as run_dir:
        start = time.perf_counter()
        results = finetune_glue(GlueOptions(task=task.name, data_dir=args.data_dir, output_dir=run_dir,
                                            max_train_samples=args.max_train_samples,
                                            max_eval_samples=args.max_eval_samples, overwrite=True, quiet=True),
                                {"seed": args.seed})
        seconds = time.perf_counter() - start
    return {"metrics": results["metrics"], "train_seconds": results["train_seconds"], "seconds": seconds,
            "train_examples": results["train_examples"], "steps": results["steps"],
            "model_chosen_by": results.get("model_chosen_by"),
            "settings": {**asdict(glue_settings(task.name, len(train), {"seed": args.seed})),
                         "precision": common.resolved_precision("auto"),
                         "max_seq_length": GlueOptions.max_seq_length}}


def peer_side(args) -> dict:
    import torch
    from datasets import Dataset, Value
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from bertfit.glue_metrics import glue_metrics
    from bertfit.pretrained import embedded_model_path

    task, train_examples, dev_examples = read(args.task, args)
    settings = RUN_GLUE
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenized(examples):
        columns = {"a": examples.texts_a, "label": examples.labels}
        if examples.texts_b is not None:
            columns["b"] = examples.texts_b
        rows = Dataset.from_dict(columns)
        return rows.map(lambda batch: tokenizer(batch["a"], batch["b"] if "b" in batch else None, truncation=True,
                                                max_length=settings["max_seq_length"]),
                        batched=True, remove_columns=[c for c in ("a", "b") if c in columns])

    train, dev = tokenized(train_examples), tokenized(dev_examples)
    if task.is_regression:
        train, dev = (d.cast_column("label", Value("float32")) for d in (train, dev))
    set_seed(args.seed)  # the new classifier's initialisation, as run_glue seeds it
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=task.num_labels)
    with tempfile.TemporaryDirectory(prefix="glue-side-peer-") as output_dir:
        trainer = Trainer(model=model, args=TrainingArguments(
            output_dir=output_dir, use_cpu=True, per_device_train_batch_size=settings["batch_size"],
            per_device_eval_batch_size=settings["eval_batch_size"], learning_rate=settings["lr"],
            num_train_epochs=settings["epochs"], warmup_steps=0, weight_decay=settings["weight_decay"],
            lr_scheduler_type="linear", save_strategy="no", report_to=[], logging_steps=50,
            dataloader_num_workers=0, seed=args.seed), train_dataset=train, processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - start
        with torch.no_grad():
            predictions = trainer.predict(dev).predictions
    predictions = predictions[:, 0] if task.is_regression else predictions.argmax(-1)
    metrics = glue_metrics(task.name, predictions, np.asarray(dev_examples.labels))
    return {"metrics": {k: float(v) for k, v in metrics.items()}, "train_seconds": train_seconds,
            "train_examples": len(train), "steps": output.global_step, "model_chosen_by": "final model",
            "settings": {**settings, "seed": args.seed, "optimizer": common.EXACT_ADAMW,
                         "attention_dropout": common.model_attention_dropout()}}


def task_score(task_name: str, metrics: dict) -> float:
    from bertfit.tasks.glue import resolve_task

    return float(np.mean([metrics[name] for name in resolve_task(task_name).metrics]))


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the GLUE root in the official layout")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated (default {','.join(TASKS)})")
    parser.add_argument("--seeds", default="1,2,3", help="the seeds of both sides (default 1,2,3)")
    parser.add_argument("--max-train-samples", type=int, help="train on the first N rows of each task (default all)")
    parser.add_argument("--max-eval-samples", type=int, help="score the first M dev rows (default all)")
    parser.add_argument("--runs-file", help="append each finished run to this JSON-lines file, and take the runs "
                                            "already in it instead of running them again (a long run resumes)")
    parser.add_argument("--figures-name", default="glue-side-by-side",
                        help="the figures file's name (default glue-side-by-side; whole sets: glue-side-by-side-full)")
    parser.add_argument("--untimed", action="store_true",
                        help="the runs shared the machine with other work: the table gives no training times")
    parser.add_argument("--task", help=argparse_suppress())
    parser.add_argument("--seed", type=int, default=42, help=argparse_suppress())
    args = parser.parse_args(argv)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        figures = {"bertfit": bertfit_side, "peer": peer_side}[args.side](args)
        Path(args.result_file).write_text(json.dumps(figures))
        return

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    print(common.cpu_line(common.cpu_kind()))
    print("defaults vs defaults: bertfit's settings.GLUE_DEFAULTS (final epoch) against run_glue's README example "
          f"(lr {RUN_GLUE['lr']:g}, {RUN_GLUE['epochs']} epochs, batch {RUN_GLUE['batch_size']}, max length "
          f"{RUN_GLUE['max_seq_length']}, fp32, the model's own dropout {common.model_attention_dropout():g}, "
          "dynamic padding; final model); "
          f"seeds {', '.join(map(str, seeds))} on both sides", flush=True)
    child = common._without_options(argv, ("--json", "--figures-dir", "--seeds", "--tasks", "--runs-file",
                                            "--figures-name"))
    child = [a for a in child if a != "--untimed"]
    done = earlier_runs(args.runs_file, args) if args.runs_file else {}
    runs: dict[str, dict[str, list[dict]]] = {}
    for task in tasks:
        for seed in seeds:
            for side in ("bertfit", "peer"):
                figures = done.get((task, seed, side))
                if figures is None:
                    figures = common.run_side(__file__, [*child, "--task", task, "--seed", str(seed)], side)
                    if args.runs_file:
                        with open(args.runs_file, "a", encoding="utf-8") as log:  # appends: never replaces a line
                            log.write(json.dumps({"task": task, "seed": seed, "side": side,
                                                  "max_train_samples": args.max_train_samples,
                                                  "max_eval_samples": args.max_eval_samples,
                                                  "figures": figures}) + "\n")
                else:
                    print(f"{task} seed {seed} {side}: taken from {args.runs_file}", file=sys.stderr)
                runs.setdefault(task, {}).setdefault(side, []).append(figures)
                print(f"{task} seed {seed} {side}: score {100 * task_score(task, figures['metrics']):.2f} "
                      f"{json.dumps(figures['metrics'])} train {figures['train_seconds']:.0f}s "
                      f"settings {figures['settings']}", file=sys.stderr, flush=True)

    rows, summary = [], {}
    for task, sides in runs.items():
        entry = {}
        for side, figures in sides.items():
            scores = [100 * task_score(task, f["metrics"]) for f in figures]
            entry[side] = {"scores": scores, "mean": float(np.mean(scores)),
                           "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                           "train_seconds": float(np.mean([f["train_seconds"] for f in figures])),
                           "settings": figures[0]["settings"], "train_examples": figures[0]["train_examples"],
                           "metrics": [f["metrics"] for f in figures]}
        summary[task] = entry
        b, p = entry["bertfit"], entry["peer"]
        rows.append([task, str(b["train_examples"]),
                     f"{b['settings']['epochs']:g} ep, {b['settings']['lr']:g}", f"{b['mean']:.2f} ± {b['std']:.2f}",
                     f"{p['mean']:.2f} ± {p['std']:.2f}", f"{b['mean'] - p['mean']:+.2f}",
                     "not timed" if args.untimed else f"{b['train_seconds']:.0f} / {p['train_seconds']:.0f}"])
    average = {side: float(np.mean([summary[t][side]["mean"] for t in summary])) for side in ("bertfit", "peer")}
    rows.append(["GLUE average", "", "", f"{average['bertfit']:.2f}", f"{average['peer']:.2f}",
                 f"{average['bertfit'] - average['peer']:+.2f}", ""])
    header = ["task", "train", "bertfit settings", "bertfit", "Trainer (3 ep, 2e-5)", "difference",
              "train s (bertfit / Trainer)"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print("scores: the mean of each task's metrics ×100, final-epoch dev, mean ± sample std over the seeds")
    figures = {"seeds": seeds, "max_train_samples": args.max_train_samples,
               "max_eval_samples": args.max_eval_samples, "tasks": summary, "glue_average": average,
               "quiet_machine": not args.untimed}
    left_out = [t for t in TASKS if t not in tasks]
    if left_out:
        figures["not_run"] = (f"{', '.join(left_out)} (`--tasks {','.join(left_out)}` with the same options and "
                              f"--runs-file adds them); the GLUE average above is of the tasks run")
    settings = {side: {task: summary[task][side]["settings"] for task in summary} for side in ("bertfit", "peer")}
    common.write_figures(args.figures_name, __file__, argv, args.figures_dir, figures=figures, settings=settings,
                         precision={"bertfit": common.resolved_precision("auto"), "peer": RUN_GLUE["precision"]},
                         threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": common.cpu_kind(), "seeds": seeds, "run_glue": RUN_GLUE,
                                               "max_train_samples": args.max_train_samples, "tasks": summary,
                                               "glue_average": average}, indent=2) + "\n")


def earlier_runs(path: str, args) -> dict[tuple[str, int, str], dict]:
    """The runs of --runs-file made with the same row limits, by (task, seed, side); none if it does not exist."""
    if not Path(path).exists():
        return {}
    found = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
            key = (run["task"], int(run["seed"]), run["side"])
            limits = (run["max_train_samples"], run["max_eval_samples"])
            figures = run["figures"]
        except (ValueError, KeyError, TypeError) as exc:
            sys.exit(f"{path}, line {number}: not a run this script wrote ({exc})")
        if limits == (args.max_train_samples, args.max_eval_samples):
            found[key] = figures
    return found


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main(sys.argv[1:])
