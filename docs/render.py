"""Render every generated table of the README and the docs: figures from docs/figures, constants from the code.

    python docs/render.py            # rewrite each table between its markers
    python docs/render.py --check    # change nothing; exit 1 naming each table that differs from its render

A table sits between `<!-- figures:NAME -->` (measured: docs/figures/<cpu kind>/*.json, written by the
scripts under bench/) or `<!-- code:NAME -->` (the code's own constants) and `<!-- /figures -->` or
`<!-- /code -->`. Nothing between the markers is typed by hand: a figure there that differs from its
source fails `--check` and the test that runs it. Figures of different CPU kinds are never put in one
ratio: each kind gets a table of its own, labelled with the CPU and the command that measured it, and a
kind without figures says "not measured" with the command that measures it.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
FIGURES_DIR = ROOT / "docs" / "figures"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

MARKER = re.compile(r"(<!-- (figures|code):([\w.-]+) -->\n)(.*?)(<!-- /\2 -->)", re.S)

# The commands that measure each benchmark, from the repository root, with the data of ../shared/data
# (its README says where each file comes from). Shown where a CPU kind has no figures yet.
GLUE = "../shared/data/glue"
SQUAD1 = "../shared/data/squad/dev-v1.1.json"
WNUT = "../shared/data/ner/wnut17"
COMMANDS = {
    "glue-speed-same-math": f"python bench/glue_speed.py --data-dir {GLUE} --samples 4000",
    "glue-speed-same-math-attention-dropout-0.1":
        f"python bench/glue_speed.py --data-dir {GLUE} --samples 4000 --attention-dropout 0.1",
    "glue-speed-defaults": f"python bench/glue_speed.py --data-dir {GLUE} --samples 4000 --compare defaults",
    "squad-speed-same-math": f"python bench/squad_speed.py --train-file {SQUAD1} --samples 600 --eval-samples 1000",
    "squad-speed-same-math-attention-dropout-0.1":
        f"python bench/squad_speed.py --train-file {SQUAD1} --samples 600 --eval-samples 1000 --attention-dropout 0.1",
    "squad-speed-defaults":
        f"python bench/squad_speed.py --train-file {SQUAD1} --samples 600 --eval-samples 1000 --compare defaults",
    "glue-side-by-side": f"python bench/glue_side_by_side.py --data-dir {GLUE} --seeds 1,2,3 --max-train-samples 800",
    "glue-side-by-side-full": f"python bench/glue_side_by_side.py --data-dir {GLUE} --seeds 1,2,3 "
                              "--runs-file glue-runs.jsonl --figures-name glue-side-by-side-full",
    "small-glue": f"python bench/small_glue.py --data-dir {GLUE} --task sst2 --sizes 800 "
                  "--settings 3:2e-5,3:5e-5,5:5e-5,5:1e-4",
    "squad-side-by-side-v1.1": "python bench/squad_side_by_side.py --version 1.1 --prefix squad1 "
                               "--max-train-samples 800 --rows bertfit-defaults,bertfit-run_qa,peer",
    "squad-side-by-side-v2.0": "python bench/squad_side_by_side.py --version 2.0 --prefix squad2 "
                               "--max-train-samples 800 --rows bertfit-defaults,bertfit-run_qa,peer",
    # {kind}: the CPU kind the runs file of a long comparison is kept under
    "squad-side-by-side-full-v1.1": "python bench/squad_side_by_side.py --version 1.1 --prefix squad1 --seeds 1,2,3 "
                                    "--runs-file docs/figures/{kind}/squad-side-by-side-full-v1.1.runs.jsonl "
                                    "--figures-name squad-side-by-side-full",
    "squad-side-by-side-full-v2.0": "python bench/squad_side_by_side.py --version 2.0 --prefix squad2 --seeds 1,2,3 "
                                    "--runs-file docs/figures/{kind}/squad-side-by-side-full-v2.0.runs.jsonl "
                                    "--figures-name squad-side-by-side-full",
    "export-speed": f"python bench/export_speed.py runs/glue-sst2 --data-dir {GLUE} --squad-run runs/squad-v1.1 "
                    "--squad-file squad1-eval.json --peer-python optimum-venv/bin/python "
                    "--sides torch-fp32,torch-bf16,onnx-fp32,onnx-int8,peer-int8",
    "serve-load": f"python bench/serve_load.py runs/glue-sst2 --data-dir {GLUE} --clients 32 --requests 8000",
    "serve-load-long": f"python bench/serve_load.py runs/glue-sst2 --data-dir {GLUE} --clients 32 --requests 20000 "
                       "--sides bertfit",
    "pretrain-speed": "python bench/pretrain_speed.py --text-dir ../shared/data/text --files 3 "
                      "--tokenizer wordpiece.json --steps 100",
    "ner-side-by-side-defaults": f"python bench/ner_side_by_side.py {WNUT} --compare defaults --seeds 1,2,3",
    "ner-side-by-side-same-math": f"python bench/ner_side_by_side.py {WNUT} --compare same-math --seeds 1,2,3",
    "ner-defaults-choice": f"python bench/ner_defaults.py {WNUT} --grid 8:3,32:5,16:5,16:3,8:5,32:3 --seeds 1 "
                           "--runs-file docs/figures/{kind}/ner-defaults-choice.runs.jsonl",
    "embed-speed": "python bench/embed_speed.py --texts 5000 --requests 5000 --clients 16 "
                   "--engines torch,onnx,onnx-int8",
    "embed-side-by-side": f"python bench/embed_side_by_side.py --stsb-dir {GLUE}/STS-B --squad-train squad1-train.json "
                          "--squad-dev squad1-eval.json --seeds 1,2,3",
    "pretrain-architectures": "python bench/pretrain_architectures.py --text-dir ../shared/data/text --max-time 60m "
                              "--size mini",
    "levers": f"python bench/levers.py --glue-dir {GLUE} --squad-file {SQUAD1}",
    "levers-packing": f"python bench/levers.py --glue-dir {GLUE} --squad-file {SQUAD1} --levers packing",
    "attention-speed": "python bench/attention_speed.py",
    "families-sst2": f"python bench/families_sst2.py learn --data-dir {GLUE} --threads 1",
    "families-speed": f"python bench/families_sst2.py speed --data-dir {GLUE}",
    "profile": f"python bench/profile_step.py --data-dir {GLUE}",
}


# ---- reading the figures ------------------------------------------------------------------------

def kinds(figures_dir: Path) -> list[str]:
    """The CPU kinds the docs show: always those of common.CPU_KINDS, then any other with figures."""
    import common

    found = sorted(p.name for p in figures_dir.iterdir() if p.is_dir()) if figures_dir.is_dir() else []
    return [*common.CPU_KINDS, *[k for k in found if k not in common.CPU_KINDS]]


def records(figures_dir: Path, kind: str, pattern: str) -> list[dict]:
    """The figures files of one kind whose name matches `pattern` (a glob), in name order."""
    folder = figures_dir / kind
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob(f"{pattern}.json"))]


def source_line(record: dict) -> str:
    """Where a table's figures come from: the CPU, the precision of each side, the commit and the command."""
    cpu = record["cpu"]
    precision = ", ".join(f"{side} {value}" for side, value in record.get("precision", {}).items())
    commit = record.get("commit", "unknown")[:10] + (" with local changes" if record.get("dirty") else "")
    threads = f", {record['threads']} threads" if record.get("threads") else ""
    return (f"*{cpu['model_name']}, {cpu['logical_cpus']} logical CPUs ({', '.join(cpu['flags']) or 'no listed flags'})"
            f"{threads}; precision: {precision or 'n/a'}; commit {commit}, {record.get('date', '')[:10]}:* "
            f"`{record['command']}`")


