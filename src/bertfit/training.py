"""The one training loop every task shares.

A task hands `fit` its encoded features, a loss and an evaluation; the loop owns the rest:
length-grouped batches, mixed precision, AdamW with warmup and linear decay, gradient
accumulation, clipping, periodic evaluation with the best model kept, early stopping,
atomic checkpoints that resume exactly, and torchrun (DistributedDataParallel) when launched so.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import runs
from .batching import GROUP_BATCHES, Features, collate, length_grouped_batches, shard
from .devices import autocast, barrier, is_main_process, resolve_precision, tune_allocator, world
from .errors import BertfitError, ConfigError
from .model import set_attention_dropout
from .optim import EmbeddingRowGrads, clip_gradients, linear_schedule, make_optimizer
from .progress import Progress


@dataclass
class TrainSettings:
    """Training options shared by every task; the CLI's defaults come from here."""

    epochs: float = 3.0
    lr: float = 2e-5
    batch_size: int = 32  # global: examples per optimizer step, whatever the world size
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 42
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    eval_every: int = 0  # optimizer steps between evaluations; 0 = once per epoch
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    save_every: int = 0  # optimizer steps between checkpoints; 0 = only at evaluations
    keep_checkpoints: int = 2
    eval_batch_size: int = 128
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs)
    skip_nonfinite: bool = False  # skip a step whose loss or gradient is not finite, instead of stopping
    # Dropout on the attention probabilities while fine-tuning (BERT's config says 0.1). Without it,
    # long sequences (SQuAD) keep scaled_dot_product_attention's fused kernel, which does not take
    # dropout on CPU; dev accuracy holds (README). None: the model config's value.
    attention_dropout: float | None = 0.0
    # AdamW moves an embedding row only in the steps whose batch uses it (EmbeddingRowGrads); False:
    # every row every step, as dense AdamW does. One CPU process, bf16 or fp32; otherwise updates are dense.
    lazy_embeddings: bool = True
    log_every: int = 10

    def validate(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.eval_batch_size < 1:
            raise ConfigError("--batch-size, --grad-accum and --eval-batch-size must be at least 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("--epochs must be positive")
        if self.seed < 0:
            raise ConfigError(f"--seed must be zero or positive, not {self.seed}")


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
    return {**shaping, "train data": runs.features_digest(train),
            "batch order": f"length-grouped, {GROUP_BATCHES} batches per group"}


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
    with runs.RunLock(run_dir) if is_main_process() else contextlib.nullcontext():
        # Sparse embedding gradients in one CPU process, where they were measured; lazy updates also need
        # no fp16 loss scaling (a step the scaler skips could not undo a row update).
        lazy = settings.lazy_embeddings and resolve_precision(settings.precision, device) != torch.float16
        row_grads = EmbeddingRowGrads(model, lazy) if world()[1] == 1 and device.type == "cpu" else None
        try:
            return _fit(model, train, loss_fn, evaluate, save_best, settings, Path(run_dir), pad_id, device, resume,
                        {**(run_fingerprint or {}), **run_fingerprint_of(settings, train)}, quiet, row_grads)
        finally:
            if row_grads:
                row_grads.restore()


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

    store = runs.CheckpointStore(run_dir / "checkpoints", keep=settings.keep_checkpoints)
    if resume and store.checkpoints():
        # every rank checks, so a refusal stops them all rather than leave some waiting for the others
        runs.check_fingerprint(run_dir / "run.json", fingerprint)
    barrier(world_size)
    if main:
        if not resume:
            store.clear()
        runs.record_fingerprint(run_dir / "run.json", fingerprint)
    barrier(world_size)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": 0,
             "best_metrics": {}, "evals_without_improvement": 0, "stopped_early": False, "examples_seen": 0,
             "train_seconds": 0.0, "skipped_steps": 0, "loss_sum": 0.0, "loss_examples": 0, "history": []}
    restored = store.load_latest(model, optimizer, scheduler, scaler, warn=main) if resume else None
    if restored is not None:
        state.update(restored)
        if main and not quiet:
            print(f"resuming from step {state['step']} (epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']})")
    log = runs.JsonlLog(run_dir / "log.jsonl") if main else None
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


def settings_dict(settings: TrainSettings) -> dict:
    return asdict(settings)

