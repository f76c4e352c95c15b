"""`bertfit glue all`: every GLUE task in a folder with its usual settings, resumable, scored as GLUE scores.

Each task trains with its row of settings.GLUE_DEFAULTS (by task and training-set size, as `bertfit glue
TASK` does) under the options the user gave, once per seed, into
SUITE/TASK (or SUITE/TASK/seed-N). A run that finished with the same request is read back rather than
trained again. The summary averages each task's metrics, then the tasks, as the GLUE leaderboard does.
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from . import devices, glue_metrics, inference
from .errors import ConfigError
from .files import write_atomic, write_json
from .recipes.glue import GlueOptions, dev_splits, finetune_glue
from .reports import SHORT_NAMES, clock, format_table, markdown_table, use_colour
from .settings import GLUE_DEFAULTS, RESUMABLE_SETTINGS, TrainSettings
from .tasks.glue import GLUE_TASKS, GlueTask, resolve_task
from .tasks.glue_tsv import glue_file_candidates


def run_glue_suite(options: GlueOptions, settings: dict | None = None, tasks: Sequence[str] = (),
                   seeds: Sequence[int] = ()) -> dict:
    """Fine-tune every GLUE task in options.data_dir (or just `tasks`); write summary.json/.md and return the summary.

    `options` is each task's GlueOptions but for the task (its output_dir is the suite's folder);
    `settings` holds the TrainSettings fields the user chose, which win over settings.GLUE_DEFAULTS.
    """
    settings = dict(settings or {})
    TrainSettings(**settings).validate()  # before any task reads its data
    if options.train_file or options.eval_file:
        raise ConfigError("`glue all` runs the official GLUE tasks; --train-file and --eval-file go with one task")
    if seeds and "seed" in settings:
        raise ConfigError("give --seed or --seeds, not both")
    wanted = [resolve_task(t) for t in tasks] or [task for task in GLUE_TASKS.values() if task.name != "ax"]
    if any(t.name == "ax" for t in wanted):
        raise ConfigError("AX is not trained: the suite writes AX.tsv with its MNLI model when the "
                          "diagnostic file is in --data-dir")
    devices.setup_distributed()  # first, so that rank 0 alone prints and writes
    main = devices.is_main_process()
    say = print if main else (lambda *a, **k: None)
    suite_dir = Path(options.output_dir or "runs/glue-all")
    data_dir = str(Path(options.data_dir).resolve()) if options.data_dir else None

    skipped = {}
    for task in wanted:
        if missing := missing_files(task, data_dir):
            skipped[task.name] = f"no {', '.join(missing)} in {data_dir}"
            say(f"skipping {task.folder}: {skipped[task.name]}")
    if len(skipped) == len(wanted):
        raise ConfigError(f"no GLUE task to run: {'; '.join(skipped.values())}")

    runs: dict[str, list[tuple[Path, dict]]] = {}
    trained = set()
    for task in (t for t in wanted if t.name not in skipped):
        for seed in seeds or [settings.get("seed", TrainSettings.seed)]:
            run_dir = suite_dir / task.name / f"seed-{seed}" if seeds else suite_dir / task.name
            run_options = replace(options, task=task.name, data_dir=data_dir, output_dir=str(run_dir))
            run_settings = {**settings, "seed": seed}  # the rest: the defaults for the task and its size
            label = f"{task.folder} seed {seed}" if seeds else task.folder
            results, ran = run_task(run_options, run_settings, label, say)
            runs.setdefault(task.name, []).append((run_dir, results))
            if ran:
                trained.add(task.name)

    summary = summarize({name: [r for _, r in task_runs] for name, task_runs in runs.items()})
    for name, task_runs in runs.items():
        summary["tasks"][name]["runs"] = [str(d.relative_to(suite_dir)) for d, _ in task_runs]
    summary.update(data_dir=data_dir, model=str(options.model or "embedded"), seeds=list(seeds),
                   limits={k: v for k, v in (("max_train_samples", options.max_train_samples),
                                             ("max_eval_samples", options.max_eval_samples),
                                             ("max_steps", settings.get("max_steps"))) if v},
                   skipped=skipped, ax_predictions=None)
    has_ax = data_dir and any(p.is_file() for p in glue_file_candidates(GLUE_TASKS["ax"], data_dir, "test"))
    if "mnli" in runs and has_ax:
        summary["ax_predictions"] = str(ax_predictions(runs["mnli"], data_dir, suite_dir, "mnli" in trained, say))
    if main:
        write_json(suite_dir / "summary.json", summary)
        write_atomic(suite_dir / "summary.md", summary_markdown(summary, suite_dir))
        say(f"\n{leaderboard_text(summary, use_colour(sys.stdout))}")
    return summary


def missing_files(task: GlueTask, data_dir: str | None) -> list[str]:
    """The files a task trains and evaluates on that `data_dir` lacks (none without one: the hub has them all)."""
    needed = ("train", *dev_splits(task))
    return [f"{task.folder}/{task.files[split]}" for split in needed
            if data_dir and not any(p.is_file() for p in glue_file_candidates(task, data_dir, split))]


def ax_predictions(mnli_runs: list[tuple[Path, dict]], data_dir: str, suite_dir: Path, mnli_trained: bool,
                   say) -> Path:
    """AX.tsv, the diagnostic set's leaderboard file, from the suite's best MNLI model (written again if it trained)."""
    ax_file = suite_dir / "predictions" / "AX.tsv"
    if mnli_trained or not ax_file.exists():
        best_dir, _ = max(mnli_runs, key=lambda run: run[1]["metrics"]["accuracy"])
        run = inference.load_run(best_dir, need="predict", device=devices.setup_distributed())
        ax_file, = inference.predict(run, "test", data_dir, suite_dir / "predictions", task_name="ax")
        say(f"wrote {ax_file} with the MNLI model of {best_dir}")
    return ax_file


def run_request(options: GlueOptions, settings: dict) -> dict:
    """What a finished run must have been asked for to be read back instead of run again (request.json)."""
    return json.loads(json.dumps({
        "options": {k: v for k, v in asdict(options).items() if k not in ("overwrite", "quiet")},
        "settings": {k: v for k, v in settings.items() if k not in RESUMABLE_SETTINGS},
        "defaults": GLUE_DEFAULTS}))  # the table fills in the rest: a change to it trains again


def run_task(options: GlueOptions, settings: dict, label: str, say) -> tuple[dict, bool]:
    """One run of the suite: read back if it finished with this same request, else fine-tune; True if it trained.

    `settings`: the ones chosen; finetune_glue takes the others from the defaults table."""
    run_dir = Path(options.output_dir)
    request = run_request(options, settings)
    request_file, results_file = run_dir / "request.json", run_dir / "results.json"

    def finished() -> dict[str, bytes] | None:
        if not options.overwrite and results_file.is_file() and request_file.is_file() \
                and json.loads(request_file.read_text()) == request:
            return {"results.json": results_file.read_bytes()}
        return None

    # rank 0's run dir decides, as when a run resumes: the other ranks may not see it
    done = devices.from_main_process(finished, devices.setup_distributed())
    if done is not None:
        say(f"{label}: finished in {run_dir}; not run again")
        return json.loads(done["results.json"]), False
    say(f"{label} -> {run_dir}")
    results = finetune_glue(options, settings)
    if devices.is_main_process():
        write_json(request_file, request)
    return results, True


# ---- scoring -------------------------------------------------------------------------------------

def spread(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (None for a single value) of a number over seeds."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "values": values}


def glue_entries(task: str, scores: dict) -> dict[str, dict]:
    """A run's metrics as glue_metrics.glue_average takes them: MNLI's two dev sets as MNLI-m and MNLI-mm."""
    if task == "mnli":
        return {"mnli-m": {"accuracy": scores["accuracy"]}, "mnli-mm": {"accuracy": scores["mismatched_accuracy"]}}
    return {task: scores}


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Per task, each metric and the task's score over its seeds; the GLUE average. Fractions, as in results.json."""
    tasks = {name: {
        "metrics": {k: spread([r["metrics"][k] for r in results]) for k in results[0]["metrics"]},
        "score": spread([glue_metrics.glue_average(glue_entries(name, r["metrics"])) for r in results]),
        "seeds": [r["settings"]["seed"] for r in results],
        "settings": {k: results[0]["settings"][k] for k in ("epochs", "lr", "batch_size")},
        "train_examples": results[0]["train_examples"],
        "model_chosen_by": results[0].get("model_chosen_by"),
        "eval_examples": results[0]["eval_examples"],
        "train_seconds": round(sum(r["train_seconds"] for r in results), 1),
    } for name, results in runs.items()}
    # One GLUE score per seed: their mean is the mean of the task scores, their spread the suite's.
    per_seed = [glue_metrics.glue_average({k: v for name, results in runs.items()
                                      for k, v in glue_entries(name, results[i]["metrics"]).items()})
                for i in range(min(map(len, runs.values())))]
    return {"tasks": tasks, "glue_average": spread(per_seed)}


