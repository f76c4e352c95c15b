"""bench/ner_defaults.py and bench/ner_side_by_side.py's reuse of rows: the held-out part is a fixed, disjoint
split of the training file; the Trainer's rows of an earlier figures file are refused unless made the same way;
the docs render the candidates best first and label reused rows."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "docs"))
import common  # noqa: E402
import ner_defaults  # noqa: E402
import ner_side_by_side as nss  # noqa: E402
import render  # noqa: E402

from bertfit.tasks.tagged_files import TaggedSentences  # noqa: E402


def sentences(n: int) -> TaggedSentences:
    found = TaggedSentences()
    for i in range(n):
        found.add([f"w{i}", "x"], ["B-person" if i % 2 else "O", "O"], [2 * i + 1, 2 * i + 2])
    return found


def test_the_held_out_part_is_a_fixed_disjoint_share_of_the_training_file():
    validation, training = ner_defaults.split_sentences(sentences(100), 0.15, seed=0)

    assert len(validation) == 15 and len(training) == 85
    assert sorted(validation + training) == list(range(100))
    assert (validation, training) == ner_defaults.split_sentences(sentences(100), 0.15, seed=0)
    assert validation != ner_defaults.split_sentences(sentences(100), 0.15, seed=1)[0]


def test_the_parts_written_read_back_as_the_sentences_they_hold(tmp_path):
    from bertfit.tasks.tagged_files import read_tagged_file

    whole = sentences(6)
    ner_defaults.write_conll(tmp_path / "part.conll", whole, [1, 4])
    part = read_tagged_file(tmp_path / "part.conll")
    assert part.words == [whole.words[1], whole.words[4]] and part.tags == [whole.tags[1], whole.tags[4]]


def test_predictions_read_back_gold_and_predicted_per_sentence(tmp_path):
    path = tmp_path / "predictions.conll"
    path.write_text("a\tB-person\tO\nb\tO\tO\n\nc\tB-group\tB-group\n\n")
    assert ner_defaults.read_predictions(path) == ([["B-person", "O"], ["B-group"]], [["O", "O"], ["B-group"]])


def test_the_peer_code_compared_is_the_trainers_side_alone():
    source = (ROOT / "bench" / "ner_side_by_side.py").read_text()
    code = nss.peer_code(source)
    assert all(code) and "def peer_side" in code[-1] and code[0].startswith("RUN_NER =")
    assert nss.peer_code(source.replace("def bertfit_side(args) -> dict:", "def bertfit_side(args):")) == code
    changed = source.replace('labels = sorted({t for tags in train.tags for t in tags})',
                             'labels = list({t for tags in train.tags for t in tags})')
    assert changed != source and nss.peer_code(changed) != code


def args(tmp_path: Path, record: dict, **more):
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(record))
    parser = common.parser("test")
    parser.add_argument("data_dir")
    for option in ("--max-train-samples", "--max-eval-samples"):
        parser.add_argument(option, type=int)
    parser.add_argument("--peer-runs")
    parser.add_argument("--untimed", action="store_true")
    common.add_comparison_options(parser)
    return parser.parse_args(["wnut17", "--compare", "defaults", "--seeds", "1,2", "--untimed",
                              "--peer-runs", str(path), *more.get("argv", [])])


def earlier(**changes) -> dict:
    """A figures file of the defaults comparison as the bench writes it (test data, not a measurement)."""
    runs = [{"dev_f1": 50.0 + seed, "test_f1": 40.0 + seed} for seed in (1, 2, 3)]
    record = {"name": "ner-side-by-side-defaults", "command": "python bench/ner_side_by_side.py wnut17",
              "commit": "unknown", "dirty": False, "date": "2026-01-01T00:00:00+00:00", "threads": 2,
              "settings": {"peer": {**nss.RUN_NER, "seed": 42}}, "figures": {"seeds": [1, 2, 3],
                                                                           "runs": {"peer": runs}}}
    for key, value in changes.items():
        record[key] = value
    return record


@pytest.mark.parametrize("change, reason", [
    (dict(name="ner-side-by-side-same-math"), "not ner-side-by-side-defaults"),
    (dict(settings={"peer": {**nss.RUN_NER, "batch_size": 16}}), "peer settings"),
    (dict(command="python bench/ner_side_by_side.py wnut17 --max-train-samples 40"), "--max-train-samples"),
    (dict(figures={"seeds": [1], "runs": {"peer": [{}]}}), "not all of [1, 2]"),
    (dict(commit="0" * 40), "cannot be read back"),
    (dict(dirty=True), "cannot be read back"),
])
def test_rows_of_an_earlier_run_made_otherwise_are_refused(tmp_path, change, reason):
    record = earlier(**change)
    with pytest.raises(SystemExit, match=f"not reused: .*{re.escape(reason)}"):
        nss.reused_peer_runs(args(tmp_path, record), {**nss.RUN_NER, "seed": 42})


def test_rows_that_were_themselves_reused_are_refused(tmp_path):
    record = earlier()
    record["figures"]["peer_runs_from"] = {"file": "older.json"}
    with pytest.raises(SystemExit, match="taken from older.json"):
        nss.reused_peer_runs(args(tmp_path, record), {**nss.RUN_NER, "seed": 42})


def test_rows_are_taken_by_seed_from_a_run_at_a_commit_with_the_same_peer_code(tmp_path):
    commit = common.git_commit()["commit"]
    import subprocess

    then = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:bench/ner_side_by_side.py"],
                          capture_output=True, text=True)
    if then.returncode != 0 or nss.peer_code(then.stdout) != nss.peer_code(
            (ROOT / "bench" / "ner_side_by_side.py").read_text()):
        pytest.skip("no git history, or the peer code has changed since the last commit")
    reused = nss.reused_peer_runs(args(tmp_path, earlier(commit=commit), argv=["--seeds", "2,3"]),
                                  {**nss.RUN_NER, "seed": 42})
    assert reused["seeds"] == [2, 3] and [r["dev_f1"] for r in reused["runs"]] == [52.0, 53.0]
    assert reused["commit"] == commit and reused["threads"] == 2


def figures_file(tmp_path: Path, monkeypatch, name: str, figures: dict) -> None:
    monkeypatch.setattr(common, "cpu_kind", lambda: {"model_name": "test CPU", "kind": "avx2", "flags": ["avx2"],
                                                     "native_bf16": False, "bf16_flags": [], "logical_cpus": 2})
    common.write_figures(name, "bench/x.py", [], str(tmp_path / "figures"), figures=figures)


def test_the_docs_list_the_candidates_best_first_with_their_steps_and_those_not_run(tmp_path, monkeypatch):
    runs = [{"batch_size": 8, "epochs": 3.0, "lr": 5e-5, "steps": 1083}, {"batch_size": 32, "epochs": 5.0,
                                                                          "lr": 5e-5, "steps": 452}]
    candidates = [{"batch_size": 8, "epochs": 3.0, "lr": 5e-5, "seeds": [1], "validation_f1": 60.0,
                   "validation_f1_std": None},
                  {"batch_size": 32, "epochs": 5.0, "lr": 5e-5, "seeds": [1], "validation_f1": 55.5,
                   "validation_f1_std": None}]
    figures_file(tmp_path, monkeypatch, "ner-defaults-choice", {
        "split": {"training_sentences": 2885, "validation_sentences": 509}, "runs": runs, "candidates": candidates,
        "not_run": [{"batch_size": 16, "epochs": 5.0, "lr": 5e-5, "seeds_run": 0}]})

    text = render.render_ner_defaults(tmp_path / "figures")
    assert "| batch 8, 3 epochs, lr 5e-5 | 1083 | 60.00 | 1 |" in text
    assert text.index("batch 8, 3 epochs") < text.index("batch 32, 5 epochs") and "(509 sentences)" in text
    assert "| batch 16, 5 epochs, lr 5e-5 |  | not run |  |" in text


def test_the_docs_say_whose_commit_the_reused_trainer_rows_come_from(tmp_path, monkeypatch):
    side = {"dev_f1": 50.0, "dev_f1_std": 1.0, "test_f1": 40.0, "test_f1_std": 1.0}
    figures_file(tmp_path, monkeypatch, "ner-side-by-side-defaults", {
        "sides": {"bertfit": side, "peer": side}, "quiet_machine": False,
        "peer_runs_from": {"file": "x.json", "commit": "910a7bf3360951a54589dbbc11905cf37b305f94"}})

    assert "defaults vs defaults: Trainer (run_ner; rows of commit 910a7bf336)" in \
        render.render_ner_side_by_side(tmp_path / "figures")
