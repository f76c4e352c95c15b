"""Each lever of the CPU training step (bertfit.step_levers) against the plain path it replaces, on the same inputs."""
import pytest
import torch
import torch.nn.functional as F

from bertfit import optim, step_levers
from bertfit.devices import CPU_KINDS
from bertfit.model import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, FastDropout

pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(**overrides):
    return BertConfig(**{**dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0),
                         **overrides})


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (4, 9), generator=generator)
    ids[1, 6:] = 0  # padding, so both attention masks and (in training) the packed path run
    ids[3, 3:] = 0
    return ids, torch.tensor([0, 1, 1, 0])


def step_results(model_class, lever: str, on: bool, monkeypatch, **config) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """The loss, every gradient and the clipped norm of one training step (dropout on, one seed), the lever set."""
    monkeypatch.setitem(step_levers.ON, lever, on)
    torch.manual_seed(0)
    model = model_class(small_config(**config)).train()
    ids, labels = batch()
    torch.manual_seed(123)  # the step's dropout draws
    if model_class is BertForQuestionAnswering:
        start, end = model(ids)
        loss = F.cross_entropy(start, labels + 2) + F.cross_entropy(end, labels + 4)
    else:
        loss = F.cross_entropy(model(ids), labels)
    loss.backward()
    norm = optim.clip_gradients(model, 0.01)  # under the norm: the gradients are scaled too
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, norm


@pytest.mark.parametrize("lever", step_levers.NAMES)
@pytest.mark.parametrize("model_class,config", [
    (BertForSequenceClassification, {}),  # post-norm, the last block on [CLS] alone
    (BertForQuestionAnswering, {}),  # every position, the fused projection whole
    (BertForSequenceClassification, dict(pre_norm=True, norm_bias=False)),  # a pre-norm block's two residuals
])
def test_each_lever_gives_the_plain_paths_loss_and_gradients(lever, model_class, config, monkeypatch):
    plain = step_results(model_class, lever, False, monkeypatch, **config)
    fast = step_results(model_class, lever, True, monkeypatch, **config)
    torch.testing.assert_close(fast[0], plain[0], atol=1e-6, rtol=1e-5)
    assert fast[1].keys() == plain[1].keys()
    for name in plain[1]:
        torch.testing.assert_close(fast[1][name], plain[1][name], atol=1e-6, rtol=1e-5, msg=name)
    torch.testing.assert_close(fast[2], plain[2], atol=1e-6, rtol=1e-5)
    if lever == "qkv_unbind":  # the same views, a different backward copy: bit for bit
        assert torch.equal(fast[0], plain[0]) and all(torch.equal(fast[1][n], plain[1][n]) for n in plain[1])


def test_dropout_add_draws_the_plain_dropouts_mask_and_scale(monkeypatch):
    dropout = FastDropout(0.1).train()
    residual, x = torch.randn(64, 50, 100), torch.randn(64, 50, 100, requires_grad=True)
    results = []
    for on in (False, True):
        monkeypatch.setitem(step_levers.ON, "dropout_add", on)
        torch.manual_seed(1)
        y = dropout.add_to(residual, x)
        (grad,) = torch.autograd.grad(y.square().sum(), x)
        results.append((y, grad))
    (plain, plain_grad), (fused, fused_grad) = results
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grad, plain_grad)
    assert torch.equal(fused == residual, plain == residual)  # the same elements dropped
    assert abs((fused == residual).float().mean().item() - 0.1) < 0.003
    # evaluation, p = 0 and a GPU-less p = 1 keep the plain path
    assert torch.equal(dropout.eval().add_to(residual, x), residual + x)
    assert torch.equal(FastDropout(0.0).train().add_to(residual, x), residual + x)


@pytest.mark.parametrize("kind", list(CPU_KINDS))
def test_levers_are_on_only_for_the_kinds_where_they_won(kind):
    assert step_levers.cpu_kind(CPU_KINDS[kind] | {"sse4_2"}) == kind
    assert step_levers.chosen(CPU_KINDS[kind]) == {name: name in step_levers.WINS.get(kind, ()) for name in
                                                   step_levers.NAMES}
    assert step_levers.chosen(CPU_KINDS["avx2"])["qkv_unbind"]  # the one measured win
    assert not any(step_levers.chosen(CPU_KINDS["amx"]).values())  # not measured there: the plain path
    assert step_levers.cpu_kind({"sse4_2"}) is None and not any(step_levers.chosen(set()).values())
