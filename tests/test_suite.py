"""`bertfit glue all` and the reports: the GLUE average, resuming, seeds, report.md, curves and comparison tables.

The suite runs a tiny BERT (2 layers, hidden size 32) for two steps per task on a few dozen rows
written in the official GLUE layout.
"""
import contextlib
import io
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from bertfit import reports, suite
from bertfit.cli import main
from bertfit.settings import glue_defaults

# Epochs come from settings.GLUE_DEFAULTS; two steps whatever they say, at a rate a tiny model learns at.
FLAGS = ["--max-steps", "2", "--lr", "1e-3", "--batch-size", "8", "--eval-batch-size", "64", "--precision", "fp32",
         "--max-train-samples", "24", "--quiet"]
NLI3 = ("entailment", "neutral", "contradiction")
POSITIVE, NEGATIVE = ("good", "great", "charming", "moving"), ("bad", "dull", "boring", "clumsy")


def write_tsv(path: Path, header: str, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in [header, *("\t".join(map(str, row)) for row in rows)]))


def write_glue(root: Path) -> Path:
    """SST-2, RTE, and MNLI with the diagnostic set, with the columns the readers look for; no other task."""
    review = lambda i: (f"review {i} : the film was {(POSITIVE if i % 2 else NEGATIVE)[i % 4]} .", i % 2)
    pair = lambda i: (f"a man number {i} plays a guitar .", f"someone {i} plays {'music' if i % 3 else 'chess'} .")
    write_tsv(root / "SST-2" / "train.tsv", "sentence\tlabel", [review(i) for i in range(32)])
    write_tsv(root / "SST-2" / "dev.tsv", "sentence\tlabel", [review(i) for i in range(100, 116)])
    for split, offset in (("train", 0), ("dev", 100)):
        write_tsv(root / "RTE" / f"{split}.tsv", "index\tsentence1\tsentence2\tlabel",
                  [(i, *pair(i), ("entailment", "not_entailment")[i % 2]) for i in range(offset, offset + 24)])
    for split, offset in (("train", 0), ("dev_matched", 100), ("dev_mismatched", 200)):
        write_tsv(root / "MNLI" / f"{split}.tsv", "index\tsentence1\tsentence2\tgold_label",
                  [(i, *pair(i), NLI3[i % 3]) for i in range(offset, offset + 12)])
    write_tsv(root / "diagnostic" / "diagnostic.tsv", "index\tsentence1\tsentence2", [(i, *pair(i)) for i in range(5)])
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest)


class Suite(NamedTuple):
    dir: Path
    data_dir: Path
    out: str
    summary: dict


