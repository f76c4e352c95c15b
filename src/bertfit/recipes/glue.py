"""GLUE fine-tuning, evaluation and prediction, end to end: read → encode → train → score → save."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpointing, metrics, reports, training
from ..checkpoints import load_pretrained, save_pretrained
from ..errors import CheckpointError, ConfigError
from ..tasks import glue
from ..tokenization import special_ids
from ..training import TrainSettings


def cache_dir() -> Path:
    """Where encoded features are kept between runs (BERTFIT_CACHE overrides)."""
    return Path(os.environ.get("BERTFIT_CACHE", Path.home() / ".cache" / "bertfit")) / "features"


@dataclass
class GlueOptions:
    """What to fine-tune on: an official task, or a user's own files with named columns."""

    task: str
    model: str | None = None
    data_dir: str | None = None
    output_dir: str | None = None
    max_seq_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    train_file: str | None = None
    eval_file: str | None = None
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    long_texts: str = "truncate"
    stride: int = 64
    skip_bad_examples: bool = False
    overwrite: bool = False
    tokenizer: str | None = None
    num_heads: int | None = None  # a tutorial .pth holds no config
    quiet: bool = False


def dev_splits(task: glue.GlueTask) -> list[str]:
    return ["dev_matched", "dev_mismatched"] if task.name == "mnli" else ["dev"]


def read_split(task: glue.GlueTask, options: GlueOptions, split: str) -> glue.Examples:
    if options.train_file or options.eval_file:
        path = options.train_file if split == "train" else options.eval_file
        if not path:
            raise ConfigError(f"with your own files, pass both --train-file and --eval-file (no {split} file given)")
        examples = glue.read_table_file(path, options.text_columns, options.label_column, labels=task.labels)
        if task.is_regression and examples.label_names is not None:  # whole-number scores read as classes
            examples = replace(examples, labels=[float(examples.label_names[i]) for i in examples.labels],
                               label_names=None)
        return examples
    if options.data_dir:
        return glue.read_glue_split(task, options.data_dir, split, skip_bad=options.skip_bad_examples)
    return glue.load_hub_split(task, split)


def custom_task(options: GlueOptions) -> glue.GlueTask:
    """A task described by the user's files: label set and regression read off the training file."""
    if not options.text_columns or not options.label_column:
        raise ConfigError("with --train-file, name the text columns (--text-columns a[,b]) and --label-column")
    probe = glue.read_table_file(options.train_file, options.text_columns, options.label_column)
    labels = probe.label_names
    return glue.GlueTask(name="custom", folder="", text_columns=tuple(options.text_columns),
                         label_column=options.label_column, labels=labels,
                         metrics=("accuracy", "f1") if labels and len(labels) == 2 else
                         ("accuracy",) if labels else ("pearson", "spearman"),
                         files={"train": options.train_file, "dev": options.eval_file}, submissions={})


def _limit(examples: glue.Examples, n: int | None) -> glue.Examples:
    if not n or n >= len(examples):
        return examples
    return replace(examples, texts_a=examples.texts_a[:n], texts_b=examples.texts_b[:n] if examples.texts_b else None,
                   labels=examples.labels[:n] if examples.labels is not None else None, indices=examples.indices[:n])


def loss_fn(task: glue.GlueTask):
    """Summed loss over the batch (the loop divides by the global batch size)."""
    if task.is_regression:
        return lambda model, batch: F.mse_loss(model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
                                               .squeeze(-1).float(), batch["label_ids"].float(), reduction="sum")
    return lambda model, batch: F.cross_entropy(model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
                                                .float(), batch["label_ids"], reduction="sum")


def predictions_from_logits(task: glue.GlueTask, logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] if task.is_regression else logits.argmax(-1)


def score(task: glue.GlueTask, split_logits: dict[str, np.ndarray], split_examples: dict[str, glue.Examples]) -> dict:
    """The task's metrics on each dev split; the main metric comes first (it picks the best model)."""
    results = {}
    for split, logits in split_logits.items():
        examples = split_examples[split]
        name = task.name if task.name != "custom" else ("stsb" if task.is_regression else "sst2")
        values = metrics.glue_metrics(name, predictions_from_logits(task, logits), np.asarray(examples.labels))
        if task.name == "custom" and not task.is_regression and task.num_labels == 2:
            values = metrics.glue_metrics("mrpc", predictions_from_logits(task, logits), np.asarray(examples.labels))
        prefix = {"dev_matched": "", "dev_mismatched": "mismatched_", "dev": ""}.get(split, f"{split}_")
        results.update({prefix + k: float(v) for k, v in values.items()})
    main = task.metrics[0]
    return {main: results[main], **results}


