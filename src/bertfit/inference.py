"""A finished run loaded once and applied to many inputs: the batched API behind `bertfit serve`.

Each task splits inference in three steps, so a server can run the middle one for many requests
at once: `prepare` encodes one request's inputs as the run encoded its data (`tasks.glue.encode`,
`tasks.squad.make_windows`), `run` is the model over any number of prepared requests joined
into one set of features (`predicting.predict`: length-sorted batches, nothing padded beyond a
batch's longest sequence), and `finish` turns one request's share of the outputs into answers
(windows averaged, softmax; or `tasks.squad.decode`). `classify`, `answer` and `fill_mask` chain the three.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import devices, predicting
from .batching import Features, collate, eval_batches
from .checkpoints.hf import read_config_json
from .pretrained import load_pretrained
from .errors import CheckpointError, ConfigError, DataError
from .tasks import glue, glue_encoding, squad
from .tokenization import special_ids

ENGINES = ("torch", "onnx")
FILL_MASK_HEADS = ("mlm", "pretraining")  # masked-language models: they fill [MASK]s
MASK_TOKEN = "[MASK]"


@dataclass
class Run:
    """A fine-tuned model with what its run saved beside it (task, labels, encoding settings)."""

    folder: Path  # where config.json and the tokenizer were read
    head: str  # "classification", "qa", or (fill-mask) "mlm" or "pretraining"
    model: torch.nn.Module
    tokenizer: object
    labels: list[str]  # classification: one name per output (["score"] for regression); qa: []
    extra: dict  # the "bertfit" section of config.json: task, max_seq_length, null_threshold, ...
    engine: str
    precision: str

    @property
    def task(self) -> str:
        if self.head in FILL_MASK_HEADS:
            return "fill-mask"
        return self.extra.get("task") or ("classification" if self.head == "classification" else "squad")

    @property
    def max_seq_length(self) -> int:
        default = {"classification": 128, "qa": 384}.get(self.head) or self.model.bert.config.max_position_embeddings
        return self.extra.get("max_seq_length", default)

    @property
    def pad_id(self) -> int:
        return special_ids(self.tokenizer).pad

    def describe(self) -> dict:
        """What a client needs to know to call the model (GET /v1/models)."""
        info = {"task": self.task, "head": self.head, "engine": self.engine, "precision": self.precision,
                "max_seq_length": self.max_seq_length}
        if self.head == "classification":
            info.update(labels=self.labels, regression=self.labels == ["score"],
                        long_texts=self.extra.get("long_texts", "truncate"))
        elif self.head in FILL_MASK_HEADS:
            info.update(mask_token=MASK_TOKEN)
        else:
            info.update(version=self.extra.get("version", "1.1"), null_threshold=self.extra.get("null_threshold", 0.0),
                        doc_stride=self.extra.get("doc_stride", 128))
        if self.engine == "onnx":
            info["file"] = self.model.path.name
        return info


def model_folder(run_dir: str | Path) -> Path:
    """RUN/model when it holds a model, else the folder itself."""
    folder = Path(run_dir)
    return folder / "model" if (folder / "model" / "config.json").exists() else folder


def head_of(config: dict, source: Path) -> str:
    architectures = config.get("architectures") or []
    if "BertForQuestionAnswering" in architectures:
        return "qa"
    if "BertForMaskedLM" in architectures:
        return "mlm"
    if "BertForPreTraining" in architectures:
        return "pretraining"
    if "BertForSequenceClassification" in architectures or "id2label" in config:
        return "classification"
    raise CheckpointError(f"{source}: not a fine-tuned classification or SQuAD model, nor a masked-language model "
                          f"(architectures: {', '.join(architectures) or 'none'})")


def load_run(run_dir: str | Path, engine: str = "torch", precision: str = "auto") -> Run:
    """Load a run dir (or model folder, or ONNX export folder) for inference with PyTorch or ONNX Runtime."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "onnx":
        from .export import find_onnx_dir

        folder = find_onnx_dir(run_dir)
    else:
        folder = model_folder(run_dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir}: no fine-tuned model here (looked for model/config.json and config.json)")
    config = read_config_json(config_path)
    head = head_of(config, config_path)
    id2label = config.get("id2label") or {}
    labels = [id2label.get(str(i), f"LABEL_{i}") for i in range(len(id2label) or 2)] if head == "classification" else []
    if labels:
        from .recipes.glue import readable_labels  # names for people where the task's files write numbers

        labels = readable_labels(labels, (config.get("bertfit") or {}).get("task"))
    if engine == "onnx":
        from .export import load_onnx_model

        model, tokenizer = load_onnx_model(folder)
        precision = "fp32"  # the file fixes the arithmetic; autocast would not reach ONNX Runtime
    else:
        model, tokenizer = load_pretrained(folder, head=head, num_labels=len(labels) or 2)
        if head in FILL_MASK_HEADS:
            mask_id(tokenizer, folder)
            # a tokenizer built from vocab.txt has [MASK] as a word only: split it never, as transformers does
            tokenizer.add_special_tokens([MASK_TOKEN])
        # the name of what "auto" picks here; a bad name fails now, not at the first request
        precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            devices.resolve_precision(precision, torch.device("cpu"))]
    return Run(folder, head, model.eval(), tokenizer, labels, config.get("bertfit") or {}, engine, precision)