# Optimum's dynamic int8 recipe is chosen by instruction set (AutoQuantizationConfig.<name>)
OPTIMUM_CONFIGS = {"avx2": "avx2", "avx512": "avx512"}


def command_for(name: str, kind: str | None = None) -> str:
    """The command that measures the figures file `name` (a glob like small-glue-* names its family) on `kind`."""
    command = COMMANDS.get(name.rstrip("*").rstrip("-"), f"the script under bench/ that writes {name}.json")
    command = command.replace("{kind}", kind or "KIND")
    if name == "export-speed" and kind in OPTIMUM_CONFIGS:
        command += f" --optimum-config {OPTIMUM_CONFIGS[kind]}"
    return command


def not_measured(kind: str, names: list[str]) -> str:
    commands = "\n".join(f"- `{command_for(n, kind)}`" for n in dict.fromkeys(names))
    return f"**{kind}**: not measured. On a CPU of this kind, run\n\n{commands}\n\nthen `python docs/render.py`."


def per_kind(figures_dir: Path, names: list[str], table: Callable[[dict[str, list[dict]]], list[str]]) -> str:
    """A labelled table for each CPU kind, made by `table` from that kind's records of each of `names`."""
    parts = []
    for kind in kinds(figures_dir):
        found = {name: records(figures_dir, kind, name) for name in names}
        if not any(found.values()):
            parts.append(not_measured(kind, names))
            continue
        lines = [f"**{kind}**", ""]
        for name in names:
            for record in found[name]:
                lines.append(f"- {record['name']}: {source_line(record)}")
        missing = [n for n in names if not found[n]]
        if missing:
            lines.append(f"- not measured on this kind: {'; '.join(f'`{command_for(n, kind)}`' for n in missing)}")
        lines.append("")
        lines += table(found)
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    return [f"| {' | '.join(header)} |", f"| {' | '.join(rule)} |", *[f"| {' | '.join(map(str, r))} |" for r in rows]]


def first(found: dict[str, list[dict]], name: str) -> dict | None:
    return found[name][0] if found.get(name) else None


def pm(value: float, std: float | None, spec: str) -> str:
    return format(value, spec) + (f" ± {format(std, spec)}" if std is not None else "")


# ---- measured tables ----------------------------------------------------------------------------

SPEED_COMPARISONS = [("same math, attention dropout 0", "same-math"),
                     ("same math, the model's own attention dropout", "same-math-attention-dropout-0.1"),
                     ("defaults vs defaults", "defaults")]


def speed_rows(found: dict[str, list[dict]], comparisons=SPEED_COMPARISONS) -> list[str]:
    rows = []
    for title, suffix in comparisons:
        for task, unit, score, score_name in (("SST-2", "ex/s", "accuracy", "acc"), ("SQuAD", "win/s", "f1", "F1")):
            record = first(found, f"{'glue' if task == 'SST-2' else 'squad'}-speed-{suffix}")
            if record is None:
                continue
            f = record["figures"]
            b, p = f["sides"]["bertfit"], f["sides"]["peer"]
            spec = ".4f" if score == "accuracy" else ".2f"
            rows.append([f"{task} training, {title}", f"{b['train_examples_per_s']:.1f} {unit} ({b['train_seconds']:.1f} s)",
                         f"{p['train_examples_per_s']:.1f} {unit} ({p['train_seconds']:.1f} s)",
                         f"**{f['ratio']['train']:.2f}**",
                         f"{b['train_mfu_percent']:.1f}% / {p['train_mfu_percent']:.1f}%",
                         f"{score_name} {pm(b[score], b.get(score + '_std'), spec)} / "
                         f"{pm(p[score], p.get(score + '_std'), spec)}"])
            rows.append([f"{task} inference, {title}", f"{b['eval_examples_per_s']:.1f} {unit}",
                         f"{p['eval_examples_per_s']:.1f} {unit}", f"**{f['ratio']['eval']:.2f}**", "", ""])
    return markdown_table(["row", "bertfit", "Trainer", "ratio", "MFU bertfit / Trainer", "dev score bertfit / Trainer"],
                          rows, "lrrrrr")


SPEED_NAMES = [f"{task}-speed-{suffix}" for _, suffix in SPEED_COMPARISONS for task in ("glue", "squad")]


def render_speed(figures_dir: Path) -> str:
    return per_kind(figures_dir, SPEED_NAMES, speed_rows)


def render_headline(figures_dir: Path) -> str:
    """The README's table: bertfit against each peer, one row per benchmark, a table per CPU kind."""
    names = ["glue-speed-same-math", "squad-speed-same-math", "serve-load", "export-speed", "pretrain-speed"]

    def table(found):
        rows = []
        for task, unit in (("glue", "sentences/s"), ("squad", "windows/s")):
            record = first(found, f"{task}-speed-same-math")
            if record:
                f = record["figures"]
                label = "SST-2" if task == "glue" else "SQuAD v1.1"
                b, p = f["sides"]["bertfit"], f["sides"]["peer"]
                rows.append([f"{label} fine-tuning, same math", f"{b['train_examples_per_s']:.1f} {unit}",
                             f"Trainer {p['train_examples_per_s']:.1f}", f"**{f['ratio']['train']:.2f}**"])
                rows.append([f"{label} inference", f"{b['eval_examples_per_s']:.1f} {unit}",
                             f"Trainer {p['eval_examples_per_s']:.1f}", f"**{f['ratio']['eval']:.2f}**"])
        record = first(found, "serve-load")
        if record and "bertfit" in record["figures"] and "peer" in record["figures"]:
            b, p = record["figures"]["bertfit"], record["figures"]["peer"]
            rows.append(["HTTP serving, SST-2 sentences", f"{b['throughput']:.1f} requests/s",
                         f"pipeline in FastAPI {p['throughput']:.1f}", f"**{b['throughput'] / p['throughput']:.2f}**"])
        record = first(found, "export-speed")
        if record and {"onnx-int8", "peer-int8"} <= set(record["figures"]["sides"]):
            sides = record["figures"]["sides"]
            rows.append(["int8 ONNX inference, SST-2", f"{sides['onnx-int8']['examples_per_s']:.1f} sentences/s",
                         f"{peer_label(sides['peer-int8'])} {sides['peer-int8']['examples_per_s']:.1f}",
                         f"**{sides['onnx-int8']['examples_per_s'] / sides['peer-int8']['examples_per_s']:.2f}**"])
        record = first(found, "pretrain-speed")
        if record:
            b, p = record["figures"]["sides"]["bertfit"], record["figures"]["sides"]["peer"]
            rows.append(["MLM pretraining, mini BERT", f"{b['tokens_per_s']:.0f} tokens/s",
                         f"Trainer (run_mlm) {p['tokens_per_s']:.0f}", f"**{b['tokens_per_s'] / p['tokens_per_s']:.2f}**"])
        return markdown_table(["benchmark", "bertfit", "peer", "ratio"], rows)

    return per_kind(figures_dir, names, table)