def _logits(model, features, tokenizer_pad, device, settings, num_examples) -> np.ndarray:
    (logits,) = training.predict(model, features, tokenizer_pad, device, settings.eval_batch_size, settings.precision)
    if len(features) != num_examples:  # long texts: average the windows of each example
        logits = glue.average_by_example(logits, features.columns["example_index"], num_examples)
    return logits


def finetune_glue(options: GlueOptions, settings: TrainSettings | None = None) -> dict:
    """Fine-tune on a GLUE task (or your own files) and return the results written to results.json."""
    settings = settings or TrainSettings()
    settings.validate()
    device = training.setup_distributed()
    main = training.is_main_process()
    task = custom_task(options) if options.train_file else glue.resolve_task(options.task)
    if task.name == "ax":
        raise ConfigError("AX has no training data: train MNLI, then `bertfit glue ax --model RUN_DIR/model`")
    run_dir = Path(options.output_dir or f"runs/glue-{task.name}")
    say = print if (main and not options.quiet) else (lambda *a, **k: None)

    torch.manual_seed(settings.seed)
    model, tokenizer = load_pretrained(options.model, head="classification", num_labels=task.num_labels,
                                       tokenizer_path=options.tokenizer,
                                       num_heads=options.num_heads)
    pad_id = special_ids(tokenizer).pad
    max_len = min(options.max_seq_length, model.bert.config.max_position_embeddings)

    train_examples = _limit(read_split(task, options, "train"), options.max_train_samples)
    eval_examples = {s: _limit(read_split(task, options, s), options.max_eval_samples) for s in dev_splits(task)}
    for examples in (train_examples, *eval_examples.values()):
        if examples.labels is None:
            raise ConfigError(f"{examples.source}: has no labels; training and evaluation need labelled files")
        if examples.num_skipped:
            say(f"{examples.source}: skipped {examples.num_skipped} of {examples.num_read} rows "
                f"({'; '.join(examples.skip_reasons[:3])})")
    encode = lambda ex: glue.encode_cached(ex, tokenizer, max_len, cache_dir(), options.long_texts, options.stride)
    start = time.perf_counter()
    train_features, train_stats, hit = encode(train_examples)
    eval_features = {s: encode(ex)[0] for s, ex in eval_examples.items()}
    say(f"{task.name}: {len(train_examples)} training examples -> {len(train_features)} features "
        f"({train_stats.num_tokens} tokens, {train_stats.num_truncated} truncated to {max_len}); "
        f"{', '.join(f'{s} {len(ex)}' for s, ex in eval_examples.items())} for evaluation; "
        f"{'encoded features from cache' if hit else 'encoded'} in {time.perf_counter() - start:.1f}s")

    def evaluate(model) -> dict:
        logits = {s: _logits(model, f, pad_id, device, settings, len(eval_examples[s])) for s, f in eval_features.items()}
        return score(task, logits, eval_examples)

    def save_best(model, scores) -> None:
        # absolute, so `bertfit predict RUN_DIR` finds the test files from any working directory
        data_dir = str(Path(options.data_dir).resolve()) if options.data_dir else None
        extra = {"task": task.name, "max_seq_length": max_len, "long_texts": options.long_texts,
                 "stride": options.stride, "data_dir": data_dir, "metrics": scores}
        save_pretrained(model, tokenizer, run_dir / "model",
                        labels=list(task.labels) if task.labels else ["score"], extra=extra)

    fingerprint = checkpointing.fingerprint_of(
        model=str(options.model), task=task.name, max_seq_length=max_len)
    with checkpointing.RunLock(run_dir) if main else contextlib.nullcontext():
        result = training.fit(model, train_features, loss_fn(task), evaluate, save_best, settings, run_dir,
                              pad_id, device, resume=not options.overwrite, run_fingerprint=fingerprint,
                              quiet=options.quiet)
        results = {
            "task": task.name,
            "metrics": result.best_metrics,
            "model": str(options.model or "embedded"),
            "model_dir": str(run_dir / "model"),
            "settings": {**asdict(settings), "max_seq_length": max_len, "long_texts": options.long_texts},
            "eval_examples": {s: len(ex) for s, ex in eval_examples.items()} if len(eval_examples) > 1
            else len(next(iter(eval_examples.values()))),
            "train_examples": len(train_examples),
            "train_features": len(train_features),
            "truncated_train_examples": train_stats.num_truncated,
            "skipped_examples": train_examples.num_skipped + sum(ex.num_skipped for ex in eval_examples.values()),
            **result.summary(),
        }
        if main:
            training.write_json(run_dir / "results.json", results)
            reports.write_run_report(run_dir)
            say(metrics_table(task.name, result.best_metrics))
    return results