# ---- the three steps ----------------------------------------------------------------------------

@dataclass
class Prepared:
    """One request's inputs, encoded: its features and what `finish` needs to read its outputs back."""

    features: Features
    num_inputs: int
    truncated: list[bool] = field(default_factory=list)  # classification: the input lost tokens
    top_k: int = 5  # fill-mask: candidates per [MASK]
    questions: list[squad.SquadQuestion] = field(default_factory=list)  # qa
    windows: squad.Windows | None = None  # qa

    @property
    def num_tokens(self) -> int:
        return int(self.features.offsets[-1])


def prepare_texts(run: Run, texts_a: list[str], texts_b: list[str] | None = None) -> Prepared:
    """Encode texts (or pairs) as `bertfit glue` encoded the run's data: its max length, truncation or windows."""
    examples = glue.Examples(texts_a=list(texts_a), texts_b=list(texts_b) if texts_b is not None else None,
                             labels=None, indices=list(range(len(texts_a))), source="request")
    max_len = run.extra.get("max_seq_length", 128)
    long_texts = run.extra.get("long_texts", "truncate")
    features, stats = glue_encoding.encode(examples, run.tokenizer, max_len, long_texts, run.extra.get("stride", 64))
    truncated = [False] * len(texts_a)
    if stats.num_truncated:
        truncated = _truncated(run, examples, max_len, long_texts)
    return Prepared(features, len(texts_a), truncated=truncated)


