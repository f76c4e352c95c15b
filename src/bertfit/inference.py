"""After training: a finished run loaded once and asked many questions, on either engine. The one inference
layer behind `bertfit classify`, `qa`, `fill-mask`, `predict`, `bertfit serve` and the export's check.

`load_run` reads a run dir (or model folder, or ONNX export folder) once and refuses a head its weights
do not hold: a fresh, untrained head would answer differently at every load. Each task splits inference
in three steps, so a server can run the middle one for many requests at once: `prepare` encodes one
request's inputs as the run encoded its data (`tasks.glue.encode`, `tasks.squad.make_windows`), `run` is
the model over any number of prepared requests joined into one set of features (`predicting.predict`:
length-sorted batches, nothing padded beyond a batch's longest sequence), and `finish` turns one
request's share of the outputs into answers (windows averaged, softmax; or `tasks.squad.decode`).
`classify`, `answer`, `fill_mask` and `embed` chain the three; `predict` writes GLUE's leaderboard files.
A sentence-embedding model (a sentence-transformers folder, the embedded model's included) loads as head
"embedding": the encoder and the pooling its folder declares (`embedding.py`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import devices, embedding, heads, onnx_engine, predicting
from .batching import Features, collate, eval_batches
from .characters import lone_surrogate
from .checkpoints.families import BERT, FAMILIES, HEAD_TENSORS, of_config
from .checkpoints.hf import read_config, read_config_json
from .errors import CheckpointError, ConfigError, DataError, require_examples
from .files import write_atomic
from .pretrained import load_pretrained
from .runs import model_folder
from .settings import PRECISIONS
from .tasks import glue, glue_encoding, glue_hub, glue_leaderboard, glue_tsv, squad, tag_decoding, tagging
from .tokenization import mask_token, special_ids, template

ENGINES = ("torch", "onnx")
FILL_MASK_HEADS = heads.heads_answering("fill-mask")  # masked-language models: they fill [MASK]s
MASK_TOKEN = "[MASK]"  # what texts write for every family; RoBERTa's tokenizer reads it as its own <mask>
# What each question asks of a run: the heads that answer it (`load_run(..., need=...)`)
NEEDS = heads.NEEDS
# A head is there when the weights file holds its tensors (the family's names), whatever config.json says:
# a base model's config often names labels, and a head missing from the file would start from random weights.
ARCHITECTURES = {family.architecture(head): head for family in FAMILIES.values() for head in family.heads
                 if head in HEAD_TENSORS}


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
    sentence: embedding.SentenceConfig | None = None  # an embedding model: its pooling, normalising, length

    @property
    def task(self) -> str:
        if self.head in FILL_MASK_HEADS:
            return "fill-mask"
        return self.extra.get("task") or heads.HEADS[self.head].task

    @property
    def max_seq_length(self) -> int:
        if self.sentence is not None:
            return self.sentence.max_seq_length
        return self.setting("max_seq_length") or self.model_positions

    @property
    def model_positions(self) -> int:
        if self.engine == "onnx":
            return read_config(self.folder / "config.json").max_length  # RoBERTa's table holds 2 rows more
        return self.model.bert.config.max_length

    def setting(self, name: str):
        """An encoding setting of the run: its own, else its head's default (heads.py)."""
        return heads.setting(self.head, self.extra, name)

    @property
    def pad_id(self) -> int:
        return special_ids(self.tokenizer).pad

    def describe(self) -> dict:
        """What a client needs to know to call the model (GET /v1/models)."""
        info = {"task": self.task, "head": self.head, "engine": self.engine, "precision": self.precision,
                "max_seq_length": self.max_seq_length}
        if self.head == "classification":
            info.update(labels=self.labels, regression=self.labels == ["score"],
                        long_texts=self.setting("long_texts"))
        elif self.head in FILL_MASK_HEADS:
            info.update(mask_token=MASK_TOKEN)
        elif self.head == "embedding":
            info.update(self.sentence.describe())
        elif self.head == "tagging":
            info.update(labels=self.labels, scheme=self.setting("scheme"), stride=self.setting("stride"))
        else:
            info.update(version=self.setting("version"), null_threshold=self.setting("null_threshold"),
                        doc_stride=self.setting("doc_stride"))
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


