"""Sentence embeddings on the CPU at hand: bertfit against sentence-transformers, on the embedded model.

    python bench/embed_speed.py --texts 5000 --requests 5000 --clients 16
    python bench/embed_speed.py --texts 5000 --requests 5000 --clients 16 --engines torch,onnx,onnx-int8

Two measurements, each side in a process of its own, one after the other, with the same torch threads:
- encode: `inference.embed` against `SentenceTransformer.encode` over the same texts (a mix of lengths, some past
  the model's 256 tokens) in the same precision (fp32 unless --precision says otherwise), each after a warm-up;
  embeddings per second, and the largest difference between the two sides' vectors;
- serve: `bertfit serve` (POST /embed) against what users write by hand: a FastAPI handler (a plain `def`, run in
  FastAPI's thread pool) that calls `SentenceTransformer.encode` on each request, on uvicorn. N clients, each on one
  keep-alive connection, send one text per request and the next when the answer is back; requests per second, the
  latency percentiles, and every answer checked (a non-200 status or a body that is not one vector is an error).

--engines adds bertfit's ONNX Runtime engine on the embedded model's export (`bertfit export`), in fp32 (the same math)
and in dynamic int8 (other math: its smallest cosine to sentence-transformers' vectors is printed beside it), each a
row of its own against the same sentence-transformers run. The settings of both sides are printed before the
figures; the last line is `ratio SIDE encode X.XX serve Y.YY` for each of bertfit's engines (over
sentence-transformers).
"""
# no `from __future__ import annotations`: FastAPI reads the peer's request schema off its handler at run time

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ST_BATCH = 32  # SentenceTransformer.encode's default batch size
# bertfit's engines, a side each: PyTorch, and the embedded model's ONNX export in fp32 and dynamic int8
ENGINES = {"bertfit": "torch", "bertfit-onnx": "onnx", "bertfit-onnx-int8": "onnx-int8"}
SIDE_OF = {engine: side for side, engine in ENGINES.items()}


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """n texts of words from the model's vocabulary: mostly a sentence, some paragraphs, one in ten past 256 tokens."""
    from bertfit.pretrained import embedded_model_path

    vocab = json.loads((embedded_model_path() / "tokenizer.json").read_text())["model"]["vocab"]
    words = [w for w in vocab if w.isalpha() and w.isascii() and len(w) > 2][1000:6000]
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(4, 20)] * 6 + [rng.randint(30, 120)] * 3 + [rng.randint(250, 400)])
               for _ in range(n)]
    return [" ".join(rng.choice(words) for _ in range(k)).capitalize() + "." for k in lengths]


# ---- encode: one side per process ---------------------------------------------------------------

def encode_side(args) -> dict:
    import torch

    from bertfit.pretrained import embedded_model_path

    texts = mixed_texts(args.texts)
    if args.side.startswith("bertfit"):
        from bertfit import inference

        engine = ENGINES[args.side]
        run = inference.load_run(args.export_dir or "embedded", engine="onnx" if engine != "torch" else "torch",
                                 precision=args.precision if engine == "torch" else "auto", need="embed")
        embed = lambda batch: inference.embed(run, batch, batch_size=args.batch_size).vectors
        precision = run.precision
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(embedded_model_path()), device="cpu")
        embed = lambda batch: model.encode(batch, batch_size=ST_BATCH, convert_to_numpy=True)
        precision = "fp32"
    embed(texts[: min(64, len(texts))])  # warm: kernels chosen, memory allocated
    start = time.perf_counter()
    vectors = embed(texts)
    seconds = time.perf_counter() - start
    np.save(Path(args.result_file).with_suffix(".npy"), vectors)
    return {"texts": len(texts), "seconds": seconds, "per_second": len(texts) / seconds, "precision": precision,
            "threads": torch.get_num_threads()}


