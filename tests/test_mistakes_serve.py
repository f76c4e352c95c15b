"""The mistakes matrix of `bertfit serve`: each ordinary mistake stops before serving with exit 2, one error line
naming the problem, no traceback, and no file changed."""
import socket

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import runs  # noqa: E402
from mistakes import refused  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runs.classification_run(tmp_path_factory.mktemp("mistakes-serve") / "glue-sst2")


CASES = [
    # (what, extra argv, words the error line must hold)
    ("a port out of range", ["--port", "70000"], "--port must be between 1 and 65535"),
    ("a negative port", ["--port", "-1"], "--port must be between 1 and 65535"),
    ("no threads", ["--threads", "0"], "--threads must be at least 1"),
    ("negative threads", ["--threads", "-1"], "--threads must be at least 1"),
    ("a non-ASCII API key", ["--api-key", "clé"], "printable ASCII"),
    ("an API key with a space", ["--api-key", "two words"], "printable ASCII"),
    ("an empty API key", ["--api-key", " "], "is empty"),
    ("no windows per request", ["--max-windows", "0"], "--max-windows must be at least 1"),
    ("no [MASK]s per request", ["--max-masks", "0"], "--max-masks must be at least 1"),
    ("no tokens per request", ["--max-request-tokens", "0"], "--max-request-tokens must be at least 1"),
    ("no question characters", ["--max-question-chars", "0"], "--max-question-chars must be at least 1"),
    ("no tokenizer threads", ["--tokenizer-threads", "0"], "--tokenizer-threads must be at least 1"),
    ("a zero timeout", ["--timeout", "0"], "--timeout must be more than 0"),
    ("a timeout that is not a number", ["--timeout", "nan"], "--timeout must be more than 0"),
    ("a negative wait", ["--max-wait-ms", "-1"], "--max-wait-ms must be 0 or more"),
    ("an empty host", ["--host", ""], "--host is empty"),
    ("an address not of this machine", ["--host", "192.0.2.1"], "cannot listen on 192.0.2.1:8000"),
    ("an IPv6 address not of this machine", ["--host", "2001:db8::1"], "cannot listen on [2001:db8::1]:8000"),
    ("fp16 on a CPU", ["--precision", "fp16"], "needs a GPU"),
    ("an unknown precision", ["--precision", "fp8"], "invalid choice"),
    ("an unknown engine", ["--engine", "tensorrt"], "invalid choice"),
    ("a port that is not a number", ["--port", "eighty"], "invalid int value"),
]


@pytest.mark.parametrize("what, argv, words", CASES, ids=[c[0] for c in CASES])
def test_a_bad_serve_option_is_refused_in_one_line(run, tmp_path, capsys, what, argv, words):
    line = refused(["serve", run, *argv], watch=[run, tmp_path], capsys=capsys)
    assert words in line


def test_a_missing_run_is_refused(tmp_path, capsys):
    line = refused(["serve", tmp_path / "no-such-run"], watch=[tmp_path], capsys=capsys)
    assert "no-such-run" in line and "no fine-tuned model here" in line


def test_a_base_model_with_no_trained_head_is_refused(tmp_path, capsys):
    base = runs.base_model_folder(tmp_path / "base")
    line = refused(["serve", base], watch=[tmp_path], capsys=capsys)
    assert "a base model: its weights hold no trained head" in line


def test_a_folder_with_no_model_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = refused(["serve", tmp_path / "empty"], watch=[tmp_path], capsys=capsys)
    assert "empty" in line and "no fine-tuned model here" in line


@pytest.mark.parametrize("spec", ["=runs/glue-sst2", "sentiment="], ids=["no name", "no run"])
def test_a_bad_name_equals_run_is_refused(run, tmp_path, capsys, spec):
    line = refused(["serve", spec], watch=[run, tmp_path], capsys=capsys)
    assert "NAME=RUN" in line


def test_two_runs_of_one_name_are_refused(run, tmp_path, capsys):
    line = refused(["serve", f"a={run}", f"a={run}"], watch=[run, tmp_path], capsys=capsys)
    assert "two runs are called 'a'" in line


def test_a_non_ascii_key_from_the_environment_is_refused(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BERTFIT_API_KEY", "schlüssel")
    line = refused(["serve", run], watch=[run, tmp_path], capsys=capsys)
    assert "printable ASCII" in line and "BERTFIT_API_KEY" in line


def test_a_port_in_use_is_refused(run, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = refused(["serve", run, "--port", taken.getsockname()[1]], watch=[run, tmp_path], capsys=capsys)
    assert "cannot listen on 127.0.0.1" in line


def test_a_bad_host_or_port_is_refused_before_any_run_is_loaded(tmp_path, capsys):
    # the run does not exist: had it been loaded first, the error would name it
    line = refused(["serve", tmp_path / "no-such-run", "--host", "192.0.2.1"], watch=[tmp_path], capsys=capsys)
    assert "cannot listen on 192.0.2.1" in line and "no-such-run" not in line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(["serve", tmp_path / "no-such-run", "--port", port], watch=[tmp_path], capsys=capsys)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "no-such-run" not in line
