"""After training: a finished run loaded once and asked many questions, on either engine. The one inference
layer behind `bertfit classify`, `qa`, `fill-mask`, `predict`, `bertfit serve` and the export's check.

`load_run` reads a run dir (or model folder, or ONNX export folder) once and refuses a head its weights
do not hold: a fresh, untrained head would answer differently at every load. Each task splits inference
in three steps, so a server can run the middle one for many requests at once: `prepare` encodes one
request's inputs as the run encoded its data (`tasks.glue.encode`, `tasks.squad.make_windows`), `run` is
the model over any number of prepared requests joined into one set of features (`predicting.predict`:
length-sorted batches, nothing padded beyond a batch's longest sequence), and `finish` turns one
request's share of the outputs into answers (windows averaged, softmax; or `tasks.squad.decode`).
`classify`, `answer` and `fill_mask` chain the three; `predict` writes GLUE's leaderboard files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import devices, onnx_engine, predicting
from .batching import Features, collate, eval_batches
from .checkpoints.hf import read_config_json
from .errors import CheckpointError, ConfigError, DataError
from .files import write_atomic
from .pretrained import load_pretrained
from .runs import model_folder
from .settings import PRECISIONS
from .tasks import glue, glue_encoding, glue_hub, glue_leaderboard, glue_tsv, squad
from .tokenization import special_ids

ENGINES = ("torch", "onnx")
FILL_MASK_HEADS = ("mlm", "pretraining")  # masked-language models: they fill [MASK]s
MASK_TOKEN = "[MASK]"
# What each question asks of a run: the heads that answer it (`load_run(..., need=...)`)
NEEDS = {"classify": ("classification",), "predict": ("classification",), "answer": ("qa",),
         "fill-mask": FILL_MASK_HEADS}
# A head is there when the weights file holds its tensors (Hugging Face names), whatever config.json says:
# a base model's config often names labels, and a head missing from the file would start from random weights.
HEAD_TENSORS = {"classification": ("classifier.weight",), "qa": ("qa_outputs.weight",),
                "mlm": ("cls.predictions.transform.dense.weight",),
                "pretraining": ("cls.predictions.transform.dense.weight", "cls.seq_relationship.weight")}
ARCHITECTURES = {"BertForSequenceClassification": "classification", "BertForQuestionAnswering": "qa",
                 "BertForMaskedLM": "mlm", "BertForPreTraining": "pretraining"}


@dataclass
class Run:
    """A trained model with what its run saved beside it (task, labels, encoding settings)."""

    folder: Path  # where config.json and the tokenizer were read
    head: str  # "classification", "qa", or (fill-mask) "mlm" or "pretraining"
    model: torch.nn.Module
    tokenizer: object
    labels: list[str]  # classification: one name per output (["score"] for regression); qa: []
    extra: dict  # the "bertfit" section of config.json: task, max_seq_length, null_threshold, ...
    engine: str
    precision: str  # what the model computes in: fp32 or bf16 ("auto" resolved); onnx: the file's, fp32 or int8
    source: Path | None = None  # the path load_run was given (a run dir, model folder or export folder)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where the torch model runs

    @property
    def task(self) -> str:
        if self.head in FILL_MASK_HEADS:
            return "fill-mask"
        return self.extra.get("task") or ("classification" if self.head == "classification" else "squad")

    @property
    def max_seq_length(self) -> int:
        default = {"classification": 128, "qa": 384}.get(self.head) or self.model_positions
        return self.extra.get("max_seq_length", default)

    @property
    def model_positions(self) -> int:
        if self.engine == "onnx":
            return json.loads((self.folder / "config.json").read_text()).get("max_position_embeddings", 512)
        return self.model.bert.config.max_position_embeddings

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


def weight_names(folder: Path) -> set[str]:
    """The tensor names of a model folder's weights file, read without loading the tensors where possible."""
    safetensors_file, torch_file = folder / "model.safetensors", folder / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(safetensors_file), framework="pt") as f:
                return set(f.keys())
        except Exception as exc:  # safetensors raises its own untyped errors for damaged files
            raise CheckpointError(f"{safetensors_file}: cannot read weights ({exc})") from None
    if torch_file.is_file():
        try:  # weights_only: a state dict of tensors loads, anything that would run code is refused
            state = torch.load(torch_file, map_location="meta", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{torch_file}: cannot read weights ({exc})") from None
        return set(state.get("state_dict", state)) if isinstance(state, dict) else set()
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")


def head_of(config: dict, names: set[str], source: Path) -> str:
    """The head a checkpoint holds trained weights for: the one config.json names when the weights file has
    its tensors, else the one the weights hold. A folder whose weights hold none is a base model."""
    held = [head for head, tensors in HEAD_TENSORS.items() if all(t in names for t in tensors)]
    named = [ARCHITECTURES[a] for a in config.get("architectures") or [] if a in ARCHITECTURES]
    for head in named:
        if head in held:
            return head
        if head == "pretraining" and "mlm" in held:
            return "mlm"
    if named and not held:
        raise CheckpointError(f"{source}: config.json names {named[0]} weights, but the weights file holds no "
                              f"{HEAD_TENSORS[named[0]][0]}: the head was never trained; fine-tune it first "
                              f"with `bertfit glue` or `bertfit squad`")
    for head in ("qa", "classification", "pretraining", "mlm"):
        if head in held:
            return head
    raise CheckpointError(f"{source}: a base model: its weights hold no trained head (no classifier, span head "
                          f"or masked-language head); fine-tune it first with `bertfit glue` or `bertfit squad`")


def refuse_unless(run: Run, need: str, run_dir: str | Path) -> None:
    """Stop with one line when a run cannot answer `need` (classify, predict, answer, fill-mask): say what it is for."""
    if need not in NEEDS:
        raise ValueError(f"need must be one of {', '.join(NEEDS)}, not {need!r}")
    if run.head in NEEDS[need]:
        return
    if run.head in FILL_MASK_HEADS:
        raise ConfigError(f"{run_dir}: a pretraining run (a masked-language model): it holds no "
                          f"{'classifier' if need in ('classify', 'predict') else 'span head'}, so it can only fill "
                          f"masks (`bertfit fill-mask {run_dir} TEXT`); fine-tune it first with "
                          f"`bertfit {'squad' if need == 'answer' else 'glue'}`")
    if need == "fill-mask":
        raise ConfigError(f"{run.folder}: a {run.task} model, not a masked-language model; filling masks needs a "
                          f"pretraining run (architectures BertForMaskedLM or BertForPreTraining)")
    if run.head == "qa":
        raise ConfigError(f"{run_dir}: a SQuAD run ({run.task}), not a classification run; ask it with "
                          f"`bertfit qa {run_dir} --question ... --context ...`")
    kind = f"GLUE {run.extra['task']}" if run.extra.get("task") else "classification"
    raise ConfigError(f"{run_dir}: a {kind} run, not a SQuAD run; `bertfit qa` needs a model from `bertfit squad` "
                      f"(this one labels text: `bertfit classify {run_dir} TEXT`)")


def labels_of(config: dict, source: Path) -> list[str]:
    """A classifier's output names: id2label, else transformers' LABEL_0, LABEL_1, ... for num_labels (2)."""
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(config.get("num_labels", 2))}
    if set(id2label) != {str(i) for i in range(len(id2label))}:
        raise CheckpointError(f"{source}: id2label must number its labels 0 to {len(id2label) - 1}, "
                              f"not {', '.join(sorted(id2label))}")
    # names for people where the task's files write numbers
    return glue.readable_labels([id2label[str(i)] for i in range(len(id2label))], (config.get("bertfit") or {}).get("task"))


