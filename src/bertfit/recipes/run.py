"""The start and the finish every recipe shares, so that a recipe holds only its task's part.

`start_run` validates the settings, joins torchrun when launched by it, seeds, and loads the
pretrained model with the recipe's head. The recipe then reads and encodes its data and gives its
loss, evaluation and best-model saving to `Run.fit`; `Run.finish` writes results.json and the
report, and prints the scores.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from .. import devices, reports, runs, training
from ..batching import Features
from ..checkpoints.model_card import write_model_card
from ..files import write_json
from ..pretrained import load_pretrained
from ..settings import TrainSettings
from ..tokenization import special_ids


@dataclass
class Run:
    """A fine-tuning run: its folder and settings, this process's device, the model it trains."""

    dir: Path
    settings: TrainSettings
    device: torch.device
    model: nn.Module
    tokenizer: Tokenizer
    model_name: str | None  # as the user gave it; None: the embedded model
    overwrite: bool = False  # start afresh instead of resuming
    quiet: bool = False
    main: bool = True  # rank 0 alone writes and prints

    @property
    def pad_id(self) -> int:
        return special_ids(self.tokenizer).pad

    @property
    def model_dir(self) -> Path:
        """Where the best model is kept, as a Hugging Face folder."""
        return self.dir / "model"

    def say(self, text: str) -> None:
        if self.main and not self.quiet:
            print(text)

    def lock(self):
        """The run dir's lock, held by the main process from training to the last result written."""
        return runs.RunLock(self.dir) if self.main else contextlib.nullcontext()

    def fit(self, train: Features, loss_fn: training.LossFn, evaluate: training.EvalFn, save_best: training.SaveFn,
            keep: str = "best", **fingerprint) -> training.FitResult:
        """Train in the run dir, resuming unless `overwrite`; `keep`: which evaluated model to keep (training.fit);
        `fingerprint`: what else a resumed run must match."""
        return training.fit(self.model, train, loss_fn, evaluate, save_best, self.settings, self.dir, self.pad_id,
                            self.device, resume=not self.overwrite, quiet=self.quiet, keep=keep,
                            run_fingerprint=runs.fingerprint_of(model=str(self.model_name), keep=keep, **fingerprint))

    def finish(self, task: str, result: training.FitResult, settings: dict, counts: dict, title: str,
               metrics: dict | None = None, chosen: dict | None = None) -> dict:
        """The run's results (the training settings with the task's `settings`, and its data `counts`), written
        to results.json with the report, the scores printed. `metrics`: the scores to report (default: the
        kept model's evaluation); `chosen`: how the model (and any threshold) was chosen, said under them."""
        metrics = result.best_metrics if metrics is None else metrics
        results = {
            "task": task,
            "metrics": metrics,
            **(chosen or {}),
            "model": str(self.model_name or "embedded"),
            "model_dir": str(self.model_dir),
            # what "auto" became on this device: the precision the numbers were computed in
            "settings": {**asdict(self.settings), "precision": devices.precision_name(
                devices.resolve_precision(self.settings.precision, self.device)), **settings},
            **counts,
            **result.summary(),
        }
        if self.main:
            write_json(self.dir / "results.json", results)
            has_model = (self.model_dir / "config.json").is_file()
            if has_model:
                write_model_card(self.model_dir, results)
            reports.write_run_report(self.dir)
            self.say(metrics_table(title, metrics, chosen))
            self.say(f"results: {self.dir / 'results.json'}; report: {self.dir / 'report.md'}"
                     + (f"; model: {self.model_dir} (its card: README.md)" if has_model else ""))
        return results


def start_run(run_dir: str | Path, settings: TrainSettings, model: str | None, head: str, num_labels: int = 2,
              tokenizer: str | None = None, num_heads: int | None = None, overwrite: bool = False,
              quiet: bool = False) -> Run:
    """Validate the settings, join torchrun when launched by it, seed, and load the pretrained `model` with `head`."""
    settings.validate()
    runs.check_output_dir(run_dir)  # before the model loads: a folder of other files is refused at once
    device = devices.setup_distributed()
    torch.manual_seed(settings.seed)  # the new head's weights
    loaded, loaded_tokenizer = load_pretrained(model, head=head, num_labels=num_labels, tokenizer_path=tokenizer,
                                               num_heads=num_heads)
    return Run(Path(run_dir), settings, device, loaded, loaded_tokenizer, model, overwrite, quiet,
               devices.is_main_process())


def metrics_table(name: str, values: dict, chosen: dict | None = None) -> str:
    """The scores, one a line, and under them how the model they score was chosen."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    width = max(len(k) for k, _ in rows) if rows else 6
    line = "-" * (width + 12)
    notes = [f"{k.replace('_', ' ')}: {v}" for k, v in (chosen or {}).items() if not isinstance(v, dict)]
    return "\n".join([line, f"{name} dev", line, *(f"{k:<{width}}  {v:>8}" for k, v in rows), line, *notes])
