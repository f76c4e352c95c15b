"""CPU inference of an exported model: bertfit's int8 ONNX against its own torch paths and Optimum + ORT int8.

    python bench/export_speed.py runs/glue-sst2 --data-dir ../shared/data/glue \\
        [--squad-run runs/squad-v1.1 --squad-file squad1-eval.json] [--peer-python /path/to/optimum-venv/bin/python]

First `bertfit export RUN --quantize int8` writes float32 and int8 ONNX files (timed). Then each side
runs in a fresh process, one after the other, with the same threads, over the same SST-2 dev
sentences encoded the same way (the run's tokenizer and max length) and cut into the same
length-sorted batches (`predicting.predict`'s), tokenizing before the clock: bertfit's torch model in
fp32 and in bf16 autocast (its own fast path), bertfit's ONNX float32 and int8 files on ONNX Runtime,
and the peer, Optimum's export of the same model folder quantized by its `ORTQuantizer` with
`AutoQuantizationConfig.<config>(is_static=False, per_channel=...)`, the dynamic int8 recipe of
Optimum's documentation. Optimum pins older transformers than bertfit's test extra, so it is best
installed in a venv of its own, passed as --peer-python; where that interpreter has no Optimum, the
peer is ONNX Runtime's quantize_dynamic on transformers' model exported by torch.onnx, with the
same settings, and the table says so. Each side's time is the median of --repeats passes over the
whole dev set after one warm-up pass. With --squad-run, the SQuAD run's int8 export is scored
against its torch fp32 model (F1, exact match) on --squad-file. The last line is
`ratio int8-vs-bf16 X.XX int8-vs-peer Y.YY` (throughputs; above 1, bertfit's int8 is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import common  # noqa: E402

COLUMNS = [("side", "side", ""), ("ex/s", "examples_per_s", ".1f"), ("median s", "median_seconds", ".3f"),
           ("best s", "best_seconds", ".3f"), ("dev acc", "accuracy", ".4f"), ("file MiB", "file_mib", ".1f"),
           ("peak RSS MB", "peak_rss_mb", ".0f")]


# ---- what every side shares ---------------------------------------------------------------------

def model_dir_of(run_dir: str) -> Path:
    return Path(run_dir) / "model" if (Path(run_dir) / "model" / "config.json").exists() else Path(run_dir)


def dev_features(args):
    """SST-2 dev encoded as the run encodes text, with the gold labels."""
    from bertfit import inference
    from bertfit.pretrained import load_tokenizer
    from bertfit.tasks import glue, glue_encoding, glue_tsv

    dev = glue_tsv.read_glue_split("sst2", args.data_dir, "dev")
    n = args.samples or len(dev)
    dev = glue.Examples(texts_a=dev.texts_a[:n], texts_b=None, labels=dev.labels[:n], indices=dev.indices[:n], source="dev")
    extra = json.loads((model_dir_of(args.run_dir) / "config.json").read_text()).get("bertfit") or {}
    examples = glue.Examples(texts_a=dev.texts_a, texts_b=None, labels=None, indices=dev.indices, source="dev")
    features, _ = glue_encoding.encode(examples, load_tokenizer(model_dir_of(args.run_dir)), extra.get("max_seq_length", 128))
    return features, np.asarray(dev.labels), inference


def timed(passes: int, work) -> tuple[list[float], object]:
    """One warm-up pass, then `passes` timed ones: (seconds of each, the last output)."""
    output = work()
    seconds = []
    for _ in range(passes):
        start = time.perf_counter()
        output = work()
        seconds.append(time.perf_counter() - start)
    return seconds, output


def figures(seconds: list[float], logits: np.ndarray, labels: np.ndarray, file: Path | None) -> dict:
    return {"examples": len(labels), "median_seconds": float(np.median(seconds)), "best_seconds": float(min(seconds)),
            "examples_per_s": len(labels) / float(np.median(seconds)),
            "accuracy": float((np.asarray(logits).argmax(-1) == labels).mean()),
            "file_mib": file.stat().st_size / 2**20 if file else float("nan")}


# ---- bertfit's sides ----------------------------------------------------------------------------

def bertfit_side(engine: str, precision: str, file: str | None = None):
    """`file`: the export folder under --onnx-dir (fp32: `bertfit export`; int8: with --quantize int8)."""

    def side(args) -> dict:
        features, labels, inference = dev_features(args)
        if engine == "onnx":
            run = inference.load_run(Path(args.onnx_dir) / file, engine="onnx")  # the folder of this side's file
        else:
            run = inference.load_run(args.run_dir, precision=precision)
        seconds, outputs = timed(args.repeats, lambda: inference.run_model(run, features))
        weights = run.model.path if file else model_dir_of(args.run_dir) / "model.safetensors"
        return {**figures(seconds, np.stack(outputs), labels, weights), "precision": run.precision}

    return side


# ---- the peer -----------------------------------------------------------------------------------

def peer_side(args) -> dict:
    """Optimum's export and dynamic int8 (or, without Optimum, ORT's quantize_dynamic on transformers'
    model exported by torch.onnx), run on the same padded batches as bertfit's sides."""
    import onnxruntime as ort
    import torch

    from bertfit.batching import collate, eval_batches
    from bertfit.pretrained import load_tokenizer
    from bertfit.tokenization import special_ids
    from bertfit.predicting import CPU_INFERENCE_TOKENS

    features, labels, _ = dev_features(args)
    model_dir = model_dir_of(args.run_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    work_dir = Path(tempfile.mkdtemp(prefix="bench-peer-onnx-"))
    start = time.perf_counter()
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig

        exported = ORTModelForSequenceClassification.from_pretrained(model_dir, export=True)
        exported.save_pretrained(work_dir / "fp32")
        config = getattr(AutoQuantizationConfig, args.optimum_config)(is_static=False, per_channel=args.peer_per_channel)
        ORTQuantizer.from_pretrained(exported).quantize(save_dir=work_dir / "int8", quantization_config=config)
        fp32_file, int8_file = work_dir / "fp32" / "model.onnx", work_dir / "int8" / "model_quantized.onnx"
        model = ORTModelForSequenceClassification.from_pretrained(work_dir / "int8", file_name=int8_file.name,
                                                                  session_options=options)
        recipe = f"Optimum: ORTModel export + ORTQuantizer, AutoQuantizationConfig.{args.optimum_config}"

        def forward(batch):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long(),
                         token_type_ids=batch["token_type_ids"]).logits
    except ImportError:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModelForSequenceClassification

        hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        fp32_file, int8_file = work_dir / "model.onnx", work_dir / "model_quantized.onnx"
        names = ["input_ids", "attention_mask", "token_type_ids"]
        example = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in names)
        with torch.no_grad():
            torch.onnx.export(hf, example, str(fp32_file), input_names=names, output_names=["logits"],
                              dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}},
                              opset_version=17, dynamo=False)
        quantize_dynamic(str(fp32_file), str(int8_file), weight_type=QuantType.QInt8, per_channel=args.peer_per_channel)
        session = ort.InferenceSession(str(int8_file), options, providers=["CPUExecutionProvider"])
        recipe = "no Optimum: transformers' model exported by torch.onnx, ORT quantize_dynamic (QInt8 weights)"

        def forward(batch):
            feeds = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].long().numpy(),
                     "token_type_ids": batch["token_type_ids"].numpy()}
            return torch.from_numpy(session.run(None, feeds)[0])
    export_seconds = time.perf_counter() - start

    pad = special_ids(load_tokenizer(model_dir)).pad
    num_labels = len(json.loads((model_dir / "config.json").read_text())["id2label"])
    batches = eval_batches(features.lengths, 128, CPU_INFERENCE_TOKENS)  # predicting.predict's batches on CPU

    def work():
        logits = np.zeros((len(features), num_labels), np.float32)
        for indices in batches:
            logits[indices] = forward(collate(features, indices, pad)).float().numpy()
        return logits

    seconds, logits = timed(args.repeats, work)
    result = {**figures(seconds, logits, labels, int8_file), "recipe": recipe, "export_seconds": export_seconds,
              "fp32_mib": fp32_file.stat().st_size / 2**20, "per_channel": args.peer_per_channel}
    import shutil

    shutil.rmtree(work_dir, ignore_errors=True)  # only once the files are measured
    return result


