"""What the speed benchmarks share: one subprocess per side, the matmul peak, FLOPs, the table.

Each side (bertfit, the transformers Trainer peer, the matmul peak) runs in its own child
process, one after the other, so peak RSS is that side's alone and neither side's threads,
caches or allocator state leak into the other's timing. A child writes its figures as JSON to a
file the parent names; its own output goes to the parent's stderr, so stdout holds only the table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np


# ---- running the sides --------------------------------------------------------------------------

def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes; a script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on every side (default 2)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # set by the parent for its children
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def run(script: str, args, argv: list[str], sides: dict[str, Callable]) -> dict | None:
    """In a child (--side NAME): run that side, hand its figures back, return None.

    In the parent: run "peak" and then each of `sides` in a child of its own, one after the
    other, and return {name: figures}.
    """
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        # PyTorch's optimizers import torch._dynamo when the first one is built (1.2 s here); transformers
        # imports it up front. Both sides import it before their clocks start, so neither times an import.
        import torch._dynamo  # noqa: F401
        figures = matmul_peak() if args.side == "peak" else sides[args.side](args)
        figures["threads"] = torch.get_num_threads()  # after the side ran: nothing changed it behind our back
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        Path(args.result_file).write_text(json.dumps(figures))
        return None
    child_argv = _without_json(argv)
    return {side: run_side(script, child_argv, side) for side in ("peak", *sides)}


def run_side(script: str, argv: list[str], side: str) -> dict:
    """Run `script argv --side side` in a fresh interpreter and return the figures it wrote."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as folder:
        result_file = Path(folder) / "result.json"
        command = [sys.executable, script, *argv, "--side", side, "--result-file", str(result_file)]
        print(f"== {side}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        completed = subprocess.run(command, stdout=sys.stderr)
        if completed.returncode != 0 or not result_file.exists():
            sys.exit(f"the {side} side failed (exit status {completed.returncode}); its output is above")
        return json.loads(result_file.read_text())


def _without_json(argv: list[str]) -> list[str]:
    """Only the parent writes --json."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            out.append(arg)
    return out


# ---- hardware peak and model FLOPs --------------------------------------------------------------

def matmul_peak(size: int = 2048, repeats: int = 10) -> dict:
    """Best bf16 GFLOP/s of a square matmul: the ceiling that model-FLOP utilization is measured against."""
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    a @ b  # first call picks and builds the kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return {"peak_gflops": 2 * size**3 / best / 1e9, "matmul_size": size}


def length_stats(lengths) -> dict:
    """Real (non-pad) tokens and the sum of squared lengths, which attention FLOPs grow with."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return {"tokens": int(lengths.sum()), "squared_lengths": int((lengths**2).sum())}


def training_flops(config, tokens: int, squared_lengths: int) -> float:
    """Model FLOPs of one pass over the training windows: 3 x forward (the backward costs two forwards).

    flops_per_token is 2 FLOPs per matmul parameter (x3: the usual 6 x parameters per token) plus
    attention, which grows with the length of the token's own sequence, so the token-weighted mean
    length sum(L^2) / sum(L) makes the sum over tokens exact. Pads are not counted.
    """
    from bertfit.model import flops_per_token

    mean_len = squared_lengths / max(1, tokens)
    return 3 * flops_per_token(config, mean_len) * tokens


# ---- the two sides ------------------------------------------------------------------------------

def bertfit_fit_and_predict(model, train, dev, loss, pad_id: int, args, per_token: bool = False) -> dict:
    """bertfit's training loop for one epoch with the benchmark's settings, then inference on `dev`.

    `fit` always evaluates at the end of an epoch and needs one metric: a stub keeps inference out
    of the training clock, and `predict` is timed on its own. Returns the FitResult, the outputs and
    both clocks.
    """
    import tempfile

    import torch

    from bertfit import predicting, training
    from bertfit.settings import TrainSettings

    settings = TrainSettings(epochs=1, lr=args.lr, batch_size=args.batch_size, warmup_ratio=0.1,
                             weight_decay=0.01, seed=args.seed, precision=args.precision,
                             eval_batch_size=args.eval_batch_size, log_every=50)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="bench-bertfit-run-") as run_dir:
        start = time.perf_counter()
        result = training.fit(model, train, loss, lambda model: {"unused": 0.0}, lambda model, metrics: None,
                              settings, Path(run_dir), pad_id, device, resume=False)
        train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    outputs = predicting.predict(model, dev, pad_id, device, settings.eval_batch_size, settings.precision,
                                 per_token=per_token)
    eval_seconds = time.perf_counter() - start
    return {"result": result, "train_seconds": train_seconds, "outputs": outputs, "eval_seconds": eval_seconds}


