"""Encoding GLUE examples: `[CLS] a [SEP] b [SEP]` features (in the tokenizer's own template), truncated or cut into windows, and cached."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..batching import Features
from ..errors import ConfigError, DataError
from ..files import write_atomic
from ..tokenization import longest_first, template
from .glue import Examples

CACHE_FORMAT = 1  # bump when encode() changes what it writes


@dataclass(frozen=True)
class EncodeStats:
    num_examples: int
    num_features: int  # more than num_examples when long texts become windows
    num_truncated: int  # examples that lost tokens
    num_tokens: int  # tokens written, special tokens included
    longest: int  # the longest example before truncation, special tokens included


def encode(examples: Examples, tokenizer: Tokenizer, max_seq_length: int, long_texts: str = "truncate",
           stride: int = 64) -> tuple[Features, EncodeStats]:
    """Encode as `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` (token types 0, then 1 for b [SEP]), or in the
    tokenizer's own template (RoBERTa's `<s> a </s></s> b </s>`, types all 0).

    long_texts="truncate" cuts pairs longest-first exactly as Hugging Face's fast tokenizers do.
    long_texts="window" splits text a into windows overlapping by `stride` tokens, each a feature with
    the example's `example_index` and label (b keeps at most half the room; the overlap is capped at half
    a window so windows always move on); average their predictions with `average_by_example`.
    """
    if long_texts not in ("truncate", "window"):
        raise ConfigError(f"long_texts must be 'truncate' or 'window', not {long_texts!r}")
    if tokenizer.truncation or tokenizer.padding:
        raise ConfigError("the tokenizer truncates or pads by itself; pass it through tokenization.prepare first")
    layout = template(tokenizer)
    pair = examples.texts_b is not None
    num_special = layout.num_special(pair)
    budget = max_seq_length - num_special
    if budget < (2 if pair else 1):
        raise ConfigError(f"max_seq_length {max_seq_length} leaves no room for text")
    if long_texts == "window" and not 0 <= stride < budget:
        raise ConfigError(f"stride (window overlap) must be in 0..{budget - 1} for max_seq_length {max_seq_length}")

    ids_a = [e.ids for e in tokenizer.encode_batch(examples.texts_a, add_special_tokens=False)]
    ids_b = [e.ids for e in tokenizer.encode_batch(examples.texts_b, add_special_tokens=False)] if pair else None
    input_ids, type_ids, example_index = [], [], []
    num_truncated = longest = 0
    for i, a in enumerate(ids_a):
        b = ids_b[i] if pair else []
        longest = max(longest, len(a) + len(b) + num_special)
        if len(a) + len(b) <= budget:
            pieces = [(a, b)]
        elif long_texts == "truncate":
            keep_a, keep_b = longest_first(len(a), len(b), budget)
            pieces = [(a[:keep_a], b[:keep_b])]
            num_truncated += 1
        else:
            b_kept = b[: budget // 2]
            pieces = [(window, b_kept) for window in _windows(a, budget - len(b_kept), stride)]
            num_truncated += len(b_kept) < len(b)
        for piece_a, piece_b in pieces:
            ids, types = layout.apply(piece_a, piece_b if pair else None)
            input_ids.append(ids)
            type_ids.append(types)
            example_index.append(i)

    columns = {"example_index": np.asarray(example_index, dtype=np.int64)}
    if examples.labels is not None:
        labels = np.asarray(examples.labels)
        dtype = np.float32 if labels.dtype.kind == "f" else np.int64
        columns["label_ids"] = labels.astype(dtype)[columns["example_index"]]
    features = Features.from_lists(input_ids, type_ids, **columns)
    stats = EncodeStats(len(ids_a), len(features), num_truncated, int(features.offsets[-1]), longest)
    return features, stats


def _windows(tokens: list[int], width: int, stride: int) -> list[list[int]]:
    """Slices of `width` tokens overlapping by `stride`, the last one ending at the end of `tokens`."""
    step = width - min(stride, width // 2)
    windows, start = [], 0
    while True:
        windows.append(tokens[start : start + width])
        if start + width >= len(tokens):
            return windows
        start += step


def average_by_example(logits: np.ndarray, example_index: np.ndarray, num_examples: int) -> np.ndarray:
    """Average the predictions of each example's windows: (num_features, ...) -> (num_examples, ...)."""
    logits = np.asarray(logits, dtype=np.float64)
    example_index = np.asarray(example_index, dtype=np.int64)
    sums = np.zeros((num_examples,) + logits.shape[1:])
    np.add.at(sums, example_index, logits)
    counts = np.bincount(example_index, minlength=num_examples)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise DataError(f"no predictions for examples {missing[:10].tolist()} of {num_examples}")
    return sums / counts.reshape((-1,) + (1,) * (logits.ndim - 1))


def encode_cached(examples: Examples, tokenizer: Tokenizer, max_seq_length: int, cache_dir: str | Path,
                  long_texts: str = "truncate", stride: int = 64) -> tuple[Features, EncodeStats, bool]:
    """`encode`, served from `cache_dir` when the same texts, labels, tokenizer and settings were encoded before.

    The key hashes the content itself, not file names or dates, so an edited data file is never served stale.
    Returns (features, stats, hit).
    """
    digest = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, "max_seq_length": max_seq_length, "long_texts": long_texts,
                "stride": stride if long_texts == "window" else None}
    for part in (settings, examples.texts_a, examples.texts_b, examples.labels):
        digest.update(json.dumps(part, default=str).encode())
        digest.update(b"\n")
    digest.update(tokenizer.to_str().encode())
    cache_dir = Path(cache_dir)
    features_path = cache_dir / f"features-{digest.hexdigest()}.npz"
    stats_path = features_path.with_suffix(".json")
    if features_path.is_file() and stats_path.is_file():
        try:
            return Features.load(features_path), EncodeStats(**json.loads(stats_path.read_text())), True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is just a miss: encode again and overwrite it
    features, stats = encode(examples, tokenizer, max_seq_length, long_texts, stride)
    cache_dir.mkdir(parents=True, exist_ok=True)
    features.save(features_path)
    write_atomic(stats_path, json.dumps(asdict(stats)))
    return features, stats, False
