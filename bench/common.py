"""What the speed benchmarks share: one subprocess per side, a server started and its memory read, the CPU kind,
the matmul peak, FLOPs, the table.

Each side (bertfit, the transformers Trainer peer, the matmul peak) runs in its own child
process, one after the other, so peak RSS is that side's alone and neither side's threads,
caches or allocator state leak into the other's timing. A child writes its figures as JSON to a
file the parent names; its own output goes to the parent's stderr, so stdout holds only the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import queue
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Where every benchmark writes its figures, one folder per CPU kind; docs/render.py makes the tables of
# the README and the docs from these files and from nothing else.
FIGURES_DIR = ROOT / "docs" / "figures"


# ---- running the sides --------------------------------------------------------------------------

COMPARISONS = {
    "same-math": "same math: the same attention dropout, exact dense AdamW on both sides, the same precision, "
                 "batch, schedule, data and sequence limits (the engineering ratio)",
    "defaults": "defaults vs defaults: what each tool does when a user types its documented command",
}


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes; a script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on every side (default 2)")
    parser.add_argument("--json", help="also write every figure to this file")
    add_figures_option(parser)
    parser.add_argument("--side", help=argparse.SUPPRESS)  # set by the parent for its children
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def add_figures_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--figures-dir", default=str(FIGURES_DIR),
                        help="write the figures as JSON to DIR/<cpu kind>/<name>.json, which docs/render.py "
                             "renders into the docs (default: docs/figures; a trial run: a folder of its own)")


def add_comparison_options(parser: argparse.ArgumentParser) -> None:
    """--compare, --attention-dropout, --seeds: what the training benchmarks compare, and over which seeds."""
    parser.add_argument("--compare", choices=tuple(COMPARISONS), default="same-math",
                        help="same-math: both sides do the same computation; defaults: each tool's documented "
                             "defaults (default: same-math)")
    parser.add_argument("--attention-dropout", type=float, metavar="P",
                        help="attention dropout on both sides, e.g. 0.1, the model's own (default: bertfit's "
                             "training default on both sides with same-math; with defaults, each tool's own)")
    parser.add_argument("--seed", type=int, default=42, help="the seed of both sides (default 42)")
    parser.add_argument("--seeds", type=lambda text: [int(x) for x in text.split(",") if x.strip()],
                        help="run both sides once per seed, e.g. 1,2,3: scores as mean ± std (default: --seed)")


def comparison_name(benchmark: str, args) -> str:
    """The figures file of a training comparison: BENCHMARK-same-math, BENCHMARK-defaults, and with
    --attention-dropout P, ...-attention-dropout-P."""
    dropout = "" if args.attention_dropout is None else f"-attention-dropout-{args.attention_dropout:g}"
    return f"{benchmark}-{args.compare}{dropout}"


def run(script: str, args, argv: list[str], sides: dict[str, Callable], precisions=("bf16",)) -> dict | None:
    """In a child (--side NAME): run that side, hand its figures back, return None.

    In the parent: measure the matmul peak in each of `precisions`, then run each of `sides` once per
    seed (--seeds, else --seed), each in a child of its own, one after the other, the sides alternating
    seed by seed; return {"peak": {precision: figures}, name: [figures per seed]}.
    """
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        # PyTorch's optimizers import torch._dynamo when the first one is built (seconds, not free); transformers
        # imports it up front. Both sides import it before their clocks start, so neither times an import.
        import torch._dynamo  # noqa: F401
        if args.side.startswith("peak-"):
            figures = matmul_peak(args.side.removeprefix("peak-"))
        else:
            figures = sides[args.side](args)
        figures["threads"] = torch.get_num_threads()  # after the side ran: nothing changed it behind our back
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        Path(args.result_file).write_text(json.dumps(figures))
        return None
    child_argv = _without_options(argv, ("--json", "--figures-dir", "--seeds", "--seed"))
    results: dict = {"peak": {p: run_side(script, child_argv, f"peak-{p}") for p in sorted(set(precisions))}}
    for seed in getattr(args, "seeds", None) or [getattr(args, "seed", 42)]:
        for name in sides:
            results.setdefault(name, []).append(run_side(script, [*child_argv, "--seed", str(seed)], name))
    return results


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


def _without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """argv without the options `names` and their values (only the parent writes --json or loops over seeds)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not any(arg.startswith(name + "=") for name in names):
            out.append(arg)
    return out