def glue_all(suite_dir: Path, data_dir: Path, model: str, *more: str) -> str:
    """Run `bertfit glue all` and return what it printed (stdout is not a terminal here, as when piped)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["glue", "all", "--data-dir", str(data_dir), "--output-dir", str(suite_dir), "--model", model,
                     *FLAGS, *more]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory, tiny_model) -> Suite:
    root = tmp_path_factory.mktemp("suite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTFIT_CACHE", str(root / "cache"))
        out = glue_all(root / "suite", write_glue(root / "glue"), tiny_model, "--seeds", "1,2")
    return Suite(root / "suite", root / "glue", out, json.loads((root / "suite" / "summary.json").read_text()))


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "cache"))


def hand_made(seed: int, **scores) -> dict:
    return {"metrics": scores, "settings": {"seed": seed, "epochs": 3.0, "lr": 2e-5, "batch_size": 32},
            "train_examples": 100, "eval_examples": 10, "train_seconds": 60.0}


# ---- the GLUE average ---------------------------------------------------------------------------

def test_glue_average_averages_each_tasks_metrics_then_the_tasks_then_the_seeds():
    runs = {"cola": [hand_made(1, matthews_correlation=0.60), hand_made(2, matthews_correlation=0.50)],
            "mrpc": [hand_made(1, f1=0.90, accuracy=0.86), hand_made(2, f1=0.88, accuracy=0.84)],
            "mnli": [hand_made(1, accuracy=0.84, mismatched_accuracy=0.83),
                     hand_made(2, accuracy=0.82, mismatched_accuracy=0.81)]}
    summary = suite.summarize(runs)

    assert summary["tasks"]["mrpc"]["score"]["values"] == pytest.approx([0.88, 0.86])
    assert summary["tasks"]["mnli"]["score"]["values"] == pytest.approx([0.835, 0.815])  # m and mm: one task
    per_seed = [(0.60 + 0.88 + 0.835) / 3, (0.50 + 0.86 + 0.815) / 3]
    assert summary["glue_average"]["values"] == pytest.approx(per_seed)
    assert summary["glue_average"]["mean"] == pytest.approx(statistics.mean(per_seed))
    assert summary["glue_average"]["std"] == pytest.approx(statistics.stdev(per_seed))
    summary.update(seeds=[1, 2], model="embedded")
    table = suite.leaderboard_text(summary)
    assert "MRPC" in table and "f1/acc" in table and "89.00 ± 1.41 / 85.00 ± 1.41  87.00 ± 1.41" in table
    assert "GLUE average  3 tasks" in table and "74.83 ± 3.30" in table
    assert "mean ± sample standard deviation over seeds 1, 2" in table


# ---- glue all -----------------------------------------------------------------------------------

def test_suite_trains_each_present_task_per_seed_and_skips_absent_ones_with_a_note(suite_run):
    assert list(suite_run.summary["tasks"]) == ["sst2", "mnli", "rte"]
    for task in ("sst2", "mnli", "rte"):
        assert suite_run.summary["tasks"][task]["runs"] == [f"{task}/seed-1", f"{task}/seed-2"]
        assert (suite_run.dir / task / "seed-2" / "results.json").is_file()
    for folder in ("CoLA", "MRPC", "STS-B", "QQP", "QNLI", "WNLI"):
        assert f"skipping {folder}: no {folder}/train.tsv" in suite_run.out
    assert set(suite_run.summary["skipped"]) == {"cola", "mrpc", "stsb", "qqp", "qnli", "wnli"}
    assert "skipped (no data): CoLA, MRPC, STS-B, QQP, QNLI, WNLI" in suite_run.out
    assert "model kept: final epoch" in suite_run.out
    assert {task["model_chosen_by"] for task in suite_run.summary["tasks"].values()} == {"final epoch"}


def test_a_validation_fraction_holds_out_part_of_each_tasks_training_set(tmp_path, tiny_model):
    out = glue_all(tmp_path / "suite", write_glue(tmp_path / "glue"), tiny_model, "--tasks", "rte",
                   "--validation-fraction", "0.25")
    rte = json.loads((tmp_path / "suite" / "rte" / "results.json").read_text())
    assert (rte["train_examples"], rte["held_out_examples"]) == (18, 6)  # a quarter of each label's 12
    assert rte["model_chosen_by"] == "held-out train (fraction 0.25)"
    assert "model kept: held-out train (fraction 0.25)" in out


def test_task_defaults_fill_in_the_options_not_given(suite_run):
    rte = json.loads((suite_run.dir / "rte" / "seed-1" / "results.json").read_text())

    assert rte["settings"]["epochs"] == glue_defaults("rte", 24)["epochs"]  # not given: the table's
    assert rte["settings"]["lr"] == 1e-3 and rte["settings"]["batch_size"] == 8  # given: the user's
    assert rte["settings"]["seed"] == 1 and rte["steps"] == 2 and rte["train_examples"] == 24
    assert "limits: --max-train-samples 24, --max-steps 2; not comparable with full runs" in suite_run.out


def test_seeds_are_reported_as_mean_and_standard_deviation(suite_run):
    accuracy = suite_run.summary["tasks"]["sst2"]["metrics"]["accuracy"]
    values = [json.loads((suite_run.dir / "sst2" / f"seed-{s}" / "results.json").read_text())["metrics"]["accuracy"]
              for s in (1, 2)]

    assert accuracy["values"] == values
    assert accuracy["mean"] == pytest.approx(statistics.mean(values))
    assert accuracy["std"] == pytest.approx(statistics.stdev(values))
    row = [line for line in suite_run.out.splitlines() if line.startswith("SST-2 ")][-1]  # the table's
    assert f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}" in row


def test_summary_files_and_ax_predictions_from_the_mnli_model(suite_run):
    markdown = (suite_run.dir / "summary.md").read_text()

    assert "| task | metrics | dev | score |" in markdown and "| GLUE average | 3 tasks |" in markdown
    assert "[report](sst2/seed-1/report.md)" in markdown
    assert suite_run.summary["ax_predictions"] == str(suite_run.dir / "predictions" / "AX.tsv")
    header, *rows = (suite_run.dir / "predictions" / "AX.tsv").read_text().splitlines()
    assert header == "index\tprediction" and len(rows) == 5 and {r.split("\t")[1] for r in rows} <= set(NLI3)


def test_a_second_suite_run_reads_finished_tasks_back_instead_of_training(suite_run, tiny_model):
    runs = [suite_run.dir / task / f"seed-{s}" for task in ("sst2", "mnli", "rte") for s in (1, 2)]
    logs = {run: (run / "log.jsonl").read_text() for run in runs}
    written = {run: (run / "model" / "model.safetensors").stat().st_mtime_ns for run in runs}

    out = glue_all(suite_run.dir, suite_run.data_dir, tiny_model, "--seeds", "1,2")

    assert out.count("not run again") == 6 and "wrote" not in out
    assert all((run / "log.jsonl").read_text() == logs[run] for run in runs)
    assert all((run / "model" / "model.safetensors").stat().st_mtime_ns == written[run] for run in runs)
    assert json.loads((suite_run.dir / "summary.json").read_text()) == suite_run.summary


def test_suite_output_is_plain_text_when_piped(suite_run):
    assert "\033" not in suite_run.out and "GLUE average" in suite_run.out


@pytest.mark.parametrize("argv, message", [
    (["glue", "all", "--tasks", "ax"], "AX is not trained"),
    (["glue", "all", "--seed", "3", "--seeds", "1,2"], "give --seed or --seeds, not both"),
    (["glue", "sst2", "--seeds", "1,2"], "--tasks and --seeds go with `bertfit glue all`"),
])
def test_suite_options_that_cannot_work_are_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ---- reports ------------------------------------------------------------------------------------

def test_each_run_gets_report_md_and_learning_curves(suite_run):
    run = suite_run.dir / "rte" / "seed-1"
    report = (run / "report.md").read_text()

    assert report.startswith(f"# rte: {run}")
    for section in ("## Result (dev, ×100)", "## Settings", "## Data", "## Evaluations", "## Learning curves"):
        assert section in report
    assert "| train examples | 24 |" in report and "| lr | 0.001 |" in report
    assert "| step | epoch | accuracy |" in report and "| 2 |" in report
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_curves_are_titled_by_task_model_and_settings_without_the_machines_paths():
    results = {"task": "sst2", "model": "/home/someone/work/models/tiny/model",
               "settings": {"epochs": 3.0, "lr": 2e-5, "batch_size": 32}}
    assert reports.curves_title(results) == "sst2, model …/tiny/model: epochs 3, lr 2e-05, batch 32"
    assert reports.curves_title({"task": "rte", "model": "embedded"}) == "rte, model embedded"


def test_matplotlib_is_a_dependency_of_the_main_install():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("matplotlib") for d in project["dependencies"])  # so every run dir gets curves.png


def test_without_matplotlib_the_report_says_why_there_are_no_curves(suite_run, tmp_path, monkeypatch):
    for name in ("results.json", "log.jsonl"):
        shutil.copy(suite_run.dir / "sst2" / "seed-1" / name, tmp_path / name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    assert reports.write_run_report(tmp_path) == [tmp_path / "report.md"]
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "curves.png").exists()


def test_report_compares_two_runs_with_best_in_green_only_on_a_terminal(suite_run, capsys):
    seeds = [str(suite_run.dir / "mnli" / f"seed-{s}") for s in (1, 2)]
    assert main(["report", *seeds]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()

    assert header.split() == ["run", "task", "model", "epochs", "lr", "batch", "seed", "train", "acc", "acc-mm",
                              "time", "ex/s"]
    assert [row.split()[0] for row in rows] == seeds and all(" mnli " in row for row in rows)
    assert "\033" not in out
    coloured = reports.compare_runs(seeds, colour=True)
    assert coloured.startswith(reports.BOLD) and reports.GREEN in coloured


def test_report_on_a_suite_dir_lists_its_runs_in_suite_order(suite_run, capsys):
    assert main(["report", str(suite_run.dir)]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]

    assert [row.split()[1] for row in rows] == ["sst2", "sst2", "mnli", "mnli", "rte", "rte"]


def test_report_reads_squad_runs(tmp_path):
    results = {"task": "squad-v1.1", "metrics": {"f1": 88.5, "exact": 81.25}, "model": "embedded", "steps": 20,
               "best_step": 20, "settings": {"epochs": 2.0, "lr": 5e-5, "batch_size": 16, "seed": 42},
               "train_examples": 100, "train_windows": 120, "eval_examples": 40, "train_seconds": 75.0,
               "train_examples_per_second": 32.0}
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"event": "train", "step": 10, "loss": 2.0, "lr": 5e-5}, {"event": "train", "step": 20, "loss": 1.0, "lr": 0.0},
        {"event": "eval", "step": 20, "epoch": 2.0, "f1": 88.5, "exact": 81.25}]))

    reports.write_run_report(tmp_path)
    assert "| f1 | 88.50 |" in (tmp_path / "report.md").read_text()
    header, row = reports.compare_runs([tmp_path]).splitlines()
    assert header.split()[-4:] == ["f1", "em", "time", "ex/s"]
    assert row.split()[-4:] == ["88.50", "81.25", "1:15", "32.0"]


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert reports.use_colour(Terminal()) and not reports.use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not reports.use_colour(Terminal())
