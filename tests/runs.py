"""Finished runs for the tests of what comes after training (inference, export, serving): model folders as
`bertfit glue` and `bertfit squad` save them, with random weights (plain helpers, not tests)."""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

import tiny

import bertfit
from bertfit import inference
from bertfit.pretrained import embedded_model_path, load_pretrained, load_tokenizer, save_pretrained
from bertfit.model import (BertConfig, BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering,
                           BertForSequenceClassification, BertForTokenClassification, BertModel)

# what finetune_glue / finetune_squad put in config.json's "bertfit" section, with short windows so
# that a paragraph of a test already spans several
SST2_EXTRA = {"task": "sst2", "max_seq_length": 32, "long_texts": "truncate", "stride": 8}
STSB_EXTRA = {"task": "stsb", "max_seq_length": 32, "long_texts": "truncate", "stride": 8}
SQUAD2_EXTRA = {"task": "squad-v2.0", "version": "2.0", "max_seq_length": 48, "doc_stride": 16,
                "max_query_length": 16, "n_best": 20, "max_answer_length": 30, "null_threshold": 0.5}

PASSAGE = ("The Broncos won Super Bowl 50 in Santa Clara, beating the Carolina Panthers 24 to 10 at Levi's "
           "Stadium on February 7, 2016. It was the fiftieth Super Bowl, and the league emphasized the golden "
           "anniversary with gold-themed initiatives throughout the season.")


def tiny_config(tokenizer) -> BertConfig:
    return BertConfig(vocab_size=tokenizer.get_vocab_size(), **tiny.REAL_VOCAB_SIZES)


def classification_run(folder: Path, seed: int = 0, labels=("0", "1"), extra=SST2_EXTRA) -> Path:
    tokenizer = load_tokenizer(embedded_model_path())
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(tokenizer), num_labels=len(labels))
    save_pretrained(model, tokenizer, folder / "model", labels=list(labels), extra=dict(extra))
    return folder


def squad_run(folder: Path, seed: int = 0, extra=SQUAD2_EXTRA) -> Path:
    tokenizer = load_tokenizer(embedded_model_path())
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(tiny_config(tokenizer))
    save_pretrained(model, tokenizer, folder / "model", extra=dict(extra))
    return folder


TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
NER_EXTRA = {"task": "ner", "scheme": "bio", "max_seq_length": 32, "stride": 8, "label_all_subtokens": False}


def tagger_run(folder: Path, seed: int = 0) -> Path:
    """A `bertfit ner` run's model folder, its classifier random enough that the labels vary from token to token."""
    tokenizer = load_tokenizer(embedded_model_path())
    torch.manual_seed(seed)
    model = BertForTokenClassification(tiny_config(tokenizer), num_labels=len(TAGS))
    with torch.no_grad():
        model.classifier.weight.normal_(std=2.0)
    save_pretrained(model, tokenizer, folder / "model", labels=TAGS, extra=dict(NER_EXTRA))
    return folder


def masked_lm_run(folder: Path, seed: int = 0, pretraining: bool = False) -> Path:
    """A pretraining run's model folder (BertForMaskedLM, or BertForPreTraining), with weights random enough
    that each [MASK] has a few clear favourites rather than 30,522 near-equal tokens."""
    tokenizer = load_tokenizer(embedded_model_path())
    torch.manual_seed(seed)
    model = (BertForPreTraining if pretraining else BertForMaskedLM)(tiny_config(tokenizer))
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(0.5 * torch.randn_like(param) + (1 if name.endswith("norm.weight") else 0))
    save_pretrained(model, tokenizer, folder / "model", extra={"task": "pretraining"})
    return folder


