"""The docs cannot drift: their tables are the render of the figures and the code's constants, and every
command and snippet of the README and of the Getting-started page runs."""
from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402
import render  # noqa: E402

RUNNABLE_PAGES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md"]
FENCE = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)


# ---- promises kept by tests ---------------------------------------------------------------------

KEPT_PAGES = [ROOT / "docs" / "reliability.md"]  # pages whose every promise names the test that keeps it
KEPT_BY = re.compile(r"tests/(test_\w+\.py)(?:::(test_\w+))?")


@pytest.mark.parametrize("page", KEPT_PAGES, ids=lambda page: page.name)
def test_every_promise_of_the_page_names_a_test_that_exists(page):
    """Each row of the page's table says `(kept by tests/test_x.py::test_y)`, and each test named is there: a
    renamed or deleted test breaks this, not the promise silently."""
    text = page.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| fault")]
    assert rows, f"{page.name} has no table of promises"
    unkept = [row[:80] for row in rows if "(kept by `tests/" not in row]
    assert not unkept, f"rows of {page.name} that name no test: {unkept}"
    for file, name in KEPT_BY.findall(text):
        source = ROOT / "tests" / file
        assert source.is_file(), f"{page.name} names {file}, which is not in tests/"
        if name:
            assert re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.M), \
                f"{page.name} names {file}::{name}, which is not a test there"


# ---- the tables ---------------------------------------------------------------------------------

def test_every_checked_in_table_is_what_the_render_script_makes():
    stale = render.differences(ROOT)
    assert stale == [], f"run `python docs/render.py`: these tables differ from their sources: {stale}"


