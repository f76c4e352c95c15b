"""The CPU levers of bertfit's fast path, each measured on its own against what a user gets without it.

    python bench/levers.py --glue-dir ../shared/data/glue --squad-file ../shared/data/squad/dev-v1.1.json

1. padding: share of pad tokens in SST-2's training batches of 32, shuffled without grouping against
   length-grouped batches, by group size;
2. dropout: one dropout forward + backward on a 32 x 14 x 384 batch, torch's vs bertfit's;
3. allocator: one SST-2 training step (batch 32) in an untouched process (glibc's defaults, its
   dynamic mmap threshold included: no mallopt at all) against one where `devices.tune_allocator`
   ran first; each in fresh processes, alternated, --allocator-rounds times;
4. inference: SQuAD windows/s in dataset order in batches of 128 (as a plain loop runs them),
   sorted by length in batches of 128, and sorted with batches capped at 2,048 tokens (bertfit's);
5. packing: the real tokens alone through everything but attention (`bertfit.model.Packing`) against
   the padded batch: the classifier over SST-2 dev sentences in random groups of 16 (a server's
   pass under load), and a training step (forward + backward) on SST-2 training batches of 32,
   shuffled without grouping and length-grouped; each padded and packed, alternated, twice.
`--levers` runs some of them (default all).
Dropout, the training step and inference run in --precision (auto: bf16 on CPUs with native bf16,
else fp32, as bertfit decides). Timings are medians (or means over many steps); this machine's speed
drifts, so compare within a run. The CPU kind is printed first.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bertfit import devices, optim
from bertfit.batching import collate, eval_batches, length_grouped_batches
from bertfit.model import FastDropout, set_attention_dropout
from bertfit.pretrained import embedded_model_path, load_pretrained, load_tokenizer
from bertfit.tasks import glue, glue_encoding, glue_tsv, squad
from bertfit.tokenization import special_ids


def median_ms(fn, repeats: int = 200) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def padding(sst2_train) -> dict:
    """Percent of pad tokens: shuffled batches without grouping ("none"), and length-grouped by group size."""
    lengths = sst2_train.lengths
    order = np.random.default_rng(42).permutation(len(lengths))
    shuffled = [order[i : i + 32] for i in range(0, len(order), 32)]
    padded = sum(len(b) * int(lengths[b].max()) for b in shuffled)
    shares = {"none": 100 * (1 - lengths.sum() / padded)}
    print(f"padding, shuffled batches without grouping: {shares['none']:.1f}% of tokens")
    for group in (16, 64, 256):
        batches = length_grouped_batches(lengths, 32, seed=42, epoch=0, group=group)
        padded = sum(len(b) * int(lengths[b].max()) for b in batches)
        shares[str(group)] = 100 * (1 - lengths.sum() / padded)
        print(f"padding, groups of {group:>3} batches: {shares[str(group)]:.1f}% of tokens")
    return {"batch_size": 32, "pad_percent": shares}


def dropout(dtype: torch.dtype) -> dict:
    x = torch.randn(32, 14, 384, dtype=dtype, requires_grad=True)
    grad = torch.randn_like(x)
    ours = FastDropout(0.1).train()
    times = {}
    for name, layer in (("torch.nn.Dropout", torch.nn.Dropout(0.1).train()), ("bertfit Dropout", ours)):
        times[name] = median_ms(lambda: torch.autograd.grad(layer(x), x, grad))
        print(f"dropout forward + backward, {name}: {times[name]:.2f} ms")
    return {"shape": [32, 14, 384], "ms": times}


def allocator_step_ms(glue_dir: str, dtype: torch.dtype, tuned: bool, steps: int = 40) -> float:
    """In this process: ms per SST-2 training step (batch 32) over `steps` steps, after 3 warm-up steps.

    `tuned`: devices.tune_allocator runs first; otherwise glibc is left exactly as a fresh process has it."""
    if tuned:
        devices.tune_allocator(torch.device("cpu"))
    tokenizer = load_tokenizer(embedded_model_path())
    examples = glue_tsv.read_glue_split("sst2", glue_dir, "train")
    first = glue.Examples(texts_a=examples.texts_a[:4096], texts_b=None, labels=examples.labels[:4096],
                          indices=examples.indices[:4096], source=examples.source)
    sst2_train, _ = glue_encoding.encode(first, tokenizer, 128)
    pad_id = special_ids(tokenizer).pad
    torch.manual_seed(0)
    model, _ = load_pretrained(embedded_model_path(), head="classification", num_labels=2)
    model.train()
    set_attention_dropout(model, 0.0)
    optimizer = optim.make_optimizer(model, 5e-5, 0.01)
    row_grads = optim.EmbeddingRowGrads(model, lazy=True)
    batches = [collate(sst2_train, b, pad_id) for b in length_grouped_batches(sst2_train.lengths, 32, 0, 0)]
    if len(batches) < 4:  # 3 warm-up steps, then at least one timed
        sys.exit(f"{glue_dir}: SST-2's training file has {len(sst2_train)} sentences; the allocator lever times "
                 f"steps of 32 after 3 warm-up steps, so it needs at least 128")

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
            loss = F.cross_entropy(logits.float(), batch["label_ids"], reduction="sum")
        loss.backward()
        row_grads.coalesce()
        optim.clip_gradients(model, 1.0).item()
        row_grads.before_step(optimizer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:3]:
        step(batch)
    start = time.perf_counter()
    for batch in batches[3 : 3 + steps]:
        step(batch)
    return 1000 * (time.perf_counter() - start) / len(batches[3 : 3 + steps])


def allocator(args) -> dict:
    """Each side in a fresh interpreter, so the untouched one never sees a mallopt call, alternated."""
    names = {"untouched": "an untouched process (glibc's defaults, dynamic mmap threshold)",
             "tuned": "tune_allocator (32 MiB mmap threshold, 1 GiB trim)"}
    rounds = []
    for _ in range(args.allocator_rounds):
        rounds.append({})
        for side in names:
            command = [sys.executable, __file__, "--glue-dir", args.glue_dir, "--squad-file", args.squad_file,
                       "--threads", str(args.threads), "--precision", args.precision, "--allocator-child", side]
            completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
            ms = json.loads(completed.stdout.strip().splitlines()[-1])["ms_per_step"]
            rounds[-1][side] = ms
            print(f"SST-2 training step, {names[side]}: {ms:.1f} ms", flush=True)
    return {"ms_per_step": rounds, "sides": names}


def inference(squad_file: str, pad_id: int, tokenizer, dtype: torch.dtype) -> dict:
    questions, _ = squad.read_squad(squad_file)
    titles = list(dict.fromkeys(q.title for q in questions))
    held_out = set(titles[-10:])  # squad-mini's evaluation articles
    windows, _ = squad.make_windows([q for q in questions if q.title in held_out][:500], tokenizer, 384, 128,
                                    training=False)
    model, _ = load_pretrained(embedded_model_path(), head="qa")
    model.eval()
    in_order = [np.arange(i, min(i + 128, len(windows))) for i in range(0, len(windows), 128)]
    rates = {}
    for name, batches in (("dataset order, batches of 128 windows", in_order),
                          ("sorted by length, batches of 128 windows", eval_batches(windows.lengths, 128, None)),
                          ("sorted by length, batches of at most 2,048 tokens", eval_batches(windows.lengths, 128, 2048))):
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            start = time.perf_counter()
            for indices in batches:
                batch = collate(windows, indices, pad_id)
                model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
            seconds = time.perf_counter() - start
        rates[name] = len(windows) / seconds
        print(f"SQuAD inference, {name}: {rates[name]:.1f} windows/s ({len(windows)} windows)")
    return {"windows": len(windows), "windows_per_s": rates}


def packing(glue_dir: str, tokenizer, pad_id: int, dtype: torch.dtype) -> dict:
    from bertfit import model as bertfit_model

    rng = np.random.default_rng(0)
    dev, _ = glue_encoding.encode(glue_tsv.read_glue_split("sst2", glue_dir, "dev"), tokenizer, 128)
    train, _ = glue_encoding.encode(glue_tsv.read_glue_split("sst2", glue_dir, "train"), tokenizer, 128)
    order = rng.permutation(len(train.lengths))[:32 * 24]
    cases = {
        "inference, SST-2 dev in random groups of 16": (False, [rng.choice(len(dev.lengths), 16, replace=False)
                                                                for _ in range(48)], dev),
        "training step, SST-2 batches of 32 shuffled without grouping": (True, [order[i : i + 32] for i in
                                                                               range(0, len(order), 32)], train),
        "training step, SST-2 batches of 32 grouped by length": (True, length_grouped_batches(
            train.lengths, 32, seed=42, epoch=0)[:24], train),
    }
    torch.manual_seed(0)
    model, _ = load_pretrained(embedded_model_path(), head="classification", num_labels=2)
    set_attention_dropout(model, 0.0)
    saved = dict(bertfit_model.PACK_BELOW)
    figures = {}
    try:
        for name, (grad, groups, features) in cases.items():
            batches = [collate(features, g, pad_id) for g in groups]
            real = sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].numel() for b in batches)
            model.train(grad)

            def run(batch) -> None:
                with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                    logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
                if grad:
                    F.cross_entropy(logits.float(), batch["label_ids"], reduction="sum").backward()
                    model.zero_grad(set_to_none=True)

            seconds = {"padded": [], "packed": []}
            for _ in range(2):
                for way, below in (("padded", 0.0), ("packed", 1.0)):
                    bertfit_model.PACK_BELOW[grad] = below
                    for batch in batches[:3]:
                        run(batch)
                    start = time.perf_counter()
                    for batch in batches:
                        run(batch)
                    seconds[way].append(time.perf_counter() - start)
            rate = {way: sum(len(g) for g in groups) / min(s) for way, s in seconds.items()}
            figures[name] = {"real_token_share": real, "examples_per_s": rate, "speedup": rate["packed"] / rate["padded"]}
            print(f"{name} ({100 * real:.0f}% of positions real): padded {rate['padded']:.1f}, packed "
                  f"{rate['packed']:.1f} examples/s ({rate['packed'] / rate['padded']:.2f}x)", flush=True)
    finally:
        bertfit_model.PACK_BELOW.update(saved)
    return {"pack_below": saved, "cases": figures}


LEVERS = ("padding", "dropout", "allocator", "inference", "packing")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue-dir", required=True, help="the GLUE root, or its SST-2 folder")
    parser.add_argument("--squad-file", required=True, help="SQuAD v1.1 dev JSON: its last 10 articles are read")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--allocator-rounds", type=int, default=3, help="untouched/tuned process pairs (default 3)")
    parser.add_argument("--allocator-child", choices=("untouched", "tuned"), help=argparse.SUPPRESS)
    parser.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated (default {','.join(LEVERS)})")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    common.add_figures_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    importlib.import_module("torch._dynamo")  # the first optimizer imports it: keep that out of the timings
    dtype = devices.resolve_precision(args.precision, torch.device("cpu"))
    if args.allocator_child:
        ms = allocator_step_ms(args.glue_dir, dtype, tuned=args.allocator_child == "tuned")
        print(json.dumps({"ms_per_step": ms}))
        return

    print(common.cpu_line(common.cpu_kind()))
    print(f"precision {str(dtype).removeprefix('torch.')}, {args.threads} threads", flush=True)
    tokenizer = load_tokenizer(embedded_model_path())
    pad_id = special_ids(tokenizer).pad
    sst2_train, _ = glue_encoding.encode(glue_tsv.read_glue_split("sst2", args.glue_dir, "train"), tokenizer, 128)
    chosen = [name.strip() for name in args.levers.split(",") if name.strip()]
    if unknown := sorted(set(chosen) - set(LEVERS)):
        parser.error(f"unknown lever {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    levers = {"padding": lambda: padding(sst2_train), "dropout": lambda: dropout(dtype),
              "allocator": lambda: allocator(args),
              "inference": lambda: inference(args.squad_file, pad_id, tokenizer, dtype),
              "packing": lambda: packing(args.glue_dir, tokenizer, pad_id, dtype)}
    figures = {name: levers[name]() for name in LEVERS if name in chosen}
    precision = str(dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")
    name = "levers" if set(LEVERS) <= set(chosen) else "-".join(["levers", *[n for n in LEVERS if n in chosen]])
    common.write_figures(name, __file__, argv, args.figures_dir, figures=figures,
                         settings={"allocator_rounds": args.allocator_rounds, "precision": args.precision},
                         precision={"bertfit": precision}, threads=args.threads)


if __name__ == "__main__":
    main(sys.argv[1:])
