"""Every fast path against the plain computation it replaces, on the same inputs."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertfit import devices, optim, predicting
from bertfit import model as bertfit_model
from bertfit.batching import Features
from bertfit.model import (EXPLICIT_ATTENTION_MAX_LENGTH, BertConfig, BertForSequenceClassification, BertModel,
                           BertSelfAttention, FastDropout, explicit_attention)
from bertfit.pretrained import embedded_model_path, load_pretrained



def small_config(**overrides):
    return BertConfig(**{**dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64), **overrides})


def test_explicit_attention_equals_sdpa_in_value_and_gradient():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 9, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = (torch.arange(9)[None, :] < torch.tensor([9, 5, 2])[:, None])[:, None, None, :]
    ours = explicit_attention(q, k, v, mask, 0.0)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    torch.testing.assert_close(ours, reference)
    for g, r in zip(grads, reference_grads):
        torch.testing.assert_close(g, r)
    # one query against all keys, as the last block of a sentence classifier asks
    torch.testing.assert_close(explicit_attention(q[:, :, :1], k, v, mask, 0.0), reference[:, :, :1])


def test_the_training_path_matches_transformers_on_a_padded_batch(real_batch):
    """With gradients on, short sequences take the explicit attention; it must still be BERT."""
    transformers = pytest.importorskip("transformers")
    input_ids, token_type_ids, mask = real_batch
    ours, _ = load_pretrained()
    theirs = transformers.BertModel.from_pretrained(str(embedded_model_path())).eval()
    ours.eval()  # no dropout, but gradients on: the path training takes
    with torch.enable_grad():
        sequence, pooled = ours(input_ids, token_type_ids, mask)
    assert sequence.requires_grad
    with torch.no_grad():
        reference = theirs(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask.long())
    assert (sequence - reference.last_hidden_state).abs()[mask].max() <= 1e-5
    assert (pooled - reference.pooler_output).abs().max() <= 1e-5


@pytest.mark.parametrize("grad", [False, True])
def test_first_token_only_gives_the_same_pooled_output_and_logits(real_batch, grad):
    input_ids, token_type_ids, mask = real_batch
    torch.manual_seed(0)
    model, _ = load_pretrained(head="classification", num_labels=3)
    model.eval()
    with torch.set_grad_enabled(grad):
        full_sequence, full_pooled = model.bert(input_ids, token_type_ids, mask)
        first, pooled = model.bert(input_ids, token_type_ids, mask, first_token_only=True)
        logits = model(input_ids, token_type_ids, mask)
    assert first.shape == (len(input_ids), 1, full_sequence.shape[-1])
    torch.testing.assert_close(first[:, 0], full_sequence[:, 0], atol=2e-6, rtol=0)
    torch.testing.assert_close(pooled, full_pooled, atol=2e-6, rtol=0)
    torch.testing.assert_close(logits, model.classifier(full_pooled), atol=2e-6, rtol=0)


def test_first_token_only_gives_the_same_gradients():
    torch.manual_seed(0)
    model = BertModel(small_config()).eval()  # no dropout; gradients still flow
    ids = torch.randint(1, 60, (3, 7))
    ids[1, 5:] = 0
    grads = []
    for first_only in (False, True):
        model.zero_grad()
        _, pooled = model(ids, first_token_only=first_only)
        pooled.square().sum().backward()
        grads.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()])
    for full, first in zip(*grads):
        torch.testing.assert_close(first, full, atol=1e-6, rtol=1e-5)


def test_dropout_drops_p_of_the_elements_scales_the_rest_and_is_seeded():
    dropout = FastDropout(0.1).train()
    x = torch.randn(64, 50, 100, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.003  # 320,000 draws: the std is 0.0005
    torch.testing.assert_close(y[kept], x[kept] / 0.9)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, kept.float() / 0.9)
    torch.manual_seed(1)
    assert torch.equal(dropout(x), y)  # the same seed draws the same mask
    assert not torch.equal(dropout(x), y)
    assert torch.equal(dropout.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    # the mask also varies along every dimension: no lane of the 64-bit draws is stuck
    lanes = kept.flatten()[: 4 * (kept.numel() // 4)].view(-1, 4).float().mean(0)
    assert ((lanes - 0.9).abs() < 0.01).all()


@pytest.mark.parametrize("loss_scale", [0.01, 1000.0])  # gradients under and over the clipping limit
def test_embedding_row_gradients_equal_the_dense_ones_step_after_step(loss_scale):
    torch.manual_seed(0)
    config = small_config()
    dense = BertForSequenceClassification(config, num_labels=2).eval()
    sparse = BertForSequenceClassification(config, num_labels=2).eval()
    sparse.load_state_dict(dense.state_dict())
    row_grads = optim.EmbeddingRowGrads(sparse, lazy=False)
    for step in range(3):  # different tokens each step: rows of the last step must be cleared
        ids = torch.randint(1 + 20 * step, 20 + 20 * step, (4, 6))
        ids[0, 3:] = 0
        labels = torch.tensor([0, 1, 1, 0])
        for model in (dense, sparse):
            model.zero_grad(set_to_none=True)
            (F.cross_entropy(model(ids), labels) * loss_scale).backward()
        assert sparse.bert.embeddings.word_embeddings.weight.grad.is_sparse
        row_grads.coalesce()
        norm = optim.clip_gradients(sparse, 1.0)  # through the touched rows alone
        reference = torch.nn.utils.clip_grad_norm_(dense.parameters(), 1.0)
        torch.testing.assert_close(norm, reference)
        assert (norm > 1.0) == (loss_scale > 1.0)
        row_grads.before_step(None)  # dense: the optimizer is not needed
        for (name, d), s in zip(dense.named_parameters(), sparse.parameters()):
            assert not s.grad.is_sparse, name
            torch.testing.assert_close(s.grad, d.grad, atol=1e-7, rtol=1e-5, msg=name)
    row_grads.restore()
    assert not sparse.bert.embeddings.word_embeddings.sparse


def test_clip_gradients_equals_torch_clip_grad_norm():
    torch.manual_seed(0)
    for scale in (0.01, 100.0):  # below and above the limit
        a, b = torch.nn.Linear(5, 4), torch.nn.Linear(5, 4)
        b.load_state_dict(a.state_dict())
        x = torch.randn(8, 5)
        for layer in (a, b):
            (layer(x).sum() * scale).backward()
        norm = optim.clip_gradients(a, 1.0)
        reference = torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
        torch.testing.assert_close(norm, reference)
        for p, r in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p.grad, r.grad)


def test_lazy_embedding_rows_follow_adamw_where_used_and_stay_put_elsewhere():
    """Rows used in every step get exactly torch's AdamW update; rows never used do not move."""
    torch.manual_seed(0)
    config = small_config()
    reference = BertForSequenceClassification(config, num_labels=2).eval()
    lazy = BertForSequenceClassification(config, num_labels=2).eval()
    lazy.load_state_dict(reference.state_dict())
    initial = {name: p.detach().clone() for name, p in lazy.named_parameters()}
    row_grads = optim.EmbeddingRowGrads(lazy, lazy=True)
    ref_opt = optim.make_optimizer(reference, 1e-2, 0.1)
    lazy_opt = optim.make_optimizer(lazy, 1e-2, 0.1)
    used = {"word_embeddings": torch.tensor([3, 7, 11, 12]), "position_embeddings": torch.arange(8),
            "token_type_embeddings": torch.tensor([0])}
    for step in range(4):
        ids = used["word_embeddings"][torch.randperm(4)].repeat(3, 2)  # the same rows every step, in another order
        labels = torch.tensor([0, 1, 1])
        for model, optimizer in ((reference, ref_opt), (lazy, lazy_opt)):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(ids), labels).backward()
        row_grads.coalesce()
        row_grads.before_step(lazy_opt)
        assert lazy.bert.embeddings.word_embeddings.weight.grad is None  # AdamW passes the tables by
        ref_opt.step()
        lazy_opt.step()
    for (name, theirs), ours in zip(reference.named_parameters(), lazy.parameters()):
        theirs, ours = theirs.detach(), ours.detach()
        table = next((t for t in used if t in name), None)
        if table is None:  # torch's AdamW on both sides; the key bias, whose gradient is float noise
            # (softmax ignores it), turns rounding differences into 1e-4 moves under AdamW's normalisation
            torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0, msg=name)
            continue
        rows = torch.zeros(len(ours), dtype=torch.bool)
        rows[used[table]] = True
        torch.testing.assert_close(ours[rows], theirs[rows], atol=1e-6, rtol=1e-5, msg=name)
        if (~rows).any():
            assert torch.equal(ours[~rows], initial[name][~rows]), name
            assert not torch.equal(theirs[~rows], initial[name][~rows]), name  # dense AdamW decays them
    # the moments are in the optimizer's own state, so checkpoints carry them
    table = lazy.bert.embeddings.word_embeddings.weight
    assert lazy_opt.state[table]["exp_avg"].shape == table.shape and float(lazy_opt.state[table]["step"]) == 4


