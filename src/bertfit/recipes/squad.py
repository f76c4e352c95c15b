"""SQuAD v1.1 / v2.0 fine-tuning, evaluation and answering: read → windows → train → decode → score."""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import checkpointing, reports, squad_metrics, training
from ..checkpoints import load_pretrained, save_pretrained
from ..errors import ConfigError, DataError
from ..tasks import squad
from ..tokenization import special_ids
from ..training import TrainSettings
from .glue import metrics_table


# Measured on squad-mini v2.0 (README): at lr 1e-4 for 3 epochs the embedded model learns to find
# answers (HasAns F1 49) where 5e-5 for 2 epochs mostly learns to say "no answer" (HasAns F1 7-13).
SQUAD_DEFAULTS = TrainSettings(epochs=3, lr=1e-4, batch_size=16)


@dataclass
class SquadOptions:
    version: str = "1.1"
    train_file: str | None = None
    eval_file: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    output_dir: str | None = None
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float | None = None  # None: 0.0 while training; a run's best threshold afterwards
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    skip_bad_examples: bool = False
    overwrite: bool = False
    num_heads: int | None = None  # a tutorial .pth holds no config
    quiet: bool = False


def normalize_version(version: str) -> str:
    version = str(version).lstrip("v")
    if version not in ("1.1", "2.0", "2"):
        raise ConfigError(f"--version must be 1.1 or 2.0, not {version!r}")
    return "2.0" if version.startswith("2") else "1.1"


def read_questions(path: str | None, version: str, split: str, skip_bad: bool, say) -> list[squad.SquadQuestion]:
    if path is None:
        return squad.load_hub_squad(version, split)
    questions, stats = squad.read_squad(path, skip_bad=skip_bad)
    if stats.version_2 and version == "1.1" and split == "train":
        say(f"note: {path} has unanswerable questions (SQuAD 2.0); training as --version 2.0 would learn them")
    if stats.skipped:
        say(f"{path}: skipped {len(stats.skipped)} questions ({'; '.join(stats.skipped[:3])})")
    return questions


def span_loss(model, batch) -> torch.Tensor:
    """Mean of the start and end cross-entropies, summed over the batch's windows."""
    mask = batch["attention_mask"]
    start_logits, end_logits = model(batch["input_ids"], batch["token_type_ids"], mask)
    # pads are no candidates: without the mask the loss would depend on how a batch was padded
    start = F.cross_entropy(start_logits.float().masked_fill(~mask, -1e4), batch["start_positions"], reduction="sum")
    end = F.cross_entropy(end_logits.float().masked_fill(~mask, -1e4), batch["end_positions"], reduction="sum")
    return (start + end) / 2


def score(questions, predictions: squad.Predictions, version: str) -> dict:
    """Official scores; for v2.0 also the threshold search over the real null odds (first key: f1)."""
    if version == "1.1":
        values = squad_metrics.squad_v1_scores(questions, predictions.answers)
        return {"f1": values["f1"], "exact": values["exact_match"]}
    values = squad_metrics.squad_v2_scores(questions, predictions.answers, na_probs=predictions.null_odds)
    search = squad_metrics.best_null_threshold(questions, predictions.best_spans, predictions.null_odds)
    return {"f1": values["f1"], "exact": values["exact"], **{k: v for k, v in values.items() if k not in ("f1", "exact")},
            "searched_f1": search["f1"], "searched_exact": search["exact"], "null_threshold": search["threshold"]}


def write_predictions(folder: Path, predictions: squad.Predictions, version: str) -> None:
    training.write_json(folder / "predictions.json", predictions.answers)
    training.write_json(folder / "nbest_predictions.json",
                        {qid: [e for e in entries if e["text"]] for qid, entries in predictions.nbest.items()})
    if version == "2.0":
        training.write_json(folder / "null_odds.json", predictions.null_odds)


