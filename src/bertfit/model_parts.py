"""The parts of the one model (`bertfit.model`) that ModernBERT picks and BERT does not: rotary positions,
the GeGLU feed-forward, and the sliding-window attention of its local layers, with the choice per layer.

Each is written once here and chosen by config fields (`positions`, `mlp`, `local_attention`,
`global_attn_every_n_layers`); the numbers are those of transformers' ModernBERT in fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def geglu(h: Tensor) -> Tensor:
    """GELU of the first half of the features times the second half (the gate): the intermediate layer projects
    to twice the intermediate size, so the output layer reads `intermediate_size` features."""
    value, gate = h.chunk(2, dim=-1)
    return F.gelu(value) * gate


def rotary_angles(length: int, head_dim: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin (length, head_dim) of position p times frequency theta^(-2i/head_dim), float32; each
    frequency twice, once for each half of a head's features."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary positions on queries or keys (batch, heads, positions, head_dim), the positions counted from 0 (a
    query of the first position alone has one): the first half of the features paired with the second, each
    pair turned by its angle. In float32, back in x's dtype."""
    n = x.shape[-2]
    x32 = x.float()
    half = x32.shape[-1] // 2
    turned = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    return (x32 * cos[:n] + turned * sin[:n]).to(x.dtype)


def window_mask(real: Tensor, half_window: int) -> Tensor:
    """(batch, 1, length, length), True where a query may attend a key: a real token at most `half_window`
    positions away, either side (a local_attention of 128 sees 64 each side, 129 tokens with itself).

    A padding query sees every real token instead: nobody reads its output, and a row with nothing to attend
    would be NaN, which the next layer's attention would carry into the real tokens (0 x NaN).
    """
    real = real.bool()
    positions = torch.arange(real.shape[1], device=real.device)
    near = (positions[:, None] - positions[None, :]).abs() <= half_window
    return ((near | ~real[:, :, None]) & real[:, None, :]).unsqueeze(1)


def is_local(config, layer: int) -> bool:
    """A sliding-window layer: all but every `global_attn_every_n_layers`-th, counted from the first (global)."""
    return bool(config.local_attention) and layer % config.global_attn_every_n_layers != 0


def layer_inputs(config, real: Tensor, attn_mask: Tensor | None, head_dim: int
                 ) -> list[tuple[Tensor | None, tuple[Tensor, Tensor] | None]]:
    """Each layer's attention mask and rotary angles (None: absolute positions, in the embeddings): a global
    layer's are the key-padding mask `attn_mask` and angles of `global_rope_theta`, a local layer's the window
    mask of the real tokens `real` (batch, length) and angles of `local_rope_theta`; each made once."""
    length, device = real.shape[1], real.device

    def inputs(local: bool) -> tuple[Tensor | None, tuple[Tensor, Tensor] | None]:
        mask = window_mask(real, config.local_attention // 2) if local else attn_mask
        if config.positions != "rotary":
            return mask, None
        theta = config.local_rope_theta if local else config.global_rope_theta
        return mask, rotary_angles(length, head_dim, theta, device)

    kinds = [is_local(config, i) for i in range(config.num_hidden_layers)]
    made = {kind: inputs(kind) for kind in set(kinds)}
    return [made[kind] for kind in kinds]
