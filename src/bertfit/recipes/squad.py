"""SQuAD v1.1 / v2.0 fine-tuning and evaluation: read → windows → train → decode → score (answering after
training: inference.py)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import devices, predicting, runs, squad_metrics
from ..errors import ConfigError, DataError, require_examples
from ..files import write_json
from ..pretrained import save_pretrained
from ..settings import SQUAD_DEFAULTS, TrainSettings
from ..tasks import squad
from .run import start_run


@dataclass
class SquadOptions:
    version: str = "1.1"
    train_file: str | None = None
    eval_file: str | None = None
    # Chooses the best epoch and the v2.0 null threshold saved with the model; the eval file is then only
    # scored. None: nothing is chosen, the final epoch's model is kept with the threshold 0.0.
    validation_file: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    output_dir: str | None = None
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float | None = None  # None: searched on validation_file, else 0.0; a run's own afterwards
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


def read_questions(path: str | None, version: str, split: str, skip_bad: bool,
                   say) -> tuple[list[squad.SquadQuestion], int]:
    """The questions of a file (or the hub's split), and how many were skipped as malformed."""
    if path is None:
        return squad.load_hub_squad(version, split), 0
    questions, stats = squad.read_squad(path, skip_bad=skip_bad)
    if stats.version_2 and version == "1.1" and split == "train":
        say(f"note: {path} has unanswerable questions (SQuAD 2.0); training as --version 2.0 would learn them")
    if stats.skipped:
        say(f"{path}: skipped {len(stats.skipped)} questions ({'; '.join(stats.skipped[:3])})")
    return questions, len(stats.skipped)


def span_loss(model, batch) -> torch.Tensor:
    """Mean of the start and end cross-entropies, summed over the batch's windows."""
    mask = batch["attention_mask"]
    start_logits, end_logits = model(batch["input_ids"], batch["token_type_ids"], mask)
    # pads are no candidates: without the mask the loss would depend on how a batch was padded
    start = F.cross_entropy(start_logits.float().masked_fill(~mask, -1e4), batch["start_positions"], reduction="sum")
    end = F.cross_entropy(end_logits.float().masked_fill(~mask, -1e4), batch["end_positions"], reduction="sum")
    return (start + end) / 2


def score(questions, predictions: squad.Predictions, version: str, null_threshold: float = 0.0) -> dict:
    """Official scores (first key: f1); for v2.0 those of the v2 script, its best_* sweep included.

    `null_threshold` is the one decoding used: the v2 script, given the null odds, counts a question
    as unanswered above its own threshold, so it must be the same for the scores to be those of
    `predictions.answers`. The script's best_* figures sweep the threshold over these same questions:
    on an evaluation set they say what a threshold chosen on it would score, not what the run scores.
    """
    if version == "1.1":
        values = squad_metrics.squad_v1_scores(questions, predictions.answers)
        return {"f1": values["f1"], "exact": values["exact_match"]}
    values = squad_metrics.squad_v2_scores(questions, predictions.answers, na_probs=predictions.null_odds,
                                           na_prob_thresh=null_threshold)
    return {"f1": values["f1"], "exact": values["exact"], **{k: v for k, v in values.items() if k not in ("f1", "exact")}}


VALIDATION = "validation_"  # the prefix of the validation file's scores in an evaluation
OFFICIAL_SWEEP = ("best_exact, best_exact_thresh, best_f1, best_f1_thresh: the v2 script's threshold sweep on the "
                  "evaluation file itself, reported as the script names them; not used for the saved model")


def validation_scores(questions, predictions: squad.Predictions, version: str,
                      null_threshold: float | None) -> tuple[dict, float]:
    """The validation file's scores and the null threshold to keep: searched on it for v2.0 unless one was given.

    The search runs over the real null odds with the best spans (squad_metrics.best_null_threshold),
    so its f1 is the one this threshold gives here; that f1 picks the best epoch."""
    if version == "2.0" and null_threshold is None:
        search = squad_metrics.best_null_threshold(questions, predictions.best_spans, predictions.null_odds)
        return {"f1": search["f1"], "exact": search["exact"]}, search["threshold"]
    kept = 0.0 if null_threshold is None else null_threshold
    values = score(questions, predictions, version, kept)
    return {"f1": values["f1"], "exact": values["exact"]}, kept


def selection(options: SquadOptions, version: str) -> dict:
    """How the model kept and its null threshold were chosen, as results.json says it."""
    chosen = {"model_chosen_by": f"best validation f1 ({options.validation_file})" if options.validation_file
              else "final epoch"}
    if version == "2.0":
        chosen["threshold_chosen_on"] = (
            "given (--null-threshold)" if options.null_threshold is not None
            else "validation" if options.validation_file else "none: 0.0, the decoding default")
        chosen["official_sweep"] = OFFICIAL_SWEEP
    return chosen


def write_predictions(folder: Path, predictions: squad.Predictions, version: str) -> None:
    write_json(folder / "predictions.json", predictions.answers)
    write_json(folder / "nbest_predictions.json",
               {qid: [e for e in entries if e["text"]] for qid, entries in predictions.nbest.items()})
    if version == "2.0":
        write_json(folder / "null_odds.json", predictions.null_odds)


def check_options(options: SquadOptions) -> None:
    """Refuse numbers that cannot work, before anything is read or loaded."""
    squad.check_window_settings(options.max_seq_length, options.doc_stride, options.max_query_length)
    for name in ("max_train_samples", "max_eval_samples", "n_best", "max_answer_length"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


@devices.keeps_global_rng
def finetune_squad(options: SquadOptions, settings: TrainSettings | None = None) -> dict:
    """Fine-tune on SQuAD and return the results written to results.json."""
    settings = settings or replace(SQUAD_DEFAULTS)
    version = normalize_version(options.version)
    check_options(options)
    runs.check_output_dir(options.output_dir or f"runs/squad-v{version}")
    # the questions are read before the model loads: a missing or empty file is refused at once; what is
    # said about them waits for the run, which knows whether this process prints
    notes = []
    train_questions, train_skipped = read_questions(options.train_file, version, "train", options.skip_bad_examples,
                                                    notes.append)
    eval_questions, eval_skipped = read_questions(options.eval_file, version, "validation", options.skip_bad_examples,
                                                  notes.append)
    validation_questions, validation_skipped = (
        read_questions(options.validation_file, version, "validation", options.skip_bad_examples, notes.append)
        if options.validation_file else ([], 0))
    sets = [(options.train_file, train_questions, train_skipped, "questions to train on"),
            (options.eval_file, eval_questions, eval_skipped, "questions to evaluate on")]
    if options.validation_file:
        sets.append((options.validation_file, validation_questions, validation_skipped,
                     "questions to choose the best epoch on"))
    for path, questions, skipped, what in sets:
        require_examples(len(questions), path or f"the hub's SQuAD v{version}", what, len(questions) + skipped,
                         skipped)
    train_questions = train_questions[: options.max_train_samples or None]
    eval_questions = eval_questions[: options.max_eval_samples or None]
    run = start_run(options.output_dir or f"runs/squad-v{version}", settings, options.model, head="qa",
                    tokenizer=options.tokenizer, num_heads=options.num_heads, overwrite=options.overwrite,
                    quiet=options.quiet)
    say, tokenizer = run.say, run.tokenizer
    for note in notes:
        say(note)
    threshold = options.null_threshold if options.null_threshold is not None else 0.0  # decoding, before a search
    positions = run.model.bert.config.max_length
    if options.max_seq_length > positions:
        raise ConfigError(f"--max-seq-length {options.max_seq_length} exceeds the model's {positions} positions")
    start = time.perf_counter()
    windows_args = dict(max_seq_length=options.max_seq_length, doc_stride=options.doc_stride,
                        max_query_length=options.max_query_length)
    train_features, train_windows = squad.make_windows(train_questions, tokenizer, training=True, **windows_args)
    eval_features, eval_windows = squad.make_windows(eval_questions, tokenizer, **windows_args)
    validation_features, validation_windows = (squad.make_windows(validation_questions, tokenizer, **windows_args)
                                               if validation_questions else (None, None))
    unanswerable = sum(q.is_impossible for q in train_questions)
    say(f"squad v{version}: {len(train_questions)} training questions ({unanswerable} unanswerable) -> "
        f"{len(train_features)} windows ({train_windows.answers_outside} answers fit no window); "
        + (f"{len(validation_questions)} validation questions -> {len(validation_features)} windows, to choose "
           f"the best epoch{' and the null threshold' if version == '2.0' else ''} on; " if validation_questions
           else "")
        + f"{len(eval_questions)} evaluation questions -> {len(eval_features)} windows; "
        f"{time.perf_counter() - start:.1f}s")

    latest = {}

    def predictions_on(model, features, windows, questions, null_threshold: float) -> squad.Predictions:
        start_logits, end_logits = predicting.predict(model, features, run.pad_id, run.device,
                                                      settings.eval_batch_size, settings.precision, per_token=True)
        return squad.decode(questions, windows, start_logits, end_logits, options.n_best, options.max_answer_length,
                            version == "2.0", null_threshold)

    def evaluate(model) -> dict:
        """The eval file's scores at the threshold kept; with a validation file, its scores first (they pick
        the best epoch) and the threshold searched on it."""
        chosen, kept_threshold = {}, threshold
        if validation_questions:
            on_validation = predictions_on(model, validation_features, validation_windows, validation_questions,
                                           threshold)
            values, kept_threshold = validation_scores(validation_questions, on_validation, version,
                                                       options.null_threshold)
            chosen = {VALIDATION + k: v for k, v in values.items()}
        latest["predictions"] = predictions_on(model, eval_features, eval_windows, eval_questions, kept_threshold)
        scores = {**chosen, **score(eval_questions, latest["predictions"], version, kept_threshold)}
        return {**scores, "null_threshold": kept_threshold} if version == "2.0" else scores

    def save_best(model, scores) -> None:
        reported, on_validation = split_validation(scores)
        extra = {"task": f"squad-v{version}", "version": version, "max_seq_length": options.max_seq_length,
                 "doc_stride": options.doc_stride, "max_query_length": options.max_query_length,
                 "n_best": options.n_best, "max_answer_length": options.max_answer_length,
                 "null_threshold": scores.get("null_threshold", threshold), "metrics": reported,
                 **({"validation_metrics": on_validation} if on_validation else {})}
        save_pretrained(model, tokenizer, run.model_dir, extra=extra)
        write_predictions(run.dir, latest["predictions"], version)

    keep = "best" if validation_questions else "last"
    with run.lock():
        result = run.fit(train_features, span_loss, evaluate, save_best, keep=keep, task=f"squad-v{version}",
                         windows=windows_args)
        reported, on_validation = split_validation(result.best_metrics)
        settings_of_task = {**windows_args, "n_best": options.n_best, "max_answer_length": options.max_answer_length,
                            "null_threshold": reported.get("null_threshold", threshold)}
        counts = {
            "eval_examples": len(eval_questions),
            "train_examples": len(train_questions),
            **({"validation_examples": len(validation_questions), "validation_windows": len(validation_features)}
               if validation_questions else {}),
            "train_windows": len(train_features),
            "eval_windows": len(eval_features),
            "train_answers_outside_windows": train_windows.answers_outside,
            "skipped_examples": train_skipped + eval_skipped + validation_skipped,
        }
        chosen = {**selection(options, version), **({"validation_metrics": on_validation} if on_validation else {})}
        return run.finish(f"squad-v{version}", result, settings_of_task, counts, title=f"squad v{version}",
                          metrics=reported, chosen=chosen)


def split_validation(scores: dict) -> tuple[dict, dict]:
    """(the eval file's scores, the validation file's) of an evaluation, the prefix dropped from the second."""
    return ({k: v for k, v in scores.items() if not k.startswith(VALIDATION)},
            {k.removeprefix(VALIDATION): v for k, v in scores.items() if k.startswith(VALIDATION)})


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
