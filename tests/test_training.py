import ctypes
import io
import json
import multiprocessing
import os
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st
import transformers
from safetensors.torch import load_file

import tiny
from runs import bertfit_process, kill_and_resume
from bertfit import devices, errors, optim, predicting, runs, training
from bertfit.batching import Features, collate, eval_batches, length_grouped_batches, shard
from bertfit.demo import write_sentiment_data
from bertfit.errors import BertfitError, ConfigError
from bertfit.model import BertConfig, BertForSequenceClassification, BertSelfAttention, init_weights
from bertfit.pretrained import save_pretrained
from bertfit.settings import TrainSettings

CPU = torch.device("cpu")
TRAIN = tiny.features(22, seed=1)  # batches of 4: five full ones and one of 2 per epoch
DEV = tiny.features(12, seed=2)
# 12 steps over 2 epochs, with micro-batches, dropout, warmup, evaluations, checkpoints and logged losses
SETTINGS = TrainSettings(epochs=2, lr=1e-3, batch_size=4, grad_accum=2, warmup_ratio=0.2, precision="fp32",
                         eval_every=5, save_every=3, keep_checkpoints=2, log_every=2, seed=7)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest)


class Interrupted(Exception):
    """Stands in for a crash: raised inside the loop, it leaves the run dir as a kill would."""


def counting_loss(loss=tiny.classification_loss, interrupt_at: int | None = None, poison_at: int | None = None):
    """The classification loss, raising Interrupted, or going NaN, at the given call (1-based)."""
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        if calls[0] == interrupt_at:
            raise Interrupted
        value = loss(model, batch)
        return value * float("nan") if calls[0] == poison_at else value

    return loss_fn


def train(run_dir, settings=SETTINGS, loss_fn=tiny.classification_loss, features=TRAIN, resume=True, model=None):
    """fit a fresh tiny classifier; returns (result, model, [(metrics, weights) each time the best was kept])."""
    model = model or tiny.classifier()
    kept = []
    result = training.fit(model, features, loss_fn, tiny.accuracy_on(DEV),
                          lambda m, metrics: kept.append((metrics, tiny.weights(m))), settings, run_dir,
                          tiny.PAD, CPU, resume=resume, run_fingerprint={"model": "tiny"}, quiet=True)
    return result, model, kept


