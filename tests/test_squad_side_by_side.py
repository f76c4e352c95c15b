"""bench/squad_side_by_side.py over seeds: a rerun takes the finished runs of its runs file and runs nothing
again, a run that did not finish leaves no line, scores are mean ± sample std, and the docs render both
versions, naming the one not measured with its command."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "docs"))
import common  # noqa: E402
import render  # noqa: E402
import squad_side_by_side as sbs  # noqa: E402

SETTINGS = {"bertfit-defaults": {"epochs": 3, "lr": 1e-4, "batch_size": 16, "precision": "fp32"},
            "peer": {"epochs": 2, "lr": 3e-5, "batch_size": 12, "precision": "fp32"}}


def split(tmp_path: Path, text: str = "x") -> str:
    """A split's three files (only their bytes matter here: they name the split a run was made on)."""
    prefix = tmp_path / "mini"
    for part in ("train", "validation", "eval"):
        Path(f"{prefix}-{part}.json").write_text(f"{part} {text}")
    return str(prefix)


def figures(row: str, seed: int, version: str = "2.0") -> dict:
    """What a side hands back, with scores that differ by row and seed."""
    base = 40.0 + seed + (5.0 if row == "peer" else 0.0)
    metrics = {"exact": base, "f1": base + 10}
    if version == "2.0":
        metrics |= {"HasAns_exact": base - 20, "HasAns_f1": base - 10, "NoAns_exact": base + 20}
    bertfit = row != "peer"
    return {"metrics": metrics, "validation_metrics": {"f1": base + 1} if bertfit else None, "train_seconds": 1.0,
            "train_examples": 24, "eval_examples": 30, "validation_examples": 12 if bertfit else None,
            "best_step": 4 if bertfit else None, "steps": 6, "model_chosen_by": "x",
            "null_threshold": (0.5 * seed if bertfit else 0.0) if version == "2.0" else None,
            "threshold_chosen_on": ("validation" if bertfit else "run_qa's default 0.0") if version == "2.0" else None,
            "settings": SETTINGS[row]}


def line(row: str, seed: int, prefix: str, version: str = "2.0", max_train_samples=None) -> dict:
    paths = sbs.files(type("Args", (), {"prefix": prefix})())
    return {"version": version, "row": row, "seed": seed, "prefix": prefix, "split": sbs.split_digest(paths),
            "max_train_samples": max_train_samples, "commit": "a" * 40, "dirty": False,
            "figures": figures(row, seed, version)}


def write_runs(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in lines))


def options(prefix: str, runs_file: Path, tmp_path: Path, seeds: str = "1,2") -> list[str]:
    return ["--version", "2.0", "--prefix", prefix, "--seeds", seeds, "--rows", "bertfit-defaults,peer",
            "--runs-file", str(runs_file), "--figures-name", "squad-side-by-side-full", "--untimed",
            "--figures-dir", str(tmp_path / "figures")]


def test_a_rerun_takes_every_run_of_its_runs_file_and_runs_none_again(tmp_path, monkeypatch):
    prefix = split(tmp_path)
    runs_file = tmp_path / "runs.jsonl"
    write_runs(runs_file, [line(row, seed, prefix) for seed in (1, 2) for row in ("bertfit-defaults", "peer")])
    before = runs_file.read_text()
    monkeypatch.setattr(common, "run_side", lambda *a: pytest.fail(f"ran a side again: {a}"))

    sbs.main(options(prefix, runs_file, tmp_path))

    assert runs_file.read_text() == before
    kind = common.cpu_kind()["kind"]
    record = json.loads((tmp_path / "figures" / kind / "squad-side-by-side-full-v2.0.json").read_text())
    rows = record["figures"]["rows"]
    assert rows["bertfit-defaults"]["seeds"] == rows["peer"]["seeds"] == [1, 2]
    assert record["figures"]["not_run"].startswith("bertfit-run_qa (the same command with `--rows "
                                                   "bertfit-defaults,bertfit-run_qa,peer` adds it")
    assert record["figures"]["quiet_machine"] is False


def test_only_runs_of_the_same_version_split_and_row_limit_are_taken_and_a_cut_line_is_not(tmp_path, capsys):
    prefix = split(tmp_path)
    (tmp_path / "other").mkdir()
    other = split(tmp_path / "other", "another split")
    runs_file = tmp_path / "runs.jsonl"
    write_runs(runs_file, [line("peer", 1, prefix), line("peer", 2, prefix, version="1.1"),
                           line("peer", 3, other), line("peer", 4, prefix, max_train_samples=24)])
    with open(runs_file, "a") as f:
        f.write(json.dumps(line("peer", 5, prefix))[:80])  # killed while writing its line

    digest = sbs.split_digest(sbs.files(type("Args", (), {"prefix": prefix})()))
    found = sbs.recorded_runs(str(runs_file), "2.0", digest, None)

    assert list(found) == [("peer", 1)]
    assert "line 5: not a whole JSON line" in capsys.readouterr().err

    sbs.append_run(str(runs_file), line("peer", 6, prefix))  # begins a line of its own after the cut one
    assert list(sbs.recorded_runs(str(runs_file), "2.0", digest, None)) == [("peer", 1), ("peer", 6)]


