"""Memory of `bertfit serve` under the largest request its default limits allow, route by route.

    python bench/fill_mask_memory.py --runs /tmp/memory-runs

Serves three runs (a classifier, a SQuAD reader and a masked-language model, 512 positions; built with
random weights in --runs unless they are there already), every limit at its default. For each route,
bertfit's own and the Hugging Face format's, it sends the largest request the defaults let through, trying
smaller ones while a limit refuses them (413, 422): 64 texts as long as --max-text-chars and --max-body-bytes
allow; questions with contexts as long as --max-context-chars allows, as many as --max-windows and
--max-request-tokens let through; 64 texts with as many [MASK]s each as the model reads, fewer until
--max-masks lets them through, top_k 50. A fresh server per route; its peak resident set (VmHWM, reset
through /proc/PID/clear_refs before the request) is read once the answer is back and the process has settled
(work that outlives a 504 counts too). Linux only. The last line is the largest peak over the routes.
"""
from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402

QUESTION = "Who won the game at the stadium?"
WORDS = "the broncos won the game at the stadium in santa clara, and the crowd cheered for a long time. "


# ---- the runs ----------------------------------------------------------------------------------

def build_runs(folder: Path, hidden: int, layers: int) -> dict[str, Path]:
    """Random-weight runs as `bertfit glue`, `squad` and `pretrain` save them, 512 positions, the embedded
    model's tokenizer (30,522 tokens: the vocabulary, not the model's width, sizes a [MASK]'s scores)."""
    import torch

    from bertfit.model import BertConfig, BertForMaskedLM, BertForQuestionAnswering, BertForSequenceClassification
    from bertfit.pretrained import embedded_model_path, load_tokenizer, save_pretrained

    paths = {"classify": folder / "glue-sst2", "qa": folder / "squad", "fill-mask": folder / "pretrain"}
    if all((p / "model" / "config.json").is_file() for p in paths.values()):
        return paths
    tokenizer = load_tokenizer(embedded_model_path())
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                        max_position_embeddings=512)
    torch.manual_seed(0)
    save_pretrained(BertForSequenceClassification(config, num_labels=2), tokenizer, paths["classify"] / "model",
                    labels=["0", "1"], extra={"task": "sst2", "max_seq_length": 128})
    save_pretrained(BertForQuestionAnswering(config), tokenizer, paths["qa"] / "model",
                    extra={"task": "squad-v1.1", "version": "1.1", "max_seq_length": 384, "doc_stride": 128,
                           "max_query_length": 64})
    save_pretrained(BertForMaskedLM(config), tokenizer, paths["fill-mask"] / "model",
                    extra={"task": "pretraining", "max_seq_length": 512})
    return paths


# ---- the server and its memory ------------------------------------------------------------------

def start(runs: dict[str, Path], threads: int, options: list[str]):
    """`bertfit serve` on the runs, every limit at its default but `options`: (process, port)."""
    command = [sys.executable, "-m", "bertfit", "serve", *[f"{name}={path}" for name, path in runs.items()],
               "--port", "0", "--threads", str(threads), "--precision", "fp32", *options]
    print(f"$ {' '.join(command)}", file=sys.stderr)
    return common.start_server(command, threads)


def settle(pid: int, quiet: float = 3.0, limit: float = 300.0) -> None:
    """Wait until the resident set has stopped changing for `quiet` seconds: work may outlive the answer."""
    last, since, start = common.memory_mb(pid, "VmRSS"), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() - start < limit:
        time.sleep(0.25)
        now = common.memory_mb(pid, "VmRSS")
        if abs(now - last) > 1:
            last, since = now, time.monotonic()


def post(port: int, path: str, body: dict, timeout: float = 900) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def measure(process, port: int, path: str, body: dict) -> dict:
    """One request: its status, and the server's peak resident set while answering it."""
    settle(process.pid)
    before = common.memory_mb(process.pid, "VmRSS")
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # VmHWM starts again from the current resident set
    started = time.perf_counter()
    status, answer = post(port, path, body)
    seconds = time.perf_counter() - started
    settle(process.pid)
    peak = common.memory_mb(process.pid, "VmHWM")
    message = "" if status == 200 else json.loads(answer)["error"]["message"]
    return {"status": status, "seconds": seconds, "body_bytes": len(json.dumps(body)), "rss_before_mb": before,
            "peak_mb": peak, "peak_over_before_mb": peak - before, "answer_bytes": len(answer), "message": message}


# ---- the largest requests ------------------------------------------------------------------------

