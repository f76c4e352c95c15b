"""training.fit and predicting.predict under two gloo processes on CPU, against one process."""
import json
import os
import socket
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

import tiny
from bertfit import devices, files, predicting, runs, suite, training
from bertfit.errors import BertfitError, ConfigError
from bertfit.recipes.glue import GlueOptions
from bertfit.recipes.squad import span_loss
from bertfit.settings import TrainSettings

CPU = torch.device("cpu")
TRAIN = tiny.features(9, seed=1)  # batches of 4, 4 and 1: in the last, rank 1 has no example
DEV = tiny.features(7, seed=2)
PREDICT = {"many": tiny.features(13, seed=3), "fewer batches than ranks": tiny.features(3, seed=4)}
# no dropout: two processes draw different noise than one; everything else is the same computation.
# Under torchrun embedding rows update densely, so the one-process run does too.
SETTINGS = TrainSettings(epochs=2, lr=1e-3, batch_size=4, warmup_ratio=0.2, precision="fp32", save_every=2,
                         log_every=1, seed=3, lazy_embeddings=False)
RUNS = {  # name -> (model, loss, evaluation, settings)
    "plain": (tiny.classifier, tiny.classification_loss, tiny.accuracy_on, SETTINGS),
    "accumulated": (tiny.classifier, tiny.classification_loss, tiny.accuracy_on, replace(SETTINGS, grad_accum=2)),
    # the span head and the loss the SQuAD recipe trains it with
    "span": (tiny.span_model, span_loss, tiny.span_accuracy_on, replace(SETTINGS, grad_accum=2, max_steps=3)),
    # one block's weights used by both layers: DDP reduces its gradient once, summed over the uses
    "albert": (tiny.albert_classifier, tiny.classification_loss, tiny.accuracy_on, SETTINGS),
}


class Interrupted(Exception):
    """Stands in for a crash: raised inside the loop, it leaves the run dir as a kill would."""


def interrupted_at(call: int, loss):
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        if calls[0] == call:
            raise Interrupted
        return loss(model, batch)

    return loss_fn


def run(name: str, run_dir: Path, loss=None, settings=None):
    """One fit of a fresh model; returns (result, model, how many times save_best was called)."""
    make_model, run_loss, evaluation, run_settings = RUNS[name]
    loss, settings = loss or run_loss, settings or run_settings
    model = make_model(dropout=0.0)
    saves = []
    result = training.fit(model, TRAIN, loss, evaluation(DEV), lambda m, metrics: saves.append(metrics), settings,
                          run_dir, tiny.PAD, CPU, run_fingerprint={"model": name}, quiet=True)
    return result, model, len(saves)


