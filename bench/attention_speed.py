"""Attention on CPU: SDPA's fused kernel against the explicit matmul-softmax-matmul, by sequence length.

    python bench/attention_speed.py

Times forward+backward (training) and forward alone (inference, no gradients) of one attention
layer of the embedded model's shape (12 heads of 32) on about 6,144 tokens per batch with a
key-padding mask, in --precision (auto: bf16 on CPUs with native bf16, else fp32), for each length; the ratio column is SDPA's time over the explicit one
(above 1: the explicit form is faster). bertfit's model takes the explicit form below the lengths
in `bertfit.model.EXPLICIT_ATTENTION_MAX_LENGTH`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bertfit.devices import resolve_precision
from bertfit.model import EXPLICIT_ATTENTION_MAX_LENGTH, explicit_attention

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=6144, help="tokens per batch (default 6144)")
    parser.add_argument("--lengths", default="14,32,48,64,96,128,160,192,256,384")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    common.add_figures_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    print(common.cpu_line(common.cpu_kind()))
    print(f"precision {str(dtype).removeprefix('torch.')}, {args.threads} threads")

    print(f"{'length':>6} {'batch':>5}  {'train sdpa ms':>13} {'explicit ms':>11} {'ratio':>5}  "
          f"{'infer sdpa ms':>13} {'explicit ms':>11} {'ratio':>5}")
    rows = []
    for length in map(int, args.lengths.split(",")):
        batch = max(1, args.tokens // length)
        q, k, v = (torch.randn(batch, 12, length, 32, dtype=dtype, requires_grad=True) for _ in range(3))
        lengths = torch.randint(int(0.8 * length), length + 1, (batch,))
        lengths[0] = length
        mask = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :]

        def sdpa(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        def explicit(q, k, v):
            return explicit_attention(q, k, v, mask, 0.0)

        def train(attention):
            return lambda: attention(q, k, v).float().sum().backward()

        def infer(attention):
            def run():
                with torch.no_grad():
                    attention(q, k, v)
            return run

        train_sdpa, train_explicit = best_ms(train(sdpa), args.repeats), best_ms(train(explicit), args.repeats)
        infer_sdpa, infer_explicit = best_ms(infer(sdpa), args.repeats), best_ms(infer(explicit), args.repeats)
        rows.append({"length": length, "batch": batch, "train_sdpa_ms": train_sdpa, "train_explicit_ms": train_explicit,
                     "infer_sdpa_ms": infer_sdpa, "infer_explicit_ms": infer_explicit})
        print(f"{length:>6} {batch:>5}  {train_sdpa:>13.1f} {train_explicit:>11.1f} {train_sdpa / train_explicit:>5.2f}  "
              f"{infer_sdpa:>13.1f} {infer_explicit:>11.1f} {infer_sdpa / infer_explicit:>5.2f}")
    print(f"bertfit's model uses the explicit form up to {EXPLICIT_ATTENTION_MAX_LENGTH[True]} tokens when training "
          f"and {EXPLICIT_ATTENTION_MAX_LENGTH[False]} in inference")
    precision = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    common.write_figures("attention-speed", __file__, argv, args.figures_dir,
                         figures={"rows": rows, "explicit_max_length": {"training": EXPLICIT_ATTENTION_MAX_LENGTH[True],
                                                                        "inference": EXPLICIT_ATTENTION_MAX_LENGTH[False]}},
                         settings={"tokens": args.tokens, "repeats": args.repeats, "heads": 12, "head_size": 32,
                                   "timing": "best of --repeats after one warm-up call"},
                         precision={"bertfit": precision}, threads=args.threads)


if __name__ == "__main__":
    main(sys.argv[1:])
