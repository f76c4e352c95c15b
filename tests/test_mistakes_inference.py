"""The mistakes matrix of what comes after training: classify, qa, predict, fill-mask and export, each given an
ordinary mistake, stop with exit 2 and one line naming the problem, without a traceback, and change no file."""
import importlib.util
from pathlib import Path

import pytest

import runs
from mistakes import refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Runs of every kind, a base model, an empty folder, a folder of the user's files, an empty context file."""
    root = tmp_path_factory.mktemp("mistakes")
    runs.classification_run(root / "glue-sst2")
    runs.classification_run(root / "own-files", extra={"task": "custom", "max_seq_length": 32})
    runs.squad_run(root / "squad")
    runs.masked_lm_run(root / "pretrain")
    runs.base_model_folder(root / "base")
    runs.tagger_run(root / "ner")
    (root / "empty").mkdir()
    (root / "myfiles").mkdir()
    (root / "myfiles" / "notes.txt").write_text("mine")
    (root / "blank.txt").write_text("  \n")
    return root


RUN_DIRS = {"missing run dir": ("nowhere", "nowhere: no fine-tuned model here"),
            "empty folder": ("empty", "empty: no fine-tuned model here"),
            "base model folder": ("base", "a base model: its weights hold no trained head"),
            "pretraining run": ("pretrain", "a pretraining run (a masked-language model)")}

# command -> its argv after the run dir, the run it is meant for, and the runs of another kind with what they say
COMMANDS = {
    "classify": (["a fine film"], "glue-sst2", {"squad": "a SQuAD run (squad-v2.0), not a classification run"}),
    "qa": (["--question", "Who won?", "--context", runs.PASSAGE], "squad",
           {"glue-sst2": "a GLUE sst2 run, not a SQuAD run"}),
    "predict": ([], "glue-sst2", {"squad": "a SQuAD run (squad-v2.0), not a classification run",
                                  "own-files": "a custom run, not one of GLUE's tasks"}),
    "fill-mask": (["The [MASK] sat."], "pretrain", {"glue-sst2": "a sst2 model, not a masked-language model",
                                                    "squad": "a squad-v2.0 model, not a masked-language model"}),
}

NOT_UTF8 = b"\xed\xa0\x80abc".decode("utf-8", "surrogateescape")  # `bertfit classify RUN $'\xed\xa0\x80abc'`

CASES = {}
for command, (rest, right, wrong) in COMMANDS.items():
    for name, (folder, says) in RUN_DIRS.items():
        if not (command == "fill-mask" and folder == "pretrain"):
            CASES[f"{command}: {name}"] = ([command, folder, *rest], says)
    for folder, says in wrong.items():
        CASES[f"{command}: a {folder} run"] = ([command, folder, *rest], says)
    CASES[f"{command}: unknown --engine"] = ([command, right, *rest, "--engine", "tensorrt"], "invalid choice: 'tensorrt'")
    CASES[f"{command}: unknown --precision"] = ([command, right, *rest, "--precision", "fp8"],
                                                "--precision must be one of auto, fp32, bf16, fp16, not 'fp8'")
    CASES[f"{command}: --engine onnx without an export"] = ([command, right, *rest, "--engine", "onnx"],
                                                            "no ONNX export here")
