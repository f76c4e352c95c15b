"""Sentence embeddings as sentence-transformers makes them: the encoder's token vectors pooled into one vector per
text, as the model folder's own files say (`modules.json`: Transformer, then Pooling, then Normalize;
`1_Pooling/config.json`: CLS, mean, max, ...; `sentence_bert_config.json`: max_seq_length).

How an embedding is made is data in the model folder, never a guess: a folder without a pooling config is refused,
since mean-pooling a model trained for its [CLS] vector (or a plain BERT never trained for embeddings) gives
vectors that look right and rank wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import CheckpointError
from .files import write_atomic

# sentence-transformers' pooling modes, in the order it concatenates them
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# the pooling config before sentence-transformers 6: one switch per mode
LEGACY_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
MODULES = ("Transformer", "Pooling", "Normalize")  # what bertfit reads of a pipeline, in this order
MODULE_TYPES = {"Transformer": "sentence_transformers.models.Transformer",
                "Pooling": "sentence_transformers.models.Pooling",
                "Normalize": "sentence_transformers.models.Normalize"}


@dataclass(frozen=True)
class SentenceConfig:
    """How a folder's model turns a text into one vector."""

    pooling: tuple[str, ...]  # modes, concatenated in this order
    normalize: bool  # a Normalize module ends the pipeline: unit-length vectors
    max_seq_length: int  # tokens read per text, [CLS] and [SEP] included; longer texts are cut
    hidden_size: int

    @property
    def dimensions(self) -> int:
        return self.hidden_size * len(self.pooling)

    def describe(self) -> dict:
        return {"pooling": "+".join(self.pooling), "normalize": self.normalize, "dimensions": self.dimensions}


def is_sentence_folder(folder: Path) -> bool:
    """A sentence-transformers folder: its modules.json says how an embedding is made."""
    return (Path(folder) / "modules.json").is_file()


def no_pooling_message(folder: Path) -> str:
    return (f"{folder}: not a sentence-embedding model: no modules.json and 1_Pooling/config.json to say how its "
            f"token vectors become one vector per text (CLS, mean or max). Use a sentence-transformers folder, or "
            f"train one with `bertfit embed-train`; bertfit does not guess a pooling")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def read_sentence_config(folder: str | Path, hidden_size: int, positions: int) -> SentenceConfig:
    """The pipeline of a sentence-transformers folder; anything bertfit would compute differently is refused."""
    folder = Path(folder)
    if not is_sentence_folder(folder):
        raise CheckpointError(no_pooling_message(folder))
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type"), str) for m in modules):
        raise CheckpointError(f"{folder / 'modules.json'}: not a list of modules with a type each")
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    for module, kind in zip(modules, kinds):
        if kind not in MODULES:
            raise CheckpointError(f"{folder / 'modules.json'}: module {module['type']} ({module.get('path') or 'no path'})"
                                  f" is not one bertfit computes; it reads Transformer, Pooling and Normalize")
    if kinds[:1] != ["Transformer"] or (modules[0].get("path") or "") != "":
        raise CheckpointError(f"{folder / 'modules.json'}: the first module must be the Transformer in the folder "
                              f"itself (path \"\"), not {modules[0]['type']} at {modules[0].get('path')!r}")
    if "Pooling" not in kinds:
        raise CheckpointError(f"{folder / 'modules.json'}: no Pooling module: nothing says how token vectors become "
                              f"one vector per text; bertfit does not guess one")
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise CheckpointError(f"{folder / 'modules.json'}: modules {', '.join(kinds)}; bertfit reads Transformer, "
                              f"Pooling and (optionally) Normalize, in that order")
    pooling_path = folder / (modules[1].get("path") or "1_Pooling") / "config.json"
    if not pooling_path.is_file():
        raise CheckpointError(f"{pooling_path}: missing: no pooling config says how token vectors become one vector "
                              f"per text (CLS, mean or max); bertfit does not guess one")
    pooling = _pooling_modes(_read_json(pooling_path), pooling_path)
    settings = _read_json(folder / "sentence_bert_config.json") if (folder / "sentence_bert_config.json").exists() else {}
    max_seq_length = settings.get("max_seq_length") if isinstance(settings, dict) else None
    if max_seq_length is None:  # sentence-transformers: the tokenizer's model_max_length, within the positions
        tokenizer_config = folder / "tokenizer_config.json"
        max_seq_length = _read_json(tokenizer_config).get("model_max_length") if tokenizer_config.exists() else None
        max_seq_length = min(int(max_seq_length or positions), positions)
    if not isinstance(max_seq_length, int) or not 3 <= max_seq_length <= positions:
        raise CheckpointError(f"{folder / 'sentence_bert_config.json'}: max_seq_length must be a whole number from 3 "
                              f"to the model's {positions} positions, not {max_seq_length!r}")
    return SentenceConfig(pooling, kinds[-1] == "Normalize", max_seq_length, hidden_size)


