"""Encoded features and the batches cut from them: dynamic padding, length grouping, sharding."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .files import open_atomic


@dataclass
class Features:
    """Encoded examples stored flat: example i is ids[offsets[i]:offsets[i+1]].

    `columns` holds one value per example (label_ids, start_positions, example_index, ...).
    Flat arrays keep millions of tokens cheap to cache and to slice.
    """

    ids: np.ndarray  # int32, all tokens end to end
    type_ids: np.ndarray  # int8, token types aligned with ids
    offsets: np.ndarray  # int64, n + 1 boundaries
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_lists(cls, input_ids: list[list[int]], token_type_ids: list[list[int]], **columns) -> "Features":
        lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=len(input_ids))
        offsets = np.zeros(len(input_ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((t for seq in input_ids for t in seq), dtype=np.int32, count=int(offsets[-1]))
        types = np.fromiter((t for seq in token_type_ids for t in seq), dtype=np.int8, count=int(offsets[-1]))
        cols = {name: np.asarray(values) for name, values in columns.items()}
        for name, values in cols.items():
            if len(values) != len(input_ids):
                raise ValueError(f"column {name!r} has {len(values)} values for {len(input_ids)} examples")
        return cls(ids, types, offsets, cols)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def input_ids(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def token_type_ids(self, i: int) -> np.ndarray:
        return self.type_ids[self.offsets[i] : self.offsets[i + 1]]

    def select(self, indices) -> "Features":
        indices = np.asarray(indices, dtype=np.int64)
        return Features.from_lists(
            [self.input_ids(i) for i in indices],
            [self.token_type_ids(i) for i in indices],
            **{name: values[indices] for name, values in self.columns.items()},
        )

    def save(self, path: Path) -> None:
        """Write as .npz (no pickles) through a temporary file, so a crash never leaves half a cache."""
        with open_atomic(path, "wb") as f:
            np.savez(f, ids=self.ids, type_ids=self.type_ids, offsets=self.offsets,
                     **{f"col_{k}": v for k, v in self.columns.items()})

    @classmethod
    def load(cls, path: Path) -> "Features":
        with np.load(path, allow_pickle=False) as data:
            columns = {k[4:]: data[k] for k in data.files if k.startswith("col_")}
            return cls(data["ids"], data["type_ids"], data["offsets"], columns)


def collate(features: Features, indices, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest sequence (not a fixed maximum) and gather its columns."""
    indices = np.asarray(indices, dtype=np.int64)
    lengths = features.lengths[indices]
    width = int(lengths.max())
    input_ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(indices), width), dtype=np.int64)
    for row, i in enumerate(indices):
        start, end = features.offsets[i], features.offsets[i + 1]
        input_ids[row, : end - start] = features.ids[start:end]
        token_type_ids[row, : end - start] = features.type_ids[start:end]
    attention_mask = np.arange(width)[None, :] < lengths[:, None]
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
    }
    for name, values in features.columns.items():
        batch[name] = torch.from_numpy(np.ascontiguousarray(values[indices]))
    return batch


GROUP_BATCHES = 256  # batches per length-sorted group; part of a run's fingerprint, as it orders the epoch


def length_grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                           group: int = GROUP_BATCHES) -> list[np.ndarray]:
    """Shuffle, then sort within mega-batches of `group` batches so each batch holds similar lengths.

    Randomness stays (which examples of a length meet, and the batch order), while padding drops to a
    small share of the tokens (bench/levers.py measures it by group size); the longest batch goes
    first so an out-of-memory shows up at step one.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    mega = batch_size * group
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = rng.permutation(len(batches))
    batches = [batches[i] for i in perm]
    longest = max(range(len(batches)), key=lambda b: lengths[batches[b]].max(), default=0)
    if batches:
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Batches for inference, longest first, of at most batch_size sequences and (when given) at most
    max_tokens tokens once padded; a sequence longer than max_tokens gets a batch of its own.
    Callers put results back by index."""
    order = np.argsort(-lengths, kind="stable")
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        width = int(lengths[order[start]])  # the longest of the batch: sorted, it comes first
        size = min(batch_size, max(1, max_tokens // max(1, width)))
        batches.append(order[start : start + size])
        start += size
    return batches


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of one global batch (strided, so shares differ in size by at most one)."""
    return batch[rank::world_size]