CASES.update({
    "classify: empty text": (["classify", "glue-sst2", "  "], "text 1 is empty"),
    "classify: empty second text": (["classify", "glue-sst2", "a fine film", ""], "its second text is empty"),
    "qa: empty question": (["qa", "squad", "--question", " ", "--context", runs.PASSAGE], "the question is empty"),
    "qa: empty context": (["qa", "squad", "--question", "Who won?", "--context", ""], "the context is empty"),
    "qa: missing --context-file": (["qa", "squad", "--question", "Who won?", "--context-file", "none.txt"],
                                   "none.txt: no such file (--context-file)"),
    "qa: empty --context-file": (["qa", "squad", "--question", "Who won?", "--context-file", "blank.txt"],
                                 "blank.txt: is empty"),
    "qa: a folder as --context-file": (["qa", "squad", "--question", "Who won?", "--context-file", "myfiles"],
                                       "myfiles: is a folder"),
    "predict: unknown --split": (["predict", "glue-sst2", "--split", "train"], "invalid choice: 'train'"),
    "fill-mask: --top-k 0": (["fill-mask", "pretrain", "The [MASK] sat.", "--top-k", "0"],
                             "top_k must be between 1 and the vocabulary's 30522 tokens, not 0"),
    "fill-mask: --top-k beyond the vocabulary": (["fill-mask", "pretrain", "The [MASK] sat.", "--top-k", "40000"],
                                                 "not 40000"),
    "fill-mask: empty text": (["fill-mask", "pretrain", " "], "text 1 is empty"),
    "fill-mask: no [MASK]": (["fill-mask", "pretrain", "a fine film"], "has no [MASK]"),
    "tag: empty text": (["tag", "ner", " "], "the text is empty"),
    "tag: text not UTF-8": (["tag", "ner", NOT_UTF8], "the text is not UTF-8 (byte 0xed"),
    "tag: empty text, before the run": (["tag", "nowhere", " "], "the text is empty"),
    "tag: a glue-sst2 run": (["tag", "glue-sst2", "Paris"], "a sst2 run, not a token-classification run"),
    "tag: a squad run": (["tag", "squad", "Paris"], "a squad-v2.0 run, not a token-classification run"),
    "tag: a pretraining run": (["tag", "pretrain", "Paris"], "a fill-mask run, not a token-classification run"),
    "tag: missing run dir": (["tag", "nowhere", "Paris"], "nowhere: no fine-tuned model here"),
    "tag: unknown --aggregation": (["tag", "ner", "Paris", "--aggregation", "longest"], "invalid choice: 'longest'"),
    "tag: --engine onnx without an export": (["tag", "ner", "Paris", "--engine", "onnx"], "no ONNX export here"),
    "classify: a ner run": (["classify", "ner", "Paris"], "a token-classification run (ner)"),
    "predict: a ner run without --input-file": (["predict", "ner"], "give the words to tag with --input-file"),
    "predict: a ner run, a missing --input-file": (["predict", "ner", "--input-file", "none.txt"],
                                                  "none.txt: file not found"),
    # bytes that are not UTF-8, as a shell passes them (Python keeps them as lone surrogates), and a surrogate
    # given from Python: refused by name before the run is read, never the tokenizer's TypeError
    "classify: text not UTF-8": (["classify", "glue-sst2", NOT_UTF8], "text 1 is not UTF-8 (byte 0xed at byte 1"),
    "classify: second text not UTF-8": (["classify", "glue-sst2", "a fine film", NOT_UTF8],
                                        "pair 1: its second text is not UTF-8 (byte 0xed"),
    "classify: a lone surrogate": (["classify", "glue-sst2", "a \ud800 film"],
                                   "text 1 holds a lone surrogate ('\\ud800' at character 3)"),
    "qa: question not UTF-8": (["qa", "squad", "--question", NOT_UTF8, "--context", runs.PASSAGE],
                               "the question is not UTF-8"),
    "qa: context not UTF-8": (["qa", "squad", "--question", "Who won?", "--context", NOT_UTF8],
                              "the context is not UTF-8"),
    "fill-mask: text not UTF-8": (["fill-mask", "pretrain", "The [MASK] sat.", "The [MASK] " + NOT_UTF8],
                                  "text 2 is not UTF-8"),
    # a text is checked before the run is read: the missing run is not what the user hears first
    "classify: empty text, before the run": (["classify", "nowhere", " "], "text 1 is empty"),
    "classify: text not UTF-8, before the run": (["classify", "nowhere", NOT_UTF8], "text 1 is not UTF-8"),
    "qa: empty question, before the run": (["qa", "nowhere", "--question", " ", "--context", "a"],
                                           "the question is empty"),
    "fill-mask: empty text, before the run": (["fill-mask", "nowhere", " "], "text 1 is empty"),
    "fill-mask: text not UTF-8, before the run": (["fill-mask", "nowhere", NOT_UTF8], "text 1 is not UTF-8"),
    "fill-mask: more [MASK]s than the default --max-masks": (["fill-mask", "pretrain", "[MASK] " * 65, "[MASK] " * 65],
                                                             "the texts hold 130 [MASK]s; at most 128 in one request"),
    "fill-mask: more [MASK]s than --max-masks": (["fill-mask", "pretrain", "[MASK] and [MASK]", "--max-masks", "1"],
                                                 "the text holds 2 [MASK]s; at most 1 in one request (--max-masks)"),
    "fill-mask: --max-masks 0": (["fill-mask", "pretrain", "The [MASK] sat.", "--max-masks", "0"],
                                 "--max-masks must be at least 1, not 0"),
    "export: missing run dir": (["export", "nowhere"], "nowhere: no fine-tuned model here"),
    "export: empty folder": (["export", "empty"], "empty: no fine-tuned model here"),
    "export: base model folder": (["export", "base"], "a base model: its weights hold no trained head"),
    "export: --output at a folder with files in it": (["export", "glue-sst2", "--output", "myfiles"],
                                                      "myfiles: exists and is not an earlier export of"),
    "export: --output at the run itself": (["export", "glue-sst2", "--output", "glue-sst2"],
                                           "glue-sst2: exists and is not an earlier export of"),
    "export: --output at the run's model": (["export", "glue-sst2", "--output", "glue-sst2/model"],
                                            "model: exists and is not an earlier export of"),
    "export: --output at another run": (["export", "glue-sst2", "--output", "squad"], "is not an earlier export of"),
    "export: --output at a file": (["export", "glue-sst2", "--output", "myfiles/notes.txt"],
                                   "notes.txt: exists and is not a folder"),
    "export: unknown --quantize": (["export", "glue-sst2", "--quantize", "int4"], "invalid choice: 'int4'"),
    "export: unknown --format": (["export", "glue-sst2", "--format", "tflite"], "invalid choice: 'tflite'"),
})


