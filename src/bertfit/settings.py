"""The settings of a training run, shared by every task; the CLI's training options are these fields."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def option(default, help: str | None = None, **argparse_options):
    """A field with its command-line option's help text (and argparse's metavar or choices, if any)."""
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class TrainSettings:
    """Training options shared by every task: the CLI has an option for each field, with its default."""

    epochs: float = 3.0
    lr: float = 2e-5
    batch_size: int = option(32, "global batch size")  # examples per optimizer step, whatever the world size
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    seed: int = 42
    precision: str = option("auto", choices=PRECISIONS)
    eval_every: int = option(0, "evaluate every N optimizer steps (default: each epoch)", metavar="STEPS")
    patience: int = option(0, "stop after N evaluations without improvement (0: never)")
    save_every: int = option(0, metavar="STEPS")  # optimizer steps between checkpoints; 0 = only at evaluations
    keep_checkpoints: int = 2
    eval_batch_size: int = 128
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs)
    skip_nonfinite: bool = option(False, "skip steps with a non-finite loss, counted")
    # Dropout on the attention probabilities while fine-tuning (BERT's config says 0.1). Without it,
    # long sequences (SQuAD) keep scaled_dot_product_attention's fused kernel, which does not take
    # dropout on CPU; dev accuracy holds (README). None: the model config's value.
    attention_dropout: float | None = option(
        0.0, "dropout on attention probabilities while training (default 0: long sequences keep the fused "
             "attention kernel; BERT's original fine-tuning used 0.1)")
    # AdamW moves an embedding row only in the steps whose batch uses it (EmbeddingRowGrads); False:
    # every row every step, as dense AdamW does. One CPU process, bf16 or fp32; otherwise updates are dense.
    lazy_embeddings: bool = option(
        True, "AdamW moves an embedding row only in steps whose batch uses it (default, in one CPU process "
              "without fp16; half the optimizer's memory traffic); --no-lazy-embeddings: every row every step")
    log_every: int = option(10, "log the mean loss every N optimizer steps", metavar="STEPS")

    def validate(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.eval_batch_size < 1:
            raise ConfigError("--batch-size, --grad-accum and --eval-batch-size must be at least 1")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ConfigError("--epochs must be positive")
        if self.seed < 0:
            raise ConfigError(f"--seed must be zero or positive, not {self.seed}")
        if not self.max_grad_norm >= 0:  # also refuses nan
            raise ConfigError(f"--max-grad-norm must be positive, or 0 for no clipping, not {self.max_grad_norm}")


# Settings a resumed run may change: they do not alter what is trained.
RESUMABLE_SETTINGS = ("log_every", "keep_checkpoints")
