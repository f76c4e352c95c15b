"""The ONNX engine's reading side: an export folder found, its manifest read, its file run by ONNX Runtime.

`bertfit export` (export.py) writes the folder; inference.py reads it through this module alone, so the
inference layer never imports the exporter.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, ConfigError
from .heads import HEADS
from .pretrained import load_tokenizer

MANIFEST = "onnx.json"
# The graph's outputs, by head, with Hugging Face's names. A masked-language model's graph gives the
# logits of every position; the engine picks the [MASK] positions out of them, as the model does in PyTorch.
OUTPUT_NAMES = {name: list(head.outputs) for name, head in HEADS.items()}


class OnnxModel(nn.Module):
    """An ONNX Runtime session that is called like our model, so every inference path runs it unchanged:
    int64 tensors in, float32 tensors out (a tuple for the span head)."""

    def __init__(self, path: str | Path, head: str, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable files
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({exc})") from None
        self.path, self.head = Path(path), head
        # a family without token types (DistilBERT) exports no token_type_ids input
        self.input_names = {i.name for i in self.session.get_inputs()}

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, positions=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feeds = {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                 "token_type_ids": token_type_ids.cpu().numpy().astype(np.int64),
                 "attention_mask": attention_mask.cpu().numpy().astype(np.int64)}
        feeds = {name: value for name, value in feeds.items() if name in self.input_names}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        if len(outputs) > 1:  # the span head's start and end logits
            return tuple(outputs)
        if positions is not None:  # the masked-language model: (n_selected, vocab), as ours gives it
            return outputs[0][positions.cpu()]
        return outputs[0]


def need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export and the onnx engine need onnx and onnxruntime: "
                          "pip install 'bertfit[onnx]'") from None


def onnx_dir_of(run_dir: str | Path) -> Path:
    """Where a run's export goes by default: RUN/onnx (beside RUN/model)."""
    run_dir = Path(run_dir)
    return (run_dir.parent if run_dir.name == "model" and (run_dir / "config.json").exists() else run_dir) / "onnx"


def find_onnx_dir(run_dir: str | Path) -> Path:
    """The export folder of a run dir (RUN/onnx), or the folder itself when it is one."""
    run_dir = Path(run_dir)
    for folder in (run_dir, onnx_dir_of(run_dir)):
        if (folder / MANIFEST).is_file():
            return folder
    raise CheckpointError(f"{run_dir}: no ONNX export here (looked for {MANIFEST} in {run_dir} and "
                          f"{onnx_dir_of(run_dir)}); write one with `bertfit export {run_dir} --format onnx`")


def precision_of(manifest: dict, folder: Path) -> str:
    """What the export's engine file computes in, as onnx.json records it: int8 or fp32 (an export written
    before onnx.json named it says so by its `quantize`)."""
    precision = manifest.get("precision") or ("int8" if manifest.get("quantize") == "int8" else "fp32")
    if precision not in ("fp32", "int8"):
        raise CheckpointError(f"{folder / MANIFEST}: precision must be fp32 or int8, not {precision!r}")
    return precision


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / MANIFEST}: cannot read it ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("head") not in OUTPUT_NAMES or "engine_file" not in manifest:
        raise CheckpointError(f"{folder / MANIFEST}: not an export manifest written by `bertfit export`")
    return manifest


def load_onnx_model(folder: str | Path, threads: int | None = None):
    """(OnnxModel, tokenizer) from an export folder; the file is the one the export chose (int8 when quantized)."""
    need_onnx()
    folder = find_onnx_dir(folder)
    manifest = read_manifest(folder)
    path = folder / manifest["engine_file"]
    if not path.is_file():
        raise CheckpointError(f"{path}: missing ({MANIFEST} names it); export the run again")
    return OnnxModel(path, manifest["head"], threads), load_tokenizer(folder)
