"""ModernBERT's parts of the model: the sliding window's reach, the rotary turn, the choice of layers."""
from __future__ import annotations

import torch

from bertfit.model import BertConfig
from bertfit.model_parts import is_local, rotary_angles, rotate, window_mask


def test_a_window_of_128_lets_each_token_see_64_either_side_and_padding_queries_see_the_real_tokens():
    real = torch.ones(2, 300, dtype=torch.bool)
    real[1, 250:] = False
    mask = window_mask(real, 128 // 2)
    assert mask.shape == (2, 1, 300, 300)
    assert mask[0, 0, 100].nonzero().squeeze(1).tolist() == list(range(36, 165))  # 129 tokens with itself
    assert mask[1, 0, 240].nonzero().squeeze(1).tolist() == list(range(176, 250))  # no padding key
    assert mask[1, 0, 299].nonzero().squeeze(1).tolist() == list(range(250))  # a padding query: no empty row


def test_rotary_positions_keep_lengths_and_make_scores_depend_on_the_distance_alone():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=generator), torch.randn(1, 1, 1, 8, generator=generator)
    cos, sin = rotary_angles(40, 8, 50.0, torch.device("cpu"))

    def at(x, position):  # x placed at `position`
        return rotate(x.expand(1, 1, position + 1, 8), cos, sin)[..., position, :]

    torch.testing.assert_close(at(q, 7).norm(), q.norm())
    score = (at(q, 3) * at(k, 10)).sum()
    torch.testing.assert_close((at(q, 20) * at(k, 27)).sum(), score, atol=1e-5, rtol=1e-5)
    assert not torch.allclose((at(q, 20) * at(k, 28)).sum(), score, atol=1e-3)


def test_every_nth_layer_is_global_from_the_first_and_no_window_means_all_global():
    config = BertConfig(num_hidden_layers=7, local_attention=128, global_attn_every_n_layers=3)
    assert [is_local(config, i) for i in range(7)] == [False, True, True, False, True, True, False]
    assert not any(is_local(BertConfig(global_attn_every_n_layers=3), i) for i in range(12))
