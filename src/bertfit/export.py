"""ONNX export of a run's model (classifier, span head, masked-language model or sentence-embedding model) and
int8 dynamic quantization.

`export_onnx` writes a folder that holds everything inference needs: `model.onnx` (float32),
`model.int8.onnx` when quantized, the run's `config.json` and tokenizer files, and `onnx.json`
(which file the `onnx` engine runs, and how far each file is from PyTorch on the check inputs).
Inputs and outputs carry Hugging Face's names (`input_ids`, `token_type_ids`, `attention_mask`
-> `logits`, or `start_logits` / `end_logits`, or the pooled `sentence_embedding` of an embedding model, whose
sentence-transformers files go with it), with dynamic batch and sequence axes. The ONNX engine
that runs the folder is onnx_engine.py.

The export traces our own model with PyTorch's TorchScript-based exporter: the model takes
shortcuts by the values it sees (no mask when a batch has no padding, plain attention for short
sequences on CPU), and a trace records one path through them. The trace is taken on a padded
batch of short sequences, so the graph always applies the mask and computes attention as
`explicit_attention` does; both give the same numbers for any batch, which `check` verifies on
real sentences of other lengths before the files are kept.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import embedding, heads, tokenization
from .errors import CheckpointError, ConfigError
from .files import folder_in_progress, replace_folder
from .inference import FILL_MASK_HEADS, MASK_TOKEN, load_run
# the engine's reading side lives in onnx_engine; these names stay importable from here
from .onnx_engine import (MANIFEST, OUTPUT_NAMES, OnnxModel, find_onnx_dir, load_onnx_model,  # noqa: F401
                          need_onnx, onnx_dir_of, read_manifest)

OPSET = 17
INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
FILES = {None: "model.onnx", "int8": "model.int8.onnx"}
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")  # how the vectors are made

# The float32 graph must reproduce PyTorch to rounding. int8 weights move logits by amounts that depend
# on the model (what they cost in accuracy is measured by bench/export_speed.py); a difference of half
# the largest logit means the quantized graph no longer computes the model at all.
FP32_TOLERANCE = 1e-4
INT8_TOLERANCE = 0.5
# A sentence embedding is read by its direction. Dynamic int8 turns all-MiniLM-L6-v2's vectors by a cosine of
# about 0.97 on the check sentences (what that costs in retrieval is the bench's to measure); below 0.9 the graph
# no longer computes the model. onnx.json records each file's least cosine.
INT8_MIN_COSINE = 0.9

# Real text for the check: short and long, single sentences and pairs, so it covers padding and
# both token types. A QA run is checked on the questions against the passage.
CHECK_SENTENCES = [
    ("A gripping, beautifully acted film.", None),
    ("The plot meanders for two hours and never finds its footing, despite a strong cast and a score "
     "that tries hard to lift every scene it plays under.", None),
    ("Fine.", "It was fine."),
    ("Stocks fell sharply on Monday after the central bank's announcement.",
     "Markets dropped at the start of the week."),
]
CHECK_PASSAGE = (
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin spans seven "
    "million square kilometres, of which five and a half million are covered by the rainforest. The "
    "region includes territory belonging to nine nations; the majority of the forest is contained "
    "within Brazil, with 60% of the rainforest, followed by Peru with 13% and Colombia with 10%.")
CHECK_MASKED = [f"A gripping, beautifully {MASK_TOKEN} film.", f"{MASK_TOKEN}.",
                f"The plot meanders for two hours and never finds its {MASK_TOKEN}, despite a strong cast and a "
                f"score that tries hard to lift every {MASK_TOKEN} it plays under."]
CHECK_QUESTIONS = ["Which country holds most of the rainforest?", "How large is the basin?",
                   "What share of the forest lies in Peru?"]


class Exportable(nn.Module):
    """Our model with the attention mask as int64, as Hugging Face's ONNX models take it; a pretraining
    model gives its masked-token logits alone (the next-sentence head answers no inference question)."""

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, input_ids, token_type_ids, attention_mask):
        outputs = self.model(input_ids, token_type_ids, attention_mask.bool())
        return outputs[0] if self.head == "pretraining" else outputs


# ---- writing ------------------------------------------------------------------------------------

def export_onnx(run_dir: str | Path, output_dir: str | Path | None = None, quantize: str | None = None,
                say=print) -> dict:
    """Export a run's model to ONNX (and int8 with quantize="int8"), check it against PyTorch, write the folder.

    Returns what onnx.json records: the files, their sizes and their largest difference from PyTorch.
    An existing output folder is replaced only when it is an earlier export of the same run.
    """
    if quantize not in FILES:
        raise ConfigError(f"--quantize must be int8 (or not given), not {quantize!r}")
    need_onnx()
    run = load_run(run_dir, engine="torch", precision="fp32")
    out = Path(output_dir) if output_dir else onnx_dir_of(run_dir)
    source = str(run.folder.resolve())
    check_output(out, source, run_dir)
    target = out.resolve()  # `--output .` has no name of its own to put a temporary folder beside
    with folder_in_progress(target) as tmp:  # this run's own, so that cleaning up after a failure removes nothing else
        manifest = _write_export(run, tmp, quantize, source)
        load_run(tmp, engine="onnx")  # the folder serves as the inference layer reads it
        replace_folder(tmp, target, marker=MANIFEST)
    for name, figures in manifest["files"].items():
        size = figures["bytes"] / 2**20
        share = f", {figures['fraction_of_fp32_size']:.0%} of float32" if "fraction_of_fp32_size" in figures else ""
        say(f"wrote {out / name} ({size:.1f} MiB{share}; largest difference from PyTorch "
            f"{figures['max_abs_diff']:.2e} over {figures['checked_sequences']} sequences)")
    return {"output_dir": str(out), **manifest}


def check_output(out: Path, source: str, run_dir: str | Path) -> None:
    """Refuse an output folder that exists and is not an earlier export of this run: replacing it would
    delete files bertfit did not write (an empty folder holds none)."""
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"{out}: the current folder or one above it; --output names a folder of the export's own")
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; --output names the export folder to write")
    if not any(out.iterdir()):
        return
    try:
        earlier = read_manifest(out).get("source") if (out / MANIFEST).is_file() else None
    except CheckpointError:
        earlier = None
    if earlier != source:
        raise ConfigError(f"{out}: exists and is not an earlier export of {run_dir} (no {MANIFEST} naming "
                          f"{source}); bertfit replaces only its own export: choose another --output")
    ours = {*FILES.values(), "config.json", *TOKENIZER_FILES, MANIFEST, *(Path(n).parts[0] for n in SENTENCE_FILES)}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if others:  # the export is replaced whole: a file added to it since would go with it
        raise ConfigError(f"{out}: an earlier export of {run_dir}, but it also holds {', '.join(others[:5])}, which "
                          f"the export did not write and would not keep; move them, or choose another --output")


def _write_export(run, folder: Path, quantize: str | None, source: str) -> dict:
    """The model's ONNX file(s), each checked against PyTorch, with the config, tokenizer and onnx.json."""
    model = run.model.eval()
    inputs = check_inputs(run)
    fp32 = folder / FILES[None]
    per_token = {0: "batch", 1: "sequence"} if heads.HEADS[run.head].per_token else {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns at each shortcut the trace fixes (see the module docstring); the check below decides
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Exportable(model, run.head).eval(), _trace_batch(inputs), str(fp32), input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES[run.head],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES},
                          **{name: per_token for name in OUTPUT_NAMES[run.head]}},
            opset_version=OPSET, **_torchscript_exporter())
    files = {FILES[None]: check(fp32, model, run.head, inputs, FP32_TOLERANCE)}
    if quantize == "int8":
        int8 = folder / FILES["int8"]
        quantize_int8(fp32, int8)
        files[FILES["int8"]] = check(int8, model, run.head, inputs, INT8_TOLERANCE)
        files[FILES["int8"]]["fraction_of_fp32_size"] = int8.stat().st_size / fp32.stat().st_size
    manifest = {"engine_file": FILES[quantize], "precision": quantize or "fp32", "head": run.head, "opset": OPSET,
                "quantize": quantize,
                "torch": torch.__version__, "files": files, "source": source}
    shutil.copy(run.folder / "config.json", folder / "config.json")
    for name in TOKENIZER_FILES + (SENTENCE_FILES if run.head == "embedding" else ()):
        if (run.folder / name).exists():
            (folder / name).parent.mkdir(exist_ok=True)
            shutil.copy(run.folder / name, folder / name)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _torchscript_exporter() -> dict:
    """torch 2.5+ exports through torch.export unless told otherwise; 2.4 knows only the TorchScript exporter."""
    import inspect

    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization: int8 weights for every MatMul and the embedding tables, activations
    quantized per batch at run time (no calibration data), as ONNX Runtime recommends for transformers.

    Per-channel weights, since per-tensor ones lost more accuracy on a short SST-2 fine-tune.

    On CPUs without VNNI instructions ONNX Runtime multiplies uint8 activations by int8 weights with an
    instruction that saturates in 16 bits, so there the weights take 7 bits (`reduce_range`), as ONNX
    Runtime advises: with 8 bits, a SQuAD model's int8 logits fail the check against float32."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .devices import cpu_flags

    vnni = bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    # it logs a suggestion to pre-process the model for static quantization (dynamic needs none) on the root
    # logger: quiet while it runs, as the caller had it afterwards
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=not vnni)
    finally:
        root.setLevel(level)