def test_bf16_autocast_runs_the_matmuls_in_bf16_close_to_fp32(real_batch):
    """What `--precision bf16` (and auto, on CPUs with bf16 instructions) runs, against float32."""
    input_ids, token_type_ids, mask = real_batch
    model, _ = load_pretrained(head="classification", num_labels=2)
    model.eval()
    with torch.no_grad():
        sequence, pooled = model.bert(input_ids, token_type_ids, mask)
        with devices.autocast(torch.device("cpu"), torch.bfloat16):
            bf16_sequence, bf16_pooled = model.bert(input_ids, token_type_ids, mask)
            logits = model(input_ids, token_type_ids, mask)
    assert bf16_pooled.dtype == logits.dtype == torch.bfloat16  # the last matmuls ran in bf16
    difference = (bf16_sequence.float() - sequence).abs()[mask]
    assert 0 < difference.max() <= 0.05 * sequence.abs().max()  # bf16 keeps 8 bits of mantissa
    assert F.cosine_similarity(bf16_pooled.float(), pooled, dim=-1).min() > 0.999
    reference = model(input_ids, token_type_ids, mask).detach()
    features = Features.from_lists([ids[m].tolist() for ids, m in zip(input_ids, mask)],
                                   [types[m].tolist() for types, m in zip(token_type_ids, mask)])
    (predicted,) = predicting.predict(model, features, 0, torch.device("cpu"), precision="bf16")
    assert predicted.dtype == np.float32 and np.abs(predicted - reference.numpy()).max() <= 0.05


