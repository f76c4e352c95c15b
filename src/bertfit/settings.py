"""The settings of a training run, shared by every task, and the defaults of each job; the CLI's training
options are these fields. Plain data, so `bertfit --help` reads them without torch."""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("linear", "cosine")
REPORT_TO = ("none", "tensorboard")


def parse_duration(text: str | float) -> float:
    """Seconds from a duration as people write it: 90, 90s, 45m, 1.5h."""
    value = str(text).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:], None)
    try:
        seconds = float(value[:-1] if scale else value) * (scale or 1)
    except ValueError:
        raise ConfigError(f"a duration is a number of seconds or one with s, m or h (90s, 45m, 1.5h), not {text!r}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(f"a duration must be zero or positive, not {text!r}")
    return seconds


def option(default, help: str | None = None, **argparse_options):
    """A field with its command-line option's help text (and argparse's metavar or choices, if any)."""
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class TrainSettings:
    """Training options shared by every task: the CLI has an option for each field, with its default."""

    epochs: float = option(3.0, "passes over the training data (fractions work: 0.5)")
    lr: float = option(2e-5, "peak learning rate of AdamW, after warmup, decaying linearly to 0")
    batch_size: int = option(32, "global batch size: examples per optimizer step, whatever the number of processes")
    warmup_ratio: float = option(0.1, "fraction of the steps spent warming the learning rate up from 0")
    weight_decay: float = option(0.01, "AdamW's decoupled weight decay (on matrices, not on biases or LayerNorm)")
    grad_accum: int = option(1, "micro-batches per optimizer step (divides --batch-size)")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    seed: int = option(42, "seed of the head's initialisation, the batch order and dropout")
    precision: str = option("auto", "auto: bf16 on CPUs with bf16 instructions and GPUs that run it natively, "
                                    "else fp32 (fp16 on older GPUs)", choices=PRECISIONS)
    eval_every: int = option(0, "evaluate every N optimizer steps (0: at the end of each epoch)", metavar="STEPS")
    patience: int = option(0, "stop after N evaluations without improvement (0: never)")
    save_every: int = option(0, "also checkpoint every N optimizer steps (0: only at evaluations)", metavar="STEPS")
    keep_checkpoints: int = option(2, "how many of the newest checkpoints to keep")
    eval_batch_size: int = option(128, "sequences per evaluation batch (on CPU batches are also capped at "
                                       "2,048 tokens)")
    max_steps: int = option(0, "stop after N optimizer steps; the schedule spans them (0: run every epoch)")
    max_time: float = option(0.0, "stop training after this long (90s, 45m, 1.5h; a plain number is seconds): the "
                                  "schedule is fitted to the steps that fit in it, measured on the first ones "
                                  "(0: no limit)", type=parse_duration, metavar="TIME")
    schedule: str = option("linear", "learning-rate decay after warmup: linear to 0 (BERT's fine-tuning), or cosine "
                                     "to 0", choices=SCHEDULES)
    skip_nonfinite: bool = option(False, "skip steps with a non-finite loss, counted, instead of stopping")
    # Dropout on the attention probabilities while fine-tuning (BERT's config says 0.1). Without it,
    # long sequences (SQuAD) keep scaled_dot_product_attention's fused kernel, which does not take
    # dropout on CPU; dev accuracy holds (README). None: the model config's value.
    attention_dropout: float | None = option(
        0.0, "dropout on attention probabilities while training (0: long sequences keep the fused "
             "attention kernel; BERT's original fine-tuning used 0.1)")
    # AdamW moves an embedding row only in the steps whose batch uses it (EmbeddingRowGrads); False:
    # every row every step, as dense AdamW does. One CPU process, bf16 or fp32; otherwise updates are dense.
    lazy_embeddings: bool = option(
        True, "AdamW moves an embedding row only in steps whose batch uses it (in one CPU process "
              "without fp16; half the optimizer's memory traffic); --no-lazy-embeddings: every row every step")
    log_every: int = option(10, "log the mean loss every N optimizer steps", metavar="STEPS")
    report_to: str = option("none", "also write what log.jsonl records (loss, learning rate, throughput, every "
                                    "evaluation) as TensorBoard events in RUN_DIR/tensorboard as training goes "
                                    "(needs the tensorboard package)", choices=REPORT_TO)

    def validate(self) -> None:
        """Refuse settings that cannot train, before any data is read or run dir made."""
        if self.batch_size < 1 or self.grad_accum < 1 or self.eval_batch_size < 1:
            raise ConfigError("--batch-size, --grad-accum and --eval-batch-size must be at least 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be linear or cosine, not {self.schedule!r}")
        if not (math.isfinite(self.max_time) and self.max_time >= 0):
            raise ConfigError(f"--max-time must be zero (no limit) or positive, not {self.max_time}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if not math.isfinite(self.epochs) or (self.epochs <= 0 and self.max_steps <= 0):
            raise ConfigError("--epochs must be positive")
        if not (math.isfinite(self.lr) and self.lr >= 0):  # 0 trains nothing, yet runs: the tests freeze models so
            raise ConfigError(f"--lr must be positive, not {self.lr:g} (fine-tuning takes about 1e-5 to 1e-4)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be zero or positive, not {self.weight_decay:g}")
        if self.attention_dropout is not None and not 0 <= self.attention_dropout < 1:
            raise ConfigError(f"--attention-dropout must be in [0, 1), not {self.attention_dropout:g}")
        if not self.max_grad_norm >= 0:  # also refuses nan
            raise ConfigError(f"--max-grad-norm must be positive, or 0 for no clipping, not {self.max_grad_norm}")
        for name in ("eval_every", "save_every", "patience", "max_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be zero (off) or positive, "
                                  f"not {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be at least 1, not {self.keep_checkpoints}")
        if self.log_every < 1:
            raise ConfigError(f"--log-every must be at least 1, not {self.log_every}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be zero or positive, not {self.seed}")
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"--report-to must be none or tensorboard, not {self.report_to!r}")
        if self.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("--report-to tensorboard needs the tensorboard package, which is not installed: "
                              "pip install tensorboard (or pip install 'bertfit[tensorboard]')")


# Settings a resumed run may change: they do not alter what is trained.
RESUMABLE_SETTINGS = ("log_every", "keep_checkpoints", "report_to")


# ---- the defaults of each job --------------------------------------------------------------------

# GLUE tasks and your own files: settings by task and training-set size (after --max-train-samples),
# for `bertfit glue TASK` and `bertfit glue all` alike. A run takes the first row whose task is its
# own (or "any") and whose size it reaches; the options given on the command line win over the row.
# Large sets get BERT's recipe (3 epochs at 2e-5, batch 32, as Hugging Face's run_glue runs it): SST-2,
# QQP, MNLI, QNLI. Smaller ones, CoLA (8.5k) down to WNLI (635) and any subset of a large task, get 5
# epochs at 5e-5: a 6-layer, 384-wide encoder such as the embedded model needs larger steps than
# BERT-base to move from its pre-trained state in a few hundred updates (2,000 SST-2 sentences for one
# epoch at 2e-5, 63 steps, predict one class).
GLUE_DEFAULTS: tuple[tuple[str, int, dict], ...] = (
    # task, training examples (at least), settings
    ("any", 20_000, dict(epochs=3, lr=2e-5, batch_size=32)),
    ("any", 0, dict(epochs=5, lr=5e-5, batch_size=32)),
)


def glue_defaults(task: str, train_examples: int) -> dict:
    """The GLUE_DEFAULTS row for a task trained on `train_examples` examples."""
    return next(dict(row) for name, fewest, row in GLUE_DEFAULTS
                if name in (task, "any") and train_examples >= fewest)


def glue_settings(task: str, train_examples: int, chosen: dict) -> TrainSettings:
    """The settings a GLUE run trains with: its defaults row under the options the user chose."""
    return TrainSettings(**{**glue_defaults(task, train_examples), **chosen})


def epochs_text(epochs: float) -> str:
    """"1 epoch", "0.5 epochs", "3 epochs"."""
    return f"{epochs:g} epoch{'' if epochs == 1 else 's'}"


def glue_defaults_table() -> str:
    """GLUE_DEFAULTS as `bertfit glue --help` shows it."""
    lines = ["defaults by task and training-set size (first matching row; options given win):",
             f"  {'task':<6} {'examples':>9}  {'epochs':>6}  {'lr':>6}  {'batch':>5}"]
    for name, fewest, row in GLUE_DEFAULTS:
        lines.append(f"  {name:<6} {'≥ ' + format(fewest, ','):>9}  {row['epochs']:>6g}  {row['lr']:>6g}  "
                     f"{row['batch_size']:>5}")
    return "\n".join(lines)


# SQuAD. On squad-mini v1.1 (800 training questions, README) 3 epochs at 1e-4 score 20 F1 on the
# validation articles where run_qa's 2 epochs at 3e-5 score 9. On v2.0 the old two-part split (all 8,017
# questions) favoured 1e-4 for 3 epochs (HasAns F1 49 vs 7-13 at 5e-5), but was chosen on the
# evaluation articles; with 800 or 2,000 questions no setting learns to answer v2.0, so the v2.0 choice
# still waits for a run on the whole training part of the three-part split.
SQUAD_DEFAULTS = TrainSettings(epochs=3, lr=1e-4, batch_size=16)

# Token classification (`bertfit ner`): chosen by bench/ner_defaults.py on WNUT-17, on 15% of train.conll held
# out (509 sentences, shuffle seed 0; dev and test unread), training the embedded model on the other 2,885 at
# lr 5e-5, seed 1, the final epoch kept: batch 8 for 3 epochs (1,083 steps) scored entity F1 56.74 there, the
# former batch 32 for 5 epochs (455 steps) 46.46; batch 16 (3 or 5 epochs), batch 8 for 5 and batch 32 for 3
# were not run yet. Figures: docs/figures/avx2/ner-defaults-choice.json.
NER_DEFAULTS = TrainSettings(epochs=3, lr=5e-5, batch_size=8)

# Pretraining (MLM, optionally NSP): the tutorial's recipe. AdamW at 1e-4 with batch 32, warmup then
# cosine decay, clipping at 1.0, and the model's own dropout on attention (0.1), as BERT was pretrained.
# The word embeddings are tied to the output projection, whose gradient touches every row, so they are
# updated densely whatever --lazy-embeddings says.
PRETRAIN_DEFAULTS = TrainSettings(epochs=10, lr=1e-4, batch_size=32, warmup_ratio=0.05, schedule="cosine",
                                  attention_dropout=None, eval_every=500, eval_batch_size=64)