def check_inputs(run) -> list[dict[str, np.ndarray]]:
    """Real sentences (or questions over a passage) encoded as the run encodes them, at the length it was
    trained at, one batch each: all of them padded together, and each alone (no padding)."""
    from .tasks import glue, glue_encoding, squad

    head, tokenizer, extra, max_len = run.head, run.tokenizer, run.extra, run.max_seq_length
    setting = lambda name: heads.setting(head, extra, name)
    if head == "classification":
        rows = []
        for a, b in CHECK_SENTENCES:
            examples = glue.Examples(texts_a=[a], texts_b=[b] if b else None, labels=None, indices=[0], source="check")
            features, _ = glue_encoding.encode(examples, tokenizer, max_len)
            rows.append((features.input_ids(0), features.token_type_ids(0)))
    elif head == "embedding":
        texts = [t for pair in CHECK_SENTENCES for t in pair if t]
        ids, _ = embedding.encode_texts(tokenizer, texts, max_len)
        rows = [(row, [0] * len(row)) for row in ids]
    elif head in FILL_MASK_HEADS or head == "tagging":  # the template around masked texts, or texts to tag
        layout, rows = tokenization.template(tokenizer), []
        texts = ([t.replace(MASK_TOKEN, tokenization.mask_token(tokenizer)) for t in CHECK_MASKED]
                 if head in FILL_MASK_HEADS else [a for a, _ in CHECK_SENTENCES])
        for text in texts:
            ids = layout.apply(tokenizer.encode(text, add_special_tokens=False).ids)[0][:max_len]
            rows.append((ids, [0] * len(ids)))
    else:
        questions = [squad.SquadQuestion(id=str(i), title="", question=q, context=CHECK_PASSAGE, answers=[])
                     for i, q in enumerate(CHECK_QUESTIONS)]
        features, _ = squad.make_windows(questions, tokenizer, max_len, setting("doc_stride"),
                                         setting("max_query_length"))
        rows = [(features.input_ids(i), features.token_type_ids(i)) for i in range(len(features))]
    pad = tokenization.special_ids(tokenizer).pad
    return [_pad(rows, pad)] + [_pad([row], pad) for row in rows]