def precision_name(precision: str, device: torch.device | None = None) -> str:
    """What `precision` (training's choices: fp16 needs a GPU) computes in on `device`, resolved as training
    resolves it."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return devices.precision_name(devices.resolve_precision(precision, device or torch.device("cpu")))


def pretraining_settings(folder: Path) -> dict:
    """The length a pretraining run trained at, for a run saved before config.json held it: from results.json
    beside its model (RUN/model) or export (RUN/onnx) folder; {} when there is none."""
    try:
        results = json.loads((folder.parent / "results.json").read_text(encoding="utf-8"))
        length = results["settings"]["max_seq_length"] if results.get("task") == "pretrain" else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return {"max_seq_length": length} if isinstance(length, int) and length > 0 else {}


def load_run(run_dir: str | Path, engine: str = "torch", precision: str = "auto", need: str | None = None,
             device: torch.device | None = None) -> Run:
    """Load a run dir (or model folder, or ONNX export folder) for inference with PyTorch or ONNX Runtime.

    Refuses a head its weights file does not hold; `need` ("classify", "predict", "answer", "fill-mask")
    also refuses a run of another kind, saying what it is for. `device`: where the torch model runs (CPU)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    device = device or torch.device("cpu")
    precision = precision_name(precision, device)  # a bad name fails now, not at the first request
    if engine == "onnx":
        onnx_engine.need_onnx()
        folder = onnx_engine.find_onnx_dir(run_dir)
        manifest = onnx_engine.read_manifest(folder)
        head = manifest["head"]
    else:
        folder = model_folder(run_dir)
    config_path = folder / "config.json"
    config = read_config_json(config_path)
    if engine == "torch":
        head = head_of(config, weight_names(folder), config_path)
    labels = labels_of(config, config_path) if head == "classification" else []
    extra = config.get("bertfit") or {}
    if head in FILL_MASK_HEADS and "max_seq_length" not in extra:
        extra = {**extra, **pretraining_settings(folder)}
    if need is not None:  # before the weights load: a wrong kind of run is told at once
        refuse_unless(Run(folder, head, None, None, labels, extra, engine, precision), need, run_dir)
    if engine == "onnx":
        model, tokenizer = onnx_engine.load_onnx_model(folder)
        # the file fixes the arithmetic (autocast would not reach ONNX Runtime), and onnx.json says which
        precision = onnx_engine.precision_of(manifest, folder)
    else:
        model, tokenizer = load_pretrained(folder, head=head, num_labels=len(labels) or 2)
        model.to(device)
    if head in FILL_MASK_HEADS:
        mask_id(tokenizer, folder)
        # a tokenizer built from vocab.txt has [MASK] as a word only: split it never, as transformers does
        tokenizer.add_special_tokens([MASK_TOKEN])
    return Run(folder, head, model.eval(), tokenizer, labels, extra, engine, precision, Path(run_dir), device)


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
    null_threshold: float | None = None  # qa, v2.0: None is the run's own

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


