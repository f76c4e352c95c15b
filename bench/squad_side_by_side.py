"""squad-mini side by side: `bertfit squad`'s defaults and the peer's settings against the Trainer with run_qa's.

    python bench/squad_mini.py ../shared/data/squad/dev-v2.0.json 25 squad2
    python bench/squad_side_by_side.py --version 2.0 --prefix squad2 --max-train-samples 800

On the three-part squad-mini split (PREFIX-train/-validation/-eval.json, bench/squad_mini.py), each
row in its own child process, the same seed on every row:
- bertfit: `finetune_squad` exactly as `bertfit squad --version V --train-file PREFIX-train.json
  --validation-file PREFIX-validation.json --eval-file PREFIX-eval.json` runs it: the epoch and the
  v2.0 null threshold are chosen on the validation part, the evaluation articles are only scored;
  once with bertfit's defaults (settings.SQUAD_DEFAULTS) and once with run_qa's epochs, lr, batch,
  warmup and weight decay (bertfit's attention dropout 0 and row-wise embedding updates stay; --rows);
- the Trainer with run_qa's README settings (lr 3e-5, 2 epochs, batch 12, 384 tokens, stride 128,
  no warmup or weight decay, fp32, the model's own dropout), run_qa's pre- and postprocessing
  (bench/squad_speed.py), the final model and run_qa's null threshold 0.0; it chooses nothing.
Every row trains on the first --max-train-samples questions of the training part and is scored by
the same official-metric code on every question of the evaluation articles.

With --seeds (e.g. 1,2,3) every row runs once per seed and the table gives each score as mean ±
sample std over the seeds, each bertfit row beside the Trainer's on the same seeds. --runs-file
appends each finished run as a JSON line and takes the runs already there (same version, split and
--max-train-samples) instead of running them again, so a comparison of hours resumes across
sessions; a bertfit run cut off before it finished resumes from its checkpoint, kept in a folder
derived from the runs file under runs/ (git-ignored) and removed once its line is written. A run
that did not finish never enters the runs file. The figures are written after every run, naming
the runs still to come:

    python bench/squad_mini.py ../shared/data/squad/dev-v1.1.json 38 squad1
    python bench/squad_side_by_side.py --version 1.1 --prefix squad1 --seeds 1,2,3 --untimed \
        --runs-file docs/figures/avx2/squad-side-by-side-full-v1.1.runs.jsonl --figures-name squad-side-by-side-full
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import squad_speed  # noqa: E402

RUN_QA = common.RUN_QA
SEEDS_FIGURES = "squad-side-by-side-seeds"  # --seeds' figures file, unless --figures-name names another
# the scores given over seeds; on a question without an answer F1 = EM, so NoAns_exact is the share of those
# answered "no answer", and HasAns_f1 says whether a v2.0 model learned to answer at all
SCORES = {"1.1": ("exact", "f1"), "2.0": ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact")}
CHECKPOINT_EVERY = 100  # optimizer steps between the checkpoints of a run kept for resuming (--runs-file)
ROWS = {
    "bertfit-defaults": "bertfit, its defaults",
    "bertfit-run_qa": "bertfit, run_qa's settings",
    "peer": "Trainer, run_qa's settings",
}


def files(args) -> dict[str, str]:
    return {part: f"{args.prefix}-{part}.json" for part in ("train", "validation", "eval")}


def bertfit_side(args, settings: dict | None) -> dict:
    from bertfit.recipes.squad import SquadOptions, finetune_squad
    from bertfit.settings import SQUAD_DEFAULTS

    from dataclasses import asdict, replace

    chosen = replace(SQUAD_DEFAULTS, seed=args.seed, **(settings or {}))
    resumed_from = None
    if args.run_dir:
        from bertfit.runs import CheckpointStore

        # a run kept for resuming checkpoints often, so that one cut off loses little; it changes no number
        chosen = replace(chosen, save_every=CHECKPOINT_EVERY)
        newest = CheckpointStore(Path(args.run_dir) / "checkpoints").checkpoints()
        resumed_from = int(newest[0].name[5:]) if newest else None
        print(f"{args.side} seed {args.seed}: " + (f"resuming from the checkpoint of step {resumed_from} ({newest[0]})"
                                                   if newest else f"a new run in {args.run_dir}"), flush=True)
    paths = files(args)
    kept = contextlib.nullcontext(args.run_dir) if args.run_dir else tempfile.TemporaryDirectory(
        prefix="squad-side-bertfit-")
    with kept as run_dir:
        # in a kept run dir a rerun resumes from the newest checkpoint (bertfit squad without --overwrite)
        results = finetune_squad(SquadOptions(version=args.version, train_file=paths["train"],
                                              validation_file=paths["validation"], eval_file=paths["eval"],
                                              max_train_samples=args.max_train_samples, output_dir=run_dir,
                                              overwrite=not args.run_dir, quiet=True), chosen)
    return {"metrics": results["metrics"], "validation_metrics": results.get("validation_metrics"),
            "train_seconds": results["train_seconds"], "train_windows": results["train_windows"],
            "train_examples": results["train_examples"], "eval_examples": results["eval_examples"],
            "validation_examples": results.get("validation_examples"), "resumed_from_step": resumed_from,
            "model_chosen_by": results.get("model_chosen_by"), "best_step": results.get("best_step"),
            "steps": results.get("steps"), "threshold_chosen_on": results.get("threshold_chosen_on"),
            "null_threshold": results["settings"].get("null_threshold") if args.version == "2.0" else None,
            "settings": {**asdict(chosen), "precision": common.resolved_precision(chosen.precision),
                         "max_seq_length": SquadOptions.max_seq_length, "doc_stride": SquadOptions.doc_stride}}


def peer_side(args) -> dict:
    from datasets import Dataset
    from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from bertfit import squad_metrics
    from bertfit.pretrained import embedded_model_path
    from bertfit.tasks import squad

    paths = files(args)
    train_questions = squad.read_squad(paths["train"])[0][: args.max_train_samples]
    eval_questions = squad.read_squad(paths["eval"])[0]
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train = Dataset.from_dict(squad_speed.peer_train_windows(train_questions, tokenizer, RUN_QA))
    dev_inputs, question_of_window, dev_offsets = squad_speed.peer_eval_windows(eval_questions, tokenizer, RUN_QA)
    set_seed(args.seed)  # the new span head's initialisation, as run_qa seeds it
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    with tempfile.TemporaryDirectory(prefix="squad-side-peer-") as output_dir:
        trainer = Trainer(model=model, args=TrainingArguments(
            output_dir=output_dir, use_cpu=True, per_device_train_batch_size=RUN_QA["batch_size"],
            per_device_eval_batch_size=RUN_QA["eval_batch_size"], learning_rate=RUN_QA["lr"],
            num_train_epochs=RUN_QA["epochs"], warmup_steps=0, weight_decay=RUN_QA["weight_decay"],
            lr_scheduler_type="linear", save_strategy="no", report_to=[], logging_steps=50,
            dataloader_num_workers=0, seed=args.seed), train_dataset=train, processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start_logits, end_logits = trainer.predict(Dataset.from_dict(dev_inputs)).predictions
    version_2 = args.version.startswith("2")
    answers = squad_speed.peer_answers(eval_questions, question_of_window, dev_offsets, start_logits, end_logits,
                                       version_2=version_2, null_threshold=0.0)
    if version_2:
        values = squad_metrics.squad_v2_scores(eval_questions, answers)
        metrics = {"f1": values["f1"], "exact": values["exact"],
                   **{k: v for k, v in values.items() if k.startswith(("HasAns", "NoAns"))}}
    else:
        values = squad_metrics.squad_v1_scores(eval_questions, answers)
        metrics = {"f1": values["f1"], "exact": values["exact_match"]}
    return {"metrics": metrics, "validation_metrics": None, "train_seconds": train_seconds,
            "train_windows": len(train), "train_examples": len(train_questions), "eval_examples": len(eval_questions),
            "model_chosen_by": "final model", "threshold_chosen_on": "run_qa's default 0.0" if version_2 else None,
            "null_threshold": 0.0 if version_2 else None,
            "settings": {**RUN_QA, "seed": args.seed, "optimizer": common.EXACT_ADAMW,
                         "attention_dropout": common.model_attention_dropout()}}


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--version", choices=("1.1", "2.0"), required=True)
    parser.add_argument("--prefix", required=True, help="the split's files: PREFIX-{train,validation,eval}.json")
    parser.add_argument("--max-train-samples", type=int, help="train on the first N questions (default all)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--seed", type=int, default=42, help="the seed of every row (default 42)")
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",") if x.strip()],
                        help="run every row once per seed, e.g. 1,2,3: scores as mean ± sample std (default: one "
                             "run with --seed)")
    parser.add_argument("--runs-file", help="with --seeds: append each finished run to this JSON-lines file, and take "
                                            "the runs already in it instead of running them again (a long run resumes)")
    parser.add_argument("--figures-name", help="with --seeds: the figures file is NAME-vVERSION[-N] (default "
                                               f"{SEEDS_FIGURES}; the whole training part: squad-side-by-side-full)")
    parser.add_argument("--untimed", action="store_true",
                        help="with --seeds: the runs shared the machine with other work: the table gives no times")
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)  # a bertfit child's kept run dir (--runs-file)
    args = parser.parse_args(argv)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        run_qa = {k: RUN_QA[k] for k in ("epochs", "lr", "batch_size", "warmup_ratio", "weight_decay")}
        sides = {"bertfit-defaults": lambda a: bertfit_side(a, None),
                 "bertfit-run_qa": lambda a: bertfit_side(a, run_qa), "peer": peer_side}
        Path(args.result_file).write_text(json.dumps(sides[args.side](args)))
        return
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        parser.error(f"--rows: {', '.join(unknown) or 'none given'}; the rows are {', '.join(ROWS)}")
    if args.seeds is not None:
        if not args.seeds:
            parser.error("--seeds: no seed given")
        over_seeds(args, argv, rows)
    elif args.runs_file or args.figures_name or args.untimed:
        parser.error("--runs-file, --figures-name and --untimed go with --seeds")
    else:
        one_seed(args, argv, rows)


def one_seed(args, argv: list[str], rows: list[str]) -> None:
    """Every row once, with --seed: the squad-side-by-side-vVERSION[-N] figures."""
    print(common.cpu_line(common.cpu_kind()))
    print(f"squad-mini v{args.version}: train on the first {args.max_train_samples or 'all'} questions of "
          f"{args.prefix}-train.json; bertfit chooses its epoch{' and null threshold' if args.version == '2.0' else ''}"
          f" on {args.prefix}-validation.json; every row is scored on all of {args.prefix}-eval.json; seed {args.seed}",
          flush=True)
    child = common._without_options(argv, ("--json", "--figures-dir", "--rows"))
    results = {}
    for row in rows:
        results[row] = common.run_side(__file__, child, row)
        print(f"{row}: {json.dumps(results[row])}", file=sys.stderr, flush=True)

    keys = ["f1", "exact"] + (["HasAns_f1", "NoAns_f1"] if args.version == "2.0" else [])
    header = ["row", "epochs", "lr", "batch", *[f"eval {k}" for k in keys], "validation f1", "chosen", "train s"]
    table = [header]
    for row, r in results.items():
        s, m, v = r["settings"], r["metrics"], r["validation_metrics"] or {}
        chosen = f"step {r['best_step']} of {r['steps']}" if r.get("best_step") else "final model"
        if r.get("null_threshold") is not None:
            chosen += f", threshold {r['null_threshold']:.3g}"
        table.append([ROWS[row], f"{s['epochs']:g}", f"{s['lr']:g}", str(s["batch_size"]),
                      *[f"{m[k]:.2f}" if k in m else "-" for k in keys],
                      f"{v['f1']:.2f}" if "f1" in v else "-", chosen, f"{r['train_seconds']:.0f}"])
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    for i, t in enumerate(table):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(t, widths))))
    first = next(iter(results.values()))
    print(f"{first['train_examples']} training questions; {first['eval_examples']} evaluation questions; "
          "scores ×100 on the evaluation articles only")
    name = f"squad-side-by-side-v{args.version}" + (f"-{args.max_train_samples}" if args.max_train_samples else "")
    common.write_figures(name, __file__, argv, args.figures_dir,
                         figures={"version": args.version, "prefix": args.prefix, "seed": args.seed,
                                  "max_train_samples": args.max_train_samples, "rows": results},
                         settings={row: r["settings"] for row, r in results.items()},
                         precision={row: r["settings"]["precision"] for row, r in results.items()},
                         threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": common.cpu_kind(), "version": args.version,
                                               "prefix": args.prefix, "seed": args.seed,
                                               "max_train_samples": args.max_train_samples, "rows": results},
                                              indent=2) + "\n")



# ---- over seeds, resumable ----------------------------------------------------------------------

def over_seeds(args, argv: list[str], rows: list[str]) -> None:
    """Every row once per seed of --seeds, a run already in --runs-file taken; the figures written after each run."""
    split = split_digest(files(args))
    print(common.cpu_line(common.cpu_kind()))
    print(f"squad-mini v{args.version}: train on "
          f"{f'the first {args.max_train_samples}' if args.max_train_samples else 'all the'} questions of "
          f"{args.prefix}-train.json; bertfit chooses its epoch{' and null threshold' if args.version == '2.0' else ''}"
          f" on {args.prefix}-validation.json; the Trainer keeps its final model"
          f"{' and threshold 0.0' if args.version == '2.0' else ''}; every row is scored on all of "
          f"{args.prefix}-eval.json; seeds {', '.join(map(str, args.seeds))} on every row", flush=True)
    child = common._without_options(argv, ("--json", "--figures-dir", "--rows", "--seeds", "--seed", "--runs-file",
                                            "--figures-name"))
    child = [a for a in child if a != "--untimed"]
    done = recorded_runs(args.runs_file, args.version, split, args.max_train_samples) if args.runs_file else {}
    runs = {}
    for seed in args.seeds:
        for row in rows:
            if (row, seed) in done:
                runs[(row, seed)] = done[(row, seed)]
                print(f"v{args.version} {row} seed {seed}: taken from {args.runs_file}", file=sys.stderr)
                if row != "peer":  # killed after its line was written: its checkpoints serve nothing now
                    remove_run_dir(checkpoint_dir(args.runs_file, args.version, row, seed))
    if runs:
        write_seeds_figures(args, argv, rows, runs, split)
    for seed in args.seeds:
        for row in rows:
            if (row, seed) in runs:
                continue
            run_dir = checkpoint_dir(args.runs_file, args.version, row, seed) if args.runs_file and row != "peer" \
                else None
            figures = common.run_side(__file__, [*child, "--seed", str(seed),
                                                 *(["--run-dir", str(run_dir)] if run_dir else [])], row)
            made_at = common.git_commit()  # the runs of one table may span commits: each says its own
            if args.runs_file:
                append_run(args.runs_file, {"version": args.version, "row": row, "seed": seed, "prefix": args.prefix,
                                            "split": split, "max_train_samples": args.max_train_samples, **made_at,
                                            "figures": figures})
                if run_dir:
                    remove_run_dir(run_dir)
            runs[(row, seed)] = {**figures, **made_at}
            print(f"v{args.version} {row} seed {seed}: {json.dumps(figures['metrics'])}", file=sys.stderr, flush=True)
            write_seeds_figures(args, argv, rows, runs, split)
    figures = over_seeds_figures(args, rows, runs, split)
    print_seeds_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": common.cpu_kind(), **figures}, indent=2) + "\n")


def over_seeds_figures(args, rows: list[str], runs: dict[tuple[str, int], dict], split: str) -> dict:
    """The figures of the runs done so far: each row over its seeds, what is still to run, where it came from."""
    summary = summarise(runs, args.version, args.seeds, rows)
    missing = [f"{row} seed{'s' if len(left) > 1 else ''} {', '.join(map(str, left))}" for row in rows
               if (left := [s for s in args.seeds if s not in summary[row]["seeds"]])]
    left_out = [row for row in ROWS if row not in rows]
    not_run = "; ".join(
        ([f"{'; '.join(missing)} (the command above, run again, runs them; the runs in its runs file are taken)"]
         if missing else [])
        + ([f"{', '.join(left_out)} (the same command with `--rows {','.join(ROWS)}` adds "
            f"{'them' if len(left_out) > 1 else 'it'}, taking the runs already in its runs file)"] if left_out else []))
    first = next(iter(runs.values()))
    return {"version": args.version, "prefix": args.prefix, "split": split, "seeds": args.seeds,
            "max_train_samples": args.max_train_samples, "train_examples": first["train_examples"],
            "validation_examples": next((r.get("validation_examples") for r in runs.values()
                                         if r.get("validation_examples")), None),
            "eval_examples": first["eval_examples"], "quiet_machine": not args.untimed, "rows": summary,
            "commits": sorted({r["commit"][:10] + (" with local changes" if r.get("dirty") else "")
                               for r in runs.values()}), "not_run": not_run or None}


def write_seeds_figures(args, argv: list[str], rows: list[str], runs: dict[tuple[str, int], dict], split: str) -> None:
    figures = over_seeds_figures(args, rows, runs, split)
    name = f"{args.figures_name or SEEDS_FIGURES}-v{args.version}" + (
        f"-{args.max_train_samples}" if args.max_train_samples else "")
    done = {row: entry for row, entry in figures["rows"].items() if entry["seeds"]}
    common.write_figures(name, __file__, argv, args.figures_dir, figures=figures,
                         settings={row: entry["settings"] for row, entry in done.items()},
                         precision={row: entry["settings"]["precision"] for row, entry in done.items()},
                         threads=args.threads)


def over(values: list[float]) -> dict:
    """mean ± sample std of one figure over seeds (no std from one seed), and the values."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": [float(v) for v in values]}