def text_of(chars: int, prefix: str = "") -> str:
    return (prefix + WORDS * (chars // len(WORDS) + 1))[:chars]


def requests(defaults, positions: int) -> dict[str, list[tuple[str, dict]]]:
    """Per route, the requests to try, largest first: the first one answered is the largest the defaults allow."""
    n = defaults.max_inputs
    chars = min(defaults.max_text_chars, (defaults.max_body_bytes - 1000) // n - 10)
    texts = [text_of(chars, f"{i} ") for i in range(n)]
    context_chars = min(defaults.max_context_chars, defaults.max_body_bytes - 1000)
    counts = [n] + [k for k in (32, 16, 8, 4, 2, 1) if k < n]
    questions = [[{"question": QUESTION, "context": text_of(min(context_chars, (defaults.max_body_bytes - 1000) // k))}
                  for _ in range(k)] for k in counts]
    questions += [[{"question": QUESTION, "context": text_of(context_chars // 2)}]]
    mask_counts = [positions - 2] + [m for m in (256, 128, 64, 32, 16, 8, 4, 2, 1) if m < positions - 2]
    masked = [[" ".join(["[MASK]"] * m) for _ in range(n)] for m in mask_counts]
    return {
        "POST /v1/classify": [("/v1/classify", {"texts": texts, "model": "classify"})],
        "POST /models/classify": [("/models/classify", {"inputs": texts})],
        "POST /v1/answer": [("/v1/answer", {"questions": q, "model": "qa"}) for q in questions],
        "POST /models/qa": [("/models/qa", {"inputs": q}) for q in questions],
        "POST /v1/fill-mask": [("/v1/fill-mask", {"texts": t, "top_k": 50, "model": "fill-mask"}) for t in masked],
        "POST /models/fill-mask": [("/models/fill-mask", {"inputs": t, "parameters": {"top_k": 50}}) for t in masked],
    }


def describe(body: dict) -> str:
    items = body.get("texts") or body.get("questions") or body.get("inputs")
    first = items[0]
    if isinstance(first, dict):
        return f"{len(items)} x (question, {len(first['context'])}-char context)"
    masks = first.count("[MASK]")
    return f"{len(items)} texts x {masks} [MASK]s" if masks else f"{len(items)} texts x {len(first)} chars"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="memory-runs", help="folder of the three runs (built there if missing)")
    parser.add_argument("--hidden", type=int, default=128, help="width of the built models")
    parser.add_argument("--layers", type=int, default=2, help="layers of the built models")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--timeout", type=float, help="the server's --timeout (default: its default); a longer one "
                                                      "lets a request that would get 504 run to its end")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    from bertfit import __version__
    from bertfit.serve_settings import ServeSettings

    defaults = ServeSettings()
    runs = build_runs(Path(args.runs), args.hidden, args.layers)
    print(f"bertfit {__version__} from {ROOT / 'src'}; runs {args.runs} (hidden {args.hidden}, {args.layers} layers, "
          f"512 positions, vocabulary 30,522); --threads {args.threads} --precision fp32")
    print("limits (defaults): " + ", ".join(f"{name} {getattr(defaults, name)}" for name in (
        "max_inputs", "max_masks", "max_text_chars", "max_context_chars", "max_body_bytes", "max_windows",
        "max_request_tokens", "max_batch_tokens", "timeout") if hasattr(defaults, name)))
    options = ["--timeout", str(args.timeout)] if args.timeout else []
    if options:
        print(f"the server's --timeout {args.timeout:g} (not its default)")
    figures = {}
    for route, tries in requests(defaults, 512).items():
        # a fresh server per route: memory taken by one route's request is not given back to the system
        process, port = start(runs, args.threads, options)
        try:
            post(port, "/v1/fill-mask", {"text": "a [MASK] film", "model": "fill-mask"})  # warm: the first pass
            for path, body in tries:
                result = measure(process, port, path, body)
                result["request"] = describe(body)
                if result["status"] not in (413, 422):  # not refused by a limit: 200, or 504 past --timeout
                    figures[route] = result
                    break
                print(f"  {route}: {result['request']}: {result['status']} {result['message'][:100]}", file=sys.stderr)
                figures.setdefault(route + " (refused)", result)
        finally:
            process.kill()  # a request past --timeout may still be running: nothing more to wait for
            process.wait(120)
    print(f"\n{'route':<40} {'request':<42} {'status':>6} {'s':>7} {'RSS before MB':>14} {'peak MB':>8} "
          f"{'peak - before':>14}")
    for route, r in figures.items():
        print(f"{route:<40} {r['request']:<42} {r['status']:>6} {r['seconds']:>7.1f} {r['rss_before_mb']:>14.0f} "
              f"{r['peak_mb']:>8.0f} {r['peak_over_before_mb']:>14.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    worst = max(figures.items(), key=lambda kv: kv[1]["peak_mb"])
    print(f"largest peak {worst[1]['peak_mb']:.0f} MB ({worst[0]})")


if __name__ == "__main__":
    main(sys.argv[1:])