def head_tensors(config: dict) -> dict[str, list[str]]:
    """The tensors that show each head trained, by the names config.json's family gives them in a weights file."""
    family = of_config(config) or BERT
    return {head: [family.table(head).theirs(t) for t in tensors] for head, tensors in HEAD_TENSORS.items()
            if all(family.table(head).theirs(t) for t in tensors)}


def held_heads(config: dict, names: set[str]) -> list[str]:
    """The heads whose tensors the weights file (tensor `names`) holds."""
    return [head for head, tensors in head_tensors(config).items() if all(t in names for t in tensors)]


def head_of(config: dict, names: set[str], source: Path) -> str:
    """The head a checkpoint holds trained weights for: the one config.json names when the weights file has
    its tensors, else the one the weights hold. A folder whose weights hold none is a base model."""
    held = held_heads(config, names)
    named = [ARCHITECTURES[a] for a in config.get("architectures") or [] if a in ARCHITECTURES]
    for head in named:
        if head in held:
            return head
        if head == "pretraining" and "mlm" in held:
            return "mlm"
    if named and not held:
        raise CheckpointError(f"{source}: config.json names {named[0]} weights, but the weights file holds no "
                              f"{head_tensors(config)[named[0]][0]}: the head was never trained; fine-tune it first "
                              f"with `bertfit glue` or `bertfit squad`")
    family = of_config(config) or BERT
    if family.head_names and len(held) > 1:  # the heads' tensors share their names: only config.json tells them apart
        raise CheckpointError(f"{source}: a {family.name} model whose weights could be any of its "
                              f"{', '.join(held)} heads, and config.json's architectures names none of them; "
                              f"set architectures (e.g. [\"{family.architecture(held[0])}\"])")
    for head in heads.HEADS:  # in the order heads.py tries them
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
    if need == "embed":
        raise ConfigError(f"{run_dir}: a {run.task} run, not a sentence-embedding model; embeddings need a "
                          f"sentence-transformers folder (modules.json, 1_Pooling/config.json), e.g. the embedded model")
    if run.head == "embedding":
        raise ConfigError(f"{run_dir}: a sentence-embedding model: it holds no "
                          f"{ {'answer': 'span head', 'fill-mask': 'masked-language head', 'tag': 'token classifier'}.get(need, 'classifier')}"
                          f", so it can only embed texts (`bertfit embed {run_dir} TEXT`)")
    if need == "tag":
        raise ConfigError(f"{run_dir}: a {run.task} run, not a token-classification run; `bertfit tag` needs a model "
                          f"from `bertfit ner`")
    if run.head == "tagging":
        raise ConfigError(f"{run_dir}: a token-classification run ({run.task}); it labels each word of a text: "
                          f"`bertfit tag {run_dir} TEXT`")
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
    if str(run_dir) == "embedded":  # the model shipped with bertfit, a sentence-embedding model
        from .pretrained import embedded_model_path

        run_dir = embedded_model_path()
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
        names = weight_names(folder)
        # a sentence-transformers folder holds a base encoder; one with a trained head answers for the head
        held = bool(held_heads(config, names))
        sentence_folder = embedding.is_sentence_folder(folder)
        if need == "embed" and not sentence_folder and not held:  # a base model: say what is missing
            raise CheckpointError(embedding.no_pooling_message(folder))
        head = "embedding" if sentence_folder and not held else head_of(config, names, config_path)
    sentence = None
    if head == "embedding":  # its files are read, and refused, before the weights load
        sentence = embedding.read_sentence_config(folder, config.get("hidden_size", 768),
                                                  config.get("max_position_embeddings", 512))
    labels = labels_of(config, config_path) if heads.HEADS[head].labelled else []
    extra = config.get("bertfit") or {}
    if head in FILL_MASK_HEADS and "max_seq_length" not in extra:
        extra = {**extra, **pretraining_settings(folder)}
    if need is not None:  # before the weights load: a wrong kind of run is told at once
        refuse_unless(Run(folder, head, None, None, labels, extra, engine, precision, sentence=sentence), need, run_dir)
    if engine == "onnx":
        model, tokenizer = onnx_engine.load_onnx_model(folder)
        # the file fixes the arithmetic (autocast would not reach ONNX Runtime), and onnx.json says which
        precision = onnx_engine.precision_of(manifest, folder)
    elif head == "embedding":
        encoder, tokenizer = load_pretrained(folder, head="base")
        model = embedding.SentenceEmbedder(encoder, sentence.pooling).to(device)
    else:
        model, tokenizer = load_pretrained(folder, head=head, num_labels=len(labels) or 2)
        model.to(device)
    if head in FILL_MASK_HEADS:
        mask_id(tokenizer, folder)
        # a tokenizer built from vocab.txt has [MASK] as a word only: split it never, as transformers does. One whose
        # file declares it keeps the file's own (ModernBERT's takes the space before it: lstrip)
        own = mask_token(tokenizer)
        if not any(added.content == own for added in tokenizer.get_added_tokens_decoder().values()):
            tokenizer.add_special_tokens([own])
    return Run(folder, head, model.eval(), tokenizer, labels, extra, engine, precision, Path(run_dir), device,
               sentence)


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
    normalize: bool | None = None  # embeddings: unit length; None: as the model's folder says
    pieces: list[tag_decoding.TextPieces] = field(default_factory=list)  # tagging: each text's sub-tokens
    aggregation: str = "first"  # tagging: how sub-tokens become entities (tag_decoding.STRATEGIES)

    @property
    def num_tokens(self) -> int:
        return int(self.features.offsets[-1])