def _without_json(argv: list[str]) -> list[str]:
    return _without_options(argv, ("--json",))


# ---- the machine --------------------------------------------------------------------------------

# The CPU kinds figures are filed under, from the most capable down: what decides bertfit's precision
# (native bf16 or not) and its int8 kernels. The docs show a table for each of the first three.
CPU_KINDS = ("avx2", "avx512_bf16", "amx")
# the flags that tell the kinds apart and what bertfit and ONNX Runtime choose on them, recorded with every figure
KIND_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16",
              "amx_int8")


def kind_of(flags: set[str]) -> str:
    """amx, avx512_bf16, avx512 (AVX-512 without bf16), avx2, or other: the kind a CPU's figures go under."""
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def cpu_kind() -> dict:
    """The CPU's model name (/proc/cpuinfo), its kind, the flags that decide it, and whether it has native bf16."""
    from bertfit.devices import cpu_flags, cpu_has_bf16_instructions

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    name = next((line.partition(":")[2].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = cpu_flags()
    return {"model_name": name, "kind": kind_of(flags), "flags": [f for f in KIND_FLAGS if f in flags],
            "native_bf16": cpu_has_bf16_instructions(flags),
            "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16"}), "logical_cpus": sum(
                line.startswith("processor") for line in lines)}


def cpu_line(cpu: dict) -> str:
    bf16 = f"yes ({', '.join(cpu['bf16_flags'])})" if cpu["native_bf16"] else "no (neither avx512_bf16 nor amx_bf16)"
    return (f"CPU: {cpu['model_name']}, {cpu['logical_cpus']} logical CPUs, kind {cpu['kind']}; "
            f"native bf16: {bf16}")


# ---- a server under test ------------------------------------------------------------------------

def start_server(command: list[str], threads: int, wait: float = 300) -> tuple[subprocess.Popen, int]:
    """Start a server process on `threads` threads (this checkout's bertfit first on its path); return (process,
    port) once it prints the address it listens on. Its lines go to stderr as they come."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    lines = queue.Queue()  # a reader thread, so that waiting for the address has a limit
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put("")], daemon=True).start()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if not line:
            break
        print(f"   {line.rstrip()}", file=sys.stderr)
        found = re.search(r"serving on http://[\d.]+:(\d+)", line)
        if found:
            return process, int(found.group(1))
    process.kill()
    sys.exit(f"the server did not start: {' '.join(command)}")


def memory_mb(pid: int, field: str = "VmRSS") -> float | None:
    """A process's memory figure from /proc/PID/status (VmRSS: resident now; VmHWM: its peak) in MB; None once the
    process is gone. Linux only."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


# ---- the figures file ---------------------------------------------------------------------------

def git_commit() -> dict:
    """The commit the benchmark ran at, and whether the work tree had changes to tracked files."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    # figures and runs files that a long benchmark writes as it goes are results, not changes to what ran
    changed = None if status is None else [line for line in status.splitlines()
                                           if not line.split(None, 1)[-1].startswith("docs/figures/")]
    return {"commit": commit or "unknown", "dirty": bool(changed) if changed is not None else None}


def command_line(script: str, argv: list[str]) -> str:
    """The command as typed from the repository root, without where its outputs went."""
    shown = _without_options(argv, ("--json", "--figures-dir"))
    return shlex.join(["python", f"bench/{Path(script).name}", *shown])


def write_figures(name: str, script: str, argv: list[str], figures_dir: str | None, *, figures: dict,
                  settings: dict | None = None, precision: dict | None = None, threads: int | None = None) -> Path:
    """Write one benchmark's result to FIGURES_DIR/<cpu kind>/<name>.json and return the path.

    `settings`: every setting of each side; `precision`: what each side's precision resolved to;
    `figures`: what was measured. The command line, the commit and the CPU are added here, so that
    every figure in the docs says where it came from."""
    from bertfit.files import write_json

    cpu = cpu_kind()
    record = {"name": name, "command": command_line(script, argv), **git_commit(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "cpu": cpu, "threads": threads, "precision": precision or {}, "settings": settings or {},
              "figures": figures}
    folder = Path(figures_dir or FIGURES_DIR) / cpu["kind"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    write_json(path, json.loads(json.dumps(record, default=_plain)))
    print(f"figures: {path}", file=sys.stderr)
    return path


def _plain(value):
    """What json cannot write by itself: numpy numbers and arrays, paths, dataclasses."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