def copy_pages(tmp_path: Path) -> Path:
    """README.md and docs/ (its pages) in a folder of their own, to edit without touching the checkout."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("figures", "*.png", "*.py"))
    return tmp_path


def test_the_check_fails_when_a_rendered_constant_is_edited_by_hand(tmp_path):
    from bertfit.settings import GLUE_DEFAULTS

    root = copy_pages(tmp_path)
    page = root / "docs" / "fine-tuning.md"
    text = page.read_text()
    lr = render.number(GLUE_DEFAULTS[0][2]["lr"])
    table = re.search(r"<!-- code:glue-defaults -->\n(.*?)<!-- /code -->", text, re.S).group(1)
    assert f"| {lr} |" in table
    page.write_text(text.replace(table, table.replace(f"| {lr} |", "| 3e-5 |", 1)))

    assert render.differences(root, ROOT / "docs" / "figures") == ["docs/fine-tuning.md: code:glue-defaults"]


def record(tmp_path: Path, kind: str, ratio_train: float, monkeypatch) -> Path:
    """A figures file as bench/common.write_figures writes it, on a CPU of `kind` (test data, not a measurement)."""
    monkeypatch.setattr(common, "cpu_kind", lambda: {"model_name": f"test CPU ({kind})", "kind": kind,
                                                     "flags": [kind], "native_bf16": kind != "avx2",
                                                     "bf16_flags": [], "logical_cpus": 2})
    side = {"train_examples_per_s": 10.0 * ratio_train, "train_seconds": 40.0, "eval_examples_per_s": 20.0,
            "train_mfu_percent": 50.0, "accuracy": 0.75, "accuracy_std": None}
    peer = {**side, "train_examples_per_s": 10.0, "eval_examples_per_s": 10.0}
    return common.write_figures(
        "glue-speed-same-math", "bench/glue_speed.py", ["--data-dir", "glue", "--samples", "64", "--figures-dir", "x"],
        str(tmp_path / "figures"), figures={"sides": {"bertfit": side, "peer": peer},
                                            "ratio": {"train": ratio_train, "eval": 2.0}},
        settings={"bertfit": {"lr": 5e-5}, "peer": {"lr": 5e-5}}, precision={"bertfit": "fp32", "peer": "fp32"})


def test_each_cpu_kind_gets_its_own_labelled_table_and_one_without_figures_says_how_to_measure(tmp_path, monkeypatch):
    record(tmp_path, "avx2", 1.25, monkeypatch)
    record(tmp_path, "amx", 3.5, monkeypatch)

    text = render.render_speed(tmp_path / "figures")

    avx2, bf16, amx = (text.index(f"**{kind}**") for kind in ("avx2", "avx512_bf16", "amx"))
    assert avx2 < bf16 < amx
    assert "**1.25**" in text[avx2:bf16] and "**3.50**" in text[amx:]
    assert "test CPU (avx2)" in text[avx2:bf16] and "test CPU (amx)" in text[amx:]
    # the recorded command, without where its figures went
    assert "`python bench/glue_speed.py --data-dir glue --samples 64`" in text
    assert text[bf16:amx].startswith("**avx512_bf16**: not measured")
    assert render.COMMANDS["glue-speed-same-math"] in text[bf16:amx]


def test_the_check_fails_when_a_measured_figure_is_edited_by_hand(tmp_path, monkeypatch):
    record(tmp_path, "avx2", 1.25, monkeypatch)
    root = copy_pages(tmp_path / "pages")
    for page in render.pages(root):
        page.write_text(render.render_text(page.read_text(), tmp_path / "figures"))
    assert render.differences(root, tmp_path / "figures") == []
    page = root / "docs" / "benchmarks.md"

    page.write_text(page.read_text().replace("**1.25**", "**1.52**", 1))

    assert render.differences(root, tmp_path / "figures") == ["docs/benchmarks.md: figures:speed"]


def test_an_unknown_table_marker_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown table marker <!-- figures:no-such-table -->"):
        render.render_text("<!-- figures:no-such-table -->\n<!-- /figures -->\n", tmp_path, "page.md")


def test_a_table_marker_left_open_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="without its closing"):
        render.render_text("<!-- code:glue-defaults -->\n| a table |\n", tmp_path, "page.md")


def test_the_int8_tolerance_the_docs_state_is_the_codes():
    from bertfit import export

    text = (ROOT / "docs" / "serving.md").read_text()
    assert f"{render.number(export.INT8_TOLERANCE)} × the largest logit" in text
    assert f"{render.number(export.FP32_TOLERANCE)} × the largest logit" in text


NAMED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def missing_tests(text: str) -> list[str]:
    """The tests `text` names (`tests/FILE.py::test_NAME`) that the file does not define."""
    return [f"{file}::{name}" for file, name in NAMED_TEST.findall(text)
            if not (ROOT / file).is_file()
            or not re.search(rf"^(async )?def {name}\(", (ROOT / file).read_text(encoding="utf-8"), re.M)]


def test_every_test_the_docs_name_as_keeping_a_promise_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    serving = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    assert len(NAMED_TEST.findall(serving)) > 50  # serving.md names the tests that keep its promises
    assert {page.name: missing_tests(page.read_text(encoding="utf-8")) for page in pages} == {p.name: [] for p in pages}
    assert missing_tests("`tests/test_docs.py::test_no_such_test`, `tests/no_such_file.py::test_x`") == [
        "tests/test_docs.py::test_no_such_test", "tests/no_such_file.py::test_x"]


# ---- the examples -------------------------------------------------------------------------------

def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def commands(text: str) -> list[list[str]]:
    """The commands of a sh block: one a line, `&&` splitting a line, comments dropped."""
    out = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            out.append(words[:cut])
            words = words[cut + 1 :]
    return out


def set_up_step(words: list[str]) -> bool:
    """The set-up the test's own environment has already done: a venv, its activation, pip, the test suite."""
    return (words[:3] == ["python3", "-m", "venv"] or words[0] in (".", "source", "pip")
            or words[:3] == ["python", "-m", "pytest"])


def write_data(folder: Path) -> None:
    """The files the pages' commands read: a few SST-2-layout sentences, and plain text to pretrain on."""
    from bertfit.demo import write_sentiment_data

    write_sentiment_data(folder / "glue_data", train_size=24, dev_size=8)
    subjects = ["paris", "the river", "a small town", "the old library", "the market", "our school"]
    verbs = ["is the capital of", "lies to the north of", "was built near", "is older than", "looks onto"]
    places = ["france", "the valley", "the sea", "the hills", "the station", "the castle"]
    lines = [f"{s} {v} {p}. people walk there every day and talk about {q}."
             for i, (s, v, p, q) in enumerate((subjects[i % 6], verbs[i % 5], places[i % 6], places[(i * 7) % 6])
                                             for i in range(240))]
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n")
    (folder / "valid.txt").write_text("\n".join(lines[::7]) + "\n")