def log_entries(run_dir):
    """The run's log without the timings, which no two runs share."""
    entries = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k not in ("examples_per_s", "tokens_per_s")} for e in entries]


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every resumed one must match."""
    run_dir = tmp_path_factory.mktemp("reference")
    result, model, kept = train(run_dir)
    return {"result": result, "weights": tiny.weights(model), "kept": kept, "log": log_entries(run_dir),
            "model": model, "dir": run_dir}


def assert_matches_reference(run_dir, result, model, kept, reference):
    assert_same_weights(tiny.weights(model), reference["weights"])
    assert result.history == reference["result"].history
    assert (result.best_metrics, result.best_step, result.steps) == \
        (reference["result"].best_metrics, reference["result"].best_step, reference["result"].steps)
    assert log_entries(run_dir) == reference["log"]
    # the best model kept last (after the resume, or before it when no later one was better)
    if kept:
        assert kept[-1][0] == reference["kept"][-1][0]
        assert_same_weights(kept[-1][1], reference["kept"][-1][1])


# ---- exact resume -------------------------------------------------------------------------------

def test_the_reference_run_lowers_its_training_loss_evaluates_and_checkpoints(reference):
    result = reference["result"]
    assert result.steps == 12 and not result.stopped_early and result.skipped_steps == 0
    assert [e["step"] for e in result.history] == [5, 10, 12]
    assert [metrics for metrics, _ in reference["kept"]][-1] == result.best_metrics
    # every 3 steps and at each evaluation; the last two kept
    assert [p.name for p in runs.CheckpointStore(reference["dir"] / "checkpoints").checkpoints()] == \
        ["step-00000012", "step-00000010"]
    on_train = tiny.accuracy_on(TRAIN)
    assert on_train(reference["model"])["loss"] < on_train(tiny.classifier())["loss"] - 0.005


# before any checkpoint; after one at the end of the epoch; after evaluations
@pytest.mark.parametrize("crash_step", [2, 7, 8, 11])
def test_a_crashed_run_resumes_to_the_same_weights_metrics_and_log(tmp_path, reference, crash_step):
    with pytest.raises(Interrupted):
        train(tmp_path, loss_fn=counting_loss(interrupt_at=2 * crash_step))  # second micro-batch of the step
    result, model, kept = train(tmp_path)
    assert_matches_reference(tmp_path, result, model, kept, reference)


def test_rerunning_a_finished_run_trains_no_further(tmp_path, reference):
    train(tmp_path)
    result, model, kept = train(tmp_path)
    assert kept == [] and result.steps == 12
    assert_same_weights(tiny.weights(model), reference["weights"])


def keyboard_interrupt_at(call: int):
    """The classification loss, with Ctrl-C pressed at the given call (1-based)."""
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return tiny.classification_loss(model, batch)

    return loss_fn


def fit_saying(run_dir, capsys, settings=SETTINGS) -> str:
    """fit a fresh tiny classifier, not quiet; what it printed."""
    training.fit(tiny.classifier(), TRAIN, tiny.classification_loss, tiny.accuracy_on(DEV), lambda m, s: None,
                 settings, run_dir, tiny.PAD, CPU, run_fingerprint={"model": "tiny"}, quiet=False)
    return capsys.readouterr().out


def test_ctrl_c_before_the_first_checkpoint_says_a_rerun_starts_again_from_step_0(tmp_path, capsys):
    with pytest.raises(errors.Interrupted) as caught:  # still a KeyboardInterrupt to a notebook
        train(tmp_path, loss_fn=keyboard_interrupt_at(2 * 2))  # step 2; the first checkpoint comes at step 3
    assert isinstance(caught.value, KeyboardInterrupt)
    assert "before the first checkpoint (one is written at each evaluation and every 3 steps)" in str(caught.value)
    assert "starts this run again from step 0" in str(caught.value) and "resume" not in str(caught.value)

    out = fit_saying(tmp_path, capsys)  # and so it does
    assert "resuming" not in out


def test_ctrl_c_after_a_checkpoint_names_the_step_a_rerun_resumes_from(tmp_path, capsys):
    with pytest.raises(errors.Interrupted) as caught:
        train(tmp_path, loss_fn=keyboard_interrupt_at(2 * 8))  # step 8; checkpoints at steps 3, 5 and 6
    assert "rerun the same command to resume from the checkpoint of step 6" in str(caught.value)
    assert str(tmp_path / "checkpoints" / "step-00000006") in str(caught.value)

    out = fit_saying(tmp_path, capsys)  # step 6 ended the first epoch of six batches
    assert "resuming from step 6 of 12: the start of epoch 2" in out


def test_ctrl_c_during_a_run_with_overwrite_says_to_rerun_without_it(tmp_path):
    train(tmp_path, replace(SETTINGS, max_steps=4))
    with pytest.raises(errors.Interrupted, match="rerun the command without --overwrite to resume from the checkpoint "
                                                 "of step 3"):
        train(tmp_path, loss_fn=keyboard_interrupt_at(2 * 4), resume=False)


def test_rerunning_a_finished_run_says_it_is_finished_and_how_to_train_anew(tmp_path, capsys):
    fit_saying(tmp_path, capsys)
    out = fit_saying(tmp_path, capsys)
    assert f"{tmp_path} holds a run that finished after 12 steps, so there is nothing to train" in out
    assert "pass --overwrite or choose another --output-dir" in out and "resuming from" not in out


def test_an_early_stopped_run_stays_stopped_when_resumed(tmp_path):
    frozen = replace(SETTINGS, lr=0.0, eval_every=1, patience=2)
    first, _, _ = train(tmp_path, frozen)
    assert first.stopped_early and first.steps == 3  # the best at step 1, then two evaluations without improvement
    again, _, kept = train(tmp_path, frozen)
    assert again.stopped_early and again.steps == 3 and kept == []


@pytest.mark.parametrize("damage", ["truncate", "flip a byte"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, capsys, damage):
    train(tmp_path)
    newest, previous = runs.CheckpointStore(tmp_path / "checkpoints").checkpoints()
    weights_file = newest / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    weights_file.write_bytes(bytes(data))

    result, model, kept = train(tmp_path)
    warning = capsys.readouterr().err
    assert f"checkpoint {newest} is damaged" in warning and "model.safetensors" in warning
    assert previous.name == "step-00000010"
    assert_matches_reference(tmp_path, result, model, kept, reference)


def test_a_run_whose_checkpoints_are_all_damaged_stops_and_says_how_to_start_afresh(tmp_path):
    train(tmp_path, replace(SETTINGS, max_steps=3))
    for checkpoint in runs.CheckpointStore(tmp_path / "checkpoints").checkpoints():
        (checkpoint / "trainer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BertfitError, match="--overwrite"):
        train(tmp_path, replace(SETTINGS, max_steps=3))


# ---- refusing to mix two runs -------------------------------------------------------------------

def test_resuming_with_other_settings_or_data_is_refused_naming_the_change(tmp_path):
    short = replace(SETTINGS, max_steps=3, save_every=1)
    train(tmp_path, short)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())

    with pytest.raises(ConfigError, match=r"different lr \(0\.001 before, 0\.002 now\)"):
        train(tmp_path, replace(short, lr=2e-3))
    changed = Features(TRAIN.ids.copy(), TRAIN.type_ids, TRAIN.offsets, TRAIN.columns)
    changed.ids[5] += 1
    with pytest.raises(ConfigError, match="different train data") as refused:
        train(tmp_path, short, features=changed)
    assert "--overwrite" in str(refused.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before

    train(tmp_path, replace(short, log_every=1, keep_checkpoints=3))  # these do not change what is trained

    result, _, _ = train(tmp_path, replace(short, lr=2e-3, save_every=2, log_every=1), resume=False)  # --overwrite
    assert result.steps == 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    assert json.loads((tmp_path / "run.json").read_text())["lr"] == 2e-3
    assert [e["step"] for e in log_entries(tmp_path)] == [1, 2, 3, 3]  # the old run's log went with it


# ---- non-finite losses --------------------------------------------------------------------------

def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    settings = replace(SETTINGS, grad_accum=1, save_every=1, eval_every=0)
    with pytest.raises(BertfitError, match=r"step 3: the loss \(nan\).*not finite") as stopped:
        train(tmp_path, settings, loss_fn=counting_loss(poison_at=3))
    store = runs.CheckpointStore(tmp_path / "checkpoints")
    newest = store.checkpoints()[0]
    assert newest.name == "step-00000002" and str(newest) in str(stopped.value)
    model = tiny.classifier()
    optimizer = optim.make_optimizer(model, 1e-3, 0.0)
    state = store.load_latest(model, optimizer, optim.linear_schedule(optimizer, 0, 10),
                              torch.amp.GradScaler("cpu", enabled=False))
    assert state["step"] == 2 and all(torch.isfinite(p).all() for p in model.parameters())


def test_an_exploding_learning_rate_stops_the_run(tmp_path):
    with pytest.raises(BertfitError, match="not finite"):
        train(tmp_path, replace(SETTINGS, lr=1e30, warmup_ratio=0.0, grad_accum=1))


def test_skip_nonfinite_skips_and_counts_the_step(tmp_path):
    settings = replace(SETTINGS, grad_accum=1, eval_every=0, skip_nonfinite=True)
    result, model, _ = train(tmp_path, settings, loss_fn=counting_loss(poison_at=3))
    assert result.skipped_steps == 1 and result.steps == 12
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [e["step"] for e in log_entries(tmp_path) if e["event"] == "skipped"] == [3]
    assert all(np.isfinite(e["loss"]) for e in log_entries(tmp_path) if e["event"] == "train")


# ---- precision ---------------------------------------------------------------------------------

# the AVX-512 part of /proc/cpuinfo's flags on these CPUs
CASCADE_LAKE = "avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"  # and Skylake-X, Ice Lake: no bf16
COOPER_LAKE = CASCADE_LAKE + " avx512_bf16"
SAPPHIRE_RAPIDS = COOPER_LAKE + " amx_bf16 amx_tile amx_int8"


@pytest.mark.parametrize("flags, expected", [(CASCADE_LAKE, torch.float32), ("avx2 fma", torch.float32),
                                             (COOPER_LAKE, torch.bfloat16), (SAPPHIRE_RAPIDS, torch.bfloat16)])
def test_auto_precision_on_cpu_is_bf16_only_with_bf16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(flags.split()))
    assert devices.resolve_precision("auto", CPU) == expected
    assert devices.resolve_precision("fp32", CPU) == torch.float32
    assert devices.resolve_precision("bf16", CPU) == torch.bfloat16


def test_a_bf16_run_trains_as_the_fp32_run_does(tmp_path, reference):
    result, model, _ = train(tmp_path, replace(SETTINGS, precision="bf16"))
    assert result.steps == 12
    bf16_losses = [e["loss"] for e in log_entries(tmp_path) if e["event"] == "train"]
    fp32_losses = [e["loss"] for e in reference["log"] if e["event"] == "train"]
    assert bf16_losses != fp32_losses  # the autocast was on
    assert np.allclose(bf16_losses, fp32_losses, atol=2e-3)
    initial, fp32, bf16 = tiny.weights(tiny.classifier()), reference["weights"], tiny.weights(model)
    moved = max((fp32[k] - initial[k]).abs().max().item() for k in fp32)
    assert max((bf16[k] - fp32[k]).abs().max().item() for k in fp32) < 0.5 * moved


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64", reason="x86 Linux")
def test_cpu_flags_are_read_from_proc_cpuinfo():
    assert {"sse2", "fpu"} <= devices.cpu_flags()


# ---- the schedule, attention dropout, the allocator ----------------------------------------------

def test_the_learning_rate_warms_up_then_decays_as_transformers_linear_schedule():
    optimizer = optim.make_optimizer(tiny.classifier(), 1e-3, 0.01)
    scheduler = optim.linear_schedule(optimizer, warmup_steps=2, total_steps=10)
    used = []
    for _ in range(10):
        used.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    # warmup: the first step already moves (transformers' first step has lr 0); then its decay, exactly
    peak = 1e-3
    assert [lrs[0] for lrs in used[:2]] == pytest.approx([peak / 3, 2 * peak / 3])
    decay = transformers.get_linear_schedule_with_warmup(torch.optim.SGD([torch.zeros(1)], lr=peak), 2, 10)
    assert [lrs[0] for lrs in used[2:]] == pytest.approx([peak * decay.lr_lambdas[0](step) for step in range(2, 10)])
    assert all(len(set(lrs)) == 1 for lrs in used) and optimizer.param_groups[0]["lr"] == 0


def test_fit_schedules_the_learning_rate_by_warmup_ratio_and_total_steps(reference):
    # 12 steps, warmup 20%: 2 steps; each log line holds the rate after its step
    logged = {e["step"]: e["lr"] for e in reference["log"] if e["event"] == "train"}
    assert logged == pytest.approx({2: 1e-3, 4: 8e-4, 6: 6e-4, 8: 4e-4, 10: 2e-4, 12: 0.0})


def test_attention_dropout_changes_training_and_resumes_exactly(tmp_path, reference):
    dropping = replace(SETTINGS, attention_dropout=0.1)
    result, model, kept = train(tmp_path / "whole", dropping)
    assert all(m.dropout_p == 0.1 for m in model.modules() if isinstance(m, BertSelfAttention))
    assert not torch.equal(tiny.weights(model)["bert.layers.0.attention.qkv.weight"],
                           reference["weights"]["bert.layers.0.attention.qkv.weight"])
    with pytest.raises(Interrupted):
        train(tmp_path / "resumed", dropping, loss_fn=counting_loss(interrupt_at=14))
    again, resumed, _ = train(tmp_path / "resumed", dropping)
    assert_same_weights(tiny.weights(resumed), tiny.weights(model))
    assert again.history == result.history


def test_the_packed_path_trains_and_resumes_exactly(tmp_path, monkeypatch):
    from bertfit import model as bertfit_model

    monkeypatch.setitem(bertfit_model.PACK_BELOW, True, 1.0)  # every padded training batch packs
    packed = []
    init = bertfit_model.Packing.__init__
    monkeypatch.setattr(bertfit_model.Packing, "__init__", lambda self, mask: packed.append(1) or init(self, mask))
    dropping = replace(SETTINGS, attention_dropout=0.1)
    result, model, _ = train(tmp_path / "whole", dropping)
    assert packed  # the path under test ran
    with pytest.raises(Interrupted):
        train(tmp_path / "resumed", dropping, loss_fn=counting_loss(interrupt_at=14))
    again, resumed, _ = train(tmp_path / "resumed", dropping)
    assert_same_weights(tiny.weights(resumed), tiny.weights(model))
    assert again.history == result.history



@pytest.mark.parametrize("on", [True, False])
def test_the_step_levers_train_as_the_plain_path_and_resume_exactly(tmp_path, monkeypatch, reference, on):
    """With every lever of the CPU step on (or off, whatever this CPU chose), the run lands on the plain run's
    weights within rounding, and a crashed run resumes to the uninterrupted run's weights bit for bit."""
    from bertfit import step_levers

    for name in step_levers.NAMES:
        monkeypatch.setitem(step_levers.ON, name, on)
    result, model, _ = train(tmp_path / "whole")
    for name, value in tiny.weights(model).items():
        torch.testing.assert_close(value, reference["weights"][name], atol=1e-5, rtol=1e-4, msg=name)
    with pytest.raises(Interrupted):
        train(tmp_path / "resumed", loss_fn=counting_loss(interrupt_at=14))
    again, resumed, _ = train(tmp_path / "resumed")
    assert_same_weights(tiny.weights(resumed), tiny.weights(model))
    assert again.history == result.history

