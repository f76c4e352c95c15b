"""After training: a run's report.md and learning curves, and tables that compare runs in a terminal."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Sequence

from .errors import DataError
from .files import write_atomic

# SQuAD's results hold percentages and counts besides; these are its scores worth a column.
SQUAD_SCORES = ("f1", "exact", "validation_f1", "validation_exact")
# Pretraining's held-out scores: its accuracies ×100, as GLUE's; a loss and a perplexity are not fractions.
PRETRAIN_SCORES = ("mlm_accuracy", "mlm_loss", "perplexity", "nsp_accuracy")
PRETRAIN_ACCURACIES = ("mlm_accuracy", "nsp_accuracy")
SHORT_NAMES = {"matthews_correlation": "matthews", "accuracy": "acc", "mismatched_accuracy": "acc-mm",
               "exact": "em", "validation_f1": "val-f1", "validation_exact": "val-em"}
DATA_COUNTS = ("train_examples", "train_features", "train_windows", "truncated_train_examples",
               "train_answers_outside_windows", "eval_examples", "eval_windows", "skipped_examples")
BOLD, GREEN, RESET = "\033[1m", "\033[32m", "\033[0m"


# ---- numbers as people read them ---------------------------------------------------------------

def key_metrics(task: str, values: dict) -> dict[str, float]:
    """The scores of a run or a log.jsonl evaluation on the 0..100 scale (GLUE and pretraining keep fractions, SQuAD
    percentages); a loss and a perplexity as they are."""
    if task.startswith("squad"):
        return {k: float(values[k]) for k in SQUAD_SCORES if k in values}
    if task == "pretrain":  # accuracies ×100 as GLUE's; a loss and a perplexity as they are
        return {k: (100 if k in PRETRAIN_ACCURACIES else 1) * float(values[k]) for k in PRETRAIN_SCORES if k in values}
    return {k: 100 * v for k, v in values.items() if isinstance(v, float) and k not in ("step", "epoch")}


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def short_model(model: str) -> str:
    """A model path by its last two parts (`…/tiny/model`); hub names and 'embedded' as they are."""
    parts = Path(model).parts
    return model if len(parts) <= 2 else "…/" + "/".join(parts[-2:])


# ---- tables --------------------------------------------------------------------------------------

def use_colour(stream) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org) or the terminal is dumb."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


# a number, a time, a score with its spread, or several such ("88.90 ± 0.50 / 84.80 ± 0.40"); "-" for none
_NUMBER = r"[-+]?\d[\d.:e+-]*(?: ± [\d.]+)?"
NUMBER = re.compile(rf"-|{_NUMBER}(?: / {_NUMBER})*")


def _numeric_columns(rows: Sequence[Sequence[str]], width: int) -> list[bool]:
    """Columns whose cells are all numbers (or empty): they align to the right, header included."""
    return [bool(rows) and all(str(row[i]) == "" or NUMBER.fullmatch(str(row[i])) for row in rows)
            for i in range(width)]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], colour: bool = False,
                 best: set[tuple[int, int]] = frozenset()) -> str:
    """Aligned columns, numbers to the right; with colour a bold header and the (row, column) cells in `best` green."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    right = _numeric_columns(rows, len(header))

    def line(cells, style) -> str:
        padded = [str(text).rjust(w) if r else str(text).ljust(w) for text, w, r in zip(cells, widths, right)]
        return "  ".join(f"{style(i)}{text}{RESET}" if colour and style(i) else text
                         for i, text in enumerate(padded)).rstrip()

    return "\n".join([line(header, lambda i: BOLD),
                      *(line(row, lambda i, r=r: GREEN if (r, i) in best else "") for r, row in enumerate(rows))])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rule = ["---:" if right else "---" for right in _numeric_columns(rows, len(header))]
    return "\n".join("| " + " | ".join(map(str, cells)) + " |" for cells in (header, rule, *rows))


# ---- one run -------------------------------------------------------------------------------------

def read_results(run_dir: Path) -> dict:
    path = Path(run_dir) / "results.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir}: no results.json (has the run finished?)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def read_log(run_dir: Path) -> list[dict]:
    """The entries of log.jsonl; a half-written last line (a killed run) is left out."""
    path = Path(run_dir) / "log.jsonl"
    entries = []
    for line in (path.read_text().splitlines() if path.exists() else []):
        try:
            entries.append(json.loads(line))
        except ValueError:
            pass
    return entries


def write_run_report(run_dir: str | Path) -> list[Path]:
    """Write report.md and curves.png into a finished run."""
    run_dir = Path(run_dir)
    results, log = read_results(run_dir), read_log(run_dir)
    written, notes = [], []
    try:
        written.append(plot_curves(run_dir / "curves.png", results, log))
    except ImportError:
        notes.append("curves.png not drawn: matplotlib is not installed (one of bertfit's dependencies: "
                     "`pip install matplotlib`)")
    write_atomic(run_dir / "report.md", run_markdown(run_dir, results, log, notes))
    return [run_dir / "report.md", *written]


