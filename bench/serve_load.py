"""Serving under load: `bertfit serve` against the server users write, on the same fine-tuned SST-2 model.

    python bench/serve_load.py runs/glue-sst2 --data-dir ../shared/data/glue --clients 32 --requests 20000

The peer is what users write by hand: a FastAPI handler that calls transformers'
`pipeline("text-classification")` on each request (a plain `def`, so FastAPI runs it in its thread
pool), on uvicorn, over the same model folder (RUN/model). Both servers get the same torch threads,
run one at a time in their own process on 127.0.0.1, and take the same load: N clients, each with
one keep-alive connection, sending one SST-2 dev sentence per request (`{"texts": [sentence]}`) and
the next as soon as the answer is back, until the fixed number of requests is done or the time is
up. Latency is per request, from the write of the request to the last byte of the answer. The
server process's RSS is sampled every half second. Every answer is checked: a non-200 status, a
broken connection or a body without a label counts as an error, and the labels of the two sides
are compared sentence by sentence. The last line is `ratio throughput X.XX` (bertfit over the peer).
"""
# no `from __future__ import annotations`: FastAPI reads the peer's request schema off its handler at run time

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402


# ---- the peer server: what users write ----------------------------------------------------------

def peer_server(model_dir: str, threads: int) -> None:
    """A FastAPI app around transformers' pipeline, one pipeline call per request, on a free port."""
    import socket

    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    torch.set_num_threads(threads)
    classifier = pipeline("text-classification", model=model_dir, device="cpu")

    class Texts(BaseModel):
        texts: list[str]

    app = FastAPI()

    @app.post("/v1/classify")
    def classify(body: Texts):
        return {"predictions": [{"label": r["label"], "probability": r["score"]} for r in classifier(body.texts)]}

    listener = socket.create_server(("127.0.0.1", 0))
    print(f"serving on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[listener])


# ---- running a server ---------------------------------------------------------------------------

class RssSampler(threading.Thread):
    """The resident set size of one process, every `every` seconds, with the time of each sample."""

    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.done = pid, every, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            mb = common.memory_mb(self.pid)
            if mb is None:
                return
            self.samples.append((time.monotonic(), mb))
            self.done.wait(self.every)


# ---- the load -----------------------------------------------------------------------------------

async def exchange(reader, writer, body: bytes) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body, whether the server closes it)."""
    writer.write(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, payload, headers.get("connection", "").lower() == "close"


async def load(port: int, sentences: list[str], clients: int, requests: int, seconds: float) -> dict:
    """`clients` connections, each sending the next sentence when its answer is back; stop at `requests` or `seconds`."""
    next_index, results = 0, []
    stop_at = time.monotonic() + seconds

    async def client():
        nonlocal next_index
        connection = None
        while next_index < requests and time.monotonic() < stop_at:
            i, next_index = next_index, next_index + 1
            body = json.dumps({"texts": [sentences[i % len(sentences)]]}).encode()
            start = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", port)
                status, payload, closing = await exchange(*connection, body)
                label = json.loads(payload)["predictions"][0]["label"] if status == 200 else None
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError, IndexError):
                status, label, closing = 0, None, True
            results.append((i, time.perf_counter() - start, status, label))
            if closing and connection is not None:
                connection[1].close()
                connection = None
        if connection is not None:
            connection[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"results": results, "seconds": time.perf_counter() - start}


def measure(name: str, command: list[str], args, sentences: list[str]) -> dict:
    print(f"== {name}: {' '.join(command)}", file=sys.stderr, flush=True)
    process, port = common.start_server(command, args.threads)
    try:
        asyncio.run(load(port, sentences, 1, args.warmup, 600))  # model and kernels warm, not counted
        rss = RssSampler(process.pid)
        rss.start()
        run = asyncio.run(load(port, sentences, args.clients, args.requests, args.seconds))
        rss.done.set()
        rss.join()
    finally:
        process.terminate()
        exit_code = process.wait(120)
    results = run["results"]
    latencies = np.array([r[1] for r in results]) * 1000
    ok = [r for r in results if r[2] == 200 and r[3] is not None]
    memory = [mb for _, mb in rss.samples]
    tenth = max(1, len(memory) // 10)
    return {
        "requests": len(results), "errors": len(results) - len(ok), "seconds": run["seconds"],
        "throughput": len(ok) / run["seconds"],
        "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "rss_first_mb": float(np.mean(memory[:tenth])), "rss_last_mb": float(np.mean(memory[-tenth:])),
        "rss_peak_mb": float(max(memory)), "rss_samples": len(memory),
        # does it level off: the mean RSS of each tenth of the run
        "rss_by_tenth_mb": [float(np.mean(part)) for part in np.array_split(np.array(memory), 10) if len(part)],
        "labels": {i: label for i, _, status, label in ok}, "exit_code": exit_code,
    }


def read_sentences(data_dir: str, model_dir: str) -> tuple[list[str], list[str]]:
    """SST-2 dev sentences, and their gold labels under the names the model answers with (its id2label)."""
    from bertfit.tasks import glue, glue_encoding, glue_tsv

    dev = glue_tsv.read_glue_split("sst2", data_dir, "dev")
    id2label = json.loads((Path(model_dir) / "config.json").read_text())["id2label"]
    return dev.texts_a, [id2label[str(label)] for label in dev.labels]


COLUMNS = [("side", "side", ""), ("requests", "requests", "d"), ("errors", "errors", "d"),
           ("req/s", "throughput", ".1f"), ("p50 ms", "p50_ms", ".1f"), ("p95 ms", "p95_ms", ".1f"),
           ("p99 ms", "p99_ms", ".1f"), ("RSS first 10% MB", "rss_first_mb", ".0f"),
           ("RSS last 10% MB", "rss_last_mb", ".0f"), ("RSS peak MB", "rss_peak_mb", ".0f"),
           ("accuracy", "accuracy", ".4f"), ("exit", "exit_code", "d")]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a fine-tuned SST-2 run (bertfit glue sst2 ...): RUN/model is served by both")
    parser.add_argument("--data-dir", required=True, help="the GLUE root, or its SST-2 folder: dev.tsv is the load")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=900, help="stop sending after this long, done or not")
    parser.add_argument("--warmup", type=int, default=64, help="requests before the clock, one client")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each server (default 2)")
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch", help="bertfit's engine")
    parser.add_argument("--precision", default="fp32", help="bertfit's precision (the pipeline runs fp32)")
    parser.add_argument("--serve-option", action="append", default=[], metavar="OPTION",
                        help="more options for bertfit serve, e.g. --serve-option=--max-wait-ms=2")
    parser.add_argument("--sides", default="bertfit,peer")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--peer-server", action="store_true", help=argparse.SUPPRESS)  # the peer's own process
    common.add_figures_option(parser)
    args = parser.parse_args(argv)
    if args.peer_server:
        return peer_server(args.run_dir, args.threads)

    sys.path.insert(0, str(ROOT / "src"))

    model_dir = str(Path(args.run_dir) / "model") if (Path(args.run_dir) / "model").is_dir() else args.run_dir
    sentences, gold = read_sentences(args.data_dir, model_dir)
    commands = {
        "bertfit": [sys.executable, "-m", "bertfit", "serve", args.run_dir, "--port", "0", "--threads",
                    str(args.threads), "--engine", args.engine, "--precision", args.precision, *args.serve_option],
        "peer": [sys.executable, __file__, model_dir, "--peer-server", "--threads", str(args.threads),
                 "--data-dir", args.data_dir],
    }
    sides = {name: measure(name, commands[name], args, sentences) for name in args.sides.split(",")}
    for figures in sides.values():
        labels = figures["labels"]
        figures["accuracy"] = float(np.mean([labels[i] == gold[i % len(gold)] for i in labels])) if labels else 0.0

    from bertfit.serve_settings import ServeSettings

    serving = ServeSettings()
    print(f"load: {args.clients} clients on 127.0.0.1, one keep-alive connection each, one SST-2 dev sentence per "
          f"request ({len(sentences)} sentences, cycled), {args.requests} requests or {args.seconds:g} s, "
          f"{args.warmup} warm-up requests first")
    print(f"bertfit: bertfit serve, {args.engine} engine, {args.precision}, {args.threads} torch threads, batches of "
          f"up to {serving.max_batch_tokens} tokens after at most {serving.max_wait_ms:g} ms of waiting, one model "
          f"thread {' '.join(args.serve_option)}".rstrip())
    print(f"peer: FastAPI + uvicorn, transformers pipeline('text-classification') called per request in a sync "
          f"handler (FastAPI's thread pool), fp32, {args.threads} torch threads")
    print("differs: the batching (bertfit gathers concurrent requests into one pass; the pipeline runs each "
          "alone, in as many threads as requests are waiting)")
    cpu = common.cpu_kind()
    print(common.cpu_line(cpu))
    common.print_table("SST-2 sentences over HTTP", sides, COLUMNS)
    if "bertfit" in sides and "peer" in sides:
        a, b = sides["bertfit"]["labels"], sides["peer"]["labels"]
        both = [i for i in a if i in b]
        print(f"the two sides give the same label for {sum(a[i] == b[i] for i in both)} of {len(both)} requests "
              f"answered by both")
    for name, figures in sides.items():
        print(f"{name}: RSS {figures['rss_first_mb']:.0f} -> {figures['rss_last_mb']:.0f} MB "
              f"(means of the first and last tenth of {figures['rss_samples']} samples), peak {figures['rss_peak_mb']:.0f} MB; "
              f"by tenth of the run: {' '.join(f'{mb:.0f}' for mb in figures['rss_by_tenth_mb'])} MB")
    same_labels = None
    if "bertfit" in sides and "peer" in sides:
        a, b = sides["bertfit"]["labels"], sides["peer"]["labels"]
        same_labels = {"same": sum(a[i] == b[i] for i in a if i in b), "both": sum(i in b for i in a)}
    from dataclasses import asdict

    common.write_figures(
        "serve-load" + ("" if args.engine == "torch" else f"-{args.engine}"), __file__, argv, args.figures_dir,
        figures={**{name: {k: v for k, v in f.items() if k != "labels"} for name, f in sides.items()},
                 "same_labels": same_labels},
        settings={"load": {"clients": args.clients, "requests": args.requests, "seconds": args.seconds,
                           "warmup": args.warmup, "sentences": len(sentences)},
                  "bertfit": {**asdict(serving), "api_key": None, "engine": args.engine, "precision": args.precision,
                              "serve_options": args.serve_option},
                  "peer": {"server": "FastAPI + uvicorn, transformers pipeline('text-classification') per request",
                           "precision": "fp32"}},
        precision={"bertfit": common.resolved_precision(args.precision) if args.engine == "torch" else args.engine,
                   "peer": "fp32"},
        threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, **{name: {k: v for k, v in f.items() if k != "labels"}
                                                              for name, f in sides.items()}}, indent=2) + "\n")
    if "bertfit" in sides and "peer" in sides:
        print(f"ratio throughput {sides['bertfit']['throughput'] / sides['peer']['throughput']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
