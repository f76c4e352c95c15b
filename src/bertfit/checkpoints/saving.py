"""Save a model as a Hugging Face folder, or as the tutorial's `bert_model.pth` with its tokenizer file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .. import tokenization
from ..files import folder_in_progress, open_atomic, replace_folder, save_tensors, write_atomic
from .families import FAMILIES
from .hf import hf_config, ours_to_hf
from .tokenizer_files import save_tokenizer
from .tutorial import ours_to_tutorial


def save_pretrained(model: torch.nn.Module, tokenizer: Tokenizer, folder: str | os.PathLike,
                    labels: list[str] | None = None, extra: dict | None = None) -> Path:
    """Write a Hugging Face folder that transformers' Auto classes load unchanged.

    Files are written to a temporary folder and renamed into place, so a crash leaves either the
    old folder or the new one, never half of each; a write that fails, or a folder it may not replace,
    leaves neither the temporary folder nor the parents made for it.
    """
    folder = Path(folder)
    config = hf_config(model, labels, extra)
    encoder = model.bert if hasattr(model, "bert") else model
    ids = tokenization.special_ids(tokenizer)
    config.update({name: getattr(ids, role) for name, role in FAMILIES[encoder.config.family].token_ids.items()})
    with folder_in_progress(folder) as tmp:  # this run's own: nothing of anyone else's is removed or mixed in
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_tensors(ours_to_hf(model), tmp / "model.safetensors", metadata={"format": "pt"})
        save_tokenizer(tokenizer, tmp, FAMILIES[encoder.config.family].tokenizer_class,
                       token_types=encoder.config.type_vocab_size > 1)  # RoBERTa's one type tells nothing
        return replace_folder(tmp, folder, marker="config.json")


def save_tutorial(model: torch.nn.Module, tokenizer: Tokenizer, folder: str | os.PathLike,
                  name: str = "bertfit", vocab_size: int | None = None,
                  pooler_seed: int | None = None) -> tuple[Path, Path]:
    """Write the encoder as the tutorial's `bert_model.pth` and the tokenizer as `<name>_wordpiece.json`,
    the files the tutorial's fine-tuning scripts (and `load_pretrained`) read; returns both paths.

    The .pth is the state dict of the tutorial's BertModel: a plain dict of tensors, readable with
    `torch.load(..., weights_only=True)`. It holds no config, so a reader assumes the tutorial's LayerNorm
    eps (1e-5) and hidden size / 64 heads; a model with other heads loads with `num_heads` (--num-heads).
    Its pooler is the model's; a model without one (an MLM model) writes none, unless `pooler_seed` is
    given: then one initialised as BERT's, from that seed, as the tutorial's BertModel always holds one.
    `vocab_size`: the word embeddings padded with zero rows to that many (the tutorial's BertConfig() has
    30,522); the tokenizer never produces the ids of the added rows. Each file is written whole or not at all.
    """
    folder = Path(folder)
    encoder = model.bert if hasattr(model, "bert") else model
    state = ours_to_tutorial(encoder)
    if pooler_seed is not None and "pooler.dense.weight" not in state:
        state.update(_fresh_pooler(encoder, pooler_seed))
    words = state["word_embeddings.weight"]
    if vocab_size is not None and vocab_size > len(words):
        state["word_embeddings.weight"] = torch.cat([words, words.new_zeros(vocab_size - len(words), words.shape[1])])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_path = write_atomic(folder / f"{name}_wordpiece.json", tokenizer.to_str(pretty=True))
    pth = folder / "bert_model.pth"
    with open_atomic(pth, "wb") as f:
        torch.save(state, f)
    return pth, tokenizer_path


def _fresh_pooler(encoder: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A pooler as BERT initialises one (weights N(0, initializer_range), bias 0), drawn from its own generator."""
    config = encoder.config
    dtype = encoder.embeddings.word_embeddings.weight.dtype
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(config.hidden_size, config.hidden_size, generator=generator) * config.initializer_range
    return {"pooler.dense.weight": weight.to(dtype), "pooler.dense.bias": torch.zeros(config.hidden_size, dtype=dtype)}
