"""The hub is asked once whether it answers: offline, a download fails at once with what to do instead."""
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bertfit.errors import DataError
from bertfit.tasks.glue_hub import load_hub_split
from bertfit.tasks.squad import load_hub_squad

SRC = str(Path(__file__).resolve().parents[1] / "src")


class CountingServer:
    """A TCP port that accepts connections, counts them and hangs up: the hub unreachable, each try seen."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]  # nothing listens there once it is closed


def test_an_unreachable_hub_is_asked_once_and_each_download_fails_at_once(monkeypatch):
    server = CountingServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    for task, split in (("sst2", "train"), ("sst2", "dev"), ("rte", "train")):
        with pytest.raises(DataError, match="the Hugging Face hub cannot be reached") as caught:
            load_hub_split(task, split)
        assert "pass --data-dir with the official GLUE files" in str(caught.value)
    with pytest.raises(DataError, match="pass --train-file with the official SQuAD v1.1 JSON file"):
        load_hub_squad("1.1", "train")
    # datasets alone would connect six times per file, sleeping 23 s between its tries
    assert server.connections == 1


def test_a_closed_hub_port_fails_the_command_with_the_message_and_no_retries(tmp_path, tiny_model):
    result = subprocess.run(
        [sys.executable, "-m", "bertfit", "glue", "sst2", "--model", tiny_model, "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": SRC, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
             "BERTFIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "GLUE sst2 train: the Hugging Face hub cannot be reached" in result.stderr
    assert "Connection refused" in result.stderr and "Retrying" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_hf_hub_offline_skips_the_look_and_reads_only_the_local_cache(tmp_path):
    server = CountingServer()
    code = ("from bertfit.tasks.glue_hub import load_hub_split\nfrom bertfit.errors import DataError\n"
            "try:\n    load_hub_split('sst2', 'train')\nexcept DataError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": server.url,
                                 "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    assert "could not load GLUE sst2 train from the Hugging Face hub" in result.stdout
    assert "pass --data-dir" in result.stdout
    assert server.connections == 0


def test_a_hub_model_name_with_the_hub_unreachable_asks_for_a_local_folder(tmp_path, monkeypatch):
    from bertfit.pretrained import load_pretrained
    from bertfit.errors import CheckpointError

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # so the name is no local path by accident
    with pytest.raises(CheckpointError, match="the Hugging Face hub cannot be reached") as caught:
        load_pretrained("some-org/some-bert-model")
    assert "Pass a local folder with config.json" in str(caught.value) and "HF_HUB_OFFLINE=1" in str(caught.value)