MAPPED_BLOCKS = """
import ctypes, sys
import torch
from bertfit import devices
fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = type("Mallinfo2", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_size_t) for f in fields]})
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]

def mapped(megabytes):
    \"\"\"1 when a block of this size comes from mmap, to go back to the kernel when freed\"\"\"
    before = libc.mallinfo2().hblks
    block = libc.malloc(megabytes << 20)
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after - before

devices.tune_allocator(torch.device("cuda"))  # not a CPU: glibc keeps its thresholds
untouched = mapped(24)  # and raises its own threshold to this block's size as it is freed
devices.tune_allocator(torch.device("cpu"))
print(untouched, mapped(28))
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33 or later")
def test_tune_allocator_keeps_blocks_of_a_few_mb_in_the_heap_on_cpu_only():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", MAPPED_BLOCKS], env=env, capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["1", "0"], run.stderr


# ---- gradient clipping -------------------------------------------------------------------------

def test_max_grad_norm_0_means_no_clipping(tmp_path):
    _, unclipped, _ = train(tmp_path / "off", replace(SETTINGS, max_grad_norm=0.0))
    _, never_reached, _ = train(tmp_path / "huge", replace(SETTINGS, max_grad_norm=1e9))
    _, clipped, _ = train(tmp_path / "clipped", replace(SETTINGS, max_grad_norm=0.01))
    assert_same_weights(tiny.weights(unclipped), tiny.weights(never_reached))
    assert not torch.equal(tiny.weights(clipped)["classifier.weight"], tiny.weights(unclipped)["classifier.weight"])


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_a_negative_max_grad_norm_is_refused(value):
    with pytest.raises(ConfigError, match="--max-grad-norm must be positive, or 0 for no clipping"):
        replace(SETTINGS, max_grad_norm=value).validate()


# ---- one run per folder -------------------------------------------------------------------------

def _hold_lock(run_dir, locked, release):
    with runs.RunLock(run_dir):
        locked.set()
        release.wait(30)


def test_a_second_fit_into_a_locked_run_dir_fails_clearly(tmp_path):
    context = multiprocessing.get_context("fork")  # the holder needs only the lock, not a second torch
    locked, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(tmp_path, locked, release))
    holder.start()
    try:
        assert locked.wait(30)
        with pytest.raises(ConfigError, match="in use by another bertfit run"):
            train(tmp_path, replace(SETTINGS, max_steps=1))
    finally:
        release.set()
        holder.join(30)
    assert not (tmp_path / "checkpoints").exists()


def test_a_run_that_fails_before_it_writes_anything_leaves_no_run_dir(tmp_path):
    with pytest.raises(ConfigError):
        with runs.RunLock(tmp_path / "runs" / "new"):
            raise ConfigError("a bad setting found late")
    assert not (tmp_path / "runs" / "new").exists()

    (tmp_path / "mine").mkdir()  # a folder the user made stays, and so does a run that began
    for run_dir, written in ((tmp_path / "mine", None), (tmp_path / "begun", "run.json")):
        with pytest.raises(ConfigError):
            with runs.RunLock(run_dir):
                if written:
                    (run_dir / written).write_text("{}")
                raise ConfigError("stopped")
        assert run_dir.is_dir()


def test_a_recipe_may_hold_the_lock_around_fit(tmp_path):
    with runs.RunLock(tmp_path):
        result, _, _ = train(tmp_path, replace(SETTINGS, max_steps=1))
    assert result.steps == 1


# ---- batches ------------------------------------------------------------------------------------

@hypothesis_settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 128), max_size=300), st.integers(1, 40), st.integers(0, 5), st.integers(1, 8))
def test_length_grouped_batches_hold_every_index_once_per_epoch(lengths, batch_size, epoch, group):
    lengths = np.array(lengths, dtype=np.int64)
    batches = length_grouped_batches(lengths, batch_size, seed=3, epoch=epoch, group=group)
    assert sorted(np.concatenate(batches).tolist() if batches else []) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    if batches:
        assert max(lengths[b].max() for b in batches) == lengths[batches[0]].max()  # the longest batch first
    again = length_grouped_batches(lengths, batch_size, seed=3, epoch=epoch, group=group)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))


def test_length_grouped_batches_change_with_the_epoch_and_seed_and_hold_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 129, size=4096)
    batches = length_grouped_batches(lengths, 16, seed=1, epoch=0)
    order = np.concatenate(batches)
    assert not np.array_equal(order, np.concatenate(length_grouped_batches(lengths, 16, seed=1, epoch=1)))
    assert not np.array_equal(order, np.concatenate(length_grouped_batches(lengths, 16, seed=2, epoch=0)))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert spread < 4 and padded < 1.05 * lengths.sum()  # random batches: a spread near 110, half of it pads


def test_collate_pads_to_the_longest_in_the_batch():
    features = Features.from_lists([[2, 5, 3], [2, 6, 7, 8, 3], [2, 3]], [[0] * 3, [0, 0, 1, 1, 1], [0] * 2],
                                   label_ids=[1, 0, 1])
    batch = collate(features, [2, 0], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 3, 0], [2, 5, 3]]
    assert batch["attention_mask"].tolist() == [[True, True, False], [True, True, True]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert batch["label_ids"].tolist() == [1, 1]
    assert collate(features, [1], pad_id=0)["token_type_ids"].tolist() == [[0, 0, 1, 1, 1]]


def test_shards_split_a_batch_among_ranks_without_overlap():
    batch = np.arange(7)
    parts = [shard(batch, rank, 3) for rank in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(7))
    assert [len(p) for p in parts] == [3, 2, 2]


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=40), st.integers(1, 9), st.sampled_from([None, 1, 30, 100]))
def test_eval_batches_hold_every_index_once_within_both_limits(lengths, batch_size, max_tokens):
    lengths = np.array(lengths)
    batches = eval_batches(lengths, batch_size, max_tokens)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        if max_tokens is not None and len(batch) > 1:
            assert len(batch) * lengths[batch].max() <= max_tokens
    widths = [lengths[b].max() for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first: little padding in each


def test_predict_returns_outputs_in_feature_order():
    features = tiny.features(11, seed=4)
    model = tiny.classifier().eval()
    span = tiny.span_model().eval()
    (logits,) = predicting.predict(model, features, tiny.PAD, CPU, batch_size=3, precision="fp32")
    starts, ends = predicting.predict(span, features, tiny.PAD, CPU, batch_size=3, precision="fp32", per_token=True)
    with torch.no_grad():
        for i in range(len(features)):
            ids = torch.from_numpy(features.input_ids(i).astype(np.int64))[None]
            assert np.allclose(logits[i], model(ids)[0].numpy(), atol=1e-5)
            start, end = span(ids)
            assert len(starts[i]) == features.lengths[i]
            assert np.allclose(starts[i], start[0].numpy(), atol=1e-5)
            assert np.allclose(ends[i], end[0].numpy(), atol=1e-5)


# ---- checkpoint files ---------------------------------------------------------------------------

def test_checkpoints_are_verified_files_renamed_into_place_and_only_the_last_k_kept(tmp_path):
    model = tiny.classifier()
    optimizer = optim.make_optimizer(model, 1e-3, 0.01)
    scheduler = optim.linear_schedule(optimizer, 1, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    store = runs.CheckpointStore(tmp_path, keep=2)
    for step in range(1, 6):
        store.save(model, optimizer, scheduler, scaler, {"step": step})
    (tmp_path / "step-00000009.tmp").mkdir()  # a save a crash interrupted: never loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000004", "step-00000005", "step-00000009.tmp"]
    newest = store.checkpoints()[0]
    manifest = json.loads((newest / "manifest.json").read_text())
    assert set(manifest) == {"model.safetensors", "trainer.pt", "state.json"}
    for name, digest in manifest.items():
        assert runs._sha256(newest / name) == digest
    trainer = torch.load(newest / "trainer.pt", weights_only=True)
    assert set(trainer) == {"optimizer", "scheduler", "scaler"}
    assert_same_weights(load_file(newest / "model.safetensors"), tiny.weights(model))
    assert store.load_latest(tiny.classifier(seed=1), optimizer, scheduler, scaler) == {"step": 5}


def test_a_resumed_log_drops_what_the_crashed_run_wrote_after_its_checkpoint(tmp_path):
    log = runs.JsonlLog(tmp_path / "log.jsonl")
    for step in (2, 4, 6):
        log.write({"event": "train", "step": step})
    with open(log.path, "a") as f:
        f.write('{"event": "tra')  # killed mid-line
    log.rewind(4)
    log.write({"event": "train", "step": 6})
    assert [json.loads(line)["step"] for line in log.path.read_text().splitlines()] == [2, 4, 6]


# ---- the whole command, killed and resumed ------------------------------------------------------

def test_a_killed_fine_tune_resumes_bitwise_equal_to_an_uninterrupted_one(tmp_path, tokenizer):
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    init_weights(model, config)
    save_pretrained(model, tokenizer, tmp_path / "tiny")
    write_sentiment_data(tmp_path / "glue", train_size=48, dev_size=16)

    def command(name):
        args = ["glue", "sst2", "--model", tmp_path / "tiny", "--data-dir", tmp_path / "glue", "--output-dir",
                tmp_path / name, "--precision", "fp32", "--batch-size", "4", "--epochs", "3", "--lr", "1e-3",
                "--eval-every", "5", "--save-every", "2", "--max-seq-length", "32", "--quiet"]
        return bertfit_process(args, tmp_path / f"cache-{name}")

    kill_and_resume(command, tmp_path / "resumed" / "checkpoints", timeout=60)

    whole, again = tmp_path / "whole", tmp_path / "resumed"
    a, b = (json.loads((run / "results.json").read_text()) for run in (whole, again))
    assert a["steps"] == b["steps"] == 36
    for key in ("metrics", "best_step", "history", "stopped_early"):
        assert a[key] == b[key], key
    assert log_entries(whole) == log_entries(again)
    last = runs.CheckpointStore(whole / "checkpoints").checkpoints()[0].name
    for weights in (Path("model") / "model.safetensors", Path("checkpoints") / last / "model.safetensors"):
        assert (whole / weights).read_bytes() == (again / weights).read_bytes(), weights


# ---- empty data ----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_an_empty_training_set_is_refused_before_the_run_dir_is_made(tmp_path):
    with pytest.raises(errors.DataError, match="no training examples"):
        train(tmp_path / "run", features=TRAIN.select(np.arange(0)))
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(60)
def test_the_loop_itself_refuses_zero_batches(tmp_path):
    with pytest.raises(errors.DataError, match="no training examples"):
        training.Trainer(tiny.classifier(), TRAIN.select(np.arange(0)), tiny.classification_loss, tiny.accuracy_on(DEV),
                         lambda model, metrics: None, SETTINGS, tmp_path, tiny.PAD, CPU, None)


def test_a_run_dir_is_new_empty_holds_only_a_killed_runs_lock_or_holds_a_run(tmp_path):
    runs.check_output_dir(tmp_path / "new")
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / ".lock").write_text("")
    runs.check_output_dir(tmp_path / "killed")
    train(tmp_path / "run", settings=replace(SETTINGS, epochs=1))
    runs.check_output_dir(tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a bertfit run \\(notes.txt\\)"):
        runs.check_output_dir(tmp_path / "mine")


# ---- --report-to tensorboard --------------------------------------------------------------------

def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of RUN_DIR/tensorboard as TensorBoard's own reader gives it, orphaned steps kept (so a step
    written twice shows twice): tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0},
                              purge_orphaned_data=False).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def logged_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    entries = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]
    scalars = {}
    for e in entries:
        for key, value in e.items():
            if e["event"] in ("train", "eval") and key not in ("event", "step", "epoch"):
                scalars.setdefault(f"{e['event']}/{key}", []).append((e["step"], value))
    return scalars


def assert_events_are_the_log(run_dir):
    events, logged = tensorboard_scalars(run_dir), logged_scalars(run_dir)
    assert events.keys() == logged.keys()
    assert {"train/loss", "train/lr", "train/tokens_per_s", "eval/accuracy", "eval/loss"} <= events.keys()
    for tag, values in logged.items():
        assert [step for step, _ in events[tag]] == [step for step, _ in values], tag  # each step once, in order
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in values], rel=1e-6), tag  # float32 there


TENSORBOARD = replace(SETTINGS, report_to="tensorboard")


def test_report_to_tensorboard_writes_the_logged_scalars_as_event_files(tmp_path):
    train(tmp_path, TENSORBOARD)
    assert_events_are_the_log(tmp_path)


def test_a_resumed_run_writes_no_step_twice_in_its_tensorboard_events(tmp_path):
    # killed in step 9 (loss call 17: step 6, the last of its epoch, has one micro-batch): its checkpoint is step
    # 6's, and it had logged step 8, which the resumed run logs again
    with pytest.raises(Interrupted):
        train(tmp_path, TENSORBOARD, loss_fn=counting_loss(interrupt_at=17))
    assert 8 in [step for step, _ in tensorboard_scalars(tmp_path)["train/loss"]]
    assert [p.name for p in runs.CheckpointStore(tmp_path / "checkpoints").checkpoints()][0] == "step-00000006"
    train(tmp_path, TENSORBOARD)
    assert_events_are_the_log(tmp_path)
    assert [step for step, _ in tensorboard_scalars(tmp_path)["train/loss"]] == [2, 4, 6, 8, 10, 12]


def test_report_to_tensorboard_without_the_package_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from mistakes import refused

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    message = refused(["pretrain", "--size", "tiny", "--tokenizer", "tokenizer.json", "--train-file", "text.txt",
                       "--output-dir", tmp_path / "run", "--report-to", "tensorboard"], watch=[tmp_path], capsys=capsys)
    assert "pip install tensorboard" in message
    message = refused(["glue", "sst2", "--output-dir", tmp_path / "run", "--report-to", "wandb"], watch=[tmp_path],
                      capsys=capsys)
    assert "--report-to: invalid choice: 'wandb'" in message
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        train(tmp_path / "api", TENSORBOARD)
    assert not (tmp_path / "api").exists()


# ---- what the console says ----------------------------------------------------------------------

def fit_loudly(run_dir, settings):
    return training.fit(tiny.classifier(), TRAIN, tiny.classification_loss, tiny.accuracy_on(DEV), lambda m, s: None,
                        settings, run_dir, tiny.PAD, CPU, run_fingerprint={"model": "tiny"}, quiet=False)


def test_a_run_that_stops_before_its_planned_steps_still_shows_its_last_logged_step(tmp_path, capsys):
    # plain lines (not a terminal) come every 15 s and at the planned last step; a spent time budget ends sooner
    result = fit_loudly(tmp_path, replace(SETTINGS, max_time=1e-6))
    assert result.time_budget["out_of_time"] and result.steps == 1
    logged = [e["step"] for e in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
              if e["event"] == "train"]
    shown = [int(line.split()[1].split("/")[0]) for line in capsys.readouterr().err.splitlines()
             if line.startswith("train ")]
    assert logged == [1] and shown[-1] == logged[-1]


def test_a_time_budget_says_its_plan_before_training_and_when_it_is_fitted_and_refitted(tmp_path, capsys):
    settings = replace(SETTINGS, epochs=8, max_time=3600.0, eval_every=30, save_every=0)  # 48 steps fit easily
    fit_loudly(tmp_path, settings)
    err = capsys.readouterr().err
    said = [line.strip() for line in err.splitlines() if "time budget" in line]
    assert said[0] == "time budget 1:00:00: the steps that fit are measured by step 24, and the schedule is then " \
                      "fitted to them (the epochs allow 48)"
    assert said[1].startswith("time budget 1:00:00: 48 steps fit, at ") and "over steps 5-24" in said[1]
    assert said[2].startswith("time budget refitted: the first evaluation took ") and "48 steps fit" in said[2]
    assert err.index(said[0]) < err.index("step 30/48 eval")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_the_eta_of_a_run_with_a_time_budget_is_never_past_the_budget(monkeypatch):
    from bertfit import progress

    clock = FakeClock()
    monkeypatch.setattr(progress, "time", clock)
    budgeted, unbudgeted = io.StringIO(), io.StringIO()
    bars = [progress.Progress(1000, "train", stream=budgeted, plain_every=0, time_left=180),
            progress.Progress(1000, "train", stream=unbudgeted, plain_every=0)]
    clock.now = 4.0  # the first step took 4 s: the epochs' 999 more would take 1:06:36
    for bar in bars:
        bar.update(1)
    assert budgeted.getvalue().strip().endswith("0:04 elapsed, ETA 2:56")
    assert unbudgeted.getvalue().strip().endswith("0:04 elapsed, ETA 1:06:36")


# ---- what a library call leaves, and whose folder is a run dir --------------------------------------

@pytest.mark.timeout(180)
def test_fit_leaves_the_allocator_and_the_random_stream_as_they_were():
    code = ("import sys; sys.path.insert(0, {tests!r})\n"
            "import tempfile, torch, tiny\n"
            "from bertfit import devices, training\n"
            "from bertfit.settings import TrainSettings\n"
            "with tempfile.TemporaryDirectory() as run_dir:\n"
            "    training.fit(tiny.classifier(), tiny.features(16), tiny.classification_loss, lambda m: {{'a': 0.0}},\n"
            "                 lambda m, s: None, TrainSettings(epochs=1, batch_size=8, precision='fp32'), run_dir,\n"
            "                 tiny.PAD, torch.device('cpu'), quiet=True)\n"
            "print(devices._allocator_tuned)\n"
            "model, features = tiny.classifier(), tiny.features(16)\n"
            "torch.manual_seed(7); expected = torch.rand(3); torch.manual_seed(7)\n"
            "with tempfile.TemporaryDirectory() as run_dir:\n"
            "    training.fit(model, features, tiny.classification_loss, lambda m: {{'a': 0.0}},\n"
            "                 lambda m, s: None, TrainSettings(epochs=1, batch_size=8, precision='fp32'), run_dir,\n"
            "                 tiny.PAD, torch.device('cpu'), quiet=True)\n"
            "print(torch.equal(torch.rand(3), expected))\n").format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=170,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    # the CLI tunes the process it owns; fit does not, and gives the caller's random stream back as it was
    assert done.stdout.strip().splitlines()[-2:] == ["False", "True"]


def test_a_run_json_of_someone_else_does_not_make_a_run_dir(tmp_path):
    (tmp_path / "run.json").write_text('{"exp": 1}')
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mine").write_text("mine")
    with pytest.raises(ConfigError, match="not a bertfit run"):
        runs.check_output_dir(tmp_path)
    assert (tmp_path / "checkpoints" / "mine").read_text() == "mine"
    (tmp_path / "run.json").write_text("{}")  # what a claimed run dir holds before training
    runs.check_output_dir(tmp_path)