def _pooling_modes(config, path: Path) -> tuple[str, ...]:
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    if config.get("include_prompt", True) is not True:
        raise CheckpointError(f"{path}: include_prompt false (prompts left out of the pooling) is not supported")
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = (modes,) if isinstance(modes, str) else tuple(modes) if isinstance(modes, list) else ()
    else:
        modes = tuple(mode for key, mode in LEGACY_MODES.items() if config.get(key))
    unknown = [m for m in modes if m not in POOLING_MODES]
    if not modes or unknown:
        raise CheckpointError(f"{path}: pooling {', '.join(map(str, unknown)) or 'none named'}; the modes are "
                              f"{', '.join(POOLING_MODES)}")
    return modes


def pool(hidden: Tensor, mask: Tensor, modes: tuple[str, ...]) -> Tensor:
    """(batch, tokens, hidden) token vectors and their (batch, tokens) attention mask to (batch, hidden * modes):
    sentence-transformers' Pooling on right-padded sequences, summing in float32."""
    mask = mask.to(hidden.dtype).unsqueeze(-1)
    vectors = []
    for mode in modes:
        if mode == "cls":
            vectors.append(hidden[:, 0])
        elif mode == "max":
            vectors.append(hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            total = (hidden * mask).sum(dim=1, dtype=torch.float32)
            count = mask.sum(dim=1, dtype=torch.float32).clamp(min=1e-9)
            vectors.append((total / (count if mode == "mean" else count.sqrt())).to(hidden.dtype))
        elif mode == "weightedmean":  # token i (from 1) weighs i
            weights = mask.float() * torch.arange(1, hidden.shape[1] + 1, device=hidden.device).view(1, -1, 1)
            total = (hidden.float() * weights).sum(dim=1)
            vectors.append((total / weights.sum(dim=1).clamp(min=1e-9)).to(hidden.dtype))
        elif mode == "lasttoken":
            last = mask.squeeze(-1).sum(dim=1).long().clamp(min=1) - 1
            vectors.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
    return torch.cat(vectors, dim=-1)


class SentenceEmbedder(nn.Module):
    """The encoder and its pooling: (input_ids, token_type_ids, attention_mask) to one vector per sequence.
    Normalising is left to the caller, so that a request may ask for raw vectors of a normalising model."""

    def __init__(self, bert: nn.Module, pooling: tuple[str, ...]):
        super().__init__()
        self.bert, self.pooling = bert, tuple(pooling)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:
            attention_mask = input_ids != self.bert.config.pad_token_id
        hidden, _ = self.bert(input_ids, token_type_ids, attention_mask)
        return pool(hidden, attention_mask, self.pooling)


def encode_texts(tokenizer, texts: list[str], max_seq_length: int) -> tuple[list[list[int]], list[bool]]:
    """Each text as `[CLS] text [SEP]`, its words cut to fit max_seq_length as sentence-transformers cuts them;
    and which texts were cut."""
    from .tokenization import special_ids

    special, room = special_ids(tokenizer), max_seq_length - 2
    ids, truncated = [], []
    for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        truncated.append(len(encoding.ids) > room)
        ids.append([special.cls, *encoding.ids[:room], special.sep])
    return ids, truncated


def normalize(vectors, eps: float = 1e-12):
    """Rows scaled to unit length, as sentence-transformers' Normalize (torch.nn.functional.normalize) does."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, eps)


def sentence_files(config: SentenceConfig) -> dict[str, str]:
    """The sentence-transformers files that make a model folder load in `SentenceTransformer(folder)`."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": MODULE_TYPES["Transformer"]},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": MODULE_TYPES["Pooling"]}]
    if config.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": MODULE_TYPES["Normalize"]})
    pooling = {"word_embedding_dimension": config.hidden_size,
               **{key: mode in config.pooling for key, mode in LEGACY_MODES.items()}, "include_prompt": True}
    return {"modules.json": json.dumps(modules, indent=2) + "\n",
            "1_Pooling/config.json": json.dumps(pooling, indent=2) + "\n",
            "sentence_bert_config.json": json.dumps({"max_seq_length": config.max_seq_length,
                                                     "do_lower_case": False}, indent=2) + "\n"}


def write_sentence_files(folder: Path, config: SentenceConfig) -> None:
    """Add the sentence-transformers files to a model folder bertfit is writing."""
    for name, text in sentence_files(config).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / name, text)
    if config.normalize:
        (folder / "2_Normalize").mkdir(exist_ok=True)