def prepare_texts(run: Run, texts_a: list[str], texts_b: list[str] | None = None) -> Prepared:
    """Encode texts (or pairs) as `bertfit glue` encoded the run's data: its max length, truncation or windows."""
    examples = glue.Examples(texts_a=list(texts_a), texts_b=list(texts_b) if texts_b is not None else None,
                             labels=None, indices=list(range(len(texts_a))), source="request")
    max_len, long_texts = run.setting("max_seq_length"), run.setting("long_texts")
    features, stats = glue_encoding.encode(examples, run.tokenizer, max_len, long_texts, run.setting("stride"))
    truncated = [False] * len(texts_a)
    if stats.num_truncated:
        truncated = _truncated(run, examples, max_len, long_texts)
    return Prepared(features, len(texts_a), truncated=truncated)


def _truncated(run: Run, examples: glue.Examples, max_len: int, long_texts: str) -> list[bool]:
    """Which inputs lost tokens, by the rule `glue.encode` applies (it counts them; this names them)."""
    special = template(run.tokenizer).num_special(pair=examples.texts_b is not None)  # 4 in RoBERTa's pairs
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
    features, windows = squad.make_windows(questions, run.tokenizer, run.setting("max_seq_length"),
                                           run.setting("doc_stride"), run.setting("max_query_length"))
    return Prepared(features, len(pairs), questions=questions, windows=windows, null_threshold=null_threshold)


def prepare_embed(run: Run, texts: list[str], normalize: bool | None = None, truncate: bool = True) -> Prepared:
    """Encode texts as `[CLS] text [SEP]`, cut to the model's max_seq_length as sentence-transformers cuts them
    (the cut ones marked in `truncated`; `truncate=False` refuses them instead, as TEI and OpenAI do).
    `normalize`: unit-length vectors; None: as the model's folder says."""
    if run.head != "embedding":
        raise ConfigError(f"{run.folder}: a {run.task} model, not a sentence-embedding model")
    for i, text in enumerate(texts):
        check_text(text, f"text {i + 1}")
    ids, truncated = embedding.encode_texts(run.tokenizer, texts, run.max_seq_length)
    if not truncate and any(truncated):
        i = truncated.index(True)
        length = len(run.tokenizer.encode(texts[i], add_special_tokens=False).ids) + 2
        raise DataError(f"text {i + 1} is {length} tokens long with [CLS] and [SEP]; the model reads at most "
                        f"{run.max_seq_length}: send a shorter text, or ask for truncation")
    return Prepared(Features.from_lists(ids, [[0] * len(x) for x in ids]), len(texts), truncated=truncated,
                    normalize=normalize)