def finetune_squad(options: SquadOptions, settings: TrainSettings | None = None) -> dict:
    """Fine-tune on SQuAD and return the results written to results.json."""
    settings = settings or replace(SQUAD_DEFAULTS)
    settings.validate()
    version = normalize_version(options.version)
    squad.check_window_settings(options.max_seq_length, options.doc_stride, options.max_query_length)
    device = training.setup_distributed()
    main = training.is_main_process()
    say = print if (main and not options.quiet) else (lambda *a, **k: None)
    run_dir = Path(options.output_dir or f"runs/squad-v{version}")
    threshold = options.null_threshold if options.null_threshold is not None else 0.0

    torch.manual_seed(settings.seed)
    model, tokenizer = load_pretrained(options.model, head="qa", tokenizer_path=options.tokenizer,
                                       num_heads=options.num_heads)
    pad_id = special_ids(tokenizer).pad
    if options.max_seq_length > model.bert.config.max_position_embeddings:
        raise ConfigError(f"--max-seq-length {options.max_seq_length} exceeds the model's "
                          f"{model.bert.config.max_position_embeddings} positions")

    train_questions = read_questions(options.train_file, version, "train", options.skip_bad_examples, say)
    eval_questions = read_questions(options.eval_file, version, "validation", options.skip_bad_examples, say)
    train_questions = train_questions[: options.max_train_samples or None]
    eval_questions = eval_questions[: options.max_eval_samples or None]
    start = time.perf_counter()
    windows_args = dict(max_seq_length=options.max_seq_length, doc_stride=options.doc_stride,
                        max_query_length=options.max_query_length)
    train_features, train_windows = squad.make_windows(train_questions, tokenizer, training=True, **windows_args)
    eval_features, eval_windows = squad.make_windows(eval_questions, tokenizer, **windows_args)
    unanswerable = sum(q.is_impossible for q in train_questions)
    say(f"squad v{version}: {len(train_questions)} training questions ({unanswerable} unanswerable) -> "
        f"{len(train_features)} windows ({train_windows.answers_outside} answers fit no window); "
        f"{len(eval_questions)} evaluation questions -> {len(eval_features)} windows; "
        f"{time.perf_counter() - start:.1f}s")

    latest = {}

    def evaluate(model) -> dict:
        start_logits, end_logits = training.predict(model, eval_features, pad_id, device, settings.eval_batch_size,
                                                    settings.precision, per_token=True)
        latest["predictions"] = squad.decode(eval_questions, eval_windows, start_logits, end_logits, options.n_best,
                                             options.max_answer_length, version == "2.0", threshold)
        return score(eval_questions, latest["predictions"], version)

    def save_best(model, scores) -> None:
        extra = {"task": f"squad-v{version}", "version": version, "max_seq_length": options.max_seq_length,
                 "doc_stride": options.doc_stride, "max_query_length": options.max_query_length,
                 "n_best": options.n_best, "max_answer_length": options.max_answer_length,
                 "null_threshold": scores.get("null_threshold", 0.0) if options.null_threshold is None
                 else options.null_threshold, "metrics": scores}
        save_pretrained(model, tokenizer, run_dir / "model", extra=extra)
        write_predictions(run_dir, latest["predictions"], version)

    fingerprint = checkpointing.fingerprint_of(
        model=str(options.model), task=f"squad-v{version}", windows=windows_args)
    with checkpointing.RunLock(run_dir) if main else contextlib.nullcontext():
        result = training.fit(model, train_features, span_loss, evaluate, save_best, settings, run_dir, pad_id,
                              device, resume=not options.overwrite, run_fingerprint=fingerprint, quiet=options.quiet)
        results = {
            "task": f"squad-v{version}",
            "metrics": result.best_metrics,
            "model": str(options.model or "embedded"),
            "model_dir": str(run_dir / "model"),
            "settings": {**asdict(settings), **windows_args, "n_best": options.n_best,
                         "max_answer_length": options.max_answer_length, "null_threshold": threshold},
            "eval_examples": len(eval_questions),
            "train_examples": len(train_questions),
            "train_windows": len(train_features),
            "eval_windows": len(eval_features),
            "train_answers_outside_windows": train_windows.answers_outside,
            **result.summary(),
        }
        if main:
            training.write_json(run_dir / "results.json", results)
            reports.write_run_report(run_dir)
            say(metrics_table(f"squad v{version}", result.best_metrics))
    return results


# ---- after training -----------------------------------------------------------------------------

def evaluate_squad_file(data_file: str, predictions_file: str, na_prob_file: str | None = None) -> dict:
    """Score a predictions file (id -> answer) against an official SQuAD file, as the official scripts do."""
    questions, stats = squad.read_squad(data_file)
    predictions = _read_json(predictions_file)
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise DataError(f"{predictions_file}: must be a JSON object mapping question ids to answer strings")
    if stats.version_2:
        na_probs = _read_json(na_prob_file) if na_prob_file else None
        return squad_metrics.squad_v2_scores(questions, predictions, na_probs=na_probs)
    return squad_metrics.squad_v1_scores(questions, predictions)


def _read_json(path: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def answer(run_dir: str | Path, question: str, context: str, null_threshold: float | None = None,
           device: torch.device | None = None, engine: str = "torch") -> dict:
    """Answer one question from a context with a fine-tuned run; long contexts use the same windows.

    engine="onnx": the run's ONNX export (`bertfit export`), run by ONNX Runtime."""
    folder = Path(run_dir)
    if engine == "onnx":
        from ..export import find_onnx_dir, load_onnx_model

        folder = find_onnx_dir(folder)
        model, tokenizer = load_onnx_model(folder)
    folder = folder / "model" if (folder / "model" / "config.json").exists() else folder
    extra = json.loads((folder / "config.json").read_text()).get("bertfit") or {}
    if engine != "onnx":
        model, tokenizer = load_pretrained(folder, head="qa")
    if not context.strip():
        raise DataError("the context is empty")
    item = squad.SquadQuestion(id="question", title="", question=question, context=context, answers=[],
                               is_impossible=False)
    features, windows = squad.make_windows([item], tokenizer, extra.get("max_seq_length", 384),
                                           extra.get("doc_stride", 128), extra.get("max_query_length", 64))
    start_logits, end_logits = training.predict(model, features, special_ids(tokenizer).pad,
                                                device or torch.device("cpu"), precision="fp32", per_token=True)
    threshold = null_threshold if null_threshold is not None else extra.get("null_threshold", 0.0)
    version_2 = extra.get("version", "1.1") == "2.0"
    predictions = squad.decode([item], windows, start_logits, end_logits, extra.get("n_best", 20),
                               extra.get("max_answer_length", 30), version_2, threshold)
    text = predictions.answers["question"]
    best = next((e for e in predictions.nbest["question"] if e["text"] == text and text), None)
    return {"answer": text, "score": best["score"] if best else None,
            "probability": best["probability"] if best else None,
            "char_start": best["char_start"] if best else None, "char_end": best["char_end"] if best else None,
            "null_odds": predictions.null_odds["question"], "windows": len(features)}
