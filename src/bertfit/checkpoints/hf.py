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
from .names import NameTable, short_list

# Hugging Face name (after the "bert." prefix a head's encoder has) <-> ours. Query, key and value are three
# tensors there and one here (QKV, below). The heads come last; their names have no "bert." prefix.
HF_NAMES = NameTable([
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    ("embeddings.LayerNorm.{kind}", "embeddings.norm.{kind}"),
    ("encoder.layer.{layer}.attention.output.dense.{kind}", "layers.{layer}.attention.out.{kind}"),
    ("encoder.layer.{layer}.attention.output.LayerNorm.{kind}", "layers.{layer}.attention_norm.{kind}"),
    ("encoder.layer.{layer}.intermediate.dense.{kind}", "layers.{layer}.intermediate.{kind}"),
    ("encoder.layer.{layer}.output.dense.{kind}", "layers.{layer}.output.{kind}"),
    ("encoder.layer.{layer}.output.LayerNorm.{kind}", "layers.{layer}.output_norm.{kind}"),
    ("pooler.dense.{kind}", "pooler.dense.{kind}"),
    ("classifier.{kind}", "classifier.{kind}"),
    ("qa_outputs.{kind}", "qa_outputs.{kind}"),
    ("cls.predictions.transform.dense.{kind}", "cls.dense.{kind}"),
    ("cls.predictions.transform.LayerNorm.{kind}", "cls.norm.{kind}"),
    ("cls.predictions.bias", "cls.bias"),
    ("cls.seq_relationship.{kind}", "seq_relationship.{kind}"),
])
HEAD_MODULES = heads.HEAD_MODULES  # each loads whole or starts afresh
HF_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)")
OUR_QKV = re.compile(r"layers\.(\d+)\.attention\.qkv\.(weight|bias)")
# The LM decoder is the word embedding matrix itself (tied): the copy older files hold of it is dropped, as
# transformers does for a config that ties them (BERT's always do); the decoder's bias is cls.predictions.bias.
HF_TIED_DECODER = "cls.predictions.decoder.weight"
HF_TIED_DECODER_BIAS = "cls.predictions.decoder.bias"


def is_head(name: str) -> bool:
    """One of our heads' tensors (classifier, span head, LM head, NSP head), by our name."""
    return name.split(".", 1)[0] in HEAD_MODULES and HF_NAMES.theirs(name) is not None


def hf_to_ours(weights: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Map Hugging Face BERT names onto ours: encoder keys get no prefix, heads their names in our modules."""
    state, qkv, unexpected = {}, {}, []
    for key, tensor in weights.items():
        name = key.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if name in ("embeddings.position_ids", HF_TIED_DECODER):
            continue  # a buffer, and a copy of the word embeddings
        if name == HF_TIED_DECODER_BIAS:
            state.setdefault("cls.bias", tensor)  # cls.predictions.bias, where the file has it, wins
        elif match := HF_QKV.fullmatch(name):
            layer, which, kind = match.groups()
            qkv.setdefault((layer, kind), {})[which] = tensor
        elif (ours := HF_NAMES.ours(name)) is not None:
            state[ours] = tensor
        else:
            unexpected.append(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            missing = sorted({"query", "key", "value"} - set(parts))
            raise CheckpointError(f"{source}: layer {layer} lacks attention {'/'.join(missing)} {kind}")
        state[f"layers.{layer}.attention.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {short_list(unexpected)}")
    return state


def ours_to_hf(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face names (heads' encoders under `bert.`, as transformers has it)."""
    out = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if is_head(key):
            out[HF_NAMES.theirs(key)] = tensor
            continue
        prefix = "bert." if key.startswith("bert.") else ""
        name = key.removeprefix("bert.")
        if match := OUR_QKV.fullmatch(name):
            layer, kind = match.groups()
            for which, part in zip(("query", "key", "value"), tensor.chunk(3)):
                out[f"{prefix}encoder.layer.{layer}.attention.self.{which}.{kind}"] = part.contiguous()
        elif (hf := HF_NAMES.theirs(name)) is not None:
            out[prefix + hf] = tensor
        else:
            raise AssertionError(f"no Hugging Face name for {key}")
    return out


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
                "initializer_range")


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


def read_config(path: Path) -> BertConfig:
    """BertConfig from a Hugging Face config.json, refusing fields that would build another network."""
    raw = read_config_json(path)
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
        problems.append(f"unknown fields {', '.join(k if k.isidentifier() else repr(k) for k in unknown)}")
    fields = {k: v for k, v in raw.items() if k in known}
    for name, value in fields.items():
        problem = _field_problem(name, value)
        if problem:
            problems.append(problem)
    if not problems:
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
    if name not in FLOAT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be an integer, not {value!r}"
        smallest = 0 if name == "pad_token_id" else 1
        return f"{name} must be at least {smallest}, not {value}" if value < smallest else None
    if name == "classifier_dropout" and value is None:
        return None
    if not number:
        return f"{name} must be a number, not {value!r}"
    if name.endswith("_prob") or name == "classifier_dropout":
        return None if 0 <= value < 1 else f"{name} must be in [0, 1), not {value}"
    return None if value > 0 else f"{name} must be positive, not {value}"


def hf_config(model: torch.nn.Module, labels: list[str] | None = None, extra: dict | None = None) -> dict:
    """config.json of a model: its BertConfig, the architecture transformers builds, its labels, bertfit's section."""
    encoder = model.bert if hasattr(model, "bert") else model
    config = {k: v for k, v in vars(encoder.config).items()}
    config.update(model_type="bert", hidden_act="gelu", position_embedding_type="absolute")
    head = next((h for h in heads.WEIGHTED.values() if isinstance(model, h.model_class)), None)
    config["architectures"] = [head.architecture if head else "BertModel"]
    if head is not None and head.labelled:
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