@pytest.mark.parametrize("length", [16, 200])  # the explicit attention in training, and SDPA's kernel
def test_attention_dropout_drops_in_training_only_and_keeps_the_expectation(length):
    torch.manual_seed(0)
    attention = BertSelfAttention(small_config(attention_probs_dropout_prob=0.0))
    x = torch.randn(1, length, 32)
    with torch.no_grad():
        plain = attention.eval()(x, None)
    attention.dropout_p = 0.3
    with torch.no_grad():
        assert torch.equal(attention.eval()(x, None), plain)  # evaluation never drops
    attention.train()
    assert (length <= EXPLICIT_ATTENTION_MAX_LENGTH[True]) == (length == 16)  # both paths are covered
    draws = []
    for seed in range(100):
        torch.manual_seed(seed)
        with torch.enable_grad():
            draws.append(attention(x, None).detach())
    torch.manual_seed(0)
    assert torch.equal(attention(x, None).detach(), draws[0])  # seeded
    assert not torch.allclose(draws[0], plain, atol=1e-3) and not torch.equal(draws[0], draws[1])
    # kept probabilities are scaled by 1 / (1 - p): on average the output is the one without dropout
    mean = torch.stack(draws).mean(0)
    # (100 draws: the mean's own noise is about a tenth of one draw's)
    assert (mean - plain).abs().mean() < 0.2 * (draws[0] - plain).abs().mean()


