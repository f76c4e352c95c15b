"""`bertfit demo`: the whole command, with the embedded model, on less of its generated data."""
import functools
import json

from bertfit import demo
from bertfit.cli import main


def test_bertfit_demo_fine_tunes_the_embedded_model_and_classifies_its_two_examples(tmp_path, monkeypatch, capsys):
    # 240 training sentences instead of 600 keep it short (30 steps); the command is otherwise as users run it
    monkeypatch.setattr(demo, "run_demo", functools.partial(demo.run_demo, train_size=240, dev_size=50))
    monkeypatch.setenv("BERTFIT_CACHE", str(tmp_path / "cache"))

    assert main(["demo", "--output-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "classify 'a charming and clever film .': positive (" in out
    assert "classify 'the plot was tedious and bland .': negative (" in out
    assert f"results: {tmp_path / 'demo' / 'results.json'}; model: {tmp_path / 'demo' / 'model'}" in out
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["model"] == "embedded" and results["train_examples"] == 240 and results["steps"] == 30
    assert results["metrics"]["accuracy"] >= 0.9  # two labels: chance is 0.5