def prepare_questions(run: Run, pairs: list[tuple[str, str]], null_threshold: float | None = None) -> Prepared:
    """Encode (question, context) pairs as windows, as `bertfit squad` did for the run's evaluation.
    `null_threshold` (v2.0): answer empty when null minus best span exceeds it; None: the run's own."""
    questions = [squad.SquadQuestion(id=str(i), title="", question=q, context=c, answers=[])
                 for i, (q, c) in enumerate(pairs)]
    features, windows = squad.make_windows(questions, run.tokenizer, run.extra.get("max_seq_length", 384),
                                           run.extra.get("doc_stride", 128), run.extra.get("max_query_length", 64))
    return Prepared(features, len(pairs), questions=questions, windows=windows, null_threshold=null_threshold)


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
    outputs = predicting.predict(run.model, features, run.pad_id, run.device, batch_size, run.precision,
                               per_token=run.head == "qa")
    if run.head == "qa":
        return list(zip(*outputs))
    return list(outputs[0])


@torch.inference_mode()
def _mask_logits(run: Run, features: Features, batch_size: int) -> list[np.ndarray]:
    """The LM head on the [MASK] positions alone: scoring the whole vocabulary at every token would cost
    more than the encoder. Batches as `predicting.predict` cuts them (longest first, within a token budget)."""
    device, mask = run.device, mask_id(run.tokenizer)
    dtype = devices.resolve_precision(run.precision, device)
    outputs: list = [None] * len(features)
    for indices in eval_batches(features.lengths, batch_size, predicting.CPU_INFERENCE_TOKENS):
        batch = {k: v.to(device) for k, v in collate(features, indices, run.pad_id).items()}
        positions = batch["input_ids"] == mask
        with devices.autocast(device, dtype):
            logits = run.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], positions=positions)
        logits = (logits[0] if isinstance(logits, tuple) else logits).float().cpu().numpy()
        # the rows come in row-major order of `positions`: each sequence's masks together, in order
        for i, rows in zip(indices, np.split(logits, np.cumsum(positions.sum(1).cpu().numpy())[:-1])):
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
    threshold = prepared.null_threshold if prepared.null_threshold is not None else run.extra.get("null_threshold", 0.0)
    predictions = squad.decode(prepared.questions, prepared.windows, starts, ends, run.extra.get("n_best", 20),
                               run.extra.get("max_answer_length", 30), version_2, threshold)
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
    for i, text in enumerate(texts if pairs is None else [t for pair in pairs for t in pair]):
        if not text.strip():
            raise DataError(f"text {i + 1} is empty" if pairs is None else
                            f"pair {i // 2 + 1}: its {'first' if i % 2 == 0 else 'second'} text is empty")
    if pairs is not None:
        prepared = prepare_texts(run, [a for a, _ in pairs], [b for _, b in pairs])
    else:
        prepared = prepare_texts(run, texts)
    return run_many(run, [prepared])[0]