def render_glue_side_by_side(figures_dir: Path) -> str:
    def one(record: dict) -> list[str]:
        from bertfit.tasks.glue import resolve_task

        f = record["figures"]
        quiet = f.get("quiet_machine", True)  # a run taken alongside other work times nothing
        rows = []
        for task, entry in f["tasks"].items():
            b, p = entry["bertfit"], entry["peer"]
            s = b["settings"]
            rows.append([resolve_task(task).name, str(b["train_examples"]), f"{number(s['epochs'])} ep, {number(s['lr'])}",
                         pm(b["mean"], b["std"], ".2f"), pm(p["mean"], p["std"], ".2f"), f"{b['mean'] - p['mean']:+.2f}",
                         f"{b['train_seconds']:.0f} / {p['train_seconds']:.0f}" if quiet else "not timed"])
        average = f["glue_average"]
        rows.append([f"average of these {len(f['tasks'])}", "", "", f"{average['bertfit']:.2f}", f"{average['peer']:.2f}",
                     f"{average['bertfit'] - average['peer']:+.2f}", ""])
        rows_of = "whole training sets" if f.get("max_train_samples") is None else \
            f"first {f['max_train_samples']} training rows"
        lines = [f"*{record['name']}: {rows_of}, seeds {', '.join(map(str, f['seeds']))} on both sides*", ""]
        lines += markdown_table(["task", "train rows", "bertfit settings", "bertfit defaults", "Trainer, run_glue's",
                                 "difference", "train s (bertfit / Trainer)"], rows, "lrlrrrr")
        if f.get("not_run"):
            lines += ["", f"Not run on this CPU: {f['not_run']}"]
        return lines

    def table(found):
        lines = []
        for name in ("glue-side-by-side", "glue-side-by-side-full"):
            for record in found.get(name) or []:
                lines += [*([""] if lines else []), *one(record)]
        return lines

    return per_kind(figures_dir, ["glue-side-by-side", "glue-side-by-side-full"], table)


NER_COMPARISONS = [("defaults vs defaults", "ner-side-by-side-defaults"),
                   ("same math", "ner-side-by-side-same-math")]


def render_ner_side_by_side(figures_dir: Path) -> str:
    """WNUT-17: entity F1 (dev and test, mean ± std over seeds) and speed of each side, a row per comparison."""
    def table(found):
        rows = []
        for title, name in NER_COMPARISONS:
            record = first(found, name)
            if record is None:
                continue
            f = record["figures"]
            timed = f.get("quiet_machine", True)  # a run taken alongside other work times nothing
            reused = f.get("peer_runs_from")
            peer_label = f"Trainer (run_ner; rows of commit {reused['commit'][:10]})" if reused else "Trainer (run_ner)"
            for side, label in (("bertfit", "bertfit"), ("peer", peer_label)):
                r = f["sides"][side]
                speed = [f"{r['train_examples_per_s']:.1f}", f"{r['train_seconds']:.0f}",
                         f"{r['eval_examples_per_s']:.1f}"] if timed else ["not timed"] * 3
                rows.append([f"{title}: {label}", pm(r["dev_f1"], r.get("dev_f1_std"), ".2f"),
                             pm(r["test_f1"], r.get("test_f1_std"), ".2f"), *speed])
            if timed:
                rows.append([f"{title}: ratio bertfit / Trainer", "", "", f"**{f['ratio']['train']:.2f}**", "",
                             f"**{f['ratio']['eval']:.2f}**"])
        return markdown_table(["comparison: side", "dev F1", "test F1", "train sentences/s", "train s",
                               "tagged sentences/s"], rows, "lrrrrr")

    return per_kind(figures_dir, [name for _, name in NER_COMPARISONS], table)


def render_embed_speed(figures_dir: Path) -> str:
    """Embeddings per second and served requests per second, each of bertfit's engines against
    sentence-transformers: a column per side, each bertfit figure with its ratio."""
    names = {"bertfit": "bertfit (torch)", "bertfit-onnx": "bertfit (ONNX)", "bertfit-onnx-int8": "bertfit (ONNX, int8)"}

    def table(found):
        f = first(found, "embed-speed")["figures"]
        p = f["sides"]["sentence-transformers"]
        ours = [side for side in names if side in f["sides"]]
        ratios = f.get("ratios") or {"bertfit": f["ratio"]}
        differences = f.get("differences") or {"bertfit": {"encode_max_abs": f["encode_difference"],
                                                           "served_max_abs": f["served_difference"]}}
        sides = [f["sides"][side] for side in ours]
        rows = [["precision", *(b["precision"] for b in sides), p["precision"]],
                ["encode, texts/s", *(f"{b['per_second']:.1f} (**{ratios[s]['encode']:.2f}x**)"
                                      for s, b in zip(ours, sides)), f"{p['per_second']:.1f}"],
                [f"served, requests/s ({f['clients']} clients, one text each)",
                 *(f"{b['throughput']:.1f} (**{ratios[s]['serve']:.2f}x**)" for s, b in zip(ours, sides)),
                 f"{p['throughput']:.1f} (FastAPI + encode)"],
                ["served latency p50 / p99, ms", *(f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f}" for b in sides),
                 f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f}"],
                ["largest difference from sentence-transformers' vectors, encode / served",
                 *(f"{differences[s]['encode_max_abs']:.1e} / {differences[s]['served_max_abs']:.1e}" for s in ours),
                 ""]]
        if all("encode_min_cosine" in differences[s] for s in ours):
            rows.append(["smallest cosine to sentence-transformers' vectors (encode)",
                         *(f"{differences[s]['encode_min_cosine']:.6f}" for s in ours), ""])
        return markdown_table(["row", *(names[s] for s in ours), "sentence-transformers"], rows,
                              "l" + "r" * (len(ours) + 1))

    return per_kind(figures_dir, ["embed-speed"], table)


