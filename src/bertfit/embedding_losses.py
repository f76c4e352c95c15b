"""The losses of a bi-encoder, as sentence-transformers computes them, on the two sides of text pairs.

A pair travels through the shared training loop as one sequence, `[CLS] a [SEP] [CLS] b [SEP]`, with the length of
its first part in the `length_a` column; `split_pairs` cuts a padded batch of them into the two sides, each padded
to its own longest, so the loop, its batching and its checkpoints stay those of every recipe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("mnrl", "cosent", "cosine")  # MultipleNegativesRankingLoss, CoSENTLoss, CosineSimilarityLoss
SCALE = 20.0  # sentence-transformers' default scale of cosine similarities in MNRL and CoSENT


def split_pairs(batch: dict, pad_id: int) -> tuple[dict, dict]:
    """The a-sides and the b-sides of a batch of joined pairs, as model inputs (token types all 0)."""
    input_ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    length_a = batch["length_a"].long().to(input_ids.device)
    length_b = mask.sum(1) - length_a
    positions_a = torch.arange(int(length_a.max()), device=input_ids.device)
    positions_b = torch.arange(int(length_b.max()), device=input_ids.device)
    mask_a = positions_a[None, :] < length_a[:, None]
    mask_b = positions_b[None, :] < length_b[:, None]
    index_b = (length_a[:, None] + positions_b[None, :]).clamp(max=input_ids.shape[1] - 1)
    ids_a = input_ids[:, : len(positions_a)].masked_fill(~mask_a, pad_id)
    ids_b = input_ids.gather(1, index_b).masked_fill(~mask_b, pad_id)
    side = lambda ids, m: {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": m}
    return side(ids_a, mask_a), side(ids_b, mask_b)


def both_sides(batch: dict, pad_id: int) -> dict:
    """The a-sides then the b-sides of a batch of joined pairs as one batch of twice the rows: one forward pass
    for both (as a distributed model must be called once a step)."""
    a, b = split_pairs(batch, pad_id)
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    widen = lambda t, value: F.pad(t, (0, width - t.shape[1]), value=value)
    return {"input_ids": torch.cat([widen(a["input_ids"], pad_id), widen(b["input_ids"], pad_id)]),
            "token_type_ids": torch.zeros((2 * len(a["input_ids"]), width), dtype=a["input_ids"].dtype,
                                          device=a["input_ids"].device),
            "attention_mask": torch.cat([widen(a["attention_mask"], False), widen(b["attention_mask"], False)])}


def multiple_negatives_ranking_loss(a: Tensor, b: Tensor, scale: float = SCALE) -> Tensor:
    """Each a against every b of the batch, its own b the right answer: cross-entropy over scaled cosines,
    summed over the batch (sentence-transformers averages; the loop divides by the batch size)."""
    scores = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * scale
    return F.cross_entropy(scores.float(), torch.arange(len(a), device=a.device), reduction="sum")


def cosent_loss(a: Tensor, b: Tensor, labels: Tensor, scale: float = SCALE) -> Tensor:
    """CoSENT: every pair of pairs whose gold scores are ordered should have their cosines ordered the same way;
    log(1 + sum exp(scale * (cos_lower - cos_higher))). The loss is the batch's; times the batch size, as the loop
    divides by it."""
    cosines = F.cosine_similarity(a.float(), b.float(), dim=-1) * scale
    differences = cosines[:, None] - cosines[None, :]  # [i, j]: cos_i - cos_j, to be low when label_i < label_j
    ordered = labels[:, None] < labels[None, :]
    differences = differences - (~ordered).float() * 1e12
    loss = torch.logsumexp(torch.cat([torch.zeros(1, device=a.device), differences.flatten()]), dim=0)
    return loss * len(a)


def cosine_similarity_loss(a: Tensor, b: Tensor, labels: Tensor) -> Tensor:
    """Squared error between each pair's cosine and its gold score (scaled to 0..1 by the caller), summed."""
    return ((F.cosine_similarity(a.float(), b.float(), dim=-1) - labels.float()) ** 2).sum()