def answer(run: Run, pairs: list[tuple[str, str]], null_threshold: float | None = None) -> list[dict]:
    """Answer (question, context) pairs; character offsets into each context; v2.0 runs may answer "".
    `null_threshold` (v2.0): None is the run's own."""
    for i, (question, context) in enumerate(pairs):
        where = "" if len(pairs) == 1 else f" of pair {i + 1}"
        if not question.strip():
            raise DataError(f"the question{where} is empty")
        if not context.strip():
            raise DataError(f"the context{where} is empty")
    return run_many(run, [prepare_questions(run, pairs, null_threshold)])[0]


def fill_mask(run: Run, texts: list[str], top_k: int = 5) -> list[list[list[dict]]]:
    """For each text, for each of its [MASK]s in order, the top_k tokens: token, token_id and probability."""
    return run_many(run, [prepare_masked(run, texts, top_k)])[0]


# ---- GLUE leaderboard files ---------------------------------------------------------------------

def predict(run: Run, split: str = "test", data_dir: str | None = None, out_dir: str | Path | None = None,
            task_name: str | None = None, batch_size: int = 128) -> list[Path]:
    """Write GLUE leaderboard files (`index\tprediction`) for a classification run's test (or dev) split;
    `task_name` ax: the diagnostic set, with an MNLI run. Under torchrun each rank predicts its share."""
    refuse_unless(run, "predict", run.source or run.folder)
    name = task_name or run.extra.get("task") or ""
    if not task_name and name not in glue.GLUE_TASKS:
        raise ConfigError(f"{run.source}: a {name or 'classification'} run, not one of GLUE's tasks: `bertfit predict` "
                          f"writes GLUE leaderboard files; label your own texts with `bertfit classify`")
    task = glue.resolve_task(name)
    labels = tuple(run.labels)
    if task.labels is not None and labels not in (task.labels, task.label_names):  # e.g. AX, not an MNLI model
        raise ConfigError(f"{run.source}: the model predicts {', '.join(labels)}, but GLUE {task.name} "
                          f"needs {', '.join(task.labels)}")
    data_dir = data_dir or run.extra.get("data_dir")
    out_dir = Path(out_dir or Path(run.source or run.folder) / "predictions")
    splits = {"ax": ["test"], "mnli": [f"{split}_matched", f"{split}_mismatched"]}.get(task.name, [split])
    written = []
    for name in splits:
        examples = glue_tsv.read_glue_split(task, data_dir, name) if data_dir else glue_hub.load_hub_split(task, name)
        features, _ = glue_encoding.encode(examples, run.tokenizer, run.extra.get("max_seq_length", 128),
                                           run.extra.get("long_texts", "truncate"), run.extra.get("stride", 64))
        (logits,) = predicting.predict(run.model, features, run.pad_id, run.device, batch_size, run.precision)
        if len(features) != len(examples):
            logits = glue_encoding.average_by_example(logits, features.columns["example_index"], len(examples))
        predictions = glue.predictions_from_logits(task, logits)
        if name.startswith("test") or task.name == "ax":
            written.append(glue_leaderboard.write_submission(task, name, examples.indices, predictions, out_dir))
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{task.folder or task.name}-{name}.tsv"
            values = [f"{v:.3f}" for v in predictions] if task.is_regression else [task.labels[i] for i in predictions]
            write_atomic(path, "index\tprediction\n" + "".join(f"{i}\t{v}\n" for i, v in zip(examples.indices, values)))
            written.append(path)
    return written
