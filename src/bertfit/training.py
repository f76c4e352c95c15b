"""The one training loop every task shares.

A task hands `fit` its encoded features, a loss and an evaluation; the loop owns the rest:
length-grouped batches, mixed precision, AdamW with warmup and linear decay, gradient
accumulation, clipping, periodic evaluation with the best model kept, early stopping,
atomic checkpoints that resume exactly, and torchrun (DistributedDataParallel) when launched so.
`Trainer` is the loop: `step` on each global batch, then `after_step` to log, evaluate, save or stop.
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
from .devices import (autocast, from_main_process, is_main_process, keeps_global_rng, precision_name, precision_reason,
                      resolve_precision, world)
from .errors import BertfitError, DataError, Interrupted
from .model import set_attention_dropout
from .optim import EmbeddingRowGrads, clip_gradients, make_optimizer, schedule_factor
from .progress import Progress, duration
from .settings import RESUMABLE_SETTINGS, TrainSettings


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
    train_tokens_seen: int = 0  # real tokens, pads not counted
    time_budget: dict | None = None  # with --max-time: the budget, the steps planned in it, whether it ran out

    def summary(self) -> dict:
        """The training part of a run's results.json."""
        return {"best_step": self.best_step, "steps": self.steps, "stopped_early": self.stopped_early,
                "skipped_steps": self.skipped_steps, "train_seconds": round(self.train_seconds, 1),
                "train_examples_per_second": round(self.train_examples_seen / max(self.train_seconds, 1e-9), 1),
                "train_tokens_seen": self.train_tokens_seen,
                "train_tokens_per_second": round(self.train_tokens_seen / max(self.train_seconds, 1e-9), 1),
                **({"time_budget": self.time_budget} if self.time_budget else {}),
                "history": self.history}


# ---- the loop -----------------------------------------------------------------------------------

LossFn = Callable[[nn.Module, dict], torch.Tensor]  # summed loss over the batch's examples
EvalFn = Callable[[nn.Module], dict]  # metrics; the first key is the one that picks the best model
SaveFn = Callable[[nn.Module, dict], None]  # keep this model as the best so far
KEEP = ("best", "last")  # which evaluated model `fit` keeps


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


@keeps_global_rng
def fit(model: nn.Module, train: Features, loss_fn: LossFn, evaluate: EvalFn, save_best: SaveFn,
        settings: TrainSettings, run_dir: Path, pad_id: int, device: torch.device,
        resume: bool = True, run_fingerprint: dict | None = None, quiet: bool = False,
        keep: str = "best") -> FitResult:
    """Train `model` on `train`; evaluate, keep a model, checkpoint, and resume where a run stopped.

    Under torchrun every rank calls `fit` (and `evaluate`, which may gather across ranks); rank 0
    alone writes into `run_dir` and calls `save_best`. `run_fingerprint` names what else must match
    for a checkpoint to be resumed (model, task, ...); the settings and the data are checked here.
    `keep`: "best", the evaluation whose first metric is highest (evaluate on data the run does not
    report, or the choice flatters the report); "last", every evaluation's model replaces the one kept,
    so the run ends with the final one (patience still watches the first metric).
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {', '.join(KEEP)}, not {keep!r}")
    settings.validate()
    check_not_empty(train)
    with runs.RunLock(run_dir) if is_main_process() else contextlib.nullcontext():
        # Sparse embedding gradients in one CPU process, where they were measured; lazy updates also need
        # no fp16 loss scaling (a step the scaler skips could not undo a row update).
        lazy = settings.lazy_embeddings and resolve_precision(settings.precision, device) != torch.float16
        row_grads = EmbeddingRowGrads(model, lazy) if world()[1] == 1 and device.type == "cpu" else None
        trainer = None
        try:
            trainer = Trainer(model, train, loss_fn, evaluate, save_best, settings, Path(run_dir), pad_id, device,
                              row_grads, keep)
            trainer.open_run(resume, {**(run_fingerprint or {}), **run_fingerprint_of(settings, train)}, quiet)
            return trainer.run()
        except KeyboardInterrupt:
            raise Interrupted(after_interrupt(Path(run_dir), settings, resume)) from None
        finally:
            if row_grads:
                row_grads.restore()
            if trainer and trainer.log:
                trainer.log.close()


def after_interrupt(run_dir: Path, settings: TrainSettings, resumed: bool) -> str:
    """What rerunning the command does after Ctrl-C: resume from the newest checkpoint, or start again."""
    newest = runs.CheckpointStore(run_dir / "checkpoints").checkpoints()
    if newest:
        again = "rerun the same command" if resumed else "rerun the command without --overwrite"
        return f"interrupted; {again} to resume from the checkpoint of step {int(newest[0].name[5:])} ({newest[0]})"
    when = "at each evaluation" + (f" and every {settings.save_every} steps" if settings.save_every else "")
    return (f"interrupted before the first checkpoint (one is written {when}); rerunning the command starts "
            f"this run again from step 0")


@dataclass
class TrainState:
    """Where a run stands: all its checkpoint holds besides the weights and optimizer (the state.json)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch_in_epoch: int = 0  # the epoch's next batch
    best_metric: float | None = None  # the main metric of the best evaluation so far
    best_step: int = 0
    best_metrics: dict = field(default_factory=dict)
    evals_without_improvement: int = 0
    stopped_early: bool = False
    examples_seen: int = 0
    tokens_seen: int = 0  # real tokens (not pads) of the examples seen
    train_seconds: float = 0.0
    skipped_steps: int = 0
    loss_sum: float = 0.0  # over the steps since the last logged loss
    loss_examples: int = 0
    history: list = field(default_factory=list)  # each evaluation's log entry
    planned_steps: int = 0  # with --max-time: the steps fitted to the budget (0: not measured yet)
    out_of_time: bool = False  # with --max-time: the budget ran out before the planned steps