def render_embed_side_by_side(figures_dir: Path) -> str:
    """STS-B Spearman and SQuAD retrieval before and after fine-tuning, bertfit against sentence-transformers' fit."""
    metrics = {"stsb": ("STS-B dev, Spearman of cosines ×100", ["spearman_cosine"]),
               "squad": ("SQuAD retrieval (squad-mini's evaluation articles) ×100", ["mrr@10", "recall@1", "recall@10"])}

    def table(found):
        f = first(found, "embed-side-by-side")["figures"]
        rows = []
        for task, runs in f["runs"].items():
            title, names = metrics[task]
            for side, label in (("before", "the embedded model, before"), ("bertfit", "bertfit embed-train"),
                                ("peer", "sentence-transformers fit")):
                values = runs[side]
                cells = []
                for name in names:
                    numbers = [100 * r[name] for r in values]
                    spread = statistics.stdev(numbers) if len(numbers) > 1 else None
                    cells.append(f"{name} {pm(sum(numbers) / len(numbers), spread, '.2f')}")
                rows.append([title, label, "; ".join(cells)])
        return [f"*seeds {', '.join(map(str, f['seeds']))} on both sides, {f['epochs']} epoch(s), batch "
                f"{f['batch_size']}, lr {number(f['lr'])}, fp32; every model scored by sentence-transformers' "
                f"evaluators*", "", *markdown_table(["task", "model", "score (mean ± std over seeds)"], rows, "lll")]

    return per_kind(figures_dir, ["embed-side-by-side"], table)


def render_small_glue(figures_dir: Path) -> str:
    def table(found):
        lines = []
        for record in found["small-glue-*"]:
            f = record["figures"]
            runs = f["runs"]
            grid = list(dict.fromkeys((r["epochs"], r["lr"]) for r in runs))
            sizes = list(dict.fromkeys(r["train_examples"] for r in runs))
            score = {(r["train_examples"], r["epochs"], r["lr"]): r["score"] for r in runs}
            rows = [[f"{f['task']}, {size} rows ({runs[0]['metric']})",
                     *[f"{score[(size, e, lr)]:.3f}" if (size, e, lr) in score else "–" for e, lr in grid]]
                    for size in sizes]
            lines += markdown_table([f"held-out score ({f['held_out']} rows)",
                                     *[f"{number(e)} ep, {number(lr)}" for e, lr in grid]],
                                    rows) + [""]
        return lines[:-1]

    return per_kind(figures_dir, ["small-glue-*"], table)


def render_ner_defaults(figures_dir: Path) -> str:
    """The candidates for NER_DEFAULTS, scored on the part of WNUT-17's train.conll held out, best first."""
    def table(found):
        f = found["ner-defaults-choice"][0]["figures"]
        split = f["split"]
        rows = [[f"batch {c['batch_size']}, {number(c['epochs'])} epochs, lr {number(c['lr'])}",
                 str(next(r["steps"] for r in f["runs"] if (r["batch_size"], r["epochs"], r["lr"])
                          == (c["batch_size"], c["epochs"], c["lr"]))),
                 pm(c["validation_f1"], c.get("validation_f1_std"), ".2f"), ", ".join(map(str, c["seeds"]))]
                for c in f["candidates"]]
        rows += [[f"batch {c['batch_size']}, {number(c['epochs'])} epochs, lr {number(c['lr'])}", "", "not run", ""]
                 for c in f.get("not_run", [])]
        return markdown_table([f"candidate ({split['training_sentences']} sentences trained on)", "steps",
                               f"held-out entity F1 ({split['validation_sentences']} sentences)", "seeds"], rows)

    return per_kind(figures_dir, ["ner-defaults-choice"], table)


def render_ner_defaults_code(_: Path) -> str:
    from bertfit.settings import NER_DEFAULTS

    return (f"`bertfit ner` trains {number(NER_DEFAULTS.epochs)} epochs at lr {number(NER_DEFAULTS.lr)} in batches of "
            f"{NER_DEFAULTS.batch_size} (`settings.NER_DEFAULTS`); options given on the command line win.")


SQUAD_ROWS = {"bertfit-defaults": "bertfit, its defaults", "bertfit-run_qa": "bertfit, run_qa's settings",
              "peer": "Trainer, run_qa's settings"}


def render_squad_side_by_side(figures_dir: Path) -> str:
    def table(found):
        lines = []
        for record in [*found["squad-side-by-side-v1.1*"], *found["squad-side-by-side-v2.0*"]]:
            f = record["figures"]
            v2 = f["version"] == "2.0"
            keys = ["f1", "exact"] + (["HasAns_f1", "NoAns_f1"] if v2 else [])
            rows = []
            for key, row in f["rows"].items():
                s, m, v = row["settings"], row["metrics"], row.get("validation_metrics") or {}
                chosen = (f"step {row['best_step']} of {row['steps']}" if row.get("best_step") else "final model")
                if row.get("null_threshold") is not None:
                    chosen += f", threshold {row['null_threshold']:.3g}"
                label = SQUAD_ROWS.get(key, key)
                rows.append([f"{label} ({number(s['epochs'])} ep, {number(s['lr'])}, batch {s['batch_size']})",
                             *[f"{m[k]:.2f}" if k in m else "–" for k in keys],
                             f"{v['f1']:.2f}" if "f1" in v else "–", chosen, f"{row['train_seconds']:.0f}"])
            title = f"v{f['version']}, {f['max_train_samples'] or 'all'} training questions"
            lines += [title, ""] + markdown_table(["row", *[f"eval {k}" for k in keys], "validation f1", "model chosen",
                                                   "train s"], rows, "l" + "r" * (len(keys) + 1) + "lr") + [""]
        for name in SQUAD_FULL:
            lines += [*squad_over_seeds(found[name][0]), ""] if found[name] else []
        return lines[:-1]

    return per_kind(figures_dir, ["squad-side-by-side-v1.1*", "squad-side-by-side-v2.0*", *SQUAD_FULL], table)


SQUAD_FULL = ["squad-side-by-side-full-v1.1", "squad-side-by-side-full-v2.0"]


def squad_over_seeds(record: dict) -> list[str]:
    """One version's rows over seeds (bench/squad_side_by_side.py --seeds): each score mean ± std, each bertfit row's
    F1 against the Trainer's on the seeds both ran, and the runs still to come."""
    f = record["figures"]
    v2 = f["version"] == "2.0"
    keys = [("exact", "EM"), ("f1", "F1")] + ([("HasAns_f1", "HasAns F1"), ("NoAns_exact", "NoAns accuracy")]
                                              if v2 else [])

    def cell(value: dict | None, spec: str = ".2f") -> str:
        return "–" if value is None else pm(value["mean"], value["std"], spec)

    rows = []
    for entry in f["rows"].values():
        if not entry["seeds"]:
            rows.append([entry["label"], "none yet", *["–"] * (len(keys) + 4 + v2)])
            continue
        s = entry["settings"]
        chosen = entry.get("threshold_chosen_on") == "validation"  # else one fixed value, the same on every seed
        threshold = ([f"{cell(entry['null_threshold'], '.3g') if chosen else number(entry['null_threshold']['mean'])}"
                      f" ({entry['threshold_chosen_on']})" if entry["null_threshold"] else "–"] if v2 else [])
        rows.append([f"{entry['label']} ({number(s['epochs'])} ep, {number(s['lr'])}, batch {s['batch_size']})",
                     ", ".join(map(str, entry["seeds"])), *[cell(entry["metrics"].get(k)) for k, _ in keys], *threshold,
                     cell(entry["validation_f1"]), ", ".join(map(str, entry["epochs_kept"])),
                     f"{entry['vs_peer']['f1']:+.2f}" if entry.get("vs_peer") else "–",
                     f"{entry['train_seconds']:.0f}" if f["quiet_machine"] else "not timed"])
    questions = (f"all {f['train_examples']}" if f["max_train_samples"] is None else f"the first {f['train_examples']}")
    lines = [f"*{record['name']}: v{f['version']}, {questions} training questions of {f['prefix']}-train.json, "
             f"{f['validation_examples'] or 0} validation questions, {f['eval_examples']} evaluation questions; "
             f"seeds {', '.join(map(str, f['seeds']))}; runs made at {', '.join(f['commits'])}*", ""]
    lines += markdown_table(["row", "seeds", *[label for _, label in keys], *(["null threshold"] if v2 else []),
                             "validation F1", "epoch kept", "F1 − Trainer", "train s"], rows,
                            "ll" + "r" * (len(keys) + v2 + 1) + "lrr")
    if f.get("not_run"):
        lines += ["", f"Not run yet: {f['not_run']}"]
    return lines