def prepare_tags(run: Run, texts: list[str], aggregation: str = "first") -> Prepared:
    """Encode raw texts for tagging: each text's sub-tokens, in overlapping windows when it is longer than the
    run's max_seq_length (each sub-token read in the window where it has the most context)."""
    tag_decoding.check_strategy(aggregation)
    special = special_ids(run.tokenizer)
    room, stride = run.max_seq_length - 2, run.setting("stride")
    pieces, ids, example_index, token_rows = [], [], [], []
    for t, text in enumerate(texts):
        check_text(text, f"text {t + 1}")
        found = tag_decoding.text_pieces(run.tokenizer, text)
        pieces.append(found)
        spans = tagging.windows([True] * len(found.ids), room, stride)
        owner = tagging.owners(list(range(len(found.ids))), spans)
        for k, (start, end) in enumerate(spans):
            ids.append([special.cls, *found.ids[start:end], special.sep])
            example_index.append(t)
            row = np.full(len(ids[-1]), -1, np.int32)
            for p in range(start, end):
                if owner[p] == k:
                    row[p - start + 1] = p
            token_rows.append(row)
    width = run.max_seq_length  # one width for every request, so that a batch of them joins
    word_ids = np.stack([np.pad(r, (0, width - len(r)), constant_values=-1) for r in token_rows])
    features = Features.from_lists(ids, [[0] * len(x) for x in ids], example_index=np.asarray(example_index, np.int64),
                                   word_ids=word_ids)
    return Prepared(features, len(texts), pieces=pieces, aggregation=aggregation)


def _entities(run: Run, prepared: Prepared, outputs: list) -> list[list[dict]]:
    """Each text's entities (tag_decoding.aggregate) from its windows' logits, each sub-token read once."""
    counts = [len(p.ids) for p in prepared.pieces]
    per_token = tagging.word_logits(prepared.features, outputs, counts) if outputs else []
    decoder = run.tokenizer.decoder
    return [tag_decoding.aggregate(p, tag_decoding.softmax(np.asarray(logits, np.float64)), run.labels,
                                   prepared.aggregation, decoder) for p, logits in zip(prepared.pieces, per_token)]


def check_text(text: str, name: str) -> None:
    """Refuse an empty text, or one the tokenizer cannot take (a lone surrogate: a TypeError there), by `name`."""
    if not text.strip():
        raise DataError(f"{name} is empty")
    if why := lone_surrogate(text):
        raise DataError(f"{name} {why}")


def mask_id(tokenizer, source: str | Path = "tokenizer") -> int:
    token_id = special_ids(tokenizer).mask
    if token_id is None:
        raise CheckpointError(f"{source}: the tokenizer has no {MASK_TOKEN} token, so there is nothing to fill")
    return token_id


