"""The CPU levers of bertfit's fast path, each measured on its own against what it replaced.

    python bench/levers.py --glue-dir ../shared/data/glue --squad-file ../shared/data/squad/dev-v1.1.json

1. padding: share of pad tokens in SST-2's length-grouped training batches, by group size;
2. dropout: one dropout forward + backward on a 32 x 14 x 384 bf16 batch, torch's vs bertfit's;
3. allocator: one SST-2 training step (batch 32), glibc's starting mmap/trim thresholds against
   the ones `devices.tune_allocator` sets, alternated in one process;
4. inference: SQuAD windows/s in batches of 128 windows against batches capped at 2,048 tokens.
Timings are medians (or means over many steps); this machine's speed drifts, so compare within a run.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from bertfit import optim
from bertfit.batching import collate, eval_batches, length_grouped_batches
from bertfit.model import FastDropout, set_attention_dropout
from bertfit.pretrained import embedded_model_path, load_pretrained, load_tokenizer
from bertfit.tasks import glue_encoding, glue_tsv, squad
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


def padding(sst2_train) -> None:
    lengths = sst2_train.lengths
    for group in (16, 64, 256):
        batches = length_grouped_batches(lengths, 32, seed=42, epoch=0, group=group)
        padded = sum(len(b) * int(lengths[b].max()) for b in batches)
        print(f"padding, groups of {group:>3} batches: {100 * (1 - lengths.sum() / padded):.1f}% of tokens")


def dropout() -> None:
    x = torch.randn(32, 14, 384, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    ours = FastDropout(0.1).train()
    for name, layer in (("torch.nn.Dropout", torch.nn.Dropout(0.1).train()), ("bertfit Dropout", ours)):
        ms = median_ms(lambda: torch.autograd.grad(layer(x), x, grad))
        print(f"dropout forward + backward, {name}: {ms:.2f} ms")


def allocator(sst2_train, pad_id: int, steps: int = 40, rounds: int = 3) -> None:
    mallopt = ctypes.CDLL(None).mallopt
    torch.manual_seed(0)
    model, _ = load_pretrained(embedded_model_path(), head="classification", num_labels=2)
    model.train()
    set_attention_dropout(model, 0.0)
    optimizer = optim.make_optimizer(model, 5e-5, 0.01)
    row_grads = optim.EmbeddingRowGrads(model, lazy=True)
    batches = [collate(sst2_train, b, pad_id) for b in length_grouped_batches(sst2_train.lengths, 32, 0, 0)[:steps]]

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
            loss = F.cross_entropy(logits.float(), batch["label_ids"], reduction="sum")
        loss.backward()
        row_grads.coalesce()
        optim.clip_gradients(model, 1.0).item()
        row_grads.before_step(optimizer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    m_trim_threshold, m_mmap_threshold = -1, -3
    settings = {"glibc's starting thresholds (128 KiB)": (128 << 10, 128 << 10),
                "tune_allocator's (32 MiB mmap, 1 GiB trim)": (32 << 20, 1 << 30)}
    for batch in batches[:3]:
        step(batch)
    for _ in range(rounds):
        for name, (mmap_threshold, trim_threshold) in settings.items():
            mallopt(m_mmap_threshold, mmap_threshold)
            mallopt(m_trim_threshold, trim_threshold)
            start = time.perf_counter()
            for batch in batches:
                step(batch)
            print(f"SST-2 training step, {name}: {1000 * (time.perf_counter() - start) / len(batches):.1f} ms")
    row_grads.restore()


def inference(squad_file: str, pad_id: int, tokenizer) -> None:
    questions, _ = squad.read_squad(squad_file)
    titles = list(dict.fromkeys(q.title for q in questions))
    held_out = set(titles[-10:])  # squad-mini's evaluation articles
    windows, _ = squad.make_windows([q for q in questions if q.title in held_out][:500], tokenizer, 384, 128,
                                    training=False)
    model, _ = load_pretrained(embedded_model_path(), head="qa")
    model.eval()
    for name, max_tokens in (("batches of 128 windows", None), ("batches of at most 2,048 tokens", 2048)):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            start = time.perf_counter()
            for indices in eval_batches(windows.lengths, 128, max_tokens):
                batch = collate(windows, indices, pad_id)
                model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
            seconds = time.perf_counter() - start
        print(f"SQuAD inference, {name}: {len(windows) / seconds:.1f} windows/s ({len(windows)} windows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue-dir", required=True, help="the GLUE root, or its SST-2 folder")
    parser.add_argument("--squad-file", required=True, help="SQuAD v1.1 dev JSON: its last 10 articles are read")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    importlib.import_module("torch._dynamo")  # the first optimizer imports it: keep that out of the timings

    tokenizer = load_tokenizer(embedded_model_path())
    pad_id = special_ids(tokenizer).pad
    sst2_train, _ = glue_encoding.encode(glue_tsv.read_glue_split("sst2", args.glue_dir, "train"), tokenizer, 128)
    padding(sst2_train)
    dropout()
    allocator(sst2_train, pad_id)
    inference(args.squad_file, pad_id, tokenizer)


if __name__ == "__main__":
    main()
