"""The tutorial's format: `bert_model.pth`, the state dict of its BertModel (nn.MultiheadAttention blocks),
with the tokenizer as `<name>_wordpiece.json` beside it. The file holds no config: sizes are read off the
tensors, and its LayerNorm eps is nn.LayerNorm's default."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from ..model import BertConfig
from .hf import HF_QKV, hf_to_ours, is_head
from .names import NameTable, short_list

# The tutorial's name <-> ours. Its in_proj is already query;key;value, as our fused qkv.
TUTORIAL_NAMES = NameTable([
    ("word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    ("position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings_norm.{kind}", "embeddings.norm.{kind}"),
    ("blocks.{layer}.attention.in_proj_{kind}", "layers.{layer}.attention.qkv.{kind}"),
    ("blocks.{layer}.attention.out_proj.{kind}", "layers.{layer}.attention.out.{kind}"),
    ("blocks.{layer}.attn_norm.{kind}", "layers.{layer}.attention_norm.{kind}"),
    ("blocks.{layer}.feed_forward.0.{kind}", "layers.{layer}.intermediate.{kind}"),
    ("blocks.{layer}.feed_forward.2.{kind}", "layers.{layer}.output.{kind}"),
    ("blocks.{layer}.ff_norm.{kind}", "layers.{layer}.output_norm.{kind}"),
    ("pooler.dense.{kind}", "pooler.dense.{kind}"),
])
TUTORIAL_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which the tutorial keeps
TUTORIAL_VOCAB_SIZE = 30522  # the rows of the word embeddings in the tutorial's BertConfig()
TUTORIAL_MAX_POSITIONS = 512  # its max_seq_len


def tutorial_to_ours(weights: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Map the tutorial's state dict (bare BertModel, or its GLUE/SQuAD models with `bert.`) onto ours."""
    if any(HF_QKV.fullmatch(k.removeprefix("bert.")) for k in weights):
        return hf_to_ours(weights, source)
    state, unexpected = {}, []
    for key, tensor in weights.items():
        name = key.removeprefix("bert.")
        if (ours := TUTORIAL_NAMES.ours(name)) is not None:
            state[ours] = tensor
        elif is_head(name):
            state[name] = tensor
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {short_list(unexpected)} (not a tutorial BertModel state dict)")
    return state


def tutorial_holds(encoder: torch.nn.Module) -> bool:
    """Whether the tutorial's BertModel (post-norm blocks, a position table, biases) has a place for every tensor of
    the encoder (a ModernBERT's has none for its final norm, and no biases to leave out; an ALBERT's one block is
    not the tutorial's twelve)."""
    config = encoder.config
    return not config.pre_norm and config.positions == "absolute" and config.norm_bias and config.attention_bias \
        and config.mlp_bias and config.mlp == "gelu" and config.hidden_act == "gelu" and not config.shared_layers \
        and all(TUTORIAL_NAMES.theirs(k) for k in encoder.state_dict())


def ours_to_tutorial(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's state dict under the tutorial's names."""
    state = {}
    for key, tensor in encoder.state_dict().items():
        if (tutorial := TUTORIAL_NAMES.theirs(key)) is None:
            raise AssertionError(f"no tutorial name for {key}")
        state[tutorial] = tensor.detach().to("cpu").contiguous()
    return state


def config_from_shapes(state: dict[str, torch.Tensor], source: Path, num_heads: int | None) -> BertConfig:
    """The tutorial's .pth holds no config: read the sizes off the tensors."""
    try:
        vocab, hidden = state["embeddings.word_embeddings.weight"].shape
        positions = state["embeddings.position_embeddings.weight"].shape[0]
        types = state["embeddings.token_type_embeddings.weight"].shape[0]
        intermediate = state["layers.0.intermediate.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"{source}: missing tensor for {exc.args[0]}; cannot infer the model's sizes") from None
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
    heads = num_heads or max(1, hidden // 64)
    if hidden % heads:
        raise CheckpointError(f"{source}: hidden size {hidden} is not a multiple of {heads} heads; pass --num-heads")
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=intermediate, max_position_embeddings=positions, type_vocab_size=types,
                      layer_norm_eps=TUTORIAL_LAYER_NORM_EPS)


def tutorial_tokenizer_path(pth: Path) -> Path:
    """The tutorial's wikitext-2_wordpiece.json beside the .pth, a tokenizer.json, or the one other
    NAME_wordpiece.json there (what `save_tutorial` writes)."""
    candidates = [pth.with_name("wikitext-2_wordpiece.json"), pth.with_name("tokenizer.json")]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    named = sorted(pth.parent.glob("*_wordpiece.json"))
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise CheckpointError(f"{pth}: several tokenizers beside it ({', '.join(n.name for n in named)}); "
                              f"pass the right one explicitly (--tokenizer)")
    raise CheckpointError(
        f"{pth}: no tokenizer beside it (looked for {', '.join(c.name for c in candidates)}, *_wordpiece.json); "
        f"pass the tokenizer JSON file explicitly (--tokenizer)")