def _truncated(run: Run, examples: glue.Examples, max_len: int, long_texts: str) -> list[bool]:
    """Which inputs lost tokens, by the rule `glue.encode` applies (it counts them; this names them)."""
    special = 3 if examples.texts_b is not None else 2
    lengths_a = [len(e.ids) for e in run.tokenizer.encode_batch(examples.texts_a, add_special_tokens=False)]
    lengths_b = ([len(e.ids) for e in run.tokenizer.encode_batch(examples.texts_b, add_special_tokens=False)]
                 if examples.texts_b is not None else [0] * len(lengths_a))
    if long_texts == "window":  # text a is read whole, window by window; only b is cut, to half the room
        return [b > (max_len - special) // 2 for b in lengths_b]
    return [a + b + special > max_len for a, b in zip(lengths_a, lengths_b)]


def prepare_questions(run: Run, pairs: list[tuple[str, str]]) -> Prepared:
    """Encode (question, context) pairs as windows, as `bertfit squad` did for the run's evaluation."""
    questions = [squad.SquadQuestion(id=str(i), title="", question=q, context=c, answers=[])
                 for i, (q, c) in enumerate(pairs)]
    features, windows = squad.make_windows(questions, run.tokenizer, run.extra.get("max_seq_length", 384),
                                           run.extra.get("doc_stride", 128), run.extra.get("max_query_length", 64))
    return Prepared(features, len(pairs), questions=questions, windows=windows)


def mask_id(tokenizer, source: str | Path = "tokenizer") -> int:
    token_id = tokenizer.token_to_id(MASK_TOKEN)
    if token_id is None:
        raise CheckpointError(f"{source}: the tokenizer has no {MASK_TOKEN} token, so there is nothing to fill")
    return token_id


def prepare_masked(run: Run, texts: list[str], top_k: int = 5) -> Prepared:
    """Encode texts as `[CLS] text [SEP]` for filling their [MASK]s; each needs one at least, and must fit whole."""
    if run.head not in FILL_MASK_HEADS:
        raise ConfigError(f"{run.folder}: a {run.task} model, not a masked-language model; filling masks needs a "
                          f"pretraining run (architectures BertForMaskedLM or BertForPreTraining)")
    if not 1 <= top_k <= run.tokenizer.get_vocab_size():
        raise ConfigError(f"top_k must be between 1 and the vocabulary's {run.tokenizer.get_vocab_size()} tokens, "
                          f"not {top_k}")
    special, mask = special_ids(run.tokenizer), mask_id(run.tokenizer, run.folder)
    ids = []
    for i, (text, encoding) in enumerate(zip(texts, run.tokenizer.encode_batch(list(texts), add_special_tokens=False))):
        name = f"text {i + 1} ({_clip(text)})"
        if not text.strip():
            raise DataError(f"text {i + 1} is empty")
        if mask not in encoding.ids:
            raise DataError(f"{name} has no {MASK_TOKEN}: write {MASK_TOKEN} where a word is to be filled in")
        if len(encoding.ids) + 2 > run.max_seq_length:
            raise DataError(f"{name} is {len(encoding.ids) + 2} tokens long with [CLS] and [SEP]; the model "
                            f"reads at most {run.max_seq_length}, and cutting it could drop a {MASK_TOKEN}")
        ids.append([special.cls, *encoding.ids, special.sep])
    return Prepared(Features.from_lists(ids, [[0] * len(x) for x in ids]), len(texts), top_k=top_k)


def _clip(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def run_model(run: Run, features: Features, batch_size: int = 128) -> list:
    """The model over every feature, one output per feature in order: a logits row, (start, end) logits,
    or (fill-mask) a (masks, vocabulary) array of logits at its [MASK]s."""
    if not len(features):
        return []
    if run.head in FILL_MASK_HEADS:
        return _mask_logits(run, features, batch_size)
    outputs = predicting.predict(run.model, features, run.pad_id, torch.device("cpu"), batch_size, run.precision,
                               per_token=run.head == "qa")
    if run.head == "qa":
        return list(zip(*outputs))
    return list(outputs[0])


@torch.inference_mode()
def _mask_logits(run: Run, features: Features, batch_size: int) -> list[np.ndarray]:
    """The LM head on the [MASK] positions alone: scoring the whole vocabulary at every token would cost
    more than the encoder. Batches as `predicting.predict` cuts them (longest first, within a token budget)."""
    device, mask = torch.device("cpu"), mask_id(run.tokenizer)
    dtype = devices.resolve_precision(run.precision, device)
    outputs: list = [None] * len(features)
    for indices in eval_batches(features.lengths, batch_size, predicting.CPU_INFERENCE_TOKENS):
        batch = collate(features, indices, run.pad_id)
        positions = batch["input_ids"] == mask
        with devices.autocast(device, dtype):
            logits = run.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], positions=positions)
        logits = (logits[0] if isinstance(logits, tuple) else logits).float().numpy()
        # the rows come in row-major order of `positions`: each sequence's masks together, in order
        for i, rows in zip(indices, np.split(logits, np.cumsum(positions.sum(1).numpy())[:-1])):
            outputs[i] = rows
    return outputs


def finish(run: Run, prepared: Prepared, outputs: list) -> list:
    """One request's answers from its share of `run_model`'s outputs."""
    if run.head == "qa":
        return _answers(run, prepared, outputs)
    if run.head in FILL_MASK_HEADS:
        return [_candidates(run, logits, prepared.top_k) for logits in outputs]
    logits = np.stack(outputs) if outputs else np.zeros((0, len(run.labels)), np.float32)
    if len(prepared.features) != prepared.num_inputs:  # long texts as windows: average each input's windows
        logits = glue_encoding.average_by_example(logits, prepared.features.columns["example_index"], prepared.num_inputs)
    results = []
    for row, truncated in zip(np.asarray(logits, dtype=np.float64), prepared.truncated):
        if run.labels == ["score"]:
            results.append({"score": float(row[0]), "truncated": truncated})
            continue
        probabilities = np.exp(row - row.max())
        probabilities /= probabilities.sum()
        best = int(probabilities.argmax())
        results.append({"label": run.labels[best], "probability": float(probabilities[best]),
                        "probabilities": {label: float(p) for label, p in zip(run.labels, probabilities)},
                        "truncated": truncated})
    return results