def _pad(rows, pad_id: int) -> dict[str, np.ndarray]:
    width = max(len(ids) for ids, _ in rows)
    batch = {name: np.zeros((len(rows), width), np.int64) for name in INPUT_NAMES}
    batch["input_ids"][:] = pad_id
    for r, (ids, types) in enumerate(rows):
        batch["input_ids"][r, : len(ids)] = ids
        batch["token_type_ids"][r, : len(ids)] = types
        batch["attention_mask"][r, : len(ids)] = 1
    return batch


def _trace_batch(inputs: list[dict[str, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    """Two short sequences, one padded: the trace takes the masked, plain-attention path (module docstring)."""
    ids = np.array([[2, 5, 6, 7, 3], [2, 5, 3, 0, 0]], dtype=np.int64)  # any ids below the vocabulary size
    mask = (np.arange(5)[None, :] < np.array([[5], [3]])).astype(np.int64)
    return torch.from_numpy(ids), torch.zeros(2, 5, dtype=torch.int64), torch.from_numpy(mask)


def check(path: Path, model: nn.Module, head: str, inputs: list[dict[str, np.ndarray]], tolerance: float) -> dict:
    """Run the ONNX file and PyTorch on the same batches; raise when they differ by more than tolerance x
    the largest PyTorch logit (at least 1). Returns the size and the largest difference."""
    from . import embedding_metrics

    session = OnnxModel(path, head)
    worst, scale, sequences, least_cosine = 0.0, 1.0, 0, 1.0
    for batch in inputs:
        tensors = [torch.from_numpy(batch[name]) for name in INPUT_NAMES]
        with torch.no_grad():
            expected = model(tensors[0], tensors[1], tensors[2].bool())
            got = session(*tensors)
        if head == "pretraining":  # the next-sentence logits are not exported
            expected = expected[0]
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        mask = batch["attention_mask"].astype(bool)
        for e, g in zip(expected, got):
            e, g = e.numpy(), g.numpy()
            if heads.HEADS[head].per_token:  # logits at pads are never read
                e, g = e[mask], g[mask]
            if not np.isfinite(g).all():
                raise CheckpointError(f"{path}: ONNX Runtime returned non-finite outputs")
            worst = max(worst, float(np.abs(e - g).max()))
            scale = max(scale, float(np.abs(e).max()))
            if head == "embedding":
                least_cosine = min(least_cosine, float(embedding_metrics.cosines(e, g).min()))
        sequences += len(mask)
    if worst > tolerance * scale:
        raise CheckpointError(f"{path}: differs from the PyTorch model by {worst:.3g} on the check inputs "
                              f"(allowed: {tolerance * scale:.3g}); the export is not kept")
    if least_cosine < INT8_MIN_COSINE:
        raise CheckpointError(f"{path}: its sentence embeddings point away from PyTorch's (cosine {least_cosine:.4f} "
                              f"on the check inputs; at least {INT8_MIN_COSINE} is needed); the export is not kept")
    figures = {"bytes": path.stat().st_size, "max_abs_diff": worst, "largest_logit": scale,
               "checked_sequences": sequences // 2}  # each sequence is run twice: batched and alone
    if head == "embedding":
        figures["least_cosine"] = least_cosine
    return figures