def peer_label(side: dict) -> str:
    """The int8 peer as it ran: Optimum's recipe, or ORT's quantize_dynamic where Optimum was missing."""
    return "Optimum + ORT int8" if side.get("recipe", "").startswith("Optimum") else "ORT quantize_dynamic int8 (no Optimum)"


def render_export(figures_dir: Path) -> str:
    labels = {"torch-fp32": "bertfit torch fp32", "torch-bf16": "bertfit torch bf16", "onnx-fp32": "bertfit ONNX fp32",
              "onnx-int8": "bertfit ONNX int8"}

    def table(found):
        f = first(found, "export-speed")["figures"]
        rows = [[peer_label(v) if side == "peer-int8" else labels.get(side, side), f"{v['examples_per_s']:.1f}",
                 f"{100 * v['accuracy']:.2f}", f"{v['file_mib']:.1f} MiB"] for side, v in f["sides"].items()]
        lines = markdown_table(["side", "sentences/s", "dev accuracy", "file"], rows)
        squad = f.get("squad") or {}
        if squad:
            lines += [""] + markdown_table(["SQuAD check", "F1", "EM", "questions"],
                                           [[side, f"{v['f1']:.2f}", f"{v['exact']:.2f}", str(v["questions"])]
                                            for side, v in squad.items()])
        return lines

    return per_kind(figures_dir, ["export-speed"], table)


def render_serve(figures_dir: Path) -> str:
    def table(found):
        f = first(found, "serve-load")["figures"]
        rows = [[{"bertfit": "`bertfit serve`", "peer": "pipeline in FastAPI"}[side], str(v["requests"]),
                 str(v["errors"]), f"{v['throughput']:.1f}", f"{v['p50_ms']:.0f}", f"{v['p95_ms']:.0f}",
                 f"{v['p99_ms']:.0f}", f"{v['rss_first_mb']:.0f} → {v['rss_last_mb']:.0f} MB",
                 f"{100 * v['accuracy']:.2f}", str(v["exit_code"])]
                for side, v in f.items() if side in ("bertfit", "peer")]
        lines = markdown_table(["server", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms",
                                "RSS first → last 10%", "dev accuracy", "exit"], rows, "lrrrrrrlrr")
        tenths = [f"{name}: {' → '.join(f'{mb:.0f}' for mb in f[side]['rss_by_tenth_mb'])} MB"
                  for side, name in (("bertfit", "`bertfit serve`"), ("peer", "the pipeline server"))
                  if "rss_by_tenth_mb" in f.get(side, {})]
        if tenths:
            lines += ["", "RSS by tenth of the run (does it level off): " + "; ".join(tenths) + "."]
        if "bertfit" in f and "peer" in f:
            lines += ["", f"Throughput ratio: {f['bertfit']['throughput'] / f['peer']['throughput']:.2f}x."]
        for record in found.get("serve-load-long") or []:  # bertfit alone, longer: where its memory settles
            v = record["figures"]["bertfit"]
            lines += ["", f"`bertfit serve` alone over {v['requests']:,} requests ({v['throughput']:.1f} req/s, "
                          f"{v['errors']} errors), RSS by tenth of the run: "
                          f"{' → '.join(f'{mb:.0f}' for mb in v['rss_by_tenth_mb'])} MB."]
        return lines

    return per_kind(figures_dir, ["serve-load", "serve-load-long"], table)


def render_pretrain(figures_dir: Path) -> str:
    def table(found):
        sides = first(found, "pretrain-speed")["figures"]["sides"]
        rows = [[{"bertfit": "`bertfit pretrain`", "peer": "Trainer, run_mlm's logic"}[side], f"{v['tokens_per_s']:.0f}",
                 f"{v['train_seconds']:.1f}", f"{v['mlm_loss']:.3f}", f"{100 * v['mlm_accuracy']:.2f}%",
                 f"{v['peak_rss_mb']:.0f}"] for side, v in sides.items()]
        return markdown_table(["side", "training tokens/s", "train s", "held-out MLM loss", "MLM accuracy",
                               "peak RSS MB"], rows)

    return per_kind(figures_dir, ["pretrain-speed"], table)


def render_pretrain_architectures_figures(figures_dir: Path) -> str:
    def table(found):
        sides = first(found, "pretrain-architectures")["figures"]["sides"]
        # every model also scored at one masking rate (ModernBERT trains with 30% masked, the others 15%)
        common = [v.get("at_eval_mlm_probability") for v in sides.values()]
        rate = f"{100 * common[0]['mlm_probability']:g}%" if all(common) else None
        rows = [[f"`{name}`", str(v["steps"]), f"{v['train_seconds']:.0f}", f"{v['train_tokens_seen']:,}",
                 f"{100 * v.get('mlm_probability', 0.15):g}%", f"{v['mlm_loss']:.3f}",
                 f"{100 * v['mlm_accuracy']:.2f}%",
                 *([f"{v['at_eval_mlm_probability']['mlm_loss']:.3f}",
                    f"{100 * v['at_eval_mlm_probability']['mlm_accuracy']:.2f}%"] if rate else []),
                 f"{v['tokens_per_word']:.3f}"] for name, v in sides.items()]
        return markdown_table(["--architecture", "steps", "train s", "tokens seen", "masked", "held-out MLM loss",
                               "MLM accuracy", *([f"MLM loss at {rate} masked", f"MLM accuracy at {rate} masked"]
                                                 if rate else []), "tokens per word"], rows)

    return per_kind(figures_dir, ["pretrain-architectures"], table)


