"""The inference layer: one loader that never answers from an untrained head, the same answer and precision
on every command, and library calls that leave the process as they found it."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import runs

from bertfit import files, inference
from bertfit.cli import main
from bertfit.devices import precision_reason
from bertfit.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS = str(Path(__file__).resolve().parent)
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    return {"sst2": runs.classification_run(root / "glue-sst2"), "squad": runs.squad_run(root / "squad"),
            "pretrain": runs.masked_lm_run(root / "pretrain"), "base": runs.base_model_folder(root / "base")}


# ---- never an untrained head --------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_classify_on_a_pretraining_run_is_refused_every_time_saying_what_the_run_is_for(made, capsys):
    for _ in range(2):  # a fresh random head would answer, and differently each time
        assert main(["classify", str(made["pretrain"]), "a fine film"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "Traceback" not in captured.err
        assert "a pretraining run" in captured.err and "bertfit fill-mask" in captured.err
        assert "fine-tune it first with `bertfit glue`" in captured.err


@pytest.mark.timeout(120)
def test_qa_on_a_pretraining_run_is_refused(made, capsys):
    assert main(["qa", str(made["pretrain"]), "--question", "Who won?", "--context", runs.PASSAGE]) == 2
    err = capsys.readouterr().err
    assert "a pretraining run" in err and "fine-tune it first with `bertfit squad`" in err


def test_a_head_config_json_names_but_the_weights_lack_is_refused(made, tmp_path):
    folder = shutil.copytree(made["base"], tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="holds no classifier.weight: the head was never trained"):
        inference.load_run(folder)


def test_a_base_model_with_labels_in_its_config_is_refused(made):
    with pytest.raises(CheckpointError, match="a base model: its weights hold no trained head"):
        inference.load_run(made["base"])


def test_the_weights_decide_the_head_where_config_json_names_no_architecture(made, tmp_path):
    folder = shutil.copytree(made["squad"] / "model", tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    assert inference.load_run(folder).head == "qa"


@pytest.mark.parametrize("kind, need, says", [
    ("squad", "classify", "a SQuAD run (squad-v2.0), not a classification run"),
    ("squad", "predict", "a SQuAD run (squad-v2.0), not a classification run"),
    ("sst2", "answer", "a GLUE sst2 run, not a SQuAD run"),
    ("sst2", "fill-mask", "a sst2 model, not a masked-language model"),
    ("pretrain", "predict", "a pretraining run"),
])
def test_a_run_of_another_kind_is_refused_before_its_weights_load(made, kind, need, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        inference.load_run(made[kind], need=need)


# ---- one precision, said, and the same answer everywhere ------------------------------------------

@pytest.mark.timeout(120)
def test_classify_says_the_precision_on_stderr_and_prints_the_apis_answer(made, auto_precision, capsys):
    run = inference.load_run(made["sst2"])  # the API's default is the CLI's: auto
    (expected,) = inference.classify(run, ["A gripping film."])
    assert main(["classify", str(made["sst2"]), "A gripping film."]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{expected['label']}\t{expected['probability']:.4f}\n"
    kind = os.environ["BERTFIT_CPU_KIND"]
    assert captured.err == f"precision {auto_precision} (--precision auto: BERTFIT_CPU_KIND={kind})\n"
    assert run.precision == inference.precision_name("auto") == auto_precision


@pytest.mark.timeout(120)
def test_qa_and_fill_mask_say_the_precision_they_ran_in(made, capsys):
    assert main(["qa", str(made["squad"]), "--question", "Who won?", "--context", runs.PASSAGE,
                 "--precision", "fp32"]) == 0
    assert capsys.readouterr().err == "precision fp32 (--precision fp32)\n"
    assert main(["fill-mask", str(made["pretrain"]), "The [MASK] sat."]) == 0
    assert capsys.readouterr().err == f"precision {inference.precision_name('auto')} ({precision_reason('auto', torch.device('cpu'))})\n"


# ---- the process as the caller had it ------------------------------------------------------------

@pytest.mark.timeout(180)
def test_answering_from_python_leaves_the_allocator_as_it_was(made):
    code = (f"from bertfit import devices, inference\n"
            f"run = inference.load_run({str(made['sst2'])!r})\n"
            f"inference.classify(run, ['a fine film'])\n"
            f"print(devices._allocator_tuned)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=170,
                          env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # glibc's mallopt settings untouched: the CLI tunes its own process


@pytest.mark.parametrize("kind", ["sst2", "squad", "pretrain"])
def test_loading_a_run_leaves_the_callers_random_stream_as_it_was(made, kind):
    import torch

    torch.manual_seed(7)
    state = torch.get_rng_state()
    run = inference.load_run(made[kind], precision="fp32")
    assert torch.equal(torch.get_rng_state(), state)
    assert not any(p.is_meta for p in run.model.parameters())  # every weight came from the file


# ---- replacing a folder: only bertfit's own ------------------------------------------------------

def finished(tmp_path: Path, marker: str = "config.json") -> Path:
    tmp = tmp_path / "new.tmp"
    tmp.mkdir()
    (tmp / marker).write_text("{}")
    return tmp


def test_replace_folder_refuses_a_folder_without_the_marker_and_changes_nothing(tmp_path):
    tmp, folder = finished(tmp_path), tmp_path / "myfiles"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="myfiles: exists and is not a folder bertfit wrote"):
        files.replace_folder(tmp, folder, marker="config.json")
    assert (folder / "notes.txt").read_text() == "mine" and (tmp / "config.json").exists()


def test_replace_folder_replaces_its_own_or_an_empty_folder_and_leaves_a_folder_named_old_alone(tmp_path):
    tmp, folder = finished(tmp_path), tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"old": 1}')
    (tmp_path / "model.old").mkdir()  # a user's folder that happens to bear the name
    (tmp_path / "model.old" / "notes.txt").write_text("mine")
    files.replace_folder(tmp, folder, marker="config.json")
    assert (folder / "config.json").read_text() == "{}" and not tmp.exists()
    assert (tmp_path / "model.old" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.old"]

    empty = tmp_path / "empty"
    empty.mkdir()
    files.replace_folder(finished(tmp_path), empty, marker="config.json")
    assert (empty / "config.json").exists()


def test_atomic_writes_leave_a_users_file_or_folder_named_like_their_temporary_alone(tmp_path):
    (tmp_path / "results.json.tmp").write_text("mine")
    files.write_json(tmp_path / "results.json", {"steps": 1})
    run = tmp_path / "run"
    (run / "model.tmp").mkdir(parents=True)
    (run / "model.tmp" / "notes.txt").write_text("mine")
    runs.classification_run(run)
    assert (tmp_path / "results.json.tmp").read_text() == "mine"
    assert (run / "model.tmp" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.json.tmp", "run"]
    assert sorted(p.name for p in run.iterdir()) == ["model", "model.tmp"]


@pytest.mark.timeout(60)
def test_the_demo_refuses_an_output_dir_of_other_files(tmp_path):
    from bertfit.demo import run_demo

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds files that are not a bertfit run"):
        run_demo(tmp_path, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