def base_model_folder(folder: Path, seed: int = 0) -> Path:
    """A base model folder as the hub has them: encoder weights only, yet labels in config.json."""
    import json

    tokenizer = load_tokenizer(embedded_model_path())
    torch.manual_seed(seed)
    save_pretrained(BertModel(tiny_config(tokenizer)), tokenizer, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def embedded_classification_run(folder: Path, seed: int = 0) -> Path:
    """The embedded model (22M parameters) with a fresh 2-label head: a model pass of real size."""
    torch.manual_seed(seed)
    model, tokenizer = load_pretrained(None, head="classification", num_labels=2)
    save_pretrained(model, tokenizer, folder / "model", labels=["0", "1"],
                    extra={"task": "sst2", "max_seq_length": 128})
    return folder


# How far a probability computed in each precision may be from the float32 one: bf16 keeps 8 bits of mantissa, so
# it moves in the 3rd or 4th decimal (docs/fine-tuning.md, "Precision"); float32 paths agree to rounding.
PROBABILITY_TOLERANCE = {"fp32": 1e-5, "bf16": 1e-2}


# ---- one question through the inference layer, in float32 (the reference of the tests that compare) ----


def classify(run_dir, text: str, text_pair: str | None = None, engine: str = "torch") -> tuple[str, float]:
    """(label, probability) for one text or pair, or ("score", value) for regression."""
    run = inference.load_run(run_dir, engine, precision="fp32", need="classify")
    (result,) = inference.classify(run, [text], [(text, text_pair)] if text_pair is not None else None)
    return ("score", result["score"]) if "score" in result else (result["label"], result["probability"])


def answer(run_dir, question: str, context: str, engine: str = "torch") -> dict:
    (result,) = inference.answer(inference.load_run(run_dir, engine, precision="fp32", need="answer"),
                                 [(question, context)])
    return result


def predict_glue(run_dir, split: str = "test", data_dir: str | None = None, out_dir=None, engine: str = "torch"):
    """`bertfit predict`'s files."""
    return inference.predict(inference.load_run(run_dir, engine, precision="fp32", need="predict"), split, data_dir,
                             out_dir)


class Server:
    """`bertfit serve` in a subprocess on 127.0.0.1 and a free port, on one thread."""

    def __init__(self, runs: list[str], *options: str, wait: float = 180, log: Path | None = None):
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(bertfit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bertfit", "serve", *runs, "--port", "0", "--threads", "1", *options],
            stdout=subprocess.PIPE, stderr=open(log, "w") if log else subprocess.DEVNULL, text=True, env=env)
        self.log, self.lines = log, []
        lines = queue.Queue()  # a reader thread, so that waiting for the first lines has a limit
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout] + [lines.put("")],
                         daemon=True).start()
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                break
            self.lines.append(line)
            found = re.search(r"serving on http://([\d.]+|\[[0-9a-f:]+\]):(\d+)", line)
            if found:
                self.host, self.port = found.group(1).strip("[]"), int(found.group(2))  # ::1 as http.client takes it
                return
        self.process.kill()
        errors = log.read_text() if log else ""
        raise RuntimeError(f"the server did not start: {''.join(self.lines)}{errors}")

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def bertfit_process(args: list, cache: Path) -> dict:
    """subprocess arguments that run `python -m bertfit ARGS` on one thread with its own cache, output captured."""
    env = {**os.environ, "BERTFIT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return dict(args=[sys.executable, "-m", "bertfit", *map(str, args)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_and_resume(command, checkpoints: Path, kill_from: str = "step-00000008", timeout: float = 60) -> None:
    """Run command("whole") to its end, and command("resumed") killed by SIGKILL once its checkpoints reach
    `kill_from` (so that a few steps and an evaluation lie behind the last one), then again to its end.
    `command(name)` gives bertfit_process's arguments; `checkpoints` is the killed run's checkpoints folder."""
    uninterrupted = subprocess.Popen(**command("whole"))
    killed = subprocess.Popen(**command("resumed"))
    deadline = time.monotonic() + timeout
    while killed.poll() is None and time.monotonic() < deadline:
        if any(p.name >= kill_from and not p.name.endswith(".tmp") for p in checkpoints.glob("step-*")):
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert killed.wait(timeout) == -signal.SIGKILL, killed.communicate()[1].decode()
    assert uninterrupted.wait(timeout) == 0, uninterrupted.communicate()[1].decode()
    resumed = subprocess.run(**command("resumed"), timeout=timeout)
    assert resumed.returncode == 0, resumed.stderr.decode()


def embedding_folder(folder: Path, seed: int = 0, pooling: str = "mean", normalize: bool = True,
                     max_seq_length: int = 64) -> Path:
    """A sentence-transformers folder of a tiny random encoder (modules.json, 1_Pooling, sentence_bert_config.json):
    a sentence-embedding model as small as the runs above."""
    from bertfit.embedding import SentenceConfig, write_sentence_files

    tokenizer = load_tokenizer(embedded_model_path())
    torch.manual_seed(seed)
    config = tiny_config(tokenizer)
    save_pretrained(BertModel(config), tokenizer, folder)
    write_sentence_files(folder, SentenceConfig((pooling,), normalize, max_seq_length, config.hidden_size))
    return folder
