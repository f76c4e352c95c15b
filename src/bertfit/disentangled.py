"""DeBERTa's disentangled attention (He et al. 2021), the part of DeBERTa-v2/v3 that BERT lacks.

A token's content and its position are kept apart. The score of query i for key j adds to the content term
q_i . k_j a content-to-position term (c2p: q_i . Kr[d]) and a position-to-content term (p2c: k_j . Qr[d]), where
d is the distance i - j put in a bucket, and Kr, Qr are the table of relative embeddings through a key and a query
projection: the layer's own ones (`share_att_key`, DeBERTa-v3's) or a pair of its own per term. The sum is scaled
by 1/sqrt(head_dim * (1 + number of position terms)), as each term adds as much variance as the content one.

Distances stay exact up to half the buckets either way and grow logarithmically beyond, up to
`max_relative_positions`: v3 reads 512 tokens and more with 256 buckets a side and no absolute positions at all.
Distances only depend on the positions within a sequence, so a batch's padding changes none of them, and the
packed path (which attends in the padded layout) gives the padded path's numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TERMS = ("c2p", "p2c")


def bucket_positions(relative: Tensor, buckets: int, max_position: int) -> Tensor:
    """Relative distances in log buckets: exact while under buckets / 2 either way, then
    ceil(log(|d| / mid) / log((max_position - 1) / mid) * (mid - 1)) + mid with d's sign. Computed in float32 as
    DeBERTa does, so a distance on a bucket's edge lands where it does there."""
    mid = buckets // 2
    near = (relative < mid) & (relative > -mid)
    magnitude = torch.where(near, torch.full_like(relative, mid - 1), relative.abs()).to(torch.float32)
    log_base = torch.log(torch.tensor((max_position - 1) / mid, dtype=torch.float32))
    far = torch.ceil(torch.log(magnitude / mid) / log_base * (mid - 1)) + mid
    return torch.where(magnitude <= mid, relative.to(torch.float32), far * torch.sign(relative)).to(torch.long)


class RelativePositions(nn.Module):
    """The table of relative embeddings (2 x span rows, with its LayerNorm where `norm_rel_ebd` says), shared by
    every layer, and each (query, key) pair's row in it."""

    def __init__(self, config):
        super().__init__()
        self.max_distance = config.max_relative_positions if config.max_relative_positions > 0 \
            else config.max_position_embeddings
        self.buckets = config.position_buckets
        self.span = self.buckets if self.buckets > 0 else self.max_distance
        self.embeddings = nn.Embedding(2 * self.span, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) \
            if "layer_norm" in config.norm_rel_ebd.split("|") else None

    def forward(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(table (2 span, hidden), rows (length, length)): rows[i, j] is the table's row for query i and key j."""
        positions = torch.arange(length, device=device)
        relative = positions[:, None] - positions[None, :]
        if self.buckets > 0:
            relative = bucket_positions(relative, self.buckets, self.max_distance)
        table = self.embeddings.weight if self.norm is None else self.norm(self.embeddings.weight)
        return table, (relative + self.span).clamp(0, 2 * self.span - 1)


class DisentangledAttention(nn.Module):
    """softmax((q k^T + c2p + p2c) * scale + mask) v for one layer, on the (batch, heads, length, head_dim) queries,
    keys and values of its own projection; its own position projections unless `share_att_key`."""

    def __init__(self, config):
        super().__init__()
        self.terms = config.pos_att_type
        self.share_att_key = config.share_att_key
        own = not config.share_att_key
        self.pos_key = nn.Linear(config.hidden_size, config.hidden_size) if own and "c2p" in self.terms else None
        self.pos_query = nn.Linear(config.hidden_size, config.hidden_size) if own and "p2c" in self.terms else None
        self.dropout = nn.Dropout(config.hidden_dropout_prob)  # on the table, in each layer, as DeBERTa has it
        self.scale_factor = 1 + len(self.terms)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None,
                relative: tuple[Tensor, Tensor], qkv: nn.Linear, dropout_p: float) -> Tensor:
        """`relative`: RelativePositions' (table, rows); the queries are the first q.shape[2] positions (all of
        them, or the first alone); `qkv`: the layer's fused projection, which projects the table with
        share_att_key."""
        batch, heads, queries, head_dim = q.shape
        keys = k.shape[2]
        table, rows = relative
        table = self.dropout(table)
        rows = rows[:queries]
        hidden = heads * head_dim
        if self.share_att_key:
            pos_query, pos_key = F.linear(table, qkv.weight[:2 * hidden], qkv.bias[:2 * hidden]).chunk(2, dim=-1)
        else:
            pos_query = self.pos_query(table) if self.pos_query is not None else None
            pos_key = self.pos_key(table) if self.pos_key is not None else None
        scores = torch.matmul(q, k.transpose(-1, -2))
        # by_distance: each token's content against every row of the table, (batch, heads, tokens, 2 span)
        if "c2p" in self.terms:  # query i's content against the position of key j relative to it
            by_distance = torch.matmul(q, _per_head(pos_key, heads).transpose(-1, -2))
            scores = scores + torch.gather(by_distance, -1, rows.expand(batch, heads, queries, keys))
        if "p2c" in self.terms:  # key j's content against the position of query i relative to it
            by_distance = torch.matmul(k, _per_head(pos_query, heads).transpose(-1, -2))
            by_key = torch.gather(by_distance, -1, rows.t().expand(batch, heads, keys, queries))
            scores = scores + by_key.transpose(-1, -2)
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32)) / math.sqrt(head_dim * self.scale_factor)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        probs = F.dropout(torch.softmax(scores, dim=-1), dropout_p, training=dropout_p > 0)
        return torch.matmul(probs.to(v.dtype), v)


def _per_head(projected: Tensor, heads: int) -> Tensor:
    """(2 span, hidden) -> (heads, 2 span, head_dim)."""
    return projected.view(projected.shape[0], heads, -1).transpose(0, 1)