def in_root(argv: list[str], root: Path) -> list[str]:
    """The case's names of runs and files as paths under root (options and texts as they are)."""
    names = {p.name for p in root.iterdir()} | {"nowhere", "none.txt", "glue-sst2/model", "myfiles/notes.txt"}
    return [str(root / a) if a in names else a for a in argv]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_is_one_line_exit_2_and_changes_nothing(case, root, capsys):
    argv, says = CASES[case]
    if argv[0] == "export" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("export needs onnx and onnxruntime")
    message = refused(in_root(argv, root), watch=[root], capsys=capsys)
    assert says in message.replace(str(root) + "/", ""), message


@pytest.mark.timeout(120)
def test_export_output_dot_is_refused_where_the_working_folder_holds_files(root, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(root / "myfiles")
    message = refused(["export", str(root / "glue-sst2"), "--output", "."], watch=[root], capsys=capsys)
    assert ".: the current folder or one above it" in message


@pytest.mark.timeout(120)
def test_a_text_argument_of_bytes_that_are_not_utf8_is_one_line_from_a_real_shell(tmp_path):
    """The bytes reach Python as a shell passes them (os.fsencode), not as a test builds a str."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bertfit", "classify", str(tmp_path / "nowhere"), b"\xed\xa0\x80abc"],
                          capture_output=True, timeout=100)
    assert done.returncode == 2 and b"Traceback" not in done.stderr, done.stderr
    assert done.stderr.decode() == "bertfit: error: text 1 is not UTF-8 (byte 0xed at byte 1 of 6); give the text as UTF-8\n"
