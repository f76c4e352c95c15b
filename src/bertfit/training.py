"""The one training loop every task shares, and batched inference.

A task hands `fit` its encoded features, a loss and an evaluation; the loop owns the rest:
length-grouped batches, mixed precision, AdamW with warmup and linear decay, gradient
accumulation, clipping, periodic evaluation with the best model kept, early stopping,
atomic checkpoints that resume exactly, and torchrun (DistributedDataParallel) when launched so.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import checkpointing
from .batching import GROUP_BATCHES, Features, collate, eval_batches, length_grouped_batches, shard
from .errors import BertfitError, ConfigError, Interrupted
from .model import BertSelfAttention
from .progress import Progress
from .settings import TrainSettings


@dataclass
class FitResult:
    best_metrics: dict
    best_step: int
    steps: int
    train_seconds: float
    train_examples_seen: int
    stopped_early: bool
    history: list = field(default_factory=list)
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient (--skip-nonfinite)

    def summary(self) -> dict:
        """The training part of a run's results.json."""
        return {"best_step": self.best_step, "steps": self.steps, "stopped_early": self.stopped_early,
                "skipped_steps": self.skipped_steps, "train_seconds": round(self.train_seconds, 1),
                "train_examples_per_second": round(self.train_examples_seen / max(self.train_seconds, 1e-9), 1),
                "history": self.history}


# ---- devices, precision, distribution -----------------------------------------------------------

def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not launched by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed() -> torch.device:
    """Join the torchrun process group when launched by torchrun; return this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def is_main_process() -> bool:
    return world()[0] == 0


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """auto: bf16 where the hardware runs it fast (CPUs with AVX-512 BF16 / AMX, recent GPUs), else fp16 on GPU, else fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("--precision fp16 needs a GPU; on CPU use bf16 or fp32")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    capability = torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if "AVX512" in capability or "AMX" in capability else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_attention_dropout(model: nn.Module, p: float) -> None:
    """Dropout on attention probabilities for training; the saved config keeps the checkpoint's value."""
    for module in model.modules():
        if isinstance(module, BertSelfAttention):
            module.dropout_p = p


_allocator_tuned = False


def tune_allocator(device: torch.device) -> None:
    """On CPU, keep freed memory in the process for the next step instead of returning it to the kernel.

    glibc serves blocks above its mmap threshold (128 KiB at first, raised as such blocks are freed)
    straight from the kernel and unmaps them on free, and trims the heap top as it empties, so a
    step's activations, weight casts and gradients of a few MB keep arriving as fresh pages that are
    faulted in and zeroed one by one: with glibc's starting thresholds a 32-sentence SST-2 step on CPU
    took 136-158 ms against 75 ms with these (bench/levers.py, alternated in one process). The threshold goes to its
    32 MiB maximum and trimming waits for 1 GiB of free heap. It changes where memory comes from,
    never what is computed, for the rest of the process: freed memory stays with it for reuse (up
    to 1 GiB) rather than going back to the system. Without glibc's mallopt it does nothing.
    """
    global _allocator_tuned
    if _allocator_tuned or device.type != "cpu" or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)


# ---- optimizer and schedule ---------------------------------------------------------------------