def check_not_empty(train: Features) -> None:
    """Refuse a training set without examples: an epoch of zero batches never reaches the last step."""
    if not len(train):
        raise DataError("no training examples: the training set is empty, so training could never finish; "
                        "give a training file with examples")


class Trainer:
    """One run of the loop: `step` trains on a global batch, `after_step` logs, evaluates, saves and stops.

    A checkpoint holds `state`, the weights, and the optimizer, scheduler and scaler; from it a
    resumed run continues exactly as an uninterrupted one would.
    """

    def __init__(self, model: nn.Module, train: Features, loss_fn: LossFn, evaluate: EvalFn, save_best: SaveFn,
                 settings: TrainSettings, run_dir: Path, pad_id: int, device: torch.device,
                 row_grads: EmbeddingRowGrads | None, keep: str = "best"):
        self.keep = keep
        self.model, self.train, self.settings, self.run_dir = model, train, settings, run_dir
        self.loss_fn, self.eval_fn, self.save_best = loss_fn, evaluate, save_best
        self.pad_id, self.device, self.row_grads = pad_id, device, row_grads
        self.rank, self.world_size = world()
        self.main = self.rank == 0
        self.dtype = resolve_precision(settings.precision, device)
        check_not_empty(train)  # also here, so that no caller of the loop can hang it
        model.to(device)
        if settings.attention_dropout is not None:
            set_attention_dropout(model, settings.attention_dropout)

        self.batches_per_epoch = math.ceil(len(train) / settings.batch_size)
        self.lengths = train.lengths
        self.total_steps = settings.max_steps or max(1, math.ceil(self.batches_per_epoch * settings.epochs))
        self.warmup_steps = int(settings.warmup_ratio * self.total_steps)
        self.most_steps = self.total_steps  # what the epochs or --max-steps allow; a time budget may plan fewer
        self.optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
        # the schedule reads the step counts when it steps, so that a time budget can set them once measured
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: schedule_factor(settings.schedule, step, self.warmup_steps, self.total_steps))
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        # every head computes only what its loss reads (the span head has no pooler), so DDP need not search
        # each step's graph for parameters left out
        self.ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None) if self.world_size > 1 else model
        self.store = runs.CheckpointStore(run_dir / "checkpoints", keep=settings.keep_checkpoints)
        self.state = TrainState()
        self.log: runs.JsonlLog | None = None
        self.progress: Progress | None = None
        self.start_time = time.perf_counter()
        self.budget = TimeBudget(settings.max_time, settings.eval_every) if settings.max_time else None

    def open_run(self, resume: bool, fingerprint: dict, quiet: bool) -> None:
        """Check and record what the run is, restore its newest checkpoint when resuming, open its log."""
        def open_run_dir() -> dict[str, bytes] | None:
            """Refuse a run dir that holds another run, start afresh or read the checkpoint to resume from."""
            if resume and self.store.checkpoints():
                runs.check_fingerprint(self.run_dir / "run.json", fingerprint)
            if not resume:
                self.store.clear()
            runs.record_fingerprint(self.run_dir / "run.json", fingerprint)
            return self.store.read_latest() if resume else None

        # rank 0 reads the checkpoint and sends it to the others, so every rank resumes from the same one
        # (or stops with the same refusal) whether or not they share a file system
        checkpoint = from_main_process(open_run_dir, self.device)
        if checkpoint is not None:
            self.state = TrainState(**runs.restore(checkpoint, self.model, self.optimizer, self.scheduler,
                                                   self.scaler))
            if self.main and not quiet:
                print(self.resume_note())
        if self.main and not quiet:
            print(f"precision {precision_name(self.dtype)} ({precision_reason(self.settings.precision, self.device)})")
        if self.state.planned_steps:
            self.plan(self.state.planned_steps)
        self.log = runs.JsonlLog(self.run_dir / "log.jsonl") if self.main else None
        if self.log:
            self.log.rewind(self.state.step)
            if self.settings.report_to == "tensorboard":
                from .tensorboard_events import FOLDER, TensorBoardLog

                self.log.mirrors.append(TensorBoardLog(self.run_dir / FOLDER, self.log.entries()))
        self.progress = Progress(self.total_steps, "train", enabled=self.main and not quiet, initial=self.state.step,
                                 time_left=self.settings.max_time - self.state.train_seconds if self.budget else None)
        if self.budget and not self.finished:
            self.progress.note(self.budget_note())
        self.start_time = time.perf_counter() - self.state.train_seconds

    def resume_note(self) -> str:
        """What a rerun in a run dir with checkpoints does: nothing more for a finished run, else resume."""
        state = self.state
        if self.finished:
            how = ("stopped at its time budget" if state.out_of_time else
                   "stopped early" if state.stopped_early and state.step < self.total_steps else "finished")
            return (f"{self.run_dir} holds a run that {how} after {state.step} steps, so there is nothing to train; "
                    f"its results are written again. To train anew, pass --overwrite or choose another --output-dir")
        where = f"batch {state.batch_in_epoch} of {self.batches_per_epoch}" if state.batch_in_epoch else "the start"
        return f"resuming from step {state.step} of {self.total_steps}: {where} of epoch {state.epoch + 1}"

    def budget_note(self) -> str:
        """What --max-time does with this run, said before its first step."""
        budget = f"time budget {duration(self.settings.max_time)}"
        if self.state.planned_steps:
            return f"{budget}: {self.state.planned_steps:,} steps planned, {self.state.step:,} taken"
        measured = self.state.step + 1 + TimeBudget.WARM_STEPS + TimeBudget.CALIBRATION  # as TimeBudget.plan counts
        return (f"{budget}: the steps that fit are measured by step {measured}, and the schedule is then fitted to "
                f"them (the epochs allow {self.most_steps:,})")

    @property
    def finished(self) -> bool:
        return self.state.step >= self.total_steps or self.state.stopped_early or self.state.out_of_time

    def plan(self, steps: int) -> None:
        """Fit the run (its schedule, warmup included, and the progress line) to `steps` optimizer steps."""
        self.state.planned_steps = self.total_steps = max(1, steps)
        self.warmup_steps = int(self.settings.warmup_ratio * self.total_steps)
        if self.progress:
            self.progress.total = self.total_steps

    def run(self) -> FitResult:
        """Train to the last step or an early stop; a finished run that never evaluated evaluates once."""
        state = self.state
        self.model.train()
        while not self.finished:
            batches = length_grouped_batches(self.train.lengths, self.settings.batch_size, self.settings.seed,
                                             state.epoch)
            for index in range(state.batch_in_epoch, len(batches)):
                grad_norm = self.step(batches[index])
                end_of_epoch = index == len(batches) - 1
                state.epoch, state.batch_in_epoch = (state.epoch + 1, 0) if end_of_epoch else (state.epoch, index + 1)
                self.after_step(grad_norm, end_of_epoch)
                if self.finished:
                    break
        self.progress.close()
        if state.best_metric is None:  # resumed a finished run: evaluate what we have
            self.evaluate()
        budget = None if not self.budget else {
            "seconds": self.settings.max_time, "planned_steps": state.planned_steps, "out_of_time": state.out_of_time}
        return FitResult(best_metrics=state.best_metrics, best_step=state.best_step, steps=state.step,
                         train_seconds=state.train_seconds, train_examples_seen=state.examples_seen,
                         train_tokens_seen=state.tokens_seen,
                         stopped_early=state.stopped_early, history=state.history, skipped_steps=state.skipped_steps,
                         time_budget=budget)

    def step(self, global_batch: np.ndarray) -> float:
        """One optimizer step on a global batch (a non-finite one stops the run, or is skipped); the gradient norm."""
        state = self.state
        torch.manual_seed(step_seed(self.settings.seed, state.step, self.rank))
        step_loss = self.accumulate_gradients(global_batch)
        if self.row_grads:
            self.row_grads.coalesce()
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.model, self.settings.max_grad_norm)
        loss_value, grad_norm = step_loss.item(), grad_norm.item()
        finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
        if not finite and self.dtype != torch.float16:  # in fp16 the scaler skips overflowing steps itself
            self.stop_or_skip(loss_value, grad_norm)
        else:
            if self.row_grads:
                self.row_grads.before_step(self.optimizer)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        state.step += 1
        state.examples_seen += len(global_batch)
        state.tokens_seen += int(self.lengths[global_batch].sum())
        state.train_seconds = time.perf_counter() - self.start_time
        if self.budget:
            self.keep_to_budget()
        if finite:
            state.loss_sum += loss_value
            state.loss_examples += len(global_batch)
        return grad_norm

    def accumulate_gradients(self, global_batch: np.ndarray) -> torch.Tensor:
        """Forward and backward over the micro-batches, each rank on its share; the global batch's summed loss."""
        world_size = self.world_size
        micro = self.settings.batch_size // self.settings.grad_accum
        step_loss = torch.zeros((), device=self.device)
        micro_batches = [global_batch[i : i + micro] for i in range(0, len(global_batch), micro)]
        for i, micro_batch in enumerate(micro_batches):
            indices = shard(micro_batch, self.rank, world_size)
            # A rank whose share is empty still runs one example, weighted zero: every rank must
            # join each gradient all-reduce, or the others wait for it forever.
            weight = world_size / len(global_batch) if len(indices) else 0.0  # DDP averages over ranks
            batch = collate(self.train, indices if len(indices) else micro_batch[:1], self.pad_id)
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            last = i == len(micro_batches) - 1
            with contextlib.nullcontext() if last or world_size == 1 else self.ddp.no_sync():
                with autocast(self.device, self.dtype):
                    loss_sum = self.loss_fn(self.ddp, batch)
                self.scaler.scale(loss_sum * weight).backward()
            if weight:
                step_loss += loss_sum.detach().float()
        if world_size > 1:
            dist.all_reduce(step_loss)  # the whole global batch's loss, the same on every rank
        return step_loss

    def keep_to_budget(self) -> None:
        """With --max-time: plan the steps once the first ones are timed, and stop when the time is spent.
        Every rank takes rank 0's plan and its decision to stop, so all stop at the same step."""
        state, budget = self.state, self.budget
        steps = budget.plan(state.step, state.train_seconds, self.most_steps) if not state.planned_steps else None
        steps, out_of_time = self.from_rank_0(steps or 0, int(state.train_seconds >= self.settings.max_time))
        if steps:
            self.plan(steps)
            self.progress.note(f"time budget {duration(self.settings.max_time)}: {self.total_steps:,} steps fit, at "
                               f"{budget.step_seconds:.3g}s a step over steps {budget.mark[0] + 1}-{state.step}; the "
                               f"schedule now spans them")
        state.out_of_time = bool(out_of_time) and state.step < self.total_steps

    def from_rank_0(self, *values: int) -> tuple[int, ...]:
        """Rank 0's values on every rank (timing differs between ranks; decisions taken on it must not)."""
        if self.world_size == 1:
            return values
        shared = torch.tensor(values, dtype=torch.int64, device=self.device)
        dist.broadcast(shared, src=0)
        return tuple(int(v) for v in shared.tolist())

    def stop_or_skip(self, loss_value: float, grad_norm: float) -> None:
        """A non-finite loss or gradient stops the run, naming the step; with --skip-nonfinite it is counted."""
        state = self.state
        if not self.settings.skip_nonfinite:
            newest = self.store.checkpoints()
            raise BertfitError(
                f"step {state.step + 1}: the loss ({loss_value}) or the gradient norm ({grad_norm}) is "
                f"not finite; training stopped. The last good checkpoint is "
                f"{newest[0] if newest else 'none (none was written yet)'}. Lower --lr, use --precision "
                f"fp32, or pass --skip-nonfinite to skip such steps")
        state.skipped_steps += 1
        if self.log:
            self.log.write({"event": "skipped", "step": state.step + 1, "loss": loss_value, "grad_norm": grad_norm})

    def after_step(self, grad_norm: float, end_of_epoch: bool) -> None:
        """Log the loss every --log-every steps; evaluate each epoch (or every --eval-every steps), else checkpoint."""
        settings, step = self.settings, self.state.step
        last_step = step >= self.total_steps or self.state.out_of_time
        if step % settings.log_every == 0 or last_step:
            self.log_loss(grad_norm)
        if (settings.eval_every and step % settings.eval_every == 0) or (not settings.eval_every and end_of_epoch) \
                or last_step:
            self.evaluate()
        elif settings.save_every and step % settings.save_every == 0:
            self.save()

    def log_loss(self, grad_norm: float) -> None:
        """The mean loss since the last one logged, to the progress line and log.jsonl."""
        state = self.state
        mean_loss = state.loss_sum / max(1, state.loss_examples)
        state.loss_sum, state.loss_examples = 0.0, 0
        lr = self.scheduler.get_last_lr()[0]
        rate = state.examples_seen / max(1e-9, state.train_seconds)
        tokens_rate = state.tokens_seen / max(1e-9, state.train_seconds)
        self.progress.update(state.step, loss=mean_loss, lr=lr, rate=rate, tokens_rate=tokens_rate)
        if self.log:
            self.log.write({"event": "train", "step": state.step, "loss": round(mean_loss, 6), "lr": lr,
                            "examples_per_s": round(rate, 2), "tokens_per_s": round(tokens_rate, 1),
                            "grad_norm": round(grad_norm, 4)})

    def evaluate(self) -> None:
        """Evaluate, keep the best (or the latest) model, note whether patience has run out, and checkpoint."""
        state, settings = self.state, self.settings
        started = time.perf_counter()
        metrics = self.eval_fn(self.model)
        if self.budget and state.planned_steps and self.budget.mark and not self.budget.eval_seconds \
                and not self.finished:
            # the first evaluation's cost, amortised over the steps between evaluations, shortens the plan (a resumed
            # run, which timed no steps of its own, keeps the plan it resumed with)
            self.budget.eval_seconds = time.perf_counter() - started
            steps = self.budget.replan(state.step, time.perf_counter() - self.start_time, self.most_steps,
                                       self.budget.eval_seconds)
            self.plan(max(state.step + 1, *self.from_rank_0(steps)))
            self.progress.note(f"time budget refitted: the first evaluation took {self.budget.eval_seconds:.1f}s, so "
                               f"{self.total_steps:,} steps fit with room for the evaluations")
        key = next(iter(metrics), None)  # None: nothing to score on (no evaluation file); the latest model is kept
        entry = {"event": "eval", "step": state.step, "epoch": round(state.step / self.batches_per_epoch, 3), **metrics}
        state.history.append(entry)
        improved = key is None or state.best_metric is None or metrics[key] > state.best_metric
        if improved and key is not None:
            state.best_metric = metrics[key]
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        if improved or self.keep == "last":  # best_step and best_metrics: those of the model kept
            state.best_step, state.best_metrics = state.step, metrics
            if self.main:
                self.save_best(self.model, metrics)
        state.stopped_early = bool(settings.patience) and state.evals_without_improvement >= settings.patience
        if self.log:
            self.log.write(entry)
        self.progress.note(f"step {state.step}/{self.total_steps} eval: "
                           + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        self.model.train()
        self.save()  # after the stopping decision, so a resumed run stops too

    def save(self) -> None:
        if self.main:
            self.store.save(self.model, self.optimizer, self.scheduler, self.scaler, asdict(self.state))


class TimeBudget:
    """How many optimizer steps fit in --max-time, from the time of the first ones.

    The first steps are slower (allocations, caches), so the rate is measured over the CALIBRATION
    steps after WARM_STEPS; the plan keeps room for the evaluations, once the first one is timed.
    """

    WARM_STEPS, CALIBRATION = 3, 20

    def __init__(self, seconds: float, eval_every: int):
        self.seconds, self.eval_every = seconds, eval_every
        self.first_step: int | None = None
        self.mark: tuple[int, float] | None = None  # (step, seconds) where timing started
        self.step_seconds = 0.0
        self.eval_seconds = 0.0

    def plan(self, step: int, elapsed: float, most: int) -> int | None:
        """The steps the whole run takes, once CALIBRATION steps are timed; None until then."""
        if self.first_step is None:
            self.first_step = step
        if step == self.first_step + self.WARM_STEPS:
            self.mark = (step, elapsed)
        if self.mark is None or step < self.mark[0] + self.CALIBRATION:
            return None
        self.step_seconds = (elapsed - self.mark[1]) / (step - self.mark[0])
        return self.replan(step, elapsed, most, 0.0)

    def replan(self, step: int, elapsed: float, most: int, eval_seconds: float) -> int:
        """Steps that fit in what is left of the budget, an evaluation every eval_every steps and one at the end."""
        per_step = self.step_seconds + (eval_seconds / self.eval_every if self.eval_every else 0.0)
        left = self.seconds - elapsed - eval_seconds
        return min(most, step + max(0, int(left / max(per_step, 1e-9))))
