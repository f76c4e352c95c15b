"""Settings for small GLUE training sets, chosen on part of the training set held out, never on dev.

    python bench/small_glue.py --data-dir ../shared/data/glue --task sst2 --sizes 500,2000 \
        --settings 1:2e-5,1:5e-5,5:5e-5,5:1e-4

The task's training file is shuffled (seed 0); its first --held-out rows are the validation part
and the next N rows the training set of size N. Each size trains with each EPOCHS:LR (batch 32,
the embedded model, every other setting bertfit's default) and is scored with the task's metric on
the validation part alone, so the dev set stays unseen for reporting. One line per run, then the
row of `settings.GLUE_DEFAULTS` each size gets; the figures go to docs/figures (--figures-dir).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path


def split_lines(task, data_dir: str, held_out: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(header lines, validation rows, training pool) of the task's training file, shuffled."""
    lines = (Path(data_dir) / task.folder / task.files["train"]).read_text(encoding="utf-8").splitlines(True)
    header, rows = ([], lines) if task.headerless_columns else (lines[:1], lines[1:])
    random.Random(seed).shuffle(rows)
    return header, rows[:held_out], rows[held_out:]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder in the official GLUE layout")
    parser.add_argument("--task", default="sst2", help="a GLUE task with one example per line (not MNLI)")
    parser.add_argument("--sizes", default="500,2000", help="training-set sizes, comma-separated")
    parser.add_argument("--settings", default="1:2e-5,1:5e-5,5:5e-5,5:1e-4", help="EPOCHS:LR pairs, comma-separated")
    parser.add_argument("--held-out", type=int, default=1000, help="validation rows taken from the training file")
    parser.add_argument("--seed", type=int, default=42, help="training seed (the split always uses seed 0)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    common.add_figures_option(parser)
    args = parser.parse_args(argv)

    from dataclasses import asdict

    from bertfit.recipes.glue import GlueOptions, finetune_glue
    from bertfit.settings import TrainSettings, glue_defaults
    from bertfit.tasks.glue import resolve_task

    print(common.cpu_line(common.cpu_kind()))
    task = resolve_task(args.task)
    header, validation, pool = split_lines(task, args.data_dir, args.held_out, seed=0)
    sizes = [int(n) for n in args.sizes.split(",")]
    grid = [(float(e), float(lr)) for e, lr in (pair.split(":") for pair in args.settings.split(","))]
    print(f"{task.name}: validation {len(validation)} rows held out of train (seed 0); model embedded, batch 32")
    print(f"{'train':>6} {'epochs':>6} {'lr':>7} {'steps':>5} {task.metrics[0]:>20} {'seconds':>7}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            glue_dir = Path(tmp) / f"glue-{size}"
            (glue_dir / task.folder).mkdir(parents=True)
            (glue_dir / task.folder / task.files["train"]).write_text("".join(header + pool[:size]), encoding="utf-8")
            (glue_dir / task.folder / task.files["dev"]).write_text("".join(header + validation), encoding="utf-8")
            for epochs, lr in grid:
                start = time.perf_counter()
                settings = TrainSettings(epochs=epochs, lr=lr, batch_size=32, seed=args.seed)
                results = finetune_glue(
                    GlueOptions(task=task.name, data_dir=str(glue_dir), output_dir=str(Path(tmp) / "run"),
                                overwrite=True, quiet=True), settings)
                seconds = time.perf_counter() - start
                runs.append({"train_examples": size, "epochs": epochs, "lr": lr, "steps": results["steps"],
                             "metric": task.metrics[0], "score": results["metrics"][task.metrics[0]],
                             "seconds": seconds})
                print(f"{size:>6} {epochs:>6g} {lr:>7g} {results['steps']:>5} "
                      f"{results['metrics'][task.metrics[0]]:>20.4f} {seconds:>7.1f}", flush=True)
    for size in sizes:
        print(f"defaults for {size} examples: {glue_defaults(task.name, size)}")
    common.write_figures(f"small-glue-{task.name}", __file__, argv, args.figures_dir,
                         figures={"task": task.name, "held_out": len(validation), "runs": runs,
                                  "defaults": {str(size): glue_defaults(task.name, size) for size in sizes}},
                         settings={"bertfit": {**asdict(TrainSettings(batch_size=32, seed=args.seed)),
                                               "grid": args.settings, "sizes": sizes}},
                         precision={"bertfit": common.resolved_precision("auto")})


if __name__ == "__main__":
    main(sys.argv[1:])
