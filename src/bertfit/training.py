"""The one training loop every task shares, and batched inference.

A task hands `fit` its encoded features, a loss and an evaluation; the loop owns the rest:
length-grouped batches, mixed precision, AdamW with warmup and linear decay, gradient
accumulation, clipping, periodic evaluation with the best model kept, early stopping,
atomic checkpoints that resume exactly, and torchrun (DistributedDataParallel) when launched so.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import checkpointing
from .batching import Features, collate, eval_batches, length_grouped_batches, shard
from .errors import BertfitError, ConfigError
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


@dataclass
class FitResult:
    best_metrics: dict
    best_step: int
    steps: int
    train_seconds: float
    train_examples_seen: int
    stopped_early: bool
    history: list = field(default_factory=list)


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


# ---- the loop -----------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, dict], torch.Tensor]  # summed loss over the batch's examples
EvalFn = Callable[[nn.Module], dict]  # metrics; the first key is the one that picks the best model
SaveFn = Callable[[nn.Module, dict], None]  # keep this model as the best so far


def fit(model: nn.Module, train: Features, loss_fn: LossFn, evaluate: EvalFn, save_best: SaveFn,
        settings: TrainSettings, run_dir: Path, pad_id: int, device: torch.device,
        resume: bool = True, run_fingerprint: dict | None = None, quiet: bool = False) -> FitResult:
    """Train `model` on `train`; evaluate, keep the best, checkpoint, and resume where a run stopped."""
    settings.validate()
    rank, world_size = world()
    run_dir = Path(run_dir)
    main = rank == 0
    dtype = resolve_precision(settings.precision, device)
    model.to(device)

    lengths = train.lengths
    batches_per_epoch = math.ceil(len(train) / settings.batch_size)
    total_steps = settings.max_steps or max(1, math.ceil(batches_per_epoch * settings.epochs))
    warmup_steps = int(settings.warmup_ratio * total_steps)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    scheduler = linear_schedule(optimizer, warmup_steps, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ddp = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": 0,
             "best_metrics": {}, "evals_without_improvement": 0, "examples_seen": 0, "train_seconds": 0.0,
             "stopped_early": False, "history": []}
    store = checkpointing.CheckpointStore(run_dir / "checkpoints", keep=settings.keep_checkpoints)
    if main:
        checkpointing.check_fingerprint(run_dir, run_fingerprint or {}, resume)
    restored = store.load_latest(model, optimizer, scheduler, scaler) if resume else None
    if restored is not None:
        state.update(restored)
        if main and not quiet:
            print(f"resuming from step {state['step']} (epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']})")
    else:
        torch.manual_seed(settings.seed)

    log = checkpointing.JsonlLog(run_dir / "log.jsonl") if main else None
    micro = settings.batch_size // settings.grad_accum
    progress = Progress(total_steps, "train", enabled=main and not quiet, initial=state["step"])
    start_time = time.perf_counter() - state["train_seconds"]
    running_loss, running_count = torch.zeros((), device=device), 0

    def run_evaluation() -> bool:
        """Evaluate, keep the best model, checkpoint; True when patience has run out."""
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
        if log:
            log.write(entry)
        progress.note(f"step {state['step']}/{total_steps} eval: "
                      + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        model.train()
        store.save(model, optimizer, scheduler, scaler, state, main)
        return bool(settings.patience) and state["evals_without_improvement"] >= settings.patience

    model.train()
    done = state["step"] >= total_steps
    while not done:
        epoch_batches = length_grouped_batches(lengths, settings.batch_size, settings.seed, state["epoch"])
        for batch_index in range(state["batch_in_epoch"], len(epoch_batches)):
            global_batch = epoch_batches[batch_index]
            local = shard(global_batch, rank, world_size)
            micro_batches = [local[i : i + micro] for i in range(0, len(local), micro)] or [local]
            for i, indices in enumerate(micro_batches):
                batch = {k: v.to(device, non_blocking=True) for k, v in collate(train, indices, pad_id).items()}
                last = i == len(micro_batches) - 1
                sync = contextlib.nullcontext() if last or world_size == 1 else ddp.no_sync()
                with sync:
                    with autocast(device, dtype):
                        loss_sum = loss_fn(ddp, batch)
                    # a mean over the global batch: DDP averages over ranks, so scale back up by the world size
                    scaler.scale(loss_sum * (world_size / len(global_batch))).backward()
                running_loss += loss_sum.detach().float()
                running_count += len(indices)
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            if not torch.isfinite(grad_norm) and dtype != torch.float16:
                if not settings.skip_nonfinite:
                    raise BertfitError(
                        f"step {state['step'] + 1}: the loss or gradient is not finite (gradient norm {grad_norm.item()}); "
                        f"the last good checkpoint is in {store.folder}. Lower --lr, use --precision fp32, "
                        f"or pass --skip-nonfinite to skip such steps")
                state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                optimizer.zero_grad(set_to_none=True)
            else:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state["step"] += 1
            state["batch_in_epoch"] = batch_index + 1
            state["examples_seen"] += len(global_batch)
            state["train_seconds"] = time.perf_counter() - start_time

            if state["step"] % settings.log_every == 0 or state["step"] == total_steps:
                loss_value = running_loss.item() / max(1, running_count)
                running_loss.zero_()
                running_count = 0
                lr = scheduler.get_last_lr()[0]
                rate = state["examples_seen"] / max(1e-9, state["train_seconds"])
                progress.update(state["step"], loss=loss_value, lr=lr, rate=rate)
                if log:
                    log.write({"event": "train", "step": state["step"], "loss": round(loss_value, 6), "lr": lr,
                               "examples_per_s": round(rate, 2), "grad_norm": round(float(grad_norm), 4)})
            end_of_epoch = batch_index == len(epoch_batches) - 1
            last_step = state["step"] >= total_steps
            if end_of_epoch:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            evaluate_now = (settings.eval_every and state["step"] % settings.eval_every == 0) or \
                (not settings.eval_every and end_of_epoch) or last_step
            if evaluate_now:
                if run_evaluation():
                    state["stopped_early"] = True
                    done = True
                    break
            elif settings.save_every and state["step"] % settings.save_every == 0:
                store.save(model, optimizer, scheduler, scaler, state, main)
            if last_step:
                done = True
                break
    progress.close()
    if state["best_metric"] is None:  # resumed a finished run: evaluate what we have
        run_evaluation()
    return FitResult(best_metrics=state["best_metrics"], best_step=state["best_step"], steps=state["step"],
                     train_seconds=state["train_seconds"], train_examples_seen=state["examples_seen"],
                     stopped_early=state["stopped_early"], history=state["history"])


# ---- inference ----------------------------------------------------------------------------------

@torch.inference_mode()
def predict(model: nn.Module, features: Features, pad_id: int, device: torch.device,
            batch_size: int = 128, precision: str = "auto", per_token: bool = False) -> list:
    """Run the model over all features; each model output comes back in feature order as float32.

    `per_token=False`: one array [n, ...] per output (classification logits).
    `per_token=True`: per output, a list of 1-D arrays trimmed to each sequence's length (span logits).
    Batches are sorted by length so little is spent on pads. Under torchrun every rank predicts
    its share and the shares are gathered, so each example is counted exactly once.
    """
    rank, world_size = world()
    dtype = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    lengths = features.lengths
    mine = [b for i, b in enumerate(eval_batches(lengths, batch_size)) if i % world_size == rank]
    results: dict[int, list] = {}
    for indices in mine:
        batch = collate(features, indices, pad_id)
        batch = {k: batch[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask")}
        with autocast(device, dtype):
            outputs = model(**batch)
        outputs = [o.float().cpu().numpy() for o in (outputs if isinstance(outputs, tuple) else (outputs,))]
        for row, i in enumerate(indices):
            results[int(i)] = [o[row, : lengths[i]] if per_token else o[row] for o in outputs]
    if world_size > 1:
        gathered = [None] * world_size
        dist.all_gather_object(gathered, results)
        results = {k: v for part in gathered for k, v in part.items()}
    model.train(was_training)
    columns = list(zip(*(results[i] for i in range(len(features))))) if len(features) else []
    return [list(column) if per_token else np.stack(column) for column in columns]


def settings_dict(settings: TrainSettings) -> dict:
    return asdict(settings)


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