def _candidates(run: Run, logits: np.ndarray, top_k: int) -> list[list[dict]]:
    """For each [MASK] of one text, its top_k tokens, most probable first, with their softmax probabilities."""
    results = []
    for row in np.asarray(logits, dtype=np.float64):
        probabilities = np.exp(row - row.max())
        probabilities /= probabilities.sum()
        best = np.argsort(-probabilities, kind="stable")[:top_k]
        results.append([{"token": run.tokenizer.id_to_token(int(i)), "token_id": int(i),
                         "probability": float(probabilities[i])} for i in best])
    return results


def _answers(run: Run, prepared: Prepared, outputs: list) -> list[dict]:
    starts = [start for start, _ in outputs]
    ends = [end for _, end in outputs]
    version_2 = run.extra.get("version", "1.1") == "2.0"
    predictions = squad.decode(prepared.questions, prepared.windows, starts, ends, run.extra.get("n_best", 20),
                               run.extra.get("max_answer_length", 30), version_2, run.extra.get("null_threshold", 0.0))
    counts = np.bincount(prepared.windows.example_index, minlength=len(prepared.questions))
    results = []
    for question, windows in zip(prepared.questions, counts):
        text = predictions.answers[question.id]
        best = next((e for e in predictions.nbest[question.id] if text and e["text"] == text), None)
        results.append({"answer": text, "score": best["score"] if best else None,
                        "probability": best["probability"] if best else None,
                        "start": best["char_start"] if best else None, "end": best["char_end"] if best else None,
                        "null_odds": predictions.null_odds[question.id], "windows": int(windows)})
    return results


# ---- many requests in one pass ------------------------------------------------------------------

def join(parts: list[Features]) -> Features:
    """Features of several requests end to end, columns included (their example_index stays per request)."""
    if len(parts) == 1:
        return parts[0]
    offsets = [np.zeros(1, np.int64)]
    base = 0
    for part in parts:
        offsets.append(part.offsets[1:] + base)
        base += int(part.offsets[-1])
    names = set(parts[0].columns).intersection(*(p.columns for p in parts[1:]))
    return Features(np.concatenate([p.ids for p in parts]), np.concatenate([p.type_ids for p in parts]),
                    np.concatenate(offsets), {n: np.concatenate([p.columns[n] for p in parts]) for n in names})


def run_many(run: Run, requests: list[Prepared], batch_size: int = 128) -> list[list]:
    """Answers for several prepared requests from one pass of the model over all their features."""
    outputs = run_model(run, join([r.features for r in requests]), batch_size)
    results, start = [], 0
    for request in requests:
        results.append(finish(run, request, outputs[start : start + len(request.features)]))
        start += len(request.features)
    return results


def classify(run: Run, texts: list[str], pairs: list[tuple[str, str]] | None = None) -> list[dict]:
    """Label texts, or text pairs: label, probability and every label's probability (regression: score)."""
    if pairs is not None:
        prepared = prepare_texts(run, [a for a, _ in pairs], [b for _, b in pairs])
    else:
        prepared = prepare_texts(run, texts)
    return run_many(run, [prepared])[0]


def answer(run: Run, pairs: list[tuple[str, str]]) -> list[dict]:
    """Answer (question, context) pairs; character offsets into each context; v2.0 runs may answer ""."""
    for question, context in pairs:
        if not question.strip() or not context.strip():
            raise DataError("a question and its context must both be non-empty")
    return run_many(run, [prepare_questions(run, pairs)])[0]


def fill_mask(run: Run, texts: list[str], top_k: int = 5) -> list[list[list[dict]]]:
    """For each text, for each of its [MASK]s in order, the top_k tokens: token, token_id and probability."""
    return run_many(run, [prepare_masked(run, texts, top_k)])[0]