# ---- SQuAD: does int8 keep the F1? --------------------------------------------------------------

def squad_side(engine: str):
    def side(args) -> dict:
        from bertfit import inference, squad_metrics
        from bertfit.tasks import squad

        questions, _ = squad.read_squad(args.squad_file)
        questions = questions[: args.samples or None]
        run = inference.load_run(args.squad_onnx_dir if engine == "onnx" else args.squad_run, engine=engine,
                                 precision="fp32")
        prepared = inference.prepare_questions(run, [(q.question, q.context) for q in questions])
        start = time.perf_counter()
        outputs = inference.run_model(run, prepared.features)
        seconds = time.perf_counter() - start
        answers = inference.finish(run, prepared, outputs)
        predictions = {q.id: a["answer"] for q, a in zip(questions, answers)}
        scores = squad_metrics.squad_v1_scores(questions, predictions)
        return {"f1": scores["f1"], "exact": scores["exact_match"], "questions": len(questions),
                "windows": len(prepared.features), "windows_per_s": len(prepared.features) / seconds}

    return side


SIDES = {"torch-fp32": bertfit_side("torch", "fp32"), "torch-bf16": bertfit_side("torch", "bf16"),
         "onnx-fp32": bertfit_side("onnx", "fp32", "fp32"), "onnx-int8": bertfit_side("onnx", "fp32", "int8"),
         "peer-int8": peer_side, "squad-torch-fp32": squad_side("torch"), "squad-onnx-int8": squad_side("onnx")}