@pytest.mark.parametrize("grad", [False, True])
def test_packed_path_gives_the_padded_paths_outputs_and_gradients(monkeypatch, grad):
    """Packing (the real tokens alone through everything but attention) against the padded path, on a batch
    that is mostly padding: sequence outputs at real positions, the pooled [CLS] vector with and without
    first_token_only, the masked-LM logits at chosen positions, and every parameter's gradient."""
    from bertfit.model import BertForMaskedLM, Packing

    torch.manual_seed(0)
    config = small_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    encoder, lm = BertModel(config), BertForMaskedLM(config)
    ids = torch.randint(5, 60, (4, 12))
    lengths = torch.tensor([12, 3, 7, 1])
    mask = torch.arange(12)[None] < lengths[:, None]
    ids[~mask] = 0
    types = (torch.arange(12)[None] >= 2).long() * mask
    results = []
    for below in (0.0, 1.0):  # never, always
        monkeypatch.setitem(bertfit_model.PACK_BELOW, grad, below)
        with torch.set_grad_enabled(grad):
            assert (Packing.worth_it(mask) is not None) == (below == 1.0)
            encoder.zero_grad(), lm.zero_grad()
            sequence, pooled = encoder(ids, types, mask)
            first, first_pooled = encoder(ids, types, mask, first_token_only=True)
            logits = lm(ids, types, mask, positions=mask & (ids % 3 == 0))
            if grad:
                (sequence[mask].square().sum() + first_pooled.sum() + logits.logsumexp(-1).sum()).backward()
        results.append([sequence[mask], pooled, first[:, 0], first_pooled, logits]
                       + [p.grad.clone() for p in [*encoder.parameters(), *lm.parameters()] if grad and p.grad is not None])
    assert len(results[0]) == len(results[1]) and (len(results[0]) > 20) == grad
    for padded, packed in zip(*results):
        torch.testing.assert_close(packed, padded, atol=2e-5, rtol=1e-4)


def test_inference_on_a_packed_batch_attends_in_groups_of_similar_lengths_with_the_padded_paths_outputs(monkeypatch):
    """A pass of one long sequence among short ones (a server's batch): attention runs group by group, each padded
    to its own longest (a group of equal lengths without a mask), and every output is the padded path's."""
    from bertfit.model import Packing

    torch.manual_seed(0)
    model = BertModel(small_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    lengths = torch.tensor([11, 3, 12, 7, 1, 12, 6])
    mask = torch.arange(12)[None] < lengths[:, None]
    ids = torch.randint(5, 60, (7, 12)) * mask
    types = (torch.arange(12)[None] >= 2).long() * mask
    with torch.inference_mode():
        groups = Packing(mask).groups()
        # 12, 12, 11 | 7, 6 | 3 | 1: a sequence joins while at least GROUP_SHARE (0.75) of its group's longest
        assert [(g.rows, g.width) for g in groups] == [(3, 12), (2, 7), (1, 3), (1, 1)]
        assert [g.mask is None for g in groups] == [False, False, True, True]
        assert sorted(torch.cat([g.packed for g in groups]).tolist()) == list(range(int(lengths.sum())))
        outputs = []
        for below in (0.0, 1.0):  # padded, packed
            monkeypatch.setitem(bertfit_model.PACK_BELOW, False, below)
            sequence, pooled = model(ids, types, mask)
            outputs.append((sequence[mask], pooled))
    for padded, packed in zip(*outputs):
        torch.testing.assert_close(packed, padded, atol=2e-5, rtol=1e-4)


def test_an_encoder_without_blocks_gives_one_pooled_row_per_sequence_on_a_padded_batch():
    model = BertModel(small_config(num_hidden_layers=0)).eval()
    mask = torch.arange(10)[None] < torch.tensor([[10], [2], [3]])
    with torch.inference_mode():
        sequence, pooled = model(torch.randint(5, 60, (3, 10)) * mask, None, mask, first_token_only=True)
    assert pooled.shape == (3, 32) and sequence.shape[0] == 3


def test_the_packed_path_runs_where_it_is_worth_it_and_never_when_traced():
    from bertfit.model import Packing

    mostly_padding = torch.arange(10)[None] < torch.tensor([[10], [2], [3]])
    with torch.inference_mode():
        assert Packing.worth_it(mostly_padding) is not None
        assert Packing.worth_it(torch.ones(3, 10, dtype=torch.bool)) is None  # nothing to remove
        assert Packing.worth_it(mostly_padding.flip(1)) is None  # left padding: [CLS] is not first
    class Sequence(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel(small_config()).eval()

        def forward(self, ids, mask):
            return self.bert(ids, None, mask)[0]

    model = Sequence()
    ids = torch.randint(5, 60, (3, 10)) * mostly_padding
    with torch.no_grad():
        traced = torch.jit.trace(model, (ids, mostly_padding), check_trace=False)
        other = torch.randint(5, 60, (3, 10)) * mostly_padding.flip(0)  # another layout of real tokens
        torch.testing.assert_close(traced(other, mostly_padding.flip(0))[mostly_padding.flip(0)],
                                   model(other, mostly_padding.flip(0))[mostly_padding.flip(0)])