def run_markdown(run_dir: Path, results: dict, log: list[dict], notes: Sequence[str] = ()) -> str:
    task, scores = results["task"], key_metrics(results["task"], results["metrics"])
    rate = results.get("train_examples_per_second")
    counts = [[k.replace("_", " "), ", ".join(f"{split} {n}" for split, n in results[k].items())
               if isinstance(results[k], dict) else results[k]] for k in DATA_COUNTS if k in results]
    evals = [e for e in log if e.get("event") == "eval"]
    eval_scores = [key_metrics(task, e) for e in evals]
    names = list(dict.fromkeys(k for s in eval_scores for k in s))
    eval_rows = [[e["step"], e.get("epoch", "-"), *(f"{s[k]:.2f}" if k in s else "-" for k in names)]
                 for e, s in zip(evals, eval_scores)]
    parts = [
        f"# {task}: {run_dir}",
        f"Model `{results.get('model')}`; {results.get('steps')} optimizer steps, the model kept at step "
        f"{results.get('best_step')}{' (stopped early)' if results.get('stopped_early') else ''}; trained in "
        f"{clock(results.get('train_seconds'))} at {rate} examples/s.",
        "## Result (held-out text; accuracies ×100)" if task == "pretrain" else
        "## Result (dev, ×100)" if not task.startswith("squad") else "## Result (dev)",
        markdown_table(["metric", "score"], [[k, f"{v:.2f}"] for k, v in scores.items()]),
        "## Settings",
        markdown_table(["setting", "value"], [[k, v] for k, v in results.get("settings", {}).items()]),
        "## Data",
        markdown_table(["count", "number"], counts),
        "## Evaluations",
        markdown_table(["step", "epoch", *names], eval_rows) if evals else "(none in log.jsonl)",
        "## Learning curves",
        *(notes or ["![training loss and dev score by step](curves.png)"]),
    ]
    return "\n\n".join(parts) + "\n"


def plot_curves(path: Path, results: dict, log: list[dict]) -> Path:
    """Training loss and the main dev score against the optimizer step, side by side, as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state to disturb

    task = results["task"]
    main = next(iter(results["metrics"]), None)
    train = [e for e in log if e.get("event") == "train"]
    evals = [(e["step"], key_metrics(task, e).get(main)) for e in log if e.get("event") == "eval"]
    evals = [(step, value) for step, value in evals if value is not None]
    figure = Figure(figsize=(10, 3.6), layout="constrained")
    loss_axes, score_axes = figure.subplots(1, 2, sharex=True)
    loss_axes.plot([e["step"] for e in train], [e["loss"] for e in train], color="tab:blue")
    loss_axes.set(title="training loss", xlabel="optimizer step", ylabel="loss")
    score_axes.plot([s for s, _ in evals], [v for _, v in evals], marker="o", color="tab:green")
    score_axes.axvline(results.get("best_step", 0), color="grey", linestyle=":", label="model kept")
    score_axes.set(title=f"dev {main}", xlabel="optimizer step",
                   ylabel=main if task.startswith("squad") or (task == "pretrain" and main not in PRETRAIN_ACCURACIES)
                   else f"{main} ×100")
    score_axes.legend(loc="lower right")
    figure.suptitle(curves_title(results))
    figure.savefig(path, dpi=100)
    return path


def curves_title(results: dict) -> str:
    """The task, model and main settings: what tells runs apart, without the run's path on this machine."""
    settings = results.get("settings", {})
    trained = ", ".join(f"{name} {settings[key]:g}" for key, name in (("epochs", "epochs"), ("lr", "lr"),
                                                                      ("batch_size", "batch")) if key in settings)
    return f"{results['task']}, model {short_model(str(results.get('model', '-')))}" + (f": {trained}" if trained else "")


# ---- many runs -----------------------------------------------------------------------------------

def find_runs(folder: Path) -> list[Path]:
    """A run dir itself, or the runs of a `glue all` suite (in its order) or of any folder below."""
    folder = Path(folder)
    if (folder / "results.json").is_file():
        return [folder]
    if (folder / "summary.json").is_file():
        summary = json.loads((folder / "summary.json").read_text())
        return [folder / run for task in summary["tasks"].values() for run in task["runs"]]
    runs = sorted(p.parent for p in folder.rglob("results.json"))
    if not runs:
        raise DataError(f"{folder}: no results.json here or below (not a finished run or suite)")
    return runs


def compare_runs(folders: Sequence[str | Path], colour: bool = False) -> str:
    """One row per run: task, model, key settings, scores (each task's best in green), train time and speed."""
    runs = [(run, read_results(run)) for folder in folders for run in find_runs(Path(folder))]
    scores = [key_metrics(r["task"], r["metrics"]) for _, r in runs]
    names = list(dict.fromkeys(k for s in scores for k in s))
    described = ["run", "task", "model", "epochs", "lr", "batch", "seed", "train"]
    header = [*described, *(SHORT_NAMES.get(k, k) for k in names), "time", "ex/s"]
    rows = []
    for (run, r), s in zip(runs, scores):
        settings = r.get("settings", {})
        rows.append([str(run), r["task"], short_model(r.get("model", "-")),
                     *(f"{settings[k]:g}" if k in settings else "-" for k in ("epochs", "lr", "batch_size", "seed")),
                     str(r.get("train_examples", "-")), *(f"{s[k]:.2f}" if k in s else "-" for k in names),
                     clock(r.get("train_seconds")),
                     str(r.get("train_examples_per_second", "-"))])
    best = set()
    for column, name in enumerate(names, start=len(described)):
        for task in {r["task"] for _, r in runs}:
            same_task = [i for i, (_, r) in enumerate(runs) if r["task"] == task and name in scores[i]]
            if len(same_task) > 1:
                top = max(scores[i][name] for i in same_task)
                best |= {(i, column) for i in same_task if scores[i][name] == top}
    return format_table(header, rows, colour, best)