def prepare_masked(run: Run, texts: list[str], top_k: int = 5, max_masks: int | None = None) -> Prepared:
    """Encode texts as `[CLS] text [SEP]` for filling their [MASK]s; each needs one at least, and must fit whole.
    `max_masks`: the most [MASK]s the texts may hold together (None: no limit)."""
    if run.head not in FILL_MASK_HEADS:
        raise ConfigError(f"{run.folder}: a {run.task} model, not a masked-language model; filling masks needs a "
                          f"pretraining run (architectures BertForMaskedLM or BertForPreTraining)")
    if not 1 <= top_k <= run.tokenizer.get_vocab_size():
        raise ConfigError(f"top_k must be between 1 and the vocabulary's {run.tokenizer.get_vocab_size()} tokens, "
                          f"not {top_k}")
    if max_masks is not None and max_masks < 1:
        raise ConfigError(f"--max-masks must be at least 1, not {max_masks}")
    layout, mask = template(run.tokenizer), mask_id(run.tokenizer, run.folder)
    own = mask_token(run.tokenizer)
    ids = []
    for i, (text, encoding) in enumerate(zip(texts, run.tokenizer.encode_batch(
            [text.replace(MASK_TOKEN, own) for text in texts], add_special_tokens=False))):
        name = f"text {i + 1} ({_clip(text)})"
        if not text.strip():
            raise DataError(f"text {i + 1} is empty")
        if mask not in encoding.ids:
            raise DataError(f"{name} has no {MASK_TOKEN}: write {MASK_TOKEN} where a word is to be filled in")
        length = len(encoding.ids) + layout.num_special(pair=False)
        if length > run.max_seq_length:
            raise DataError(f"{name} is {length} tokens long with [CLS] and [SEP]; the model "
                            f"reads at most {run.max_seq_length}, and cutting it could drop a {MASK_TOKEN}")
        ids.append(layout.apply(encoding.ids)[0])
    masks = sum(sequence.count(mask) for sequence in ids)
    if max_masks is not None and masks > max_masks:
        raise DataError(f"the {'text holds' if len(texts) == 1 else 'texts hold'} {masks} {MASK_TOKEN}s; at most "
                        f"{max_masks} in one request (--max-masks): send fewer, or split them over requests")
    return Prepared(Features.from_lists(ids, [[0] * len(x) for x in ids]), len(texts), top_k=top_k)


def _clip(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def run_model(run: Run, features: Features, batch_size: int = 128, top_k: int = 5) -> list:
    """The model over every feature, one output per feature in order: a logits row, (start, end) logits,
    or (fill-mask) the `top_k` candidates of each of its [MASK]s (`MaskCandidates`)."""
    if not len(features):
        return []
    if run.head in FILL_MASK_HEADS:
        return _mask_candidates(run, features, batch_size, top_k)
    outputs = predicting.predict(run.model, features, run.pad_id, run.device, batch_size, run.precision,
                               per_token=heads.HEADS[run.head].per_token)
    if run.head == "qa":
        return list(zip(*outputs))
    return list(outputs[0])


# Vocabulary scores one fill-mask batch may hold at once (64 MiB of float32): the LM head scores a whole
# vocabulary per [MASK] (the ONNX graph per token), so a batch of 2,048 masks would hold 250 MiB.
MASK_BATCH_SCORES = 1 << 24
# Rows whose softmax is summed in float64 at a time: the float64 copy of a row stays small
SOFTMAX_ROWS = 64


@dataclass
class MaskCandidates:
    """One sequence's [MASK]s, each with its most probable tokens, best first: what a fill-mask pass keeps."""

    token_ids: np.ndarray  # (masks, k) int64
    probabilities: np.ndarray  # (masks, k) float64: softmax over the whole vocabulary


@torch.inference_mode()
def _mask_candidates(run: Run, features: Features, batch_size: int, top_k: int) -> list[MaskCandidates]:
    """The LM head on the [MASK] positions alone (scoring the whole vocabulary at every token would cost more
    than the encoder), and of each mask's vocabulary row only its `top_k` tokens kept: the row itself is
    dropped in the pass, so a request's answer holds k tokens per mask, not the vocabulary."""
    device, mask = run.device, mask_id(run.tokenizer)
    dtype = devices.resolve_precision(run.precision, device)
    max_tokens = max(1, MASK_BATCH_SCORES // run.tokenizer.get_vocab_size())
    outputs: list = [None] * len(features)
    for indices in eval_batches(features.lengths, batch_size, max_tokens):
        batch = {k: v.to(device) for k, v in collate(features, indices, run.pad_id).items()}
        positions = batch["input_ids"] == mask
        with devices.autocast(device, dtype):
            logits = run.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], positions=positions)
        token_ids, probabilities = top_tokens((logits[0] if isinstance(logits, tuple) else logits).float().cpu(), top_k)
        del logits
        # the rows come in row-major order of `positions`: each sequence's masks together, in order
        cuts = np.cumsum(positions.sum(1).cpu().numpy())[:-1]
        for i, ids, probs in zip(indices, np.split(token_ids, cuts), np.split(probabilities, cuts)):
            outputs[i] = MaskCandidates(ids, probs)
    return outputs