def render_levers(figures_dir: Path) -> str:
    def table(found):
        # each lever from the newest record that measured it (`--levers` runs some of them)
        f = {}
        for name in ("levers", "levers-packing"):
            for record in reversed(found.get(name) or []):
                f.update(record["figures"])
        rows = []
        if "padding" in f:
            pad = f["padding"]["pad_percent"]
            rows += [["padding in SST-2 batches of 32", "shuffled, no grouping", f"{pad['none']:.1f}% of tokens"]]
            rows += [["", f"length-grouped, groups of {g} batches", f"{v:.1f}% of tokens"]
                     for g, v in pad.items() if g != "none"]
        if "dropout" in f:
            rows += [["dropout forward + backward", name, f"{ms:.2f} ms"] for name, ms in f["dropout"]["ms"].items()]
        for i, pair in enumerate(f.get("allocator", {}).get("ms_per_step", []), 1):
            rows += [[f"SST-2 training step, round {i}", side, f"{ms:.1f} ms"] for side, ms in pair.items()]
        if "inference" in f:
            rows += [[f"SQuAD inference, {f['inference']['windows']} windows", name, f"{rate:.1f} windows/s"]
                     for name, rate in f["inference"]["windows_per_s"].items()]
        for case, figures in f.get("packing", {}).get("cases", {}).items():
            rates = figures["examples_per_s"]
            rows += [[f"packing: {case} ({100 * figures['real_token_share']:.0f}% of positions real)", way,
                      f"{rate:.1f} examples/s" + (f" ({figures['speedup']:.2f}x)" if way == "packed" else "")]
                     for way, rate in rates.items()]
        return markdown_table(["lever", "how", "measured"], rows, "llr")

    return per_kind(figures_dir, ["levers", "levers-packing"], table)


def render_attention(figures_dir: Path) -> str:
    def table(found):
        f = first(found, "attention-speed")["figures"]
        rows = [[str(r["length"]), str(r["batch"]), f"{r['train_sdpa_ms']:.1f}", f"{r['train_explicit_ms']:.1f}",
                 f"{r['train_sdpa_ms'] / r['train_explicit_ms']:.2f}", f"{r['infer_sdpa_ms']:.1f}",
                 f"{r['infer_explicit_ms']:.1f}", f"{r['infer_sdpa_ms'] / r['infer_explicit_ms']:.2f}"]
                for r in f["rows"]]
        return markdown_table(["length", "batch", "train SDPA ms", "train explicit ms", "SDPA / explicit",
                               "infer SDPA ms", "infer explicit ms", "SDPA / explicit"], rows)

    return per_kind(figures_dir, ["attention-speed"], table)


def render_profile(figures_dir: Path) -> str:
    def inside(op: dict) -> str:
        """The event an op ran in, an autograd node by its own name (an aten::copy_ in aten::addmm is no cast)."""
        event = op.get("inside", "").removeprefix("autograd::engine::evaluate_function: ")
        return f"`{event}`" if event else ""

    phases = (("training", "training step", "ms/step"), ("inference", "inference call", "ms/call"))

    def table(found):
        lines = []
        for record in found["profile-*"]:
            f = record["figures"]
            train, infer = f["training"], f["inference"]
            lines += [(f"{f['shape']}, {record['precision'].get('bertfit', '')}: training steps of {train['batch_size']} "
                      f"({train['mean_tokens']:.1f} tokens, padded to {train['mean_padded_width']:.1f}) take "
                      f"{train['step_ms']:.1f} ms, MFU {train['mfu_percent']:.1f}%; a predict call over "
                      f"{infer['batch_size']} sequences ({infer['mean_tokens']:.1f} tokens) takes "
                      f"{infer['step_ms']:.1f} ms, MFU {infer['mfu_percent']:.1f}%, timed without the profiler. Data: "
                      f"{f['settings']['data']}."), ""]
            rows = [[name, *[cell for phase, _, _ in phases for cell in (
                         f"{f[phase]['categories'][name]['ms']:.2f}", f"{100 * f[phase]['categories'][name]['share']:.1f}%")]]
                    for name in f["categories"]]
            rows.append(["profiled step", *[cell for phase, _, _ in phases
                                            for cell in (f"{f[phase]['profiled_step_ms']:.2f}", "100%")]])
            lines += markdown_table(["category", *[h for _, title, unit in phases for h in (f"{title} {unit}", "share")]],
                                    rows) + [""]
            rows = [[title, f"`{op['op']}`", inside(op), op["category"], f"{op['ms']:.2f}", f"{100 * op['share']:.1f}%",
                     f"{op['calls_per_step']:g}"] for phase, title, _ in phases for op in f[phase]["top_ops"][:5]]
            lines += markdown_table(["phase", "op", "inside", "category", "ms", "share", "calls"], rows,
                                    "llllrrr") + [""]
            lines += levers_table(f) + first_pass_line(f)
        return lines[:-1]

    def levers_table(f: dict) -> list[str]:
        """The training step with every lever off (plain), each alone on, and this kind's default, by category."""
        if not f.get("levers"):
            return []
        sides = {**f["levers"], "default": f["training"]}
        outside = {name: side["profiled_step_ms"] - side["categories"]["matrix products"]["ms"]
                   for name, side in sides.items()}
        rows = [[category, *[f"{side['categories'][category]['ms']:.2f}" for side in sides.values()]]
                for category in f["categories"]]
        rows += [["**outside matrix products**", *[f"**{outside[name]:.2f}**" for name in sides]],
                 ["profiled step", *[f"{side['profiled_step_ms']:.2f}" for side in sides.values()]],
                 ["step, unprofiled", *[f"{side['step_ms']:.2f}" for side in sides.values()]],
                 ["MFU", *[f"{side['mfu_percent']:.1f}%" for side in sides.values()]]]
        on = ", ".join(f"`{name}`" for name in f["settings"].get("levers_on", [])) or "none"
        return ([f"{f['shape']} training step by lever, ms/step (plain: every lever of `bertfit.step_levers` off; "
                 f"each lever alone on; default: the levers on in this run, {on}); outside matrix products, plain "
                 f"{outside['plain']:.2f} ms, default {outside['default']:.2f} ms (default / plain "
                 f"{outside['default'] / outside['plain']:.2f}):", ""]
                + markdown_table(["category", *[name if name in ("plain", "default") else f"`{name}` alone"
                                                for name in sides]], rows)
                + [""])

    def first_pass_line(f: dict) -> list[str]:
        first_pass = f.get("first_pass")
        if not first_pass:
            return []
        new = first_pass["new_width_extra_ms_mean"]
        seen = first_pass["seen_width_extra_ms_mean"]
        return [f"{f['shape']} loop, its first {first_pass['steps']} batches twice: the first pass "
                f"{first_pass['first_pass_total_ms']:.0f} ms, the second {first_pass['second_pass_total_ms']:.0f} ms "
                f"({100 * first_pass['warm_up_share_of_first_pass']:.1f}% of the first pass is warm-up): the first step "
                f"{first_pass['first_step_extra_ms']:.1f} ms more"
                + (f", each of the {first_pass['new_widths']} new padded widths after it {new:.1f} ms more on its first "
                   f"step" if new is not None else "")
                + (f" (a width seen before: {seen:.1f} ms)" if seen is not None else "") + ".", ""]

    return per_kind(figures_dir, ["profile-*"], table)


# ---- the code's constants -----------------------------------------------------------------------

def render_glue_defaults(_: Path) -> str:
    from bertfit.settings import GLUE_DEFAULTS

    rows = [[f"`{task}`", f"{fewest:,}", number(row["epochs"]), number(row["lr"]), str(row["batch_size"])]
            for task, fewest, row in GLUE_DEFAULTS]
    return "\n".join(markdown_table(["task", "training examples, at least", "epochs", "lr", "batch"], rows))


