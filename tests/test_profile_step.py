"""bench/profile_step.py: each op's time lands in the category that says what to attack, a profiled
bertfit step accounts for all its time, and the docs render its figures per CPU kind."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "docs"))
import common  # noqa: E402
import profile_step as ps  # noqa: E402
import render  # noqa: E402


def test_each_op_is_filed_under_the_category_that_says_what_to_attack():
    rows = [("aten::mm", 10.0), ("aten::addmm", 5.0), ("aten::bmm", 1.0),
            ("aten::_scaled_dot_product_flash_attention_for_cpu", 2.0),
            ("aten::_softmax", 3.0), ("aten::_softmax_backward_data", 1.0),
            ("aten::native_layer_norm", 0.5), ("aten::native_layer_norm_backward", 0.5),
            ("aten::gelu", 0.25), ("aten::gelu_backward", 0.25), ("aten::add", 0.5),
            ("aten::bernoulli_", 0.125), ("aten::native_dropout_backward", 0.125),
            ("aten::copy_", 4.0), ("aten::_to_copy", 1.0), ("aten::to", 0.5),
            ("aten::fill_", 0.75), ("aten::zero_", 0.25),
            ("aten::_fused_adamw_", 6.0), ("aten::linalg_vector_norm", 2.0),
            ("aten::embedding_dense_backward", 0.5), ("aten::_coalesce", 0.5),
            ("aten::empty", 0.25), ("aten::view", 0.25), ("aten::log_softmax", 0.5),
            (ps.STEP_LABEL, 1.5)]

    totals = ps.breakdown(rows)

    assert list(totals) == list(ps.CATEGORIES)
    assert totals == {ps.MATMUL: 18.0, ps.SOFTMAX: 4.0, ps.LAYER_NORM: 1.0, ps.ELEMENTWISE: 1.0, ps.DROPOUT: 0.25,
                      ps.CASTS: 5.5, ps.ZEROS: 1.0, ps.OPTIMIZER: 8.0, ps.EMBEDDING_BACKWARD: 1.0, ps.OTHER: 1.0,
                      ps.OUTSIDE: 1.5}


def test_an_op_is_filed_by_the_part_of_the_step_it_ran_in_before_its_name():
    backward = "autograd::engine::evaluate_function: "
    rows = [("aten::mul_", 1.0, (ps.STEP_LABEL, ps.ROW_UPDATE_LABEL)),  # the embedding rows' AdamW
            ("aten::copy_", 2.0, (ps.STEP_LABEL, "Optimizer.step#AdamW.step")),
            ("aten::lt", 4.0, (ps.STEP_LABEL, ps.DROPOUT_LABEL)),  # a dropout's mask, forward
            ("aten::where", 8.0, (ps.STEP_LABEL, backward + "WhereBackward0")),  # and backward
            ("aten::index_add_", 16.0, (ps.STEP_LABEL, backward + "EmbeddingBackward0")),
            ("aten::add_", 32.0, (ps.STEP_LABEL, ps.COALESCE_LABEL)),
            ("aten::mul", 64.0, (ps.STEP_LABEL, backward + "MulBackward0"))]

    totals = ps.breakdown(rows)

    assert totals[ps.OPTIMIZER] == 3.0 and totals[ps.DROPOUT] == 12.0
    assert totals[ps.EMBEDDING_BACKWARD] == 48.0 and totals[ps.ELEMENTWISE] == 64.0
    assert sum(totals.values()) == sum(row[1] for row in rows)


def test_the_top_ops_tell_the_same_op_apart_by_category_and_by_the_event_it_ran_in():
    rows = [("aten::mul", 1.0, ()), ("aten::mul", 2.0, (ps.DROPOUT_LABEL,)), ("aten::mul", 2.0, (ps.DROPOUT_LABEL,)),
            ("aten::mm", 3.0, ()), ("aten::copy_", 2.5, ("aten::linear", "aten::addmm")), ("aten::copy_", 0.5, (ps.STEP_LABEL,))]

    top = ps.top_ops(rows, n=3)

    assert [(o["op"], o["category"], o["inside"], o["time"], o["calls"]) for o in top] == [
        ("aten::mul", ps.DROPOUT, ps.DROPOUT_LABEL, 4.0, 2), ("aten::mm", ps.MATMUL, "", 3.0, 1),
        ("aten::copy_", ps.CASTS, "aten::addmm", 2.5, 1)]
    assert ps.top_ops(rows)[-1]["inside"] == ""  # the step itself is no event to name


@pytest.mark.timeout(300)
def test_a_profiled_bertfit_step_accounts_for_its_time_and_leaves_the_model_as_it_was(tmp_path):
    from bertfit import training
    from bertfit.batching import length_grouped_batches
    from bertfit.settings import TrainSettings

    model = tiny.classifier(dropout=0.1)
    train = tiny.features(48)
    settings = TrainSettings(batch_size=8, precision="fp32", epochs=1)
    row_grads = ps.labelled_row_grads(model, lazy=True)
    trainer = training.Trainer(model, train, tiny.classification_loss, lambda m: {}, lambda m, metrics: None,
                               settings, tmp_path, tiny.PAD, torch.device("cpu"), row_grads)
    batches = length_grouped_batches(train.lengths, 8, 0, 0)
    model.train()
    try:
        figures = ps.measure(lambda i: trainer.step(batches[i]), steps=2, warmup=1, model=model)
    finally:
        row_grads.restore()

    ms = {name: value["ms"] for name, value in figures["categories"].items()}
    for name in (ps.MATMUL, ps.DROPOUT, ps.OPTIMIZER, ps.EMBEDDING_BACKWARD, ps.OUTSIDE):
        assert ms[name] > 0, name
    # self times nest inside the steps: together they are the profiled steps' time, no more, no less
    assert sum(ms.values()) == pytest.approx(figures["profiled_step_ms"], rel=0.01)
    assert figures["step_ms"] > 0 and len(figures["step_ms_values"]) == 2 and len(figures["top_ops"]) <= 15
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert trainer.state.step == 5  # 1 warm-up, 2 timed, the same 2 profiled


def write_profile(tmp_path: Path, monkeypatch) -> Path:
    """A profile figures file as the script writes it, on an avx2 CPU (test data, not a measurement)."""
    monkeypatch.setattr(common, "cpu_kind", lambda: {"model_name": "test CPU", "kind": "avx2", "flags": ["avx2"],
                                                     "native_bf16": False, "bf16_flags": [], "logical_cpus": 2})

    def phase(matmul_ms: float) -> dict:
        categories = {name: {"ms": 1.0, "share": 0.05} for name in ps.CATEGORIES}
        categories[ps.MATMUL] = {"ms": matmul_ms, "share": 0.625}
        return {"step_ms": 40.0, "profiled_step_ms": 48.0, "mfu_percent": 31.25, "batch_size": 32,
                "mean_tokens": 13.5, "mean_padded_width": 14.0, "categories": categories,
                "top_ops": [{"op": "aten::mm", "category": ps.MATMUL, "inside": "autograd::engine::evaluate_function: "
                             "MmBackward0", "ms": matmul_ms, "share": 0.625, "calls_per_step": 55.0}]}

    figures = {"shape": "sst2", "settings": {"data": "generated sentences"}, "training": phase(30.0),
               "inference": phase(12.5), "categories": list(ps.CATEGORIES)}
    return common.write_figures("profile-sst2", "bench/profile_step.py", ["--shapes", "sst2", "--figures-dir", "x"],
                                str(tmp_path / "figures"), figures=figures, precision={"bertfit": "fp32"}, threads=2)


def test_the_docs_render_a_profile_for_its_cpu_kind_and_say_how_to_measure_the_others(tmp_path, monkeypatch):
    assert write_profile(tmp_path, monkeypatch) == tmp_path / "figures" / "avx2" / "profile-sst2.json"

    text = render.render_profile(tmp_path / "figures")

    avx2, amx = text.index("**avx2**"), text.index("**amx**")
    assert "`python bench/profile_step.py --shapes sst2`" in text[avx2:amx]
    assert "| matrix products | 30.00 | 62.5% | 12.50 | 62.5% |" in text[avx2:amx]
    assert "| training step | `aten::mm` | `MmBackward0` | matrix products | 30.00 | 62.5% | 55 |" in text[avx2:amx]
    assert text[amx:].startswith("**amx**: not measured") and render.COMMANDS["profile"] in text[amx:]
    assert np.isclose(float(text[avx2:amx].split("MFU ")[1].split("%")[0]), 31.25, atol=0.05)
