"""The model-file functions under their long-standing names; they live in `bertfit.checkpoints`, one module
per idea (each format's name table, tokenizer files, loading, saving)."""
from __future__ import annotations

from .checkpoints.hf import hf_to_ours, ours_to_hf, read_config
from .checkpoints.loading import (HEADS, build_model, embedded_model_path, load_pretrained, read_weights,
                                  resolve_model_path)
from .checkpoints.saving import save_pretrained, save_tutorial
from .checkpoints.tokenizer_files import load_tokenizer
from .checkpoints.tutorial import tutorial_to_ours

__all__ = ["HEADS", "build_model", "embedded_model_path", "hf_to_ours", "load_pretrained", "load_tokenizer",
           "ours_to_hf", "read_config", "read_weights", "resolve_model_path", "save_pretrained", "save_tutorial",
           "tutorial_to_ours"]