def run_side(argv: list[str], side: str, python: str) -> dict:
    """This script under `python` with --side; the figures it writes, or exit if it failed."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as folder:
        result_file = Path(folder) / "result.json"
        command = [python, __file__, *argv, "--side", side, "--result-file", str(result_file)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        print(f"== {side}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        completed = subprocess.run(command, stdout=sys.stderr, env=env)
        if completed.returncode != 0 or not result_file.exists():
            sys.exit(f"the {side} side failed (exit status {completed.returncode}); its output is above")
        return json.loads(result_file.read_text())


def export_run(run_dir: str, out: Path, *options: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bertfit", "export", run_dir, *options, "--output", str(out)],
                   check=True, stdout=sys.stderr, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                       [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])})
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a fine-tuned SST-2 run (bertfit glue sst2 ...)")
    parser.add_argument("--data-dir", required=True, help="the GLUE root, or its SST-2 folder")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the dev set per side")
    parser.add_argument("--samples", type=int, default=0, help="the first N dev sentences (0: all 872)")
    parser.add_argument("--squad-run", help="a fine-tuned SQuAD v1.1 run: int8 F1 against torch fp32")
    parser.add_argument("--squad-file", help="with --squad-run: the SQuAD v1.1 file to score (e.g. squad1-eval.json)")
    parser.add_argument("--peer-python", default=sys.executable, help="the interpreter of the peer side (a venv with "
                        "optimum[onnxruntime]); default this one")
    parser.add_argument("--optimum-config", default="avx512_vnni", help="AutoQuantizationConfig method (avx512_vnni, "
                        "avx512, avx2, arm64)")
    parser.add_argument("--peer-per-channel", action="store_true",
                        help="per-channel weights on the peer too (Optimum's documented recipe: per-tensor)")
    parser.add_argument("--sides", default="torch-fp32,torch-bf16,onnx-fp32,onnx-int8,peer-int8")
    parser.add_argument("--onnx-dir", help=argparse.SUPPRESS)  # set by the parent for its children
    parser.add_argument("--squad-onnx-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        import resource

        import torch

        torch.set_num_threads(args.threads)
        result = SIDES[args.side](args)
        result["threads"] = torch.get_num_threads()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        Path(args.result_file).write_text(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        onnx_dir = Path(folder) / "sst2"
        export_run(args.run_dir, onnx_dir / "fp32")
        export_seconds = export_run(args.run_dir, onnx_dir / "int8", "--quantize", "int8")
        manifest = json.loads((onnx_dir / "int8" / "onnx.json").read_text())
        child = [*common._without_options(argv, ("--json", "--figures-dir")), "--onnx-dir", str(onnx_dir)]
        squad = {}
        if args.squad_run:
            squad_dir = Path(folder) / "squad"
            export_run(args.squad_run, squad_dir, "--quantize", "int8")
            child += ["--squad-onnx-dir", str(squad_dir)]
        sides = {side: run_side(child, side, args.peer_python if side == "peer-int8" else sys.executable)
                 for side in args.sides.split(",")}
        if args.squad_run:
            squad = {side: run_side(child, side, sys.executable) for side in ("squad-torch-fp32", "squad-onnx-int8")}

    files = manifest["files"]
    print(f"SST-2 dev ({next(iter(sides.values()))['examples']} sentences), the run's tokenizer and max length, "
          f"predicting.predict's length-sorted batches (up to 128 sentences, 2,048 tokens on CPU), "
          f"{args.threads} threads on every side, median of {args.repeats} passes after a warm-up pass")
    print(f"bertfit: bertfit export --quantize int8 ({export_seconds:.1f} s): float32 {files['model.onnx']['bytes'] / 2**20:.1f} "
          f"MiB, int8 {files['model.int8.onnx']['bytes'] / 2**20:.1f} MiB "
          f"({files['model.int8.onnx']['fraction_of_fp32_size']:.0%}); ORT quantize_dynamic, QInt8 weights per channel, "
          f"every MatMul and the embedding tables; the TorchScript exporter, opset {manifest['opset']}")
    if "peer-int8" in sides:
        peer = sides["peer-int8"]
        print(f"peer: {peer['recipe']} (is_static=False, per_channel={peer['per_channel']}; {peer['export_seconds']:.1f} s): "
              f"float32 {peer['fp32_mib']:.1f} MiB, int8 {peer['file_mib']:.1f} MiB "
              f"({peer['file_mib'] / peer['fp32_mib']:.0%})")
        print(f"differs: per-channel weights on bertfit's side{' and the peer' if peer['per_channel'] else ' only'}; "
              f"the graphs (bertfit's own BERT traced vs the exporter's of transformers' BertForSequenceClassification)")
    cpu = common.cpu_kind()
    print(common.cpu_line(cpu))
    common.print_table("CPU inference, SST-2 dev", sides, COLUMNS)
    if "torch-fp32" in sides and "onnx-int8" in sides:
        drop = 100 * (sides["torch-fp32"]["accuracy"] - sides["onnx-int8"]["accuracy"])
        print(f"int8 accuracy: {100 * sides['onnx-int8']['accuracy']:.2f} against {100 * sides['torch-fp32']['accuracy']:.2f} "
              f"in float32 ({drop:+.2f} points lost)")
    for name, values in squad.items():
        print(f"{name}: F1 {values['f1']:.2f} / EM {values['exact']:.2f} on {values['questions']} questions "
              f"({values['windows']} windows, {values['windows_per_s']:.1f} windows/s in one pass without warm-up)")
    if squad:
        print(f"int8 F1: {squad['squad-torch-fp32']['f1'] - squad['squad-onnx-int8']['f1']:+.2f} points lost")
    precision = {side: ("int8" if side.endswith("int8") else values.get("precision", "fp32"))
                 for side, values in {**sides, **squad}.items()}
    common.write_figures("export-speed", __file__, argv, args.figures_dir,
                         figures={"sides": sides, "squad": squad, "export": manifest,
                                  "export_seconds": export_seconds},
                         settings={"repeats": args.repeats, "samples": args.samples, "sides": args.sides,
                                   "optimum_config": args.optimum_config, "peer_per_channel": args.peer_per_channel,
                                   "squad_file": args.squad_file, "batches": "predicting.predict's length-sorted "
                                   "batches: up to 128 sentences and 2,048 tokens on CPU"},
                         precision=precision, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "sides": sides, "squad": squad, "export": manifest}, indent=2) + "\n")
    ratios = []
    if "onnx-int8" in sides and "torch-bf16" in sides:
        ratios.append(f"int8-vs-bf16 {sides['onnx-int8']['examples_per_s'] / sides['torch-bf16']['examples_per_s']:.2f}")
    if "onnx-int8" in sides and "peer-int8" in sides:
        ratios.append(f"int8-vs-peer {sides['onnx-int8']['examples_per_s'] / sides['peer-int8']['examples_per_s']:.2f}")
    print("ratio " + " ".join(ratios))


if __name__ == "__main__":
    main(sys.argv[1:])