# ---- the leaderboard table -----------------------------------------------------------------------

def percent(value: dict | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value['mean']:.2f}" + (f" ± {100 * value['std']:.2f}" if value["std"] is not None else "")


def leaderboard(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one per task with its metrics and score (×100), then the GLUE average."""
    header = ["task", "metrics", "dev", "score", "epochs", "lr", "batch", "train", "time"]
    rows = []
    for name, task in summary["tasks"].items():
        s = task["settings"]
        rows.append([GLUE_TASKS[name].folder, "/".join(SHORT_NAMES.get(k, k) for k in task["metrics"]),
                     " / ".join(map(percent, task["metrics"].values())), percent(task["score"]),
                     f"{s['epochs']:g}", f"{s['lr']:g}", str(s["batch_size"]), str(task["train_examples"]),
                     clock(task["train_seconds"])])
    total_seconds = sum(t["train_seconds"] for t in summary["tasks"].values())
    rows.append(["GLUE average", f"{len(rows)} tasks", "", percent(summary["glue_average"]), "", "", "", "",
                 clock(total_seconds)])
    return header, rows


def footer(summary: dict) -> list[str]:
    seeds = summary.get("seeds") or []
    lines = [f"GLUE dev sets, model {summary.get('model')}; ×100. score: the mean of a task's metrics; "
             f"GLUE average: the mean of the task scores"]
    if len(seeds) > 1:
        lines.append(f"mean ± sample standard deviation over seeds {', '.join(map(str, seeds))}")
    chosen = sorted({task.get("model_chosen_by") for task in summary["tasks"].values()} - {None})
    if chosen:  # the dev scores are those of this model: none is chosen on dev
        lines.append(f"model kept: {'; '.join(chosen)}")
    if summary.get("limits"):
        limits = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in summary["limits"].items())
        lines.append(f"limits: {limits}; not comparable with full runs")
    if summary.get("skipped"):
        lines.append(f"skipped (no data): {', '.join(GLUE_TASKS[n].folder for n in summary['skipped'])}")
    if summary.get("ax_predictions"):
        lines.append(f"AX predictions: {summary['ax_predictions']}")
    return lines


def leaderboard_text(summary: dict, colour: bool = False) -> str:
    header, rows = leaderboard(summary)
    return "\n".join([format_table(header, rows, colour), *footer(summary)])


def summary_markdown(summary: dict, suite_dir: Path) -> str:
    header, rows = leaderboard(summary)
    reports = [f"- {run}: [report]({run}/report.md)" for task in summary["tasks"].values() for run in task["runs"]]
    return "\n\n".join([f"# GLUE: {suite_dir}", markdown_table(header, rows),
                        "\n".join(f"- {line}" for line in footer(summary)), "## Runs", "\n".join(reports)]) + "\n"
