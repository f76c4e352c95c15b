"""Training settings and the defaults of each job, in one place; plain data, so `bertfit --help` reads them without torch."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError


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
        """Refuse settings that cannot train, before any data is read or run dir made."""
        if self.batch_size < 1 or self.grad_accum < 1 or self.eval_batch_size < 1:
            raise ConfigError("--batch-size, --grad-accum and --eval-batch-size must be at least 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
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
        for name in ("eval_every", "save_every", "patience", "max_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be zero (off) or positive, "
                                  f"not {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be at least 1, not {self.keep_checkpoints}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be at least 1, not {self.log_every}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be zero or positive, not {self.seed}")


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


def glue_defaults_table() -> str:
    """GLUE_DEFAULTS as `bertfit glue --help` shows it."""
    lines = ["defaults by task and training-set size (first matching row; options given win):",
             f"  {'task':<6} {'examples':>9}  {'epochs':>6}  {'lr':>6}  {'batch':>5}"]
    for name, fewest, row in GLUE_DEFAULTS:
        lines.append(f"  {name:<6} {'≥ ' + format(fewest, ','):>9}  {row['epochs']:>6g}  {row['lr']:>6g}  "
                     f"{row['batch_size']:>5}")
    return "\n".join(lines)


# SQuAD. Measured on squad-mini v2.0 (README): at lr 1e-4 for 3 epochs the embedded model learns to
# find answers (HasAns F1 49) where 5e-5 for 2 epochs mostly learns to say "no answer" (HasAns F1 7-13).
SQUAD_DEFAULTS = TrainSettings(epochs=3, lr=1e-4, batch_size=16)