def environment(folder: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "BERTFIT_CACHE": str(folder / ".cache"), "OMP_NUM_THREADS": "1"}


def run_bertfit(words: list[str], folder: Path, timeout: float) -> None:
    command = [sys.executable, "-m", "bertfit", *words[1:]]
    if words[1] == "serve":
        return serve_and_stop(command + ["--port", "0"], folder, timeout)  # the one substitution: a free port
    done = subprocess.run(command, cwd=folder, env=environment(folder), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(words)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def serve_and_stop(command: list[str], folder: Path, timeout: float) -> None:
    """Start the server, wait until it listens, stop it with SIGTERM: it must exit 0."""
    process = subprocess.Popen(command, cwd=folder, env=environment(folder), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                     daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                break
            seen.append(line)
            if "serving on http://" in line:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=60) == 0, "".join(seen)
                return
        pytest.fail(f"{shlex.join(command)} did not start:\n{''.join(seen)}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_python(code: str, folder: Path, timeout: float) -> None:
    script = folder / "snippet.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=folder, env=environment(folder), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"snippet failed:\n{code}\n{done.stdout}\n{done.stderr}"


@pytest.mark.timeout(1800)
def test_every_command_and_snippet_of_the_readme_and_getting_started_runs(tmp_path):
    """In page order, in one folder, each command once (the README's tour repeats Getting started's)."""
    write_data(tmp_path)
    ran: set[str] = set()
    for page in RUNNABLE_PAGES:
        for language, text in blocks(page):
            if language == "python":
                run_python(text, tmp_path, timeout=600)
                continue
            for words in commands(text):
                if set_up_step(words) or shlex.join(words) in ran:
                    continue
                assert words[0] == "bertfit", f"{page.name}: a command the docs test cannot run: {shlex.join(words)}"
                run_bertfit(words, tmp_path, timeout=600)
                ran.add(shlex.join(words))
    assert {"bertfit demo", "bertfit glue sst2 --data-dir glue_data"} <= ran


def test_the_readme_and_getting_started_set_up_the_same_way_ci_does():
    """CI runs the README's test command: the two set-up commands are the same on both pages and in .ci/run."""
    readme = [text for language, text in blocks(ROOT / "README.md") if language == "sh"]
    started = [text for language, text in blocks(ROOT / "docs" / "getting-started.md") if language == "sh"]
    setup = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . "
             "&& bertfit demo\n")
    tests = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e '.[test]' "
             "&& python -m pytest\n")
    assert setup in readme and tests in readme and setup in started and tests in started
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet torch==2.13.0" in ci and "python -m pytest" in ci


# ---- the figures files --------------------------------------------------------------------------

@pytest.mark.parametrize("flags, kind", [({"avx", "avx2", "fma"}, "avx2"), ({"avx2", "avx512f"}, "avx512"),
                                         ({"avx2", "avx512f", "avx512_bf16"}, "avx512_bf16"),
                                         ({"avx512_bf16", "amx_tile", "amx_bf16"}, "amx"), (set(), "other")])
def test_a_cpu_is_filed_under_the_kind_its_flags_make_it(flags, kind):
    assert common.kind_of(flags) == kind


def test_a_figures_file_holds_the_command_commit_cpu_precision_settings_and_figures(tmp_path, monkeypatch):
    path = record(tmp_path, "avx2", 1.25, monkeypatch)

    assert path == tmp_path / "figures" / "avx2" / "glue-speed-same-math.json"
    saved = json.loads(path.read_text())
    assert saved["command"] == "python bench/glue_speed.py --data-dir glue --samples 64"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", saved["commit"])
    assert saved["cpu"]["kind"] == "avx2" and saved["precision"] == {"bertfit": "fp32", "peer": "fp32"}
    assert saved["settings"]["peer"] == {"lr": 5e-5} and saved["figures"]["ratio"]["train"] == 1.25


def test_the_peers_documented_settings_live_in_one_place():
    import glue_side_by_side
    import glue_speed
    import squad_side_by_side
    import squad_speed

    assert glue_speed.RUN_GLUE is common.RUN_GLUE and glue_side_by_side.RUN_GLUE is common.RUN_GLUE
    assert squad_speed.RUN_QA is common.RUN_QA and squad_side_by_side.RUN_QA is common.RUN_QA