def resolved_precision(precision: str) -> str:
    """auto as bertfit resolves it on this CPU: bf16 with native bf16 instructions, else fp32."""
    if precision != "auto":
        return precision
    import torch

    from bertfit.devices import precision_name, resolve_precision

    return precision_name(resolve_precision("auto", torch.device("cpu")))


# ---- hardware peak and model FLOPs --------------------------------------------------------------

def matmul_peak(precision: str = "bf16", seconds: float = 3.0, largest: int = 2048) -> dict:
    """Best GFLOP/s of a square matmul in `precision`: the ceiling that model-FLOP utilization is measured against.

    Sizes double from 256 up to `largest` while the next size still fits in about `seconds`, so the
    measurement stays short where the precision is slow (bf16 on a CPU without native bf16 is emulated)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    began = time.perf_counter()
    deadline = began + seconds
    best = {"peak_gflops": 0.0, "matmul_size": 0}
    size = 256
    while size <= largest:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        timings = []
        for _ in range(11):  # the first call also picks and builds the kernel
            start = time.perf_counter()
            a @ b
            timings.append(time.perf_counter() - start)
            if time.perf_counter() + timings[-1] > deadline:
                break
        gflops = 2 * size**3 / min(timings) / 1e9
        if gflops > best["peak_gflops"]:
            best = {"peak_gflops": gflops, "matmul_size": size}
        if time.perf_counter() + 8 * 3 * min(timings) > deadline:  # the next size: 8x the work, a few calls
            break
        size *= 2
    return {**best, "precision": precision, "seconds": time.perf_counter() - began}


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


# ---- what each side is asked to do -------------------------------------------------------------

# The settings both sides print, in this order; a side's settings are a dict with these keys.
SETTING_NAMES = ("epochs", "lr", "batch_size", "warmup_ratio", "weight_decay", "precision", "attention_dropout",
                 "optimizer", "train_batches", "max_seq_length", "doc_stride", "eval_batch_size")
EXACT_ADAMW = "AdamW, every parameter every step (exact)"
BERTFIT_BATCHES = "length-grouped (groups of 256 batches, shuffled)"
# The peers' documented commands, in one place for every script that runs them: the README examples of
# transformers' run_glue.py and run_qa.py (no warmup or weight decay, fp32, dynamic padding).
RUN_GLUE = dict(epochs=3, lr=2e-5, batch_size=32, warmup_ratio=0.0, weight_decay=0.0, precision="fp32",
                max_seq_length=128, eval_batch_size=8, train_batches="random")
RUN_QA = dict(epochs=2, lr=3e-5, batch_size=12, warmup_ratio=0.0, weight_decay=0.0, precision="fp32",
              max_seq_length=384, doc_stride=128, eval_batch_size=8, train_batches="random")
LAZY_ADAMW = "AdamW, embedding rows only in steps that use them (lazy)"
# bertfit's engineering: the same math done differently, named in every comparison
ENGINEERING = [
    "inference batches: bertfit sorts by length and caps a batch at 2,048 tokens on CPU; the Trainer keeps "
    "dataset order in batches of eval_batch_size",
    "process tuning: bertfit raises glibc's mmap and trim thresholds (devices.tune_allocator); the Trainer runs "
    "with glibc's defaults",
    "kernels: bertfit computes attention explicitly up to 128 tokens in training and 48 in inference (SDPA above), "
    "sparse embedding gradients, fused AdamW, its own dropout masks",
]


def model_attention_dropout() -> float:
    """attention_probs_dropout_prob of the embedded model's config: the peer's value unless told otherwise."""
    from bertfit.pretrained import embedded_model_path

    config = json.loads((Path(embedded_model_path()) / "config.json").read_text())
    return float(config.get("attention_probs_dropout_prob", 0.1))


def bertfit_default_attention_dropout() -> float:
    from bertfit.settings import TrainSettings

    return TrainSettings().attention_dropout


def settings_lines(compare: str, settings: dict[str, dict], engineering=ENGINEERING) -> list[str]:
    """Both sides' settings, one a line, each difference marked and then named; bertfit's engineering after."""
    bertfit, peer = settings["bertfit"], settings["peer"]
    names = [n for n in SETTING_NAMES if n in bertfit or n in peer]
    width = max(len(n) for n in names)
    left = max(len(str(bertfit.get(n, "-"))) for n in names)
    lines = [f"comparison: {COMPARISONS[compare]}", f"{'setting':<{width}}  {'bertfit':<{left}}  Trainer"]
    differs = [n for n in names if bertfit.get(n) != peer.get(n)]
    for n in names:
        mark = "   <- differs" if n in differs else ""
        lines.append(f"{n:<{width}}  {str(bertfit.get(n, '-')):<{left}}  {peer.get(n, '-')}{mark}")
    lines.append(f"settings that differ: {', '.join(differs) if differs else 'none'}")
    lines += [f"bertfit's engineering (not a setting): {line}" for line in engineering]
    return lines


def training_settings(settings: dict):
    """A bertfit side's settings dict as TrainSettings."""
    from bertfit.settings import TrainSettings

    return TrainSettings(epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
                         warmup_ratio=settings["warmup_ratio"], weight_decay=settings["weight_decay"],
                         seed=settings["seed"], precision=settings["precision"],
                         eval_batch_size=settings["eval_batch_size"], attention_dropout=settings["attention_dropout"],
                         lazy_embeddings=settings["optimizer"] == LAZY_ADAMW, log_every=50)