def summarise(runs: dict[tuple[str, int], dict], version: str, seeds: list[int], rows: list[str]) -> dict:
    """Each row over the seeds it has run; a bertfit row's difference from the Trainer over the seeds both ran."""
    summary = {}
    for row in rows:
        done = [seed for seed in seeds if (row, seed) in runs]
        figures = [runs[(row, seed)] for seed in done]
        entry: dict = {"label": ROWS[row], "seeds": done}
        if figures:
            # a v2.0 evaluation part without unanswerable questions (a trial split) has no NoAns scores
            entry["metrics"] = {k: over([f["metrics"][k] for f in figures]) for k in SCORES[version]
                                if all(k in f["metrics"] for f in figures)}
            validation = [f["validation_metrics"]["f1"] for f in figures if f.get("validation_metrics")]
            entry["validation_f1"] = over(validation) if validation else None
            thresholds = [f["null_threshold"] for f in figures if f.get("null_threshold") is not None]
            entry["null_threshold"] = over(thresholds) if thresholds else None
            entry["threshold_chosen_on"] = figures[0].get("threshold_chosen_on")
            # the epoch whose model was kept (bertfit: the best on validation; the Trainer: its final model)
            entry["epochs_kept"] = [round(f["best_step"] * f["settings"]["epochs"] / f["steps"])
                                    if f.get("best_step") and f.get("steps") else f["settings"]["epochs"]
                                    for f in figures]
            entry["train_seconds"] = float(np.mean([f["train_seconds"] for f in figures]))
            entry["settings"] = figures[0]["settings"]
        summary[row] = entry
    for row, entry in summary.items():
        both = [seed for seed in entry["seeds"] if (row != "peer" and ("peer", seed) in runs)]
        if both:
            entry["vs_peer"] = {"seeds": both, **{k: float(np.mean([runs[(row, s)]["metrics"][k] for s in both])
                                                           - np.mean([runs[("peer", s)]["metrics"][k] for s in both]))
                                                  for k in entry["metrics"] if k in summary["peer"]["metrics"]}}
    return summary


