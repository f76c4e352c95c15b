"""The Hugging Face format: a folder with config.json, model.safetensors (or pytorch_model.bin) and the
tokenizer files, as transformers' Auto classes read and write it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .. import heads
from ..errors import CheckpointError, ConfigError
from ..model import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification
from .families import BERT, FAMILIES, HEAD_MODULES, Family, of_config, supported
from .names import short_list

# BERT's table (the tutorial's format reads through it too); each family has its own (families.py). Query, key
# and value are three tensors there and one here (qkv).
HF_NAMES = BERT.names
HF_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)")
OUR_QKV = re.compile(r"layers\.(\d+)\.attention\.qkv\.(weight|bias)")


def _qkv_pattern(family: Family) -> re.Pattern | None:
    if family.qkv is None:  # one tensor, named in the family's table
        return None
    parts = re.split(r"\{(\w+)\}", family.qkv)
    groups = {"layer": r"(?P<layer>\d+)", "which": f"(?P<which>{'|'.join(family.qkv_names)})",
              "kind": "(?P<kind>weight|bias)"}
    return re.compile("".join(re.escape(p) if i % 2 == 0 else groups[p] for i, p in enumerate(parts)))


def is_head(name: str, family: Family = BERT) -> bool:
    """One of our heads' tensors (classifier, span head, LM head, NSP head), by our name."""
    return name.split(".", 1)[0] in HEAD_MODULES and any(
        table.theirs(name) is not None for table in (family.names, *family.head_names.values()))


def hf_to_ours(weights: dict[str, torch.Tensor], source: Path, family: Family = BERT,
               head: str = "base") -> dict[str, torch.Tensor]:
    """Map a family's Hugging Face names onto ours: encoder keys get no prefix, heads their names in our modules.
    `head`: the model they load into, where the family names a head's tensors by the head (ModernBERT)."""
    state, qkv, unexpected = {}, {}, []
    qkv_pattern, table = _qkv_pattern(family), family.table(head)
    for key, tensor in weights.items():
        name = key.removeprefix(family.prefix).replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias")
        if family.is_ignored(name):
            continue  # a buffer, a copy of the word embeddings, a head bertfit has no use for
        if name == family.tied_bias:
            state.setdefault("cls.bias", tensor)  # the LM head's own bias, where the file has it, wins
        elif qkv_pattern and (match := qkv_pattern.fullmatch(name)):
            qkv.setdefault((match["layer"], match["kind"]), {})[family.qkv_names.index(match["which"])] = tensor
        elif (ours := table.ours(name)) is not None:
            state[ours] = tensor
        elif family.knows(name):
            continue  # a tensor of another head than the one loaded
        else:
            unexpected.append(key)
    for (layer, kind), parts in qkv.items():
        if len(parts) < 3:
            missing = [n for i, n in enumerate(family.qkv_names) if i not in parts]
            raise CheckpointError(f"{source}: layer {layer} lacks attention {'/'.join(missing)} {kind}")
        state[f"layers.{layer}.attention.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]])
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {short_list(unexpected)}")
    return state


def ours_to_hf(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under its family's Hugging Face names (heads' encoders under the family's prefix, as
    transformers has it)."""
    encoder = model.bert if hasattr(model, "bert") else model
    family = FAMILIES[encoder.config.family]
    table = family.table(head_of_model(model))
    out = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if is_head(key, family):
            out[table.theirs(key)] = tensor
            continue
        prefix = family.prefix if key.startswith("bert.") else ""
        name = key.removeprefix("bert.")
        if family.qkv and (match := OUR_QKV.fullmatch(name)):
            layer, kind = match.groups()
            for which, part in zip(family.qkv_names, tensor.chunk(3)):
                out[prefix + family.qkv.format(layer=layer, which=which, kind=kind)] = part.contiguous()
        elif (hf := table.theirs(name)) is not None:
            out[prefix + hf] = tensor
        else:
            raise AssertionError(f"no Hugging Face name for {key}")
    return out


def head_of_model(model: torch.nn.Module) -> str:
    """The head a model of ours is built with (heads.py), "base" for the encoder alone."""
    return next((name for name, h in heads.WEIGHTED.items() if type(model) is h.model_class), "base")


# ---- config.json ----------------------------------------------------------------------------------

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
FLOAT_FIELDS = ("classifier_dropout", "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
                "initializer_range", "pooler_dropout", "global_rope_theta", "local_rope_theta", "qa_dropout")
BOOL_FIELDS = ("relative_attention", "share_att_key", "position_biased_input", "norm_bias", "attention_bias",
               "mlp_bias", "classifier_bias", "decoder_bias")
STRING_FIELDS = ("classifier_pooling", "sentence_activation", "norm_rel_ebd", "hidden_act")  # their values: BertConfig checks them
SMALLEST = {"pad_token_id": 0, "type_vocab_size": 0, "position_buckets": -1, "max_relative_positions": -1}


def read_config_json(path: Path) -> dict:
    """config.json as a dict, refusing what is not a JSON object in UTF-8 and fields bertfit reads in the wrong
    shape (architectures, id2label, the bertfit section)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: cannot read config: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: cannot read config: not valid JSON ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: config must be a JSON object, not {type(raw).__name__}")
    problems = []
    architectures = raw.get("architectures")
    if architectures is not None and not (isinstance(architectures, list)
                                          and all(isinstance(a, str) for a in architectures)):
        problems.append(f"architectures must be a list of class names, not {architectures!r}")
    id2label = raw.get("id2label")
    if id2label is not None and not (isinstance(id2label, dict) and all(isinstance(v, str) for v in id2label.values())):
        problems.append(f"id2label must be an object of label names, not {id2label!r}")
    if raw.get("bertfit") is not None and not isinstance(raw["bertfit"], dict):
        problems.append(f"the bertfit section must be an object, not {raw['bertfit']!r}")
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))
    return raw