# ---- the peer -----------------------------------------------------------------------------------

def peer_fit_and_predict(model, tokenizer, train, dev, args) -> dict:
    """transformers' Trainer as its scripts run it, on tokenized `datasets`: one epoch, then predict `dev`.

    Its best settings for this comparison: bf16 autocast, dynamic padding, length-grouped batches,
    the same lr schedule and weight decay as bertfit, no checkpoints. Returns the train output, the
    predictions, both clocks, and the model's sizes as a bertfit BertConfig for the FLOP count.
    """
    import tempfile

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from bertfit.model import BertConfig

    with tempfile.TemporaryDirectory(prefix="bench-peer-run-") as output_dir:
        trainer_args = TrainingArguments(
            output_dir=output_dir, use_cpu=True, bf16=args.precision == "bf16",
            per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.eval_batch_size,
            train_sampling_strategy="group_by_length", learning_rate=args.lr, num_train_epochs=1,
            warmup_steps=0.1,  # a float below 1 is a ratio in transformers 5
            lr_scheduler_type="linear", weight_decay=0.01, save_strategy="no", report_to=[], logging_steps=50,
            dataloader_num_workers=0, seed=args.seed)
        trainer = Trainer(model=model, args=trainer_args, train_dataset=train, processing_class=tokenizer,
                          data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - start

        # group_by_length also reorders prediction batches; sequential keeps rows in dataset order
        trainer.args.train_sampling_strategy = "sequential"
        start = time.perf_counter()
        predictions = trainer.predict(dev).predictions
        eval_seconds = time.perf_counter() - start

    hf = model.config
    config = BertConfig(hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size,
                        num_hidden_layers=hf.num_hidden_layers, num_attention_heads=hf.num_attention_heads)
    return {"output": output, "train_seconds": train_seconds, "predictions": predictions,
            "eval_seconds": eval_seconds, "config": config}


# ---- the report ---------------------------------------------------------------------------------

def rates(side: dict, peak_gflops: float) -> dict:
    """Per-second figures and MFU from a side's counts and seconds."""
    mfu = side["train_flops"] / side["train_seconds"] / (peak_gflops * 1e9)
    return {
        **side,
        "train_examples_per_s": side["train_examples"] / side["train_seconds"],
        "train_tokens_per_s": side["train_tokens"] / side["train_seconds"],
        "train_mfu_percent": 100 * mfu,
        "eval_examples_per_s": side["eval_examples"] / side["eval_seconds"],
        "eval_tokens_per_s": side["eval_tokens"] / side["eval_seconds"],
    }


def print_table(title: str, rows: dict[str, dict], columns: list[tuple[str, str, str]]) -> None:
    """One row per side; columns are (header, key, format)."""
    cells = [[header for header, _, _ in columns]]
    for name, row in rows.items():
        cells.append([name if key == "side" else format(row[key], spec) for _, key, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    line = "  ".join("-" * w for w in widths)
    print(title)
    print(line)
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print(line)
    print(line)


def report(title: str, args, peak: dict, sides: dict[str, dict], columns, notes: list[str]) -> None:
    """Print the table, notes and the ratio line (last); write everything to --json if asked."""
    rows = {name: rates(figures, peak["peak_gflops"]) for name, figures in sides.items()}
    train_ratio = rows["bertfit"]["train_examples_per_s"] / rows["peer"]["train_examples_per_s"]
    eval_ratio = rows["bertfit"]["eval_examples_per_s"] / rows["peer"]["eval_examples_per_s"]
    print_table(title, rows, columns)
    for note in notes:
        print(note)
    print(f"bf16 matmul peak {peak['peak_gflops']:.0f} GFLOP/s ({peak['matmul_size']}^2, {peak['threads']} threads); "
          f"bertfit training MFU {rows['bertfit']['train_mfu_percent']:.1f}%")
    if args.json:
        payload = {"benchmark": title, "arguments": {k: v for k, v in vars(args).items()
                                                     if k not in ("side", "result_file", "json")},
                   "peak": peak, **rows, "ratio": {"train": train_ratio, "eval": eval_ratio}}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"ratio train {train_ratio:.2f} eval {eval_ratio:.2f}")