def worker(rank: int, world_size: int, port: int, out: Path) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    # what PyTorch's C++ side warns about goes straight to file descriptor 2: keep it for the tests
    with open(out / f"stderr-rank{rank}.txt", "w") as stderr:
        os.dup2(stderr.fileno(), 2)
    device = devices.setup_distributed()
    assert devices.world() == (rank, world_size) and device == CPU
    try:
        for name in RUNS:
            # rank 1 gets a folder of its own, which must stay untouched: only rank 0 writes
            result, model, saves = run(name, out / (name if rank == 0 else f"{name}-rank1"))
            save_file(tiny.weights(model), out / f"{name}-rank{rank}.safetensors")
            (out / f"{name}-rank{rank}.json").write_text(json.dumps(
                {"steps": result.steps, "history": result.history, "saves": saves}))
        # killed after the checkpoint of step 4 (of 6) and started again, on machines that share no file
        # system: rank 1's folder never holds a checkpoint
        resumed = out / ("resumed" if rank == 0 else "resumed-rank1")
        try:
            run("plain", resumed, loss=interrupted_at(5, tiny.classification_loss))
        except Interrupted:
            pass
        result, model, _ = run("plain", resumed)
        save_file(tiny.weights(model), out / f"resumed-rank{rank}.safetensors")
        try:
            run("plain", resumed, settings=replace(SETTINGS, lr=2e-3))
            refusal = None
        except ConfigError as exc:
            refusal = str(exc)
        (out / f"resumed-rank{rank}.json").write_text(json.dumps(
            {"steps": result.steps, "history": result.history, "refusal": refusal}))
        # `bertfit glue all` run again reads a finished task back, from rank 0's folder alone; a rank that
        # trained instead would not find this model
        options = GlueOptions(task="sst2", model=str(out / "no-such-model"), quiet=True,
                              output_dir=str(out / ("suite" if rank == 0 else "suite-rank1")))
        if rank == 0:
            (out / "suite").mkdir()
            files.write_json(out / "suite" / "results.json", {"task": "sst2", "metrics": {"accuracy": 0.75}})
            files.write_json(out / "suite" / "request.json", suite.run_request(options, asdict(SETTINGS)))
        try:
            results, trained = suite.run_task(options, asdict(SETTINGS), "sst2", lambda *args: None)
            read_back = {"results": results, "trained": trained}
        except BertfitError as exc:
            read_back = {"error": str(exc)}
        (out / f"suite-rank{rank}.json").write_text(json.dumps(read_back))
        model = tiny.span_model().eval()
        for name, features in PREDICT.items():
            starts, ends = predicting.predict(model, features, tiny.PAD, CPU, batch_size=4, precision="fp32",
                                              per_token=True)
            np.savez(out / f"predict-{name}-rank{rank}.npz", lengths=[len(s) for s in starts],
                     starts=np.concatenate(starts), ends=np.concatenate(ends))
    finally:
        dist.destroy_process_group()
    # Gloo's threads may still be winding down when the interpreter finalizes, which now and then
    # aborts the process (torch 2.13). Everything is on disk: leave without finalizing.
    os._exit(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run `worker` on two processes; the folder they wrote their results to."""
    out = tmp_path_factory.mktemp("ddp")
    processes = mp.start_processes(worker, args=(2, free_port(), out), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    try:
        while not processes.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("the ranks did not finish in 120 s: a collective waits for a rank that never joins it")
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.kill()
    return out


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: run(name, tmp_path_factory.mktemp(name)) for name in RUNS}
    finally:
        torch.set_num_threads(threads)


# A shift of every token's logit alike leaves a softmax unchanged, so the gradients of these span-model
# parameters are rounding noise, which Adam magnifies into steps of any size: they are not compared.
SHIFT_ONLY = {"qa_outputs.bias", "bert.layers.1.output_norm.bias"}


def assert_close(a: dict, b: dict, atol: float = 1e-5):
    assert a.keys() == b.keys()
    for key in a.keys() - SHIFT_ONLY:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=0), (key, (a[key] - b[key]).abs().max().item())


@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_train_the_same_weights_as_one(two_ranks, one_rank, name):
    result, model, saves = one_rank[name]
    for rank in range(2):
        assert_close(load_file(two_ranks / f"{name}-rank{rank}.safetensors"), tiny.weights(model))
        record = json.loads((two_ranks / f"{name}-rank{rank}.json").read_text())
        assert record["steps"] == result.steps
        # every rank evaluates the whole dev set (predict gathers it), so all see the same metrics
        assert [e["step"] for e in record["history"]] == [e["step"] for e in result.history]
        for theirs, ours in zip(record["history"], result.history):
            assert theirs == pytest.approx(ours, abs=1e-4)


def test_a_resumed_run_continues_on_every_rank_from_rank_0s_checkpoint(two_ranks, one_rank):
    result, model, _ = one_rank["plain"]
    for rank in range(2):
        assert_close(load_file(two_ranks / f"resumed-rank{rank}.safetensors"), tiny.weights(model))
        record = json.loads((two_ranks / f"resumed-rank{rank}.json").read_text())
        assert record["steps"] == result.steps
        assert [e["step"] for e in record["history"]] == [e["step"] for e in result.history]
    assert not (two_ranks / "resumed-rank1").exists()


def test_a_refused_resume_stops_every_rank_with_rank_0s_reason(two_ranks):
    refusals = [json.loads((two_ranks / f"resumed-rank{rank}.json").read_text())["refusal"] for rank in range(2)]
    assert refusals[0] == refusals[1] and "different lr (0.001 before, 0.002 now)" in refusals[0]
    assert str(two_ranks / "resumed") in refusals[1]


def test_a_finished_suite_task_is_read_back_on_every_rank_from_rank_0s_folder(two_ranks):
    for rank in range(2):
        assert json.loads((two_ranks / f"suite-rank{rank}.json").read_text()) == \
            {"results": {"task": "sst2", "metrics": {"accuracy": 0.75}}, "trained": False}


def test_accumulating_gradients_over_ranks_matches_one_pass(two_ranks):
    accumulated, plain = (load_file(two_ranks / f"{name}-rank0.safetensors") for name in ("accumulated", "plain"))
    assert_close(accumulated, plain)


@pytest.mark.parametrize("name", list(RUNS))
def test_only_rank_0_writes_checkpoints_logs_and_the_best_model(two_ranks, name):
    assert not (two_ranks / f"{name}-rank1").exists()
    assert json.loads((two_ranks / f"{name}-rank1.json").read_text())["saves"] == 0
    assert json.loads((two_ranks / f"{name}-rank0.json").read_text())["saves"] >= 1
    run_dir = two_ranks / name
    assert (run_dir / "log.jsonl").exists() and (run_dir / "run.json").exists()
    newest = runs.CheckpointStore(run_dir / "checkpoints").checkpoints()[0]
    steps = json.loads((two_ranks / f"{name}-rank0.json").read_text())["steps"]
    assert json.loads((newest / "state.json").read_text())["step"] == steps


def test_ddp_is_not_asked_to_search_for_unused_parameters(two_ranks):
    for rank in range(2):
        stderr = (two_ranks / f"stderr-rank{rank}.txt").read_text()
        assert "find_unused_parameters" not in stderr, stderr


@pytest.mark.parametrize("name", list(PREDICT))
def test_predict_on_two_ranks_returns_each_example_once_in_order(two_ranks, name):
    features = PREDICT[name]
    starts, ends = predicting.predict(tiny.span_model().eval(), features, tiny.PAD, CPU, batch_size=4,
                                      precision="fp32", per_token=True)
    for rank in range(2):
        with np.load(two_ranks / f"predict-{name}-rank{rank}.npz") as theirs:
            assert theirs["lengths"].tolist() == features.lengths.tolist()
            assert np.allclose(theirs["starts"], np.concatenate(starts), atol=1e-5)
            assert np.allclose(theirs["ends"], np.concatenate(ends), atol=1e-5)