def run_encode_side(argv: list[str], side: str) -> tuple[dict, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix=f"bench-embed-{side}-") as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, __file__, *argv, "--side", side, "--result-file", str(result)]
        print(f"== {side}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        if subprocess.run(command, stdout=sys.stderr).returncode != 0 or not result.exists():
            sys.exit(f"the {side} side failed; its output is above")
        return json.loads(result.read_text()), np.load(result.with_suffix(".npy"))


# ---- serve: the peer server, and the load ------------------------------------------------------

def peer_server(threads: int) -> None:
    """A FastAPI app around SentenceTransformer.encode, one encode call per request, on a free port."""
    import socket

    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sentence_transformers import SentenceTransformer

    from bertfit.pretrained import embedded_model_path

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(embedded_model_path()), device="cpu")

    class Inputs(BaseModel):
        inputs: list[str]

    app = FastAPI()

    @app.post("/embed")
    def embed(body: Inputs):
        return model.encode(body.inputs, convert_to_numpy=True).tolist()

    listener = socket.create_server(("127.0.0.1", 0))
    print(f"serving on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[listener])


async def exchange(reader, writer, body: bytes) -> tuple[int, bytes, bool]:
    writer.write(b"POST /embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), payload, headers.get("connection", "").lower() == "close"


async def load(port: int, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    """`clients` connections, each sending the next text when its answer is back; stop at `requests` or `seconds`."""
    next_index, results = 0, []
    stop_at = time.monotonic() + seconds

    async def client():
        nonlocal next_index
        connection = None
        while next_index < requests and time.monotonic() < stop_at:
            i, next_index = next_index, next_index + 1
            body = json.dumps({"inputs": [texts[i % len(texts)]], "truncate": True}).encode()
            start = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", port)
                status, payload, closing = await exchange(*connection, body)
                vector = json.loads(payload)[0] if status == 200 else None
                vector = vector if isinstance(vector, list) and len(vector) == 384 else None
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError, IndexError):
                status, vector, closing = 0, None, True
            results.append((i, time.perf_counter() - start, status, vector))
            if closing and connection is not None:
                connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"results": results, "seconds": time.perf_counter() - start}


def measure_server(name: str, command: list[str], args, texts: list[str]) -> dict:
    print(f"== {name}: {' '.join(command)}", file=sys.stderr, flush=True)
    process, port = common.start_server(command, args.threads)
    try:
        asyncio.run(load(port, texts, 1, args.warmup, 600))
        run = asyncio.run(load(port, texts, args.clients, args.requests, args.seconds))
    finally:
        process.terminate()
        process.wait(120)
    results = run["results"]
    latencies = np.array([r[1] for r in results]) * 1000
    ok = [r for r in results if r[2] == 200 and r[3] is not None]
    return {"requests": len(results), "errors": len(results) - len(ok), "seconds": run["seconds"],
            "throughput": len(ok) / run["seconds"], "p50_ms": float(np.percentile(latencies, 50)),
            "p95_ms": float(np.percentile(latencies, 95)), "p99_ms": float(np.percentile(latencies, 99)),
            "vectors": {i: vector for i, _, _, vector in ok}}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads on every side (default 2)")
    parser.add_argument("--texts", type=int, default=2000, help="texts to encode (default 2000)")
    parser.add_argument("--batch-size", type=int, default=128, help="bertfit's texts per pass, at most (default 128; "
                                                                    "sentence-transformers keeps its default 32)")
    parser.add_argument("--precision", default="fp32", help="bertfit's precision (default fp32, as the peer's)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of each server (default 16)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per server (default 2000)")
    parser.add_argument("--seconds", type=float, default=300, help="at most this long per server (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="requests before the clock starts (default 20)")
    parser.add_argument("--engines", default="torch",
                        help="bertfit's engines, comma-separated, of torch, onnx (the embedded model's ONNX export, "
                             "fp32) and onnx-int8 (its dynamic int8 export: other math, its vectors' cosine to the "
                             "fp32 ones reported) (default torch)")
    parser.add_argument("--json", help="also write every figure to this file")
    common.add_figures_option(parser)
    parser.add_argument("--export-dir", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--peer-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_server:
        return peer_server(args.threads)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        Path(args.result_file).write_text(json.dumps(encode_side(args)))
        return None

    child = common._without_options(argv, ("--json", "--figures-dir", "--engines"))
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in SIDE_OF]
    if unknown or not engines:
        sys.exit(f"--engines: {', '.join(unknown) or 'none given'}; choose from {', '.join(SIDE_OF)}")
    print(f"bertfit: inference.embed, engines {', '.join(engines)} (torch at --precision {args.precision}), batches "
          f"of at most {args.batch_size} texts (and {2048} tokens on CPU); serve: bertfit serve, POST /embed, one text "
          f"a request, dynamic batching at its defaults", flush=True)
    print(f"sentence-transformers: SentenceTransformer.encode, fp32, batch {ST_BATCH}; serve: FastAPI def handler "
          f"calling encode per request on uvicorn", flush=True)
    print(f"both: {args.threads} torch threads, {args.texts} texts (one in ten past 256 tokens, cut), the embedded "
          f"all-MiniLM-L6-v2; differs: batch size and batching (each side's own)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-embed-export-") as exports:
        folders = {e: export_embedded(Path(exports) / e, e) for e in engines if e != "torch"}
        peer, peer_vectors = run_encode_side(child, "sentence-transformers")
        texts = mixed_texts(max(args.requests, 1), seed=1)
        served_peer = measure_server("FastAPI + SentenceTransformer", [sys.executable, __file__, "--peer-server",
                                                                       "--threads", str(args.threads)], args, texts)
        rows = {"sentence-transformers": {**peer, **{k: v for k, v in served_peer.items() if k != "vectors"}}}
        ratio, differences = {}, {}
        for engine in engines:
            side = SIDE_OF[engine]
            folder = folders.get(engine)
            ours, our_vectors = run_encode_side([*child, *(["--export-dir", str(folder)] if folder else [])], side)
            command = [sys.executable, "-m", "bertfit", "serve", f"embedded={folder}" if folder else "embedded",
                       "--port", "0", "--threads", str(args.threads),
                       *(["--engine", "onnx"] if folder else ["--precision", args.precision])]
            served = measure_server(f"bertfit serve ({engine})", command, args, texts)
            common_ids = sorted(set(served["vectors"]) & set(served_peer["vectors"]))
            differences[side] = {
                "encode_max_abs": float(np.abs(our_vectors - peer_vectors).max()),
                "encode_min_cosine": min_cosine(our_vectors, peer_vectors),
                "served_max_abs": max((float(np.abs(np.array(served["vectors"][i]) - served_peer["vectors"][i]).max())
                                       for i in common_ids), default=float("nan")),
                "served_answers": len(common_ids)}
            rows[side] = {**ours, "engine": engine, **{k: v for k, v in served.items() if k != "vectors"}}
            ratio[side] = {"encode": ours["per_second"] / peer["per_second"],
                           "serve": served["throughput"] / max(served_peer["throughput"], 1e-9)}
    order = [SIDE_OF[e] for e in engines] + ["sentence-transformers"]
    common.print_table("sentence embeddings: encode and serve", {side: rows[side] for side in order}, [
        ("side", "side", ""), ("precision", "precision", ""), ("texts/s", "per_second", ".1f"),
        ("served req/s", "throughput", ".1f"), ("p50 ms", "p50_ms", ".1f"), ("p95 ms", "p95_ms", ".1f"),
        ("p99 ms", "p99_ms", ".1f"), ("errors", "errors", "d")])
    for side, d in differences.items():
        print(f"{side} against sentence-transformers: largest difference encode {d['encode_max_abs']:.2e}, served "
              f"{d['served_max_abs']:.2e} (over {d['served_answers']} answers); smallest cosine "
              f"{d['encode_min_cosine']:.6f}")
    print(common.cpu_line(common.cpu_kind()))
    first = order[0]
    figures = {"sides": rows, "ratio": ratio[first], "ratios": ratio, "differences": differences,
               "encode_difference": differences[first]["encode_max_abs"],
               "served_difference": differences[first]["served_max_abs"], "texts": args.texts,
               "requests": args.requests, "clients": args.clients, "engines": engines}
    common.write_figures("embed-speed", __file__, argv, args.figures_dir, figures=figures,
                         precision={**{SIDE_OF[e]: rows[SIDE_OF[e]]["precision"] for e in engines},
                                    "sentence-transformers": "fp32"}, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "arguments": vars(args)}, indent=2) + "\n")
    print("ratio " + " ".join(f"{side} encode {r['encode']:.2f} serve {r['serve']:.2f}" for side, r in ratio.items()))


def export_embedded(folder: Path, engine: str) -> Path:
    """The embedded model exported to ONNX (fp32, or int8 for onnx-int8), checked as every export is."""
    from bertfit.export import export_onnx
    from bertfit.pretrained import embedded_model_path

    print(f"== export ({engine}) to {folder}", file=sys.stderr, flush=True)
    export_onnx(embedded_model_path(), folder, quantize="int8" if engine == "onnx-int8" else None)
    return folder


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


if __name__ == "__main__":
    main(sys.argv[1:])