def metrics_table(name: str, values: dict) -> str:
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    width = max(len(k) for k, _ in rows) if rows else 6
    line = "-" * (width + 12)
    return "\n".join([line, f"{name} dev", line, *(f"{k:<{width}}  {v:>8}" for k, v in rows), line])


# ---- after training: predictions ----------------------------------------------------------------

def load_run_model(run_dir: str | Path, engine: str = "torch"):
    """The fine-tuned model of a run dir (or a model folder) with its bertfit settings.

    engine="onnx": the run's ONNX export (`bertfit export`), run by ONNX Runtime."""
    folder = Path(run_dir)
    if engine == "onnx":
        from ..export import find_onnx_dir

        folder = find_onnx_dir(folder)
    folder = folder / "model" if (folder / "model" / "config.json").exists() else folder
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{run_dir}: no fine-tuned model here (looked for model/config.json and config.json)")
    import json

    config = json.loads((folder / "config.json").read_text())
    extra = config.get("bertfit") or {}
    labels = [config["id2label"][str(i)] for i in range(len(config.get("id2label", {"0": "LABEL_0", "1": "LABEL_1"})))]
    if engine == "onnx":
        from ..export import load_onnx_model

        model, tokenizer = load_onnx_model(folder)
    else:
        model, tokenizer = load_pretrained(folder, head="classification", num_labels=len(labels))
    return model, tokenizer, labels, extra


def predict_glue(run_dir: str | Path, split: str = "test", data_dir: str | None = None,
                 out_dir: str | Path | None = None, task_name: str | None = None,
                 batch_size: int = 128, precision: str = "auto", engine: str = "torch") -> list[Path]:
    """Write GLUE leaderboard files (`index\tprediction`) for a run's test (or dev) split."""
    model, tokenizer, labels, extra = load_run_model(run_dir, engine)
    task = glue.resolve_task(task_name or extra.get("task") or "")
    if task.labels is not None and tuple(labels) != task.labels:  # e.g. AX with a model not trained on MNLI
        raise ConfigError(f"{run_dir}: the model predicts {', '.join(labels)}, but GLUE {task.name} "
                          f"needs {', '.join(task.labels)}")
    data_dir = data_dir or extra.get("data_dir")
    device = training.setup_distributed()
    out_dir = Path(out_dir or Path(run_dir) / "predictions")
    splits = {"ax": ["test"], "mnli": [f"{split}_matched", f"{split}_mismatched"]}.get(task.name, [split])
    written = []
    for name in splits:
        examples = glue.read_glue_split(task, data_dir, name) if data_dir else glue.load_hub_split(task, name)
        features, _ = glue.encode(examples, tokenizer, extra.get("max_seq_length", 128),
                                  extra.get("long_texts", "truncate"), extra.get("stride", 64))
        (logits,) = training.predict(model, features, special_ids(tokenizer).pad, device, batch_size, precision)
        if len(features) != len(examples):
            logits = glue.average_by_example(logits, features.columns["example_index"], len(examples))
        predictions = predictions_from_logits(task, logits)
        if name.startswith("test") or task.name == "ax":
            written.append(glue.write_submission(task, name, examples.indices, predictions, out_dir))
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / f"{task.folder or task.name}-{name}.tsv"
            values = [f"{v:.3f}" for v in predictions] if task.is_regression else [task.labels[i] for i in predictions]
            path.write_text("index\tprediction\n" + "".join(f"{i}\t{v}\n" for i, v in zip(examples.indices, values)))
            written.append(path)
    return written


def classify(run_dir: str | Path, text: str, text_pair: str | None = None,
             engine: str = "torch") -> tuple[str, float]:
    """Label and probability for one text (or pair); for regression, ("score", value)."""
    model, tokenizer, labels, extra = load_run_model(run_dir, engine)
    examples = glue.Examples(texts_a=[text], texts_b=[text_pair] if text_pair is not None else None, labels=None,
                             indices=[0], source="command line")
    features, _ = glue.encode(examples, tokenizer, extra.get("max_seq_length", 128),
                              extra.get("long_texts", "truncate"), extra.get("stride", 64))
    (logits,) = training.predict(model, features, special_ids(tokenizer).pad, torch.device("cpu"), precision="fp32")
    logits = logits.mean(0)
    if len(labels) == 1:
        return "score", float(logits[0])
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = int(probabilities.argmax())
    return labels[best], float(probabilities[best])