# ---- the two sides ------------------------------------------------------------------------------

def bertfit_fit_and_predict(model, train, dev, loss, pad_id: int, settings: dict, per_token: bool = False) -> dict:
    """bertfit's training loop with a side's `settings`, then inference on `dev`.

    `fit` always evaluates at the end of an epoch and needs one metric: a stub keeps inference out
    of the training clock, and `predict` is timed on its own. Returns the FitResult, the outputs and
    both clocks.
    """
    import tempfile

    import torch

    from bertfit import devices, predicting, training

    train_settings = training_settings(settings)
    device = torch.device("cpu")
    devices.tune_allocator(device)  # as `bertfit glue` / `bertfit squad` tune the process they own
    with tempfile.TemporaryDirectory(prefix="bench-bertfit-run-") as run_dir:
        start = time.perf_counter()
        result = training.fit(model, train, loss, lambda model: {"unused": 0.0}, lambda model, metrics: None,
                              train_settings, Path(run_dir), pad_id, device, resume=False)
        train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    outputs = predicting.predict(model, dev, pad_id, device, train_settings.eval_batch_size, train_settings.precision,
                                 per_token=per_token)
    eval_seconds = time.perf_counter() - start
    return {"result": result, "train_seconds": train_seconds, "outputs": outputs, "eval_seconds": eval_seconds}


def peer_fit_and_predict(model, tokenizer, train, dev, settings: dict, sizes=None) -> dict:
    """transformers' Trainer on tokenized `datasets` with a side's `settings`, then predict `dev`.

    Dynamic padding on both sides; no checkpoints. Returns the train output, the predictions, both
    clocks, and the model's sizes as a bertfit BertConfig for the FLOP count: `sizes` where given (a family
    whose config names them otherwise than BERT's, e.g. read by `checkpoints.hf.read_config`), else BERT's names.
    """
    import tempfile

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from bertfit.model import BertConfig

    with tempfile.TemporaryDirectory(prefix="bench-peer-run-") as output_dir:
        trainer_args = TrainingArguments(
            output_dir=output_dir, use_cpu=True, bf16=settings["precision"] == "bf16",
            per_device_train_batch_size=settings["batch_size"], per_device_eval_batch_size=settings["eval_batch_size"],
            train_sampling_strategy=settings["train_batches"], learning_rate=settings["lr"],
            num_train_epochs=settings["epochs"],
            warmup_steps=settings["warmup_ratio"],  # a float below 1 is a ratio in transformers 5
            lr_scheduler_type="linear", weight_decay=settings["weight_decay"], save_strategy="no", report_to=[],
            logging_steps=50, dataloader_num_workers=0, seed=settings["seed"])
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
    config = sizes or BertConfig(hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size,
                                 num_hidden_layers=hf.num_hidden_layers, num_attention_heads=hf.num_attention_heads)
    return {"output": output, "train_seconds": train_seconds, "predictions": predictions,
            "eval_seconds": eval_seconds, "config": config}


# ---- the report ---------------------------------------------------------------------------------