def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases and LayerNorm weights are not decayed."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel updates all 22M+ parameters in one pass; it matters when steps are small
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 to the peak, then linear decay to 0 at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EmbeddingRowGrads:
    """Embedding gradients through the rows a step touched, and (`lazy`) AdamW on those rows alone.

    A batch reads a few hundred of the 30k word-embedding rows, yet the dense gradient of a lookup
    is a fresh zero-filled matrix the size of the table (47 MB for a 384-wide model) every step,
    which clipping then reads and scales. The lookups run sparse instead; `coalesce` sums each row's
    contributions and clipping works on those rows alone. Then, before the optimizer steps:

    - lazy (the default): AdamW updates the touched rows from their own moments, with the table's
      step count for bias correction, and leaves the other rows as they are, as TensorFlow's
      LazyAdam and PyTorch's SparseAdam do. Exact AdamW would also move every untouched row a little
      (the decay of its moments, weight decay), which is half of the optimizer's memory traffic on a
      22.7M-parameter model; a row used in every step gets exactly AdamW's update.
    - dense: the rows are written into a persistent buffer whose previous rows are zeroed first,
      and the optimizer sees the same dense gradient as it would without any of this.

    The loop uses this in one CPU process. Under DistributedDataParallel the embeddings stay dense
    (its all-reduce wants dense gradients) and so do their updates; on GPUs, where a dense table
    costs little, so do they; with fp16 loss scaling the rows are dense-updated (a step the scaler
    skips could not undo a row update).
    """

    def __init__(self, model: nn.Module, lazy: bool):
        self.modules = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.weight.requires_grad]
        self.weights = [m.weight for m in self.modules]
        self.was_sparse = [m.sparse for m in self.modules]
        self.lazy = lazy
        for module in self.modules:
            module.sparse = True
        self.buffers: dict[int, torch.Tensor] = {}  # dense mode, made at the first step on the training device
        self.rows: dict[int, torch.Tensor] = {}

    def restore(self) -> None:
        """The lookups as the model came: whoever trains it next may not expect sparse gradients."""
        for module, was_sparse in zip(self.modules, self.was_sparse):
            module.sparse = was_sparse

    def coalesce(self) -> None:
        """One entry per touched row: micro-batches and repeated tokens summed."""
        for weight in self.weights:
            if weight.grad is not None and weight.grad.is_sparse:
                weight.grad = weight.grad.coalesce()

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Lazy: update the touched rows and clear the gradient, so the optimizer passes the table by.
        Dense: hand the optimizer the dense gradient."""
        for weight in self.weights:
            if weight.grad is None or not weight.grad.is_sparse:
                continue
            grad = weight.grad.coalesce()
            if self.lazy:
                self._adamw_rows(optimizer, weight, grad.indices()[0], grad.values())
                weight.grad = None
            else:
                weight.grad = self._dense(weight, grad)

    def _dense(self, weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        buffer = self.buffers.get(id(weight))
        if buffer is None:
            buffer = self.buffers[id(weight)] = torch.zeros_like(weight)
        elif id(weight) in self.rows:
            buffer.index_fill_(0, self.rows[id(weight)], 0.0)
        rows = grad.indices()[0]
        buffer.index_copy_(0, rows, grad.values())
        self.rows[id(weight)] = rows
        return buffer

    @staticmethod
    @torch.no_grad()
    def _adamw_rows(optimizer: torch.optim.Optimizer, weight: torch.Tensor, rows: torch.Tensor,
                    grad: torch.Tensor) -> None:
        """torch.optim.AdamW's update (decoupled weight decay, bias correction) on `rows` of `weight`.

        The moments live in the optimizer's own state for the table, under AdamW's names, so they
        are checkpointed and resumed with the rest of the optimizer.
        """
        group = next(g for g in optimizer.param_groups if any(p is weight for p in g["params"]))
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        state = optimizer.state[weight]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32, device=weight.device)
            state["exp_avg"] = torch.zeros_like(weight)
            state["exp_avg_sq"] = torch.zeros_like(weight)
        state["step"] += 1
        step = float(state["step"])
        exp_avg = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        param = weight.index_select(0, rows).mul_(1 - lr * weight_decay)
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        weight.index_copy_(0, rows, param)


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """The total gradient norm; the gradients are scaled down to max_norm only when they exceed it.

    A coalesced sparse gradient counts through its stored rows, which hold all its nonzeros.
    """
    grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if norm > max_norm:  # one host sync per step, which the loop pays for the log anyway
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return norm


# ---- the loop -----------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, dict], torch.Tensor]  # summed loss over the batch's examples
EvalFn = Callable[[nn.Module], dict]  # metrics; the first key is the one that picks the best model
SaveFn = Callable[[nn.Module, dict], None]  # keep this model as the best so far

# Settings a resumed run may change: they do not alter what is trained.
RESUMABLE_SETTINGS = ("log_every", "keep_checkpoints")


def step_seed(seed: int, step: int, rank: int) -> int:
    """The random seed of one optimizer step on one rank.

    Dropout draws from a generator seeded afresh each step, so the noise depends on where the run
    is and never on its history: a resumed run draws exactly what an uninterrupted one would.
    """
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def run_fingerprint_of(settings: TrainSettings, train: Features) -> dict:
    """What must not change for a checkpoint to resume this run: the settings that shape training, and the data."""
    shaping = {k: v for k, v in asdict(settings).items() if k not in RESUMABLE_SETTINGS}
    return {**shaping, "train data": checkpointing.features_digest(train),
            "batch order": f"length-grouped, {GROUP_BATCHES} batches per group"}


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def fit(model: nn.Module, train: Features, loss_fn: LossFn, evaluate: EvalFn, save_best: SaveFn,
        settings: TrainSettings, run_dir: Path, pad_id: int, device: torch.device,
        resume: bool = True, run_fingerprint: dict | None = None, quiet: bool = False) -> FitResult:
    """Train `model` on `train`; evaluate, keep the best, checkpoint, and resume where a run stopped.

    Under torchrun every rank calls `fit` (and `evaluate`, which may gather across ranks); rank 0
    alone writes into `run_dir` and calls `save_best`. `run_fingerprint` names what else must match
    for a checkpoint to be resumed (model, task, ...); the settings and the data are checked here.
    """
    settings.validate()
    tune_allocator(device)
    with checkpointing.RunLock(run_dir) if is_main_process() else contextlib.nullcontext():
        # Sparse embedding gradients in one CPU process, where they were measured; lazy updates also need
        # no fp16 loss scaling (a step the scaler skips could not undo a row update).
        lazy = settings.lazy_embeddings and resolve_precision(settings.precision, device) != torch.float16
        row_grads = EmbeddingRowGrads(model, lazy) if world()[1] == 1 and device.type == "cpu" else None
        try:
            return _fit(model, train, loss_fn, evaluate, save_best, settings, Path(run_dir), pad_id, device, resume,
                        {**(run_fingerprint or {}), **run_fingerprint_of(settings, train)}, quiet, row_grads)
        except KeyboardInterrupt:
            raise Interrupted(after_interrupt(Path(run_dir), settings, resume)) from None
        finally:
            if row_grads:
                row_grads.restore()


def resume_note(state: dict, total_steps: int, batches_per_epoch: int, run_dir: Path) -> str:
    """What a rerun in a run dir with checkpoints does: nothing more for a finished run, else resume."""
    if state["step"] >= total_steps or state["stopped_early"]:
        how = "stopped early" if state["stopped_early"] and state["step"] < total_steps else "finished"
        return (f"{run_dir} holds a run that {how} after {state['step']} steps, so there is nothing to train; "
                f"its results are written again. To train anew, pass --overwrite or choose another --output-dir")
    where = f"batch {state['batch_in_epoch']} of {batches_per_epoch}" if state["batch_in_epoch"] else "the start"
    return f"resuming from step {state['step']} of {total_steps}: {where} of epoch {state['epoch'] + 1}"


def after_interrupt(run_dir: Path, settings: TrainSettings, resumed: bool) -> str:
    """What rerunning the command does after Ctrl-C: resume from the newest checkpoint, or start again."""
    newest = checkpointing.CheckpointStore(run_dir / "checkpoints").checkpoints()
    if newest:
        again = "rerun the same command" if resumed else "rerun the command without --overwrite"
        return f"interrupted; {again} to resume from the checkpoint of step {int(newest[0].name[5:])} ({newest[0]})"
    when = "at each evaluation" + (f" and every {settings.save_every} steps" if settings.save_every else "")
    return (f"interrupted before the first checkpoint (one is written {when}); rerunning the command starts "
            f"this run again from step 0")


def _fit(model, train, loss_fn, evaluate, save_best, settings, run_dir, pad_id, device, resume, fingerprint,
         quiet, row_grads) -> FitResult:
    rank, world_size = world()
    main = rank == 0
    dtype = resolve_precision(settings.precision, device)
    model.to(device)
    if settings.attention_dropout is not None:
        set_attention_dropout(model, settings.attention_dropout)

    batches_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = settings.max_steps or max(1, math.ceil(batches_per_epoch * settings.epochs))
    warmup_steps = int(settings.warmup_ratio * total_steps)
    micro = settings.batch_size // settings.grad_accum
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    scheduler = linear_schedule(optimizer, warmup_steps, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    # find_unused_parameters: a head may leave parameters out of the loss (the QA head never reads
    # the pooler), and DDP would wait for their gradients forever
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True) if world_size > 1 else model

    store = checkpointing.CheckpointStore(run_dir / "checkpoints", keep=settings.keep_checkpoints)
    if resume and store.checkpoints():
        # every rank checks, so a refusal stops them all rather than leave some waiting for the others
        checkpointing.check_fingerprint(run_dir / "run.json", fingerprint)
    barrier(world_size)
    if main:
        if not resume:
            store.clear()
        checkpointing.record_fingerprint(run_dir / "run.json", fingerprint)
    barrier(world_size)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": 0,
             "best_metrics": {}, "evals_without_improvement": 0, "stopped_early": False, "examples_seen": 0,
             "train_seconds": 0.0, "skipped_steps": 0, "loss_sum": 0.0, "loss_examples": 0, "history": []}
    restored = store.load_latest(model, optimizer, scheduler, scaler, warn=main) if resume else None
    if restored is not None:
        state.update(restored)
        if main and not quiet:
            print(resume_note(state, total_steps, batches_per_epoch, run_dir))
    log = checkpointing.JsonlLog(run_dir / "log.jsonl") if main else None
    if log:
        log.rewind(state["step"])
    progress = Progress(total_steps, "train", enabled=main and not quiet, initial=state["step"])
    start_time = time.perf_counter() - state["train_seconds"]

    def save_checkpoint() -> None:
        if main:
            store.save(model, optimizer, scheduler, scaler, state)

    def run_evaluation() -> None:
        """Evaluate, keep the best model, note whether patience has run out, and checkpoint."""
        metrics = evaluate(model)
        key = next(iter(metrics))
        entry = {"event": "eval", "step": state["step"], "epoch": round(state["step"] / batches_per_epoch, 3), **metrics}
        state["history"].append(entry)
        if state["best_metric"] is None or metrics[key] > state["best_metric"]:
            state.update(best_metric=metrics[key], best_step=state["step"], best_metrics=metrics,
                         evals_without_improvement=0)
            if main:
                save_best(model, metrics)
        else:
            state["evals_without_improvement"] += 1
        state["stopped_early"] = bool(settings.patience) and state["evals_without_improvement"] >= settings.patience
        if log:
            log.write(entry)
        progress.note(f"step {state['step']}/{total_steps} eval: "
                      + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        model.train()
        save_checkpoint()  # after the stopping decision, so a resumed run stops too

    model.train()
    done = state["step"] >= total_steps or state["stopped_early"]
    while not done:
        epoch_batches = length_grouped_batches(train.lengths, settings.batch_size, settings.seed, state["epoch"])
        for batch_index in range(state["batch_in_epoch"], len(epoch_batches)):
            global_batch = epoch_batches[batch_index]
            torch.manual_seed(step_seed(settings.seed, state["step"], rank))
            step_loss = torch.zeros((), device=device)
            micro_batches = [global_batch[i : i + micro] for i in range(0, len(global_batch), micro)]
            for i, micro_batch in enumerate(micro_batches):
                indices = shard(micro_batch, rank, world_size)
                # A rank whose share is empty still runs one example, weighted zero: every rank must
                # join each gradient all-reduce, or the others wait for it forever.
                weight = world_size / len(global_batch) if len(indices) else 0.0  # DDP averages over ranks
                batch = collate(train, indices if len(indices) else micro_batch[:1], pad_id)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                last = i == len(micro_batches) - 1
                with contextlib.nullcontext() if last or world_size == 1 else ddp.no_sync():
                    with autocast(device, dtype):
                        loss_sum = loss_fn(ddp, batch)
                    scaler.scale(loss_sum * weight).backward()
                if weight:
                    step_loss += loss_sum.detach().float()
            if world_size > 1:
                dist.all_reduce(step_loss)  # the whole global batch's loss, the same on every rank
            if row_grads:
                row_grads.coalesce()
            scaler.unscale_(optimizer)
            grad_norm = clip_gradients(model, settings.max_grad_norm)
            loss_value, grad_norm = step_loss.item(), grad_norm.item()
            finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
            if not finite and dtype != torch.float16:  # in fp16 the scaler skips overflowing steps itself
                if not settings.skip_nonfinite:
                    newest = store.checkpoints()
                    raise BertfitError(
                        f"step {state['step'] + 1}: the loss ({loss_value}) or the gradient norm ({grad_norm}) is "
                        f"not finite; training stopped. The last good checkpoint is "
                        f"{newest[0] if newest else 'none (none was written yet)'}. Lower --lr, use --precision "
                        f"fp32, or pass --skip-nonfinite to skip such steps")
                state["skipped_steps"] += 1
                if log:
                    log.write({"event": "skipped", "step": state["step"] + 1, "loss": loss_value,
                               "grad_norm": grad_norm})
            else:
                if row_grads:
                    row_grads.before_step(optimizer)
                scaler.step(optimizer)
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state["step"] += 1
            state["batch_in_epoch"] = batch_index + 1
            state["examples_seen"] += len(global_batch)
            state["train_seconds"] = time.perf_counter() - start_time
            if finite:
                state["loss_sum"] += loss_value
                state["loss_examples"] += len(global_batch)

            last_step = state["step"] >= total_steps
            if state["step"] % settings.log_every == 0 or last_step:
                mean_loss = state["loss_sum"] / max(1, state["loss_examples"])
                state.update(loss_sum=0.0, loss_examples=0)
                lr = scheduler.get_last_lr()[0]
                rate = state["examples_seen"] / max(1e-9, state["train_seconds"])
                progress.update(state["step"], loss=mean_loss, lr=lr, rate=rate)
                if log:
                    log.write({"event": "train", "step": state["step"], "loss": round(mean_loss, 6), "lr": lr,
                               "examples_per_s": round(rate, 2), "grad_norm": round(grad_norm, 4)})
            end_of_epoch = batch_index == len(epoch_batches) - 1
            if end_of_epoch:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            evaluate_now = (settings.eval_every and state["step"] % settings.eval_every == 0) or \
                (not settings.eval_every and end_of_epoch) or last_step
            if evaluate_now:
                run_evaluation()
            elif settings.save_every and state["step"] % settings.save_every == 0:
                save_checkpoint()
            if last_step or state["stopped_early"]:
                done = True
                break
    progress.close()
    if state["best_metric"] is None:  # resumed a finished run: evaluate what we have
        run_evaluation()
    return FitResult(best_metrics=state["best_metrics"], best_step=state["best_step"], steps=state["step"],
                     train_seconds=state["train_seconds"], train_examples_seen=state["examples_seen"],
                     stopped_early=state["stopped_early"], history=state["history"],
                     skipped_steps=state["skipped_steps"])


# ---- inference ----------------------------------------------------------------------------------

# On CPU, inference runs fastest in batches that stay in cache: with batches of 2,048 tokens at most,
# SQuAD windows went through at 105 a second against 66 in batches of 128 windows (bench/levers.py),
# and SST-2 sentences as fast as in the best fixed batch size (a one-off sweep over 2,048-8,192
# tokens and 32-256 sequences). GPUs take --eval-batch-size sequences per batch as they are.
CPU_INFERENCE_TOKENS = 2048


@torch.inference_mode()
def predict(model: nn.Module, features: Features, pad_id: int, device: torch.device,
            batch_size: int = 128, precision: str = "auto", per_token: bool = False) -> list:
    """Run the model over all features; each model output comes back in feature order as float32.

    `per_token=False`: one array [n, ...] per output (classification logits).
    `per_token=True`: per output, a list of 1-D arrays trimmed to each sequence's length (span logits).
    Batches are sorted by length so little is spent on pads. Under torchrun each rank predicts
    every world_size-th batch into zeros, and one all-reduce sums the shares: each example is
    counted exactly once, and its numbers are exactly what its rank computed.
    """
    tune_allocator(device)
    rank, world_size = world()
    dtype = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    lengths, offsets = features.lengths, features.offsets
    batches = eval_batches(lengths, batch_size, CPU_INFERENCE_TOKENS if device.type == "cpu" else None)
    mine = batches[rank::world_size]
    results = None  # per output: rows in feature order, or (per_token) tokens end to end as in features.ids
    # a rank without a batch of its own still runs one, to learn the outputs' shapes
    for indices in mine or batches[:1]:
        batch = collate(features, indices, pad_id)
        batch = {k: batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask")}
        with autocast(device, dtype):
            outputs = model(**batch)
        outputs = [o.float().cpu().numpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
        if results is None:
            rows = offsets[-1] if per_token else len(features)
            results = [np.zeros((rows, *o.shape[2 if per_token else 1 :]), np.float32) for o in outputs]
        if not mine:
            break
        for result, output in zip(results, outputs):
            for row, i in enumerate(indices):
                if per_token:
                    result[offsets[i] : offsets[i + 1]] = output[row, : lengths[i]]
                else:
                    result[i] = output[row]
    model.train(was_training)
    if results is None:  # no features
        return []
    if world_size > 1:
        for result in results:
            shares = torch.from_numpy(result).to(device)
            dist.all_reduce(shares)
            result[...] = shares.cpu().numpy()
    if per_token:
        return [[result[offsets[i] : offsets[i + 1]] for i in range(len(features))] for result in results]
    return results


def settings_dict(settings: TrainSettings) -> dict:
    return asdict(settings)


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