def test_a_line_this_script_did_not_write_stops_the_rerun_naming_it(tmp_path):
    runs_file = tmp_path / "runs.jsonl"
    runs_file.write_text('{"task": "cola", "seed": 1}\n')
    with pytest.raises(SystemExit, match="runs.jsonl, line 1: not a run this script wrote"):
        sbs.recorded_runs(str(runs_file), "2.0", "0" * 16, None)


def test_a_run_killed_before_it_finished_leaves_no_line_and_runs_again_in_its_kept_run_dir(tmp_path, monkeypatch):
    prefix = split(tmp_path)
    runs_file = tmp_path / "runs.jsonl"
    write_runs(runs_file, [line("bertfit-defaults", 1, prefix), line("peer", 1, prefix)])
    before = runs_file.read_text()
    killed = tmp_path / "killed.py"  # a side that dies as a SIGKILL'd run does, handing nothing back
    killed.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    asked, real_run_side = [], common.run_side

    def run_side(script, argv, side):
        asked.append((side, argv))
        return real_run_side(str(killed), argv, side)

    monkeypatch.setattr(common, "run_side", run_side)
    with pytest.raises(SystemExit, match="the bertfit-defaults side failed"):
        sbs.main(options(prefix, runs_file, tmp_path))

    assert runs_file.read_text() == before
    side, argv = asked[0]
    run_dir = sbs.checkpoint_dir(str(runs_file), "2.0", "bertfit-defaults", 2)
    assert side == "bertfit-defaults" and argv[-2:] == ["--run-dir", str(run_dir)] and "--seed" in argv
    assert run_dir.is_relative_to(ROOT / "runs")  # git-ignored
    assert run_dir != sbs.checkpoint_dir(str(tmp_path / "other.jsonl"), "2.0", "bertfit-defaults", 2)
    kind = common.cpu_kind()["kind"]
    record = json.loads((tmp_path / "figures" / kind / "squad-side-by-side-full-v2.0.json").read_text())
    assert record["figures"]["rows"]["bertfit-defaults"]["seeds"] == [1]
    assert record["figures"]["not_run"].startswith("bertfit-defaults seed 2; peer seed 2 (the command above")


def test_scores_are_mean_and_sample_std_over_seeds_and_bertfit_meets_the_trainer_on_the_seeds_both_ran():
    runs = {(row, seed): figures(row, seed) for row in ("bertfit-defaults", "peer") for seed in (1, 2, 3)}
    del runs[("peer", 3)]

    summary = sbs.summarise(runs, "2.0", [1, 2, 3], ["bertfit-defaults", "bertfit-run_qa", "peer"])

    f1 = [runs[("bertfit-defaults", s)]["metrics"]["f1"] for s in (1, 2, 3)]
    b = summary["bertfit-defaults"]
    assert b["metrics"]["f1"]["mean"] == pytest.approx(statistics.mean(f1))
    assert b["metrics"]["f1"]["std"] == pytest.approx(statistics.stdev(f1))
    assert b["null_threshold"]["values"] == [0.5, 1.0, 1.5] and b["epochs_kept"] == [2, 2, 2]
    assert b["vs_peer"]["seeds"] == [1, 2] and b["vs_peer"]["f1"] == pytest.approx(-5.0)
    assert summary["peer"]["seeds"] == [1, 2] and summary["peer"]["null_threshold"]["mean"] == 0.0
    assert summary["bertfit-run_qa"] == {"label": sbs.ROWS["bertfit-run_qa"], "seeds": []}
    one = sbs.summarise({("peer", 1): figures("peer", 1, "1.1")}, "1.1", [1], ["peer"])["peer"]["metrics"]
    assert set(one) == {"exact", "f1"} and one["f1"]["std"] is None


def test_the_docs_render_each_version_over_seeds_and_name_the_version_not_run_with_its_command(tmp_path, monkeypatch):
    prefix = split(tmp_path)
    runs_file = tmp_path / "runs.jsonl"
    write_runs(runs_file, [line(row, seed, prefix) for seed in (1, 2) for row in ("bertfit-defaults", "peer")])
    monkeypatch.setattr(common, "run_side", lambda *a: pytest.fail("ran a side"))
    sbs.main(options(prefix, runs_file, tmp_path))
    kind = common.cpu_kind()["kind"]

    text = render.render_squad_side_by_side(tmp_path / "figures")

    mine = text.split(f"**{kind}**")[1].split("\n\n**")[0]
    assert ("| bertfit, its defaults (3 ep, 1e-4, batch 16) | 1, 2 | 41.50 ± 0.71 | 51.50 ± 0.71 | 31.50 ± 0.71 | "
            "61.50 ± 0.71 | 0.75 ± 0.354 (validation) | 42.50 ± 0.71 | 2, 2 | -5.00 | not timed |") in mine
    assert ("| Trainer, run_qa's settings (2 ep, 3e-5, batch 12) | 1, 2 | 46.50 ± 0.71 | 56.50 ± 0.71 | "
            "36.50 ± 0.71 | 66.50 ± 0.71 | 0 (run_qa's default 0.0) | – | 2, 2 | – | not timed |") in mine
    assert "| EM | F1 | HasAns F1 | NoAns accuracy | null threshold |" in mine
    command = render.command_for("squad-side-by-side-full-v1.1", kind)
    assert f"docs/figures/{kind}/squad-side-by-side-full-v1.1.runs.jsonl" in command
    assert "not measured on this kind: " in mine and f"`{command}`" in mine