def rates(side: dict, peak_gflops: float) -> dict:
    """Per-second figures and MFU (against the peak in the side's precision) from a side's counts and seconds."""
    mfu = side["train_flops"] / side["train_seconds"] / (peak_gflops * 1e9)
    return {
        **side,
        "train_examples_per_s": side["train_examples"] / side["train_seconds"],
        "train_tokens_per_s": side["train_tokens"] / side["train_seconds"],
        "train_mfu_percent": 100 * mfu,
        "eval_examples_per_s": side["eval_examples"] / side["eval_seconds"],
        "eval_tokens_per_s": side["eval_tokens"] / side["eval_seconds"],
    }


def over_seeds(runs: list[dict], scores: tuple[str, ...]) -> dict:
    """One row from a side's runs over seeds: each number's mean; for `scores` also the std and the values."""
    row = {k: (float(np.mean([r[k] for r in runs])) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
           for k, v in runs[0].items()}
    for key in scores:
        values = [float(r[key]) for r in runs]
        row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        row[f"{key}_values"] = values
    return row


def print_table(title: str, rows: dict[str, dict], columns: list[tuple[str, str, str]]) -> None:
    """One row per side; columns are (header, key, format); a score over seeds shows as mean ± std."""
    def cell(row, key, spec) -> str:
        text = format(row[key], spec)
        return text + (f" ± {format(row[f'{key}_std'], spec)}" if row.get(f"{key}_std") is not None else "")

    cells = [[header for header, _, _ in columns]]
    for name, row in rows.items():
        cells.append([name if key == "side" else cell(row, key, spec) for _, key, spec in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    line = "  ".join("-" * w for w in widths)
    print(title)
    print(line)
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print(line)
    print(line)


def report(title: str, args, peaks: dict[str, dict], sides: dict[str, list[dict]], columns, notes: list[str],
           settings: dict[str, dict] | None = None, scores: tuple[str, ...] = (), *, name: str, script: str,
           argv: list[str], untimed: bool = False, extra: dict | None = None) -> None:
    """Print the table, notes and the ratio line (last); write the figures file `name` (and --json if asked).

    `sides`: each side's figures per seed; `settings`: each side's settings (their precision picks the
    peak its MFU is measured against); `scores`: the accuracy figures, reported as mean ± std over seeds;
    `untimed`: the run shared the CPU with other work, so its clocks are recorded but no timing is reported;
    `extra`: more figures for the file (where some rows came from)."""
    precision_of = {name: resolved_precision((settings or {}).get(name, {}).get("precision", args.precision))
                    for name in sides}
    rows = {name: over_seeds([rates(f, peaks[precision_of[name]]["peak_gflops"]) for f in runs], scores)
            for name, runs in sides.items()}
    train_ratio = rows["bertfit"]["train_examples_per_s"] / rows["peer"]["train_examples_per_s"]
    eval_ratio = rows["bertfit"]["eval_examples_per_s"] / rows["peer"]["eval_examples_per_s"]
    cpu = cpu_kind()
    print_table(title, rows, columns)
    for note in notes:
        print(note)
    seeds = getattr(args, "seeds", None) or [getattr(args, "seed", None)]
    if len(seeds) > 1:
        print(f"over seeds {', '.join(map(str, seeds))} (the same on both sides): means; scores as mean ± sample std")
    for precision, peak in sorted(peaks.items()):
        print(f"{precision} matmul peak {peak['peak_gflops']:.0f} GFLOP/s ({peak['matmul_size']}^2, "
              f"{peak['threads']} threads, measured in {peak['seconds']:.1f}s of this run)")
    print("training MFU against the peak in each side's precision: "
          + "; ".join(f"{name} {rows[name]['train_mfu_percent']:.1f}% ({precision_of[name]})" for name in rows))
    print(cpu_line(cpu))
    figures = {"benchmark": title, "seeds": seeds, "peak": peaks, "runs": sides, "sides": rows, "notes": notes,
               "ratio": {"train": train_ratio, "eval": eval_ratio}, "quiet_machine": not untimed, **(extra or {})}
    write_figures(name, script, argv, args.figures_dir, figures=figures, settings=settings,
                  precision=precision_of, threads=args.threads)
    if args.json:
        payload = {"benchmark": title, "cpu": cpu, "arguments": {k: v for k, v in vars(args).items()
                                                                 if k not in ("side", "result_file", "json")},
                   "settings": settings, "peak": peaks, "runs": sides, **rows,
                   "ratio": {"train": train_ratio, "eval": eval_ratio}}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if untimed:
        print("untimed: this run shared the CPU with other work; its clocks are no timing (scores only)")
    else:
        print(f"ratio train {train_ratio:.2f} eval {eval_ratio:.2f}")