def family_of(raw: dict, path: Path) -> Family:
    """The family a config.json's model_type names (BERT without one); one line naming those bertfit builds
    for any other."""
    family = of_config(raw)
    if family is None:
        raise CheckpointError(f"{path}: model_type is {raw.get('model_type')!r}; bertfit builds {supported()}")
    return family


def read_config(path: Path) -> BertConfig:
    """BertConfig from a Hugging Face config.json of a family bertfit builds, refusing fields that would build
    another network."""
    raw = read_config_json(path)
    family = family_of(raw, path)
    problems = []
    if family.rewrite_config is not None:
        raw, problems = family.rewrite_config(raw)
    activation = next((f for f in ("hidden_act", "hidden_activation") if f in family.written), "activation")
    if raw.get(activation, "gelu") != "gelu":
        problems.append(f"{activation} {raw[activation]!r} is not supported (these encoders use 'gelu')")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {raw['position_embedding_type']!r} is not supported")
    if raw.get("sinusoidal_pos_embds"):
        problems.append("sinusoidal_pos_embds (fixed sine positions) is not supported")
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        problems.append("decoder / cross-attention configs are not encoders")
    if raw.get("conv_kernel_size"):
        problems.append(f"conv_kernel_size {raw['conv_kernel_size']!r} (DeBERTa-v2-xlarge's convolution beside the "
                        f"first layer) is not supported")
    for name, ours in family.same_as.items():
        if name in raw and raw[name] != raw.get(family.their_field(ours), family.defaults.get(ours)):
            problems.append(f"{name} {raw[name]!r} differs from {family.their_field(ours)}, which bertfit's "
                            f"network needs it to equal")
    known = {family.their_field(f) for f in family.fields}
    ignored = HF_CONFIG_IGNORED | family.config_ignored | set(family.written)
    unknown = sorted(k for k in raw if k not in known and k not in ignored)
    if unknown:
        problems.append(f"unknown fields {', '.join(k if k.isidentifier() else repr(k) for k in unknown)}")
    fields = {family.config_names.get(k, k): v for k, v in raw.items() if k in known}
    for name, value in fields.items():
        problem = _field_problem(name, value)
        if problem:
            problems.append(problem)
    if not problems:
        fields = {**family.defaults, **fields, **family.parts, "family": family.name}
        if family.positions_after_padding:
            fields["position_offset"] = fields["pad_token_id"] + 1
        try:
            config = BertConfig(**fields)
        except (TypeError, ConfigError) as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))
    return config


def _field_problem(name: str, value) -> str | None:
    """What is wrong with one BertConfig field of a config.json, or None."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name in BOOL_FIELDS:
        return None if isinstance(value, bool) else f"{name} must be true or false, not {value!r}"
    if name in STRING_FIELDS:
        return None if isinstance(value, str) else f"{name} must be a string, not {value!r}"
    if name == "pos_att_type":
        names = value is None or isinstance(value, str) or (isinstance(value, list)
                                                            and all(isinstance(v, str) for v in value))
        return None if names else f"pos_att_type must be a list of c2p and p2c, not {value!r}"
    if name not in FLOAT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be an integer, not {value!r}"
        smallest = SMALLEST.get(name, 1)
        return f"{name} must be at least {smallest}, not {value}" if value < smallest else None
    if name == "classifier_dropout" and value is None:
        return None
    if not number:
        return f"{name} must be a number, not {value!r}"
    if name.endswith("_prob") or name in ("classifier_dropout", "pooler_dropout", "qa_dropout"):
        return None if 0 <= value < 1 else f"{name} must be in [0, 1), not {value}"
    return None if value > 0 else f"{name} must be positive, not {value}"


def hf_config(model: torch.nn.Module, labels: list[str] | None = None, extra: dict | None = None) -> dict:
    """config.json of a model: its family's fields under their names, the architecture transformers builds, its
    labels, bertfit's section."""
    encoder = model.bert if hasattr(model, "bert") else model
    family = FAMILIES[encoder.config.family]
    config = {family.their_field(f): getattr(encoder.config, f) for f in family.fields
              if f not in family.optional or getattr(encoder.config, f) is not None}
    config.update(family.written, model_type=family.model_types[0])
    head = head_of_model(model)
    config["architectures"] = [family.architecture(head)]
    if head != "base" and heads.WEIGHTED[head].labelled:
        names = labels or [f"LABEL_{i}" for i in range(model.num_labels)]
        config["id2label"] = {str(i): name for i, name in enumerate(names)}
        config["label2id"] = {name: i for i, name in enumerate(names)}
    if isinstance(model, BertForSequenceClassification):
        config["problem_type"] = "regression" if model.num_labels == 1 else "single_label_classification"
    elif isinstance(model, (BertForMaskedLM, BertForPreTraining)):
        # the file holds no decoder weight: transformers ties it to the word embeddings, as we do
        config["tie_word_embeddings"] = True
    if extra:
        config["bertfit"] = extra
    return config
