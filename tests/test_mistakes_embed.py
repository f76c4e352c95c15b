"""The mistakes matrix of `bertfit embed`: each ordinary mistake stops with exit 2 and one line naming the
problem, without a traceback, and changes no file (an existing --output least of all)."""
import json
import shutil
from pathlib import Path

import pytest

import runs
from mistakes import refused

from bertfit.pretrained import embedded_model_path

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(300)]


def sentence_folder(folder: Path, modules: list | None = None, pooling: dict | None = None) -> Path:
    """A sentence-transformers folder of a tiny random encoder: its modules.json and pooling config as given
    (None: the file left out)."""
    runs.base_model_folder(folder)
    if modules is not None:
        (folder / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("embed-mistakes")
    modules = json.loads((embedded_model_path() / "modules.json").read_text())
    mean = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}
    sentence_folder(root / "no-pooling-config", modules)
    sentence_folder(root / "no-pooling-module", modules[:1])
    sentence_folder(root / "dense", modules[:2] + [{"idx": 2, "name": "2", "path": "2_Dense",
                                                    "type": "sentence_transformers.models.Dense"}], mean)
    sentence_folder(root / "unknown-pooling", modules, {"pooling_mode": "median"})
    sentence_folder(root / "good", modules, mean)
    runs.base_model_folder(root / "base")
    runs.classification_run(root / "glue-sst2")
    (root / "texts.txt").write_text("one\n\nthree\n")
    (root / "empty.txt").write_text("")
    (root / "texts.jsonl").write_text('{"body": "a"}\n')
    (root / "surrogate.jsonl").write_text('{"text": "a"}\n{"text": "b \\ud800"}\n')
    (root / "mine.npy").write_bytes(b"the user's own file")
    shutil.copy(root / "texts.txt", root / "copy.txt")
    return root


CASES = {
    "a base model (no pooling config)": (["base", "a text"], "not a sentence-embedding model: no modules.json"),
    "modules.json without its pooling config": (["no-pooling-config", "a text"], "1_Pooling/config.json: missing"),
    "modules.json without a Pooling module": (["no-pooling-module", "a text"], "no Pooling module"),
    "a Dense module": (["dense", "a text"], "sentence_transformers.models.Dense (2_Dense) is not one bertfit computes"),
    "an unknown pooling mode": (["unknown-pooling", "a text"], "pooling median; the modes are cls, max, mean"),
    "a classification run": (["glue-sst2", "a text"], "a sst2 run, not a sentence-embedding model"),
    "an empty text": (["good", "a text", " "], "text 2 is empty"),
    "a text not UTF-8": (["good", "a text", "caf\udce9"], "text 2 is not UTF-8 (byte 0xe9 at byte 4 of 4)"),
    "a lone surrogate in the file": (["good", "--input-file", "surrogate.jsonl"],
                                     "surrogate.jsonl, line 2: the text holds a lone surrogate"),
    "no texts": (["good"], "give texts on the command line or --input-file"),
    "texts and a file": (["good", "a", "--input-file", "texts.txt"], "give texts on the command line or --input-file"),
    "a blank line in the file": (["good", "--input-file", "texts.txt"], "texts.txt, line 2: a blank line"),
    "an empty file": (["good", "--input-file", "empty.txt"], "empty.txt: no texts to embed"),
    "a missing file": (["good", "--input-file", "nowhere.txt"], "nowhere.txt: no such file"),
    "a JSONL file without the field": (["good", "--input-file", "texts.jsonl"], "line 1: no 'text' field; found body"),
    "an output that exists": (["good", "a text", "--output", "mine.npy"], "mine.npy: exists; bertfit embed writes a "
                                                                        "new file and never replaces one"),
    "an output of another kind": (["good", "a text", "--output", "out.csv"], "--output must end in .npy"),
    "an output in no folder": (["good", "a text", "--output", "nowhere/out.npy"], "nowhere: no such folder"),
    "an embedding model asked to classify": (["classify", "good", "a text"], "a sentence-embedding model: it holds "
                                                                             "no classifier"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_embed_mistake_is_one_line(case, root, capsys, monkeypatch):
    argv, says = CASES[case]
    monkeypatch.chdir(root)
    argv = argv if argv[0] == "classify" else ["embed", *argv]
    message = refused(argv, watch=[root], capsys=capsys)
    assert says in message, message


@pytest.mark.parametrize("folder, says", [("no-pooling-config", "1_Pooling/config.json: missing"),
                                          ("dense", "sentence_transformers.models.Dense (2_Dense) is not one"),
                                          ("base", "a base model: its weights hold no trained head")],
                         ids=["no pooling config", "a Dense module", "a base model"])
def test_serve_refuses_an_embedding_model_it_cannot_compute_before_listening(folder, says, root, capsys,
                                                                             monkeypatch):
    pytest.importorskip("fastapi")
    monkeypatch.chdir(root)
    message = refused(["serve", f"embedder={folder}", "--port", "0"], watch=[root], capsys=capsys)
    assert says in message, message


TRAIN_CASES = {
    "no training file": ([], "--train-file is required"),
    "a scored loss on unscored pairs": (["--train-file", "pairs.csv", "--loss", "cosent"],
                                        "--loss cosent needs scored pairs"),
    "scores that are labels": (["--train-file", "labelled.csv", "--label-column", "label"],
                               "must hold numbers (gold similarity scores)"),
    "an empty training file": (["--train-file", "header.csv"], "header.csv: no pairs to train on (0 read, 0 skipped as bad)"),
    "one text column": (["--train-file", "pairs.csv", "--text-columns", "sentence1"], "give two columns"),
    "an evaluation file without scores": (["--train-file", "pairs.csv", "--eval-file", "pairs.csv"],
                                          "evaluation needs scored pairs"),
    "a SQuAD file that is not JSON": (["--train-file", "broken.json"], "broken.json"),
    "an unknown pooling": (["--train-file", "pairs.csv", "--pooling", "median"], "--pooling must be one of"),
    "a missing training file": (["--train-file", "nowhere.csv"], "nowhere.csv"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_embed_train_mistake_is_one_line(case, root, capsys, monkeypatch):
    argv, says = TRAIN_CASES[case]
    (root / "pairs.csv").write_text("sentence1,sentence2\na cat,a dog\n")
    (root / "labelled.csv").write_text("sentence1,sentence2,label\na cat,a dog,yes\n")
    (root / "header.csv").write_text("sentence1,sentence2\n")
    (root / "broken.json").write_text("{not json")
    monkeypatch.chdir(root)
    message = refused(["embed-train", "--model", "good", "--output-dir", "train-run", *argv], watch=[root],
                      capsys=capsys)
    assert says in message, message
    assert not (root / "train-run").exists()