def print_seeds_table(figures: dict) -> None:
    def cell(value: dict | None) -> str:
        return "-" if value is None else f"{value['mean']:.2f}" + (
            f" ± {value['std']:.2f}" if value["std"] is not None else "")

    keys = SCORES[figures["version"]]
    header = ["row", "seeds", *keys, *(["threshold"] if figures["version"] == "2.0" else []), "validation f1",
              "epochs kept", "f1 - Trainer", "train s"]
    table = [header]
    for entry in figures["rows"].values():
        if not entry["seeds"]:
            table.append([entry["label"], "none yet", *["-"] * (len(header) - 2)])
            continue
        table.append([entry["label"], ",".join(map(str, entry["seeds"])),
                      *[cell(entry["metrics"].get(k)) for k in keys],
                      *([cell(entry["null_threshold"])] if figures["version"] == "2.0" else []),
                      cell(entry["validation_f1"]), ",".join(map(str, entry["epochs_kept"])),
                      f"{entry['vs_peer']['f1']:+.2f}" if entry.get("vs_peer") else "-",
                      f"{entry['train_seconds']:.0f}" if figures["quiet_machine"] else "not timed"])
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    for t in table:
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(t, widths))))
    print(f"{figures['train_examples']} training questions; {figures['eval_examples']} evaluation questions; scores "
          "×100 on the evaluation articles only, mean ± sample std over the seeds")
    if figures["not_run"]:
        print(f"not run yet: {figures['not_run']}")