def _option_help(command: str) -> dict[str, tuple[str, str]]:
    """Each option of a `bertfit` command: dest -> (flag, help), from the CLI's own parser."""
    from bertfit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {a.dest: (a.option_strings[0], a.help or "") for a in sub._actions if a.option_strings}


def number(value: float) -> str:
    """A setting as people write it: 2e-5, 0.1, 3, 20,000."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if value and abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


def _value(value) -> str:
    if isinstance(value, (bool, int, float)):
        return number(value)
    return "none" if value is None else str(value)


def render_train_settings(_: Path) -> str:
    """Every training option with its default for `bertfit glue` (outside GLUE_DEFAULTS), `squad` and `pretrain`."""
    from dataclasses import fields

    from bertfit.settings import PRETRAIN_DEFAULTS, SQUAD_DEFAULTS, TrainSettings

    base, flags = TrainSettings(), _option_help("squad")
    rows = []
    for f in fields(TrainSettings):
        glue = "GLUE_DEFAULTS" if f.name in ("epochs", "lr", "batch_size") else _value(getattr(base, f.name))
        rows.append([f"`{flags[f.name][0]}`", glue, _value(getattr(SQUAD_DEFAULTS, f.name)),
                     _value(getattr(PRETRAIN_DEFAULTS, f.name)), f.metadata.get("help") or ""])
    return "\n".join(markdown_table(["option", "glue", "squad", "pretrain", "what it does"], rows, "lrrrl"))


def render_squad_defaults(_: Path) -> str:
    from bertfit.settings import SQUAD_DEFAULTS

    return (f"`bertfit squad` trains {number(SQUAD_DEFAULTS.epochs)} epochs at lr {number(SQUAD_DEFAULTS.lr)} in batches of "
            f"{SQUAD_DEFAULTS.batch_size} (`settings.SQUAD_DEFAULTS`); options given on the command line win.")


def render_serve_settings(_: Path) -> str:
    from dataclasses import fields

    from bertfit.serve_settings import API_KEY_ENV, ServeSettings

    helps, serving = _option_help("serve"), ServeSettings()
    rows = []
    for f in fields(ServeSettings):
        flag, help = helps.get(f.name, (f"--{f.name.replace('_', '-')}", ""))
        help = re.sub(r"\s*\(default[^)]*\)", "", help)
        value = f"`{API_KEY_ENV}`, else none" if f.name == "api_key" else _value(getattr(serving, f.name))
        rows.append([f"`{flag}`", value, help])
    return "\n".join(markdown_table(["option", "default", "what it sets"], rows, "lrl"))


def render_export_tolerances(_: Path) -> str:
    from bertfit import export

    return "\n".join(markdown_table(
        ["file", "kept when the largest difference from PyTorch is at most"],
        [[f"`{export.FILES[None]}` (float32)", f"{number(export.FP32_TOLERANCE)} × the largest logit (at least 1)"],
         [f"`{export.FILES['int8']}` (`--quantize int8`)", f"{number(export.INT8_TOLERANCE)} × the largest logit (at least 1)"]],
        "ll") + ["", f"ONNX opset {export.OPSET}; inputs {', '.join(f'`{n}`' for n in export.INPUT_NAMES)}; outputs "
                 + "; ".join(f"{head}: {', '.join(f'`{n}`' for n in names)}" for head, names in export.OUTPUT_NAMES.items())
                 + "."])


def render_fast_path(_: Path) -> str:
    from bertfit import batching, model, predicting, step_levers

    return "\n".join(markdown_table(["what", "value", "constant"], [
        *[[f"training step levers on for CPU kind {kind}", ", ".join(f"`{n}`" for n in won) or "none",
           "`step_levers.WINS`"] for kind, won in step_levers.WINS.items()],
        ["batches per length-sorted group in training", str(batching.GROUP_BATCHES), "`batching.GROUP_BATCHES`"],
        ["tokens per inference batch on CPU, at most", f"{predicting.CPU_INFERENCE_TOKENS:,}",
         "`predicting.CPU_INFERENCE_TOKENS`"],
        ["explicit attention (not SDPA) up to this length, training", str(model.EXPLICIT_ATTENTION_MAX_LENGTH[True]),
         "`model.EXPLICIT_ATTENTION_MAX_LENGTH`"],
        ["explicit attention up to this length, inference", str(model.EXPLICIT_ATTENTION_MAX_LENGTH[False]),
         "`model.EXPLICIT_ATTENTION_MAX_LENGTH`"],
        ["packed path (real tokens alone outside attention) below this share of real positions, inference",
         f"{model.PACK_BELOW[False]:g}" if model.PACK_BELOW[False] else "never", "`model.PACK_BELOW`"],
        ["packed path below this share of real positions, training",
         f"{model.PACK_BELOW[True]:g}" if model.PACK_BELOW[True] else "never", "`model.PACK_BELOW`"],
        ["packed inference attends in groups: a sequence joins its group while at least this share of the "
         "group's longest", f"{model.GROUP_SHARE:g}", "`model.GROUP_SHARE`"],
    ], "lrl"))


def render_pretrain_sizes(_: Path) -> str:
    from bertfit.model import PRETRAIN_SIZES

    rows = [[f"`{name}`", str(s.get("num_hidden_layers", "")), str(s.get("hidden_size", "")),
             str(s.get("num_attention_heads", "")), str(s.get("intermediate_size", ""))] for name, s in PRETRAIN_SIZES.items()]
    return "\n".join(markdown_table(["--size", "layers", "hidden", "heads", "intermediate"], rows))


def render_pretrain_architectures(_: Path) -> str:
    from bertfit.architectures import ARCHITECTURES
    from bertfit.checkpoints.families import FAMILIES

    packing = {"blocks": "packed blocks, every one full", "full-sentences": "whole paragraphs packed across documents"}

    def token_types(a) -> bool:
        return {**FAMILIES[a.family].parts, **a.config}.get("type_vocab_size", 2) > 1

    rows = [[f"`{a.name}`", a.family, f"`--kind {a.tokenizer}`", " or ".join(
                {"mlm": "MLM", "nsp": "MLM + NSP (`--nsp`)"}[o] for o in a.objectives), f"{100 * a.mlm_probability:g}%",
             packing[a.packing], "yes" if token_types(a) else "no", "yes" if a.tutorial_files else "no"]
            for a in ARCHITECTURES.values()]
    return "\n".join(markdown_table(["--architecture", "family", "tokenizer", "objectives", "masked",
                                     "MLM sequences", "token types", "bert_model.pth"], rows, "llllrlll"))


def _cell(text: str, limit: int = 160) -> str:
    """Free text in a table cell: one line, no column bars, at most `limit` characters."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render_families_sst2(figures_dir: Path) -> str:
    """Each family from random init through the CLI: SST-2 dev accuracy against the majority class, and whether
    `serve` and the ONNX export answer as `classify` does."""
    def table(found):
        record = first(found, "families-sst2")
        f, s = record["figures"], record["settings"]
        size = s["size"]
        rows = []
        for name, r in f["families"].items():
            if "error" in r:
                done = ", ".join(r["steps"]) or "nothing"
                rows.append([name, r["tokenizer_kind"], f"failed after {done}: {_cell(r['error'])}", "", "", ""])
                continue
            rows.append([name, r["tokenizer_kind"], f"{r['accuracy']:.4f}", f"{r['accuracy'] - f['majority']:+.4f}",
                         _cell(r["steps"]["serve = classify"]), _cell(r["steps"]["export = classify"])])
        lines = [f"From random init at one size ({family_size(size)}), a {s['vocab_size']:,}-token tokenizer of the family's kind: "
                 f"the first {s['samples']:,} SST-2 rows, {s['epochs']} epochs at lr {s['lr']:g}, batch "
                 f"{s['batch_size']}, fp32; dev's majority class {f['majority']:.4f} of {f['dev_sentences']} sentences. "
                 f"`serve` and the export asked {s['sentences']} dev sentences: the same labels and probabilities "
                 f"within {s['tolerance']:g} of `classify`'s.", ""]
        if f.get("not_run"):
            lines += [f"Not run in this run (it was cut short): {', '.join(f['not_run'])}.", ""]
        return lines + markdown_table(["family", "tokenizer", "dev accuracy", "over the majority class",
                                       "serve = classify", "export = classify"], rows, "llrrll")

    return per_kind(figures_dir, ["families-sst2"], table)


