"""squad-mini side by side: `bertfit squad`'s defaults and the peer's settings against the Trainer with run_qa's.

    python bench/squad_mini.py ../shared/data/squad/dev-v2.0.json 25 squad2
    python bench/squad_side_by_side.py --version 2.0 --prefix squad2 --max-train-samples 800

On the three-part squad-mini split (PREFIX-train/-validation/-eval.json, bench/squad_mini.py), each
row in its own child process, the same seed on every row:
- bertfit: `finetune_squad` exactly as `bertfit squad --version V --train-file PREFIX-train.json
  --validation-file PREFIX-validation.json --eval-file PREFIX-eval.json` runs it: the epoch and the
  v2.0 null threshold are chosen on the validation part, the evaluation articles are only scored;
  once with bertfit's defaults (settings.SQUAD_DEFAULTS) and once with run_qa's epochs, lr, batch,
  warmup and weight decay (bertfit's attention dropout 0 and row-wise embedding updates stay; --rows);
- the Trainer with run_qa's README settings (lr 3e-5, 2 epochs, batch 12, 384 tokens, stride 128,
  no warmup or weight decay, fp32, the model's own dropout), run_qa's pre- and postprocessing
  (bench/squad_speed.py), the final model and run_qa's null threshold 0.0; it chooses nothing.
Every row trains on the first --max-train-samples questions of the training part and is scored by
the same official-metric code on every question of the evaluation articles.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import squad_speed  # noqa: E402

RUN_QA = common.RUN_QA
ROWS = {
    "bertfit-defaults": "bertfit, its defaults",
    "bertfit-run_qa": "bertfit, run_qa's settings",
    "peer": "Trainer, run_qa's settings",
}


def files(args) -> dict[str, str]:
    return {part: f"{args.prefix}-{part}.json" for part in ("train", "validation", "eval")}


def bertfit_side(args, settings: dict | None) -> dict:
    from bertfit.recipes.squad import SquadOptions, finetune_squad
    from bertfit.settings import SQUAD_DEFAULTS

    from dataclasses import asdict, replace

    chosen = replace(SQUAD_DEFAULTS, seed=args.seed, **(settings or {}))
    paths = files(args)
    with tempfile.TemporaryDirectory(prefix="squad-side-bertfit-") as run_dir:
        results = finetune_squad(SquadOptions(version=args.version, train_file=paths["train"],
                                              validation_file=paths["validation"], eval_file=paths["eval"],
                                              max_train_samples=args.max_train_samples, output_dir=run_dir,
                                              overwrite=True, quiet=True), chosen)
    return {"metrics": results["metrics"], "validation_metrics": results.get("validation_metrics"),
            "train_seconds": results["train_seconds"], "train_windows": results["train_windows"],
            "train_examples": results["train_examples"], "eval_examples": results["eval_examples"],
            "model_chosen_by": results.get("model_chosen_by"), "best_step": results.get("best_step"),
            "steps": results.get("steps"), "threshold_chosen_on": results.get("threshold_chosen_on"),
            "null_threshold": results["settings"].get("null_threshold") if args.version == "2.0" else None,
            "settings": {**asdict(chosen), "precision": common.resolved_precision(chosen.precision),
                         "max_seq_length": SquadOptions.max_seq_length, "doc_stride": SquadOptions.doc_stride}}


def peer_side(args) -> dict:
    from datasets import Dataset
    from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from bertfit import squad_metrics
    from bertfit.pretrained import embedded_model_path
    from bertfit.tasks import squad

    paths = files(args)
    train_questions = squad.read_squad(paths["train"])[0][: args.max_train_samples]
    eval_questions = squad.read_squad(paths["eval"])[0]
    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train = Dataset.from_dict(squad_speed.peer_train_windows(train_questions, tokenizer, RUN_QA))
    dev_inputs, question_of_window, dev_offsets = squad_speed.peer_eval_windows(eval_questions, tokenizer, RUN_QA)
    set_seed(args.seed)  # the new span head's initialisation, as run_qa seeds it
    model = AutoModelForQuestionAnswering.from_pretrained(path)
    with tempfile.TemporaryDirectory(prefix="squad-side-peer-") as output_dir:
        trainer = Trainer(model=model, args=TrainingArguments(
            output_dir=output_dir, use_cpu=True, per_device_train_batch_size=RUN_QA["batch_size"],
            per_device_eval_batch_size=RUN_QA["eval_batch_size"], learning_rate=RUN_QA["lr"],
            num_train_epochs=RUN_QA["epochs"], warmup_steps=0, weight_decay=RUN_QA["weight_decay"],
            lr_scheduler_type="linear", save_strategy="no", report_to=[], logging_steps=50,
            dataloader_num_workers=0, seed=args.seed), train_dataset=train, processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start_logits, end_logits = trainer.predict(Dataset.from_dict(dev_inputs)).predictions
    version_2 = args.version.startswith("2")
    answers = squad_speed.peer_answers(eval_questions, question_of_window, dev_offsets, start_logits, end_logits,
                                       version_2=version_2, null_threshold=0.0)
    if version_2:
        values = squad_metrics.squad_v2_scores(eval_questions, answers)
        metrics = {"f1": values["f1"], "exact": values["exact"],
                   **{k: v for k, v in values.items() if k.startswith(("HasAns", "NoAns"))}}
    else:
        values = squad_metrics.squad_v1_scores(eval_questions, answers)
        metrics = {"f1": values["f1"], "exact": values["exact_match"]}
    return {"metrics": metrics, "validation_metrics": None, "train_seconds": train_seconds,
            "train_windows": len(train), "train_examples": len(train_questions), "eval_examples": len(eval_questions),
            "model_chosen_by": "final model", "threshold_chosen_on": "run_qa's default 0.0" if version_2 else None,
            "null_threshold": 0.0 if version_2 else None,
            "settings": {**RUN_QA, "seed": args.seed, "optimizer": common.EXACT_ADAMW,
                         "attention_dropout": common.model_attention_dropout()}}


def main(argv: list[str]) -> None:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--version", choices=("1.1", "2.0"), required=True)
    parser.add_argument("--prefix", required=True, help="the split's files: PREFIX-{train,validation,eval}.json")
    parser.add_argument("--max-train-samples", type=int, help="train on the first N questions (default all)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--seed", type=int, default=42, help="the seed of every row (default 42)")
    args = parser.parse_args(argv)
    if args.side:
        import torch

        torch.set_num_threads(args.threads)
        run_qa = {k: RUN_QA[k] for k in ("epochs", "lr", "batch_size", "warmup_ratio", "weight_decay")}
        sides = {"bertfit-defaults": lambda a: bertfit_side(a, None),
                 "bertfit-run_qa": lambda a: bertfit_side(a, run_qa), "peer": peer_side}
        Path(args.result_file).write_text(json.dumps(sides[args.side](args)))
        return

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    print(common.cpu_line(common.cpu_kind()))
    print(f"squad-mini v{args.version}: train on the first {args.max_train_samples or 'all'} questions of "
          f"{args.prefix}-train.json; bertfit chooses its epoch{' and null threshold' if args.version == '2.0' else ''}"
          f" on {args.prefix}-validation.json; every row is scored on all of {args.prefix}-eval.json; seed {args.seed}",
          flush=True)
    child = common._without_options(argv, ("--json", "--figures-dir", "--rows"))
    results = {}
    for row in rows:
        results[row] = common.run_side(__file__, child, row)
        print(f"{row}: {json.dumps(results[row])}", file=sys.stderr, flush=True)

    keys = ["f1", "exact"] + (["HasAns_f1", "NoAns_f1"] if args.version == "2.0" else [])
    header = ["row", "epochs", "lr", "batch", *[f"eval {k}" for k in keys], "validation f1", "chosen", "train s"]
    table = [header]
    for row, r in results.items():
        s, m, v = r["settings"], r["metrics"], r["validation_metrics"] or {}
        chosen = f"step {r['best_step']} of {r['steps']}" if r.get("best_step") else "final model"
        if r.get("null_threshold") is not None:
            chosen += f", threshold {r['null_threshold']:.3g}"
        table.append([ROWS[row], f"{s['epochs']:g}", f"{s['lr']:g}", str(s["batch_size"]),
                      *[f"{m[k]:.2f}" if k in m else "-" for k in keys],
                      f"{v['f1']:.2f}" if "f1" in v else "-", chosen, f"{r['train_seconds']:.0f}"])
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    for i, t in enumerate(table):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(t, widths))))
    first = next(iter(results.values()))
    print(f"{first['train_examples']} training questions; {first['eval_examples']} evaluation questions; "
          "scores ×100 on the evaluation articles only")
    name = f"squad-side-by-side-v{args.version}" + (f"-{args.max_train_samples}" if args.max_train_samples else "")
    common.write_figures(name, __file__, argv, args.figures_dir,
                         figures={"version": args.version, "prefix": args.prefix, "seed": args.seed,
                                  "max_train_samples": args.max_train_samples, "rows": results},
                         settings={row: r["settings"] for row, r in results.items()},
                         precision={row: r["settings"]["precision"] for row, r in results.items()},
                         threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": common.cpu_kind(), "version": args.version,
                                               "prefix": args.prefix, "seed": args.seed,
                                               "max_train_samples": args.max_train_samples, "rows": results},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