def top_tokens(logits: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` most probable tokens, best first, and their softmax probabilities over the whole row:
    (ids, probabilities), each (rows, k). Equal scores keep the lower id first, as a stable sort of the row does
    (bf16 logits tie often); `topk` alone orders ties, and picks among ties at the k-th place, as it likes."""
    k = min(k, logits.shape[-1])
    if not len(logits):
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float64)
    log_total = torch.cat([torch.logsumexp(rows.double(), -1) for rows in logits.split(SOFTMAX_ROWS)])
    values, ids = logits.topk(k, -1)
    ids, values = ids.numpy(), values.numpy()
    order = np.argsort(ids, axis=1)  # by id, then stably by score: ties keep the lower id first
    ids, values = np.take_along_axis(ids, order, 1), np.take_along_axis(values, order, 1)
    order = np.argsort(-values, axis=1, kind="stable")
    ids, values = np.take_along_axis(ids, order, 1), np.take_along_axis(values, order, 1)
    # a tie at the k-th place: topk chose among the tied tokens; the stable sort takes the lowest ids
    tied = ((logits >= torch.from_numpy(values[:, -1:])).sum(-1) > k).nonzero().flatten().tolist()
    for row in tied:
        kept = (logits[row] >= float(values[row, -1])).nonzero().flatten().numpy()  # ascending ids
        best = kept[np.argsort(-logits[row, kept].numpy(), kind="stable")[:k]]
        ids[row], values[row] = best, logits[row, best].numpy()
    probabilities = np.exp(values.astype(np.float64) - log_total.numpy()[:, None])
    return ids.astype(np.int64), probabilities


def finish(run: Run, prepared: Prepared, outputs: list) -> list:
    """One request's answers from its share of `run_model`'s outputs."""
    if run.head == "qa":
        return _answers(run, prepared, outputs)
    if run.head in FILL_MASK_HEADS:
        return [_candidates(run, candidates, prepared.top_k) for candidates in outputs]
    if run.head == "embedding":
        vectors = np.stack(outputs) if outputs else np.zeros((0, run.sentence.dimensions), np.float32)
        if run.sentence.normalize if prepared.normalize is None else prepared.normalize:
            vectors = embedding.normalize(vectors)
        tokens = prepared.features.lengths
        return [{"embedding": vector, "truncated": truncated, "tokens": int(n)}
                for vector, truncated, n in zip(vectors, prepared.truncated, tokens)]
    if run.head == "tagging":
        return _entities(run, prepared, outputs)
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


def _candidates(run: Run, candidates: MaskCandidates, top_k: int) -> list[list[dict]]:
    """For each [MASK] of one text, its top_k tokens, most probable first, with their softmax probabilities."""
    return [[{"token": run.tokenizer.id_to_token(int(i)), "token_id": int(i), "probability": float(p)}
             for i, p in zip(ids[:top_k], probabilities[:top_k])]
            for ids, probabilities in zip(candidates.token_ids, candidates.probabilities)]


def _answers(run: Run, prepared: Prepared, outputs: list) -> list[dict]:
    starts = [start for start, _ in outputs]
    ends = [end for _, end in outputs]
    version_2 = run.setting("version") == "2.0"
    threshold = prepared.null_threshold if prepared.null_threshold is not None else run.setting("null_threshold")
    predictions = squad.decode(prepared.questions, prepared.windows, starts, ends, run.setting("n_best"),
                               run.setting("max_answer_length"), version_2, threshold)
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
    outputs = run_model(run, join([r.features for r in requests]), batch_size, max(r.top_k for r in requests))
    results, start = [], 0
    for request in requests:
        results.append(finish(run, request, outputs[start : start + len(request.features)]))
        start += len(request.features)
    return results


def classify(run: Run, texts: list[str], pairs: list[tuple[str, str]] | None = None) -> list[dict]:
    """Label texts, or text pairs: label, probability and every label's probability (regression: score)."""
    for i, text in enumerate(texts if pairs is None else [t for pair in pairs for t in pair]):
        check_text(text, f"text {i + 1}" if pairs is None else
                   f"pair {i // 2 + 1}: its {'first' if i % 2 == 0 else 'second'} text")
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
        for name, text in (("question", question), ("context", context)):
            check_text(text, f"the {name}{where}")
    return run_many(run, [prepare_questions(run, pairs, null_threshold)])[0]


def tag(run: Run, texts: list[str], aggregation: str = "first") -> list[list[dict]]:
    """Each text's entities with character offsets, as transformers' token-classification pipeline gives them
    under `aggregation` (none, simple, first, average, max): entity_group (none: entity), score, word, start, end."""
    return run_many(run, [prepare_tags(run, texts, aggregation)])[0]


def fill_mask(run: Run, texts: list[str], top_k: int = 5, max_masks: int | None = None) -> list[list[list[dict]]]:
    """For each text, for each of its [MASK]s in order, the top_k tokens: token, token_id and probability.
    `max_masks`: refuse texts holding more [MASK]s than this, together (None: no limit)."""
    return run_many(run, [prepare_masked(run, texts, top_k, max_masks)])[0]


@dataclass
class Embeddings:
    """One vector per text, in order, and what reading the texts cost: the tokens read, which texts were cut."""

    vectors: np.ndarray  # (texts, dimensions) float32
    truncated: list[bool]  # the text was longer than max_seq_length and lost its end
    tokens: list[int]  # tokens read per text, [CLS] and [SEP] included

    @property
    def num_truncated(self) -> int:
        return sum(self.truncated)


def embed(run: Run, texts: list[str], normalize: bool | None = None, batch_size: int = 128) -> Embeddings:
    """Sentence embeddings of texts as sentence-transformers' `encode` makes them with the model's folder.
    `normalize`: unit-length vectors; None: as the folder's modules say (a Normalize module)."""
    refuse_unless(run, "embed", run.source or run.folder)
    results = run_many(run, [prepare_embed(run, texts, normalize)], batch_size)[0]
    vectors = (np.stack([r["embedding"] for r in results]) if results
               else np.zeros((0, run.sentence.dimensions), np.float32))
    return Embeddings(vectors.astype(np.float32, copy=False), [r["truncated"] for r in results],
                      [r["tokens"] for r in results])


NEGATIVE_LABELS = ("0", "no", "not", "non", "negative", "false", "irrelevant", "unrelated", "contradiction")


def positive_label(labels: list[str]) -> int:
    """Which of a two-label classifier's labels means "relevant" to a reranker: the one label not named as a
    negative (MRPC's equivalent, QNLI's entailment, a file's 1), else the second, as transformers' pipelines take it."""
    kept = [i for i, label in enumerate(labels) if not label.lower().replace("-", "_").startswith(NEGATIVE_LABELS)]
    return kept[0] if len(kept) == 1 else 1


def relevance(run: Run, prediction: dict, raw: bool = False) -> float:
    """A cross-encoder's score of one (query, passage) prediction of `classify`: a regression run's score; a
    two-label run's probability of its positive label (`raw`: the log-odds, the logit margin)."""
    if "score" in prediction:
        return prediction["score"]
    label = run.labels[positive_label(run.labels)]
    p = prediction["probabilities"][label]
    if not raw:
        return p
    return float(np.log(max(p, 1e-45)) - np.log(max(1.0 - p, 1e-45)))


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
        require_examples(len(examples), examples.source, "examples to predict", examples.num_read, examples.num_skipped)
        features, _ = glue_encoding.encode(examples, run.tokenizer, run.setting("max_seq_length"),
                                           run.setting("long_texts"), run.setting("stride"))
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