def family_size(size: dict) -> str:
    """The one size the families' benches build, in words."""
    return (f"{size['hidden']} wide, {size['layers']} layers, {size['heads']} heads, "
            f"{size['intermediate']} intermediate")


def render_families_speed(figures_dir: Path) -> str:
    """Each family's speed at one size, same math: bertfit's training against the Trainer's and its classify
    against transformers' pipeline, with the ratios."""
    def table(found):
        record = first(found, "families-speed")
        f = record["figures"]
        size = f["size"]
        timed = f.get("quiet_machine", True)
        rows = []
        for name, r in f["families"].items():
            if not timed:
                rows.append([name, *["not timed"] * 6])
                continue
            rows.append([name, f"{r['bertfit_train']:.1f}", f"{r['peer_train']:.1f}", f"**{r['train_ratio']:.2f}**",
                         f"{r['bertfit_eval']:.1f}", f"{r['peer_eval']:.1f}", f"**{r['eval_ratio']:.2f}**"])
        ours = record["settings"]["bertfit"]
        first_run = next(iter(f["runs"].values()))["bertfit"]
        lines = [f"One size for every family ({family_size(size)}), random weights, fp32, attention dropout 0 on both sides; "
                 f"training: the first {first_run['train_set']:,} SST-2 rows, {ours['epochs']} epoch(s) at batch "
                 f"{ours['batch_size']}, glue_speed's same-math settings; inference: {first_run['eval_examples']} dev "
                 f"sentences, tokenizing included. Ratio: bertfit's throughput over transformers'.", ""]
        if f.get("not_run"):
            lines += [f"Not measured in this run (it was cut short): {', '.join(f['not_run'])}.", ""]
        return lines + markdown_table(["family", "bertfit train ex/s", "Trainer train ex/s", "train ratio",
                                       "bertfit classify sent/s", "pipeline sent/s", "inference ratio"], rows)

    return per_kind(figures_dir, ["families-speed"], table)


def render_families(_: Path) -> str:
    from bertfit.checkpoints.families import families_table

    return families_table()


RENDERERS: dict[str, Callable[[Path], str]] = {
    "figures:headline": render_headline, "figures:speed": render_speed,
    "figures:glue-side-by-side": render_glue_side_by_side, "figures:ner-side-by-side": render_ner_side_by_side,
    "figures:embed-speed": render_embed_speed, "figures:embed-side-by-side": render_embed_side_by_side,
    "figures:small-glue": render_small_glue, "figures:ner-defaults": render_ner_defaults,
    "figures:squad-side-by-side": render_squad_side_by_side, "figures:export-speed": render_export,
    "figures:serve-load": render_serve, "figures:pretrain-speed": render_pretrain, "figures:levers": render_levers,
    "figures:pretrain-architectures": render_pretrain_architectures_figures,
    "figures:attention-speed": render_attention, "figures:profile": render_profile,
    "figures:families-sst2": render_families_sst2, "figures:families-speed": render_families_speed,
    "code:glue-defaults": render_glue_defaults, "code:train-settings": render_train_settings,
    "code:squad-defaults": render_squad_defaults, "code:ner-defaults": render_ner_defaults_code,
    "code:serve-settings": render_serve_settings,
    "code:export-tolerances": render_export_tolerances, "code:fast-path": render_fast_path,
    "code:pretrain-sizes": render_pretrain_sizes, "code:families": render_families,
    "code:pretrain-architectures": render_pretrain_architectures,
}


# ---- the pages ----------------------------------------------------------------------------------

def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def render_text(text: str, figures_dir: Path, where: str = "") -> str:
    """`text` with every marked table rendered afresh; an unknown marker is an error naming it."""
    def replace(match: re.Match) -> str:
        key = f"{match.group(2)}:{match.group(3)}"
        if key not in RENDERERS:
            raise SystemExit(f"{where}: unknown table marker <!-- {key} --> (known: {', '.join(sorted(RENDERERS))})")
        return f"{match.group(1)}{RENDERERS[key](figures_dir).rstrip()}\n{match.group(5)}"

    opened = re.findall(r"<!-- (?:figures|code):[\w.-]+ -->", text)
    if len(opened) != len(MARKER.findall(text)):
        raise SystemExit(f"{where}: a table marker without its closing <!-- /figures --> or <!-- /code -->")
    return MARKER.sub(replace, text)


def differences(root: Path = ROOT, figures_dir: Path | None = None) -> list[str]:
    """Each marked table, as `page: marker`, whose checked-in text differs from its render."""
    figures_dir = figures_dir or root / "docs" / "figures"
    stale = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        rendered = render_text(text, figures_dir, str(page))
        if rendered != text:
            old = {m.group(3): m.group(4) for m in MARKER.finditer(text)}
            new = {m.group(3): m.group(4) for m in MARKER.finditer(rendered)}
            stale += [f"{page.relative_to(root)}: {kind}:{name}" for kind, name in
                      ((m.group(2), m.group(3)) for m in MARKER.finditer(text)) if old[name] != new[name]]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    parser.add_argument("--figures-dir", default=str(FIGURES_DIR), help="where the figures are (default docs/figures)")
    args = parser.parse_args(argv)
    figures_dir = Path(args.figures_dir)
    if args.check:
        stale = differences(ROOT, figures_dir)
        for line in stale:
            print(f"differs from its render: {line}", file=sys.stderr)
        if stale:
            print("run `python docs/render.py` and commit the result; never edit a table between markers by hand",
                  file=sys.stderr)
        return 1 if stale else 0
    for page in pages(ROOT):
        text = page.read_text(encoding="utf-8")
        rendered = render_text(text, figures_dir, str(page))
        if rendered != text:
            page.write_text(rendered, encoding="utf-8")
            print(f"rendered {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