# ---- the runs file ------------------------------------------------------------------------------

def split_digest(paths: dict[str, str]) -> str:
    """What the split's three files hold, so that a run is taken only for the split it was made on."""
    digest = hashlib.sha256()
    for part in ("train", "validation", "eval"):
        digest.update(Path(paths[part]).read_bytes())
    return digest.hexdigest()[:16]


def recorded_runs(path: str, version: str, split: str, max_train_samples: int | None) -> dict[tuple[str, int], dict]:
    """The finished runs of --runs-file made on this version, split and row limit, by (row, seed); none if the file
    does not exist. A line that is not JSON is a write cut off: said, and not taken."""
    if not Path(path).exists():
        return {}
    found = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}, line {number}: not a whole JSON line (a write cut off); not taken", file=sys.stderr)
            continue
        try:
            key = (str(run["row"]), int(run["seed"]))
            made_on = (run["version"], run["split"], run["max_train_samples"])
            figures = run["figures"]
        except (KeyError, TypeError, ValueError) as exc:
            sys.exit(f"{path}, line {number}: not a run this script wrote ({exc!r})")
        if made_on == (version, split, max_train_samples):
            found[key] = {**figures, "commit": run.get("commit", "unknown"), "dirty": run.get("dirty")}
    return found


def append_run(path: str, run: dict) -> None:
    """Add one finished run as a line, in one write: a process killed meanwhile leaves the whole line or a cut one
    that recorded_runs does not take (a line is begun afresh after one)."""
    line = json.dumps(run).encode() + b"\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # appends: never replaces a line
    try:
        size = os.fstat(descriptor).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def checkpoint_dir(runs_file: str, version: str, row: str, seed: int) -> Path:
    """Where a bertfit run of --runs-file keeps its checkpoints until its line is written: under runs/ (git-ignored),
    in a folder named for the runs file and its path, so that two runs files never share one."""
    where = Path(runs_file).resolve()
    tag = hashlib.sha256(str(where).encode()).hexdigest()[:8]
    return common.ROOT / "runs" / "squad-side-by-side" / f"{where.name}-{tag}" / f"v{version}-{row}-seed{seed}"


def remove_run_dir(run_dir: Path) -> None:
    """Remove a finished run's kept folder, only if it is a bertfit run dir (this script made it)."""
    from bertfit.runs import is_run_dir

    if run_dir.is_dir() and is_run_dir(run_dir):
        shutil.rmtree(run_dir)
        with contextlib.suppress(OSError):  # the runs file's folder, once its last run is gone
            run_dir.parent.rmdir()


if __name__ == "__main__":
    main(sys.argv[1:])
