"""Token classification (named entities, part of speech): read → check the tag scheme → encode words as
windows → train → one prediction per word → score as seqeval does (labelling texts after training:
inference.py and tagging_inference.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch.nn.functional as F

from .. import devices, predicting, runs, tag_metrics
from ..errors import ConfigError, require_examples
from ..files import open_atomic
from ..pretrained import save_pretrained
from ..settings import NER_DEFAULTS, TrainSettings
from ..tasks import tag_schemes, tagged_files, tagging
from .run import start_run


@dataclass
class NerOptions:
    train_file: str | None = None
    eval_file: str | None = None
    # Chooses the best epoch; the eval file is then only scored. None: the final epoch's model is kept.
    validation_file: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    output_dir: str | None = None
    max_seq_length: int = 128
    stride: int = 32  # sub-tokens consecutive windows of a long sentence share
    label_all_subtokens: bool = False  # False: the label on a word's first sub-token alone (run_ner's default)
    tag_scheme: str = "auto"  # bio, iob1, bioes, none (part of speech); auto: read off the training file
    bad_tags: str = "refuse"  # an entity run that does not parse in the scheme: refuse, or repair
    pos_column: str = "upos"  # CoNLL-U files: upos or xpos
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    skip_bad_examples: bool = False
    overwrite: bool = False
    num_heads: int | None = None
    quiet: bool = False


def check_options(options: NerOptions) -> None:
    """Refuse what cannot work, before anything is read or loaded."""
    if not options.train_file or not options.eval_file:
        raise ConfigError("bertfit ner needs --train-file and --eval-file (CoNLL, CoNLL-U or JSONL)")
    tagging.check_window(options.max_seq_length, options.stride)
    tag_schemes.check_scheme(options.tag_scheme, options.bad_tags)
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def read(path: str, options: NerOptions, what: str) -> tagged_files.TaggedSentences:
    sentences = tagged_files.read_tagged_file(path, options.pos_column, options.skip_bad_examples)
    require_examples(len(sentences), path, what, sentences.num_read, sentences.num_skipped)
    return sentences


def label_set(tags: list[list[str]], scheme: str) -> list[str]:
    """The training file's tags, O first for entities, then by type and prefix; sorted for part of speech."""
    seen = {t for sentence in tags for t in sentence}
    if scheme == "none":
        return sorted(seen)
    order = "BIES"
    return (["O"] if "O" in seen else []) + sorted(seen - {"O"}, key=lambda t: (t[2:], order.index(t[0])))


def token_loss(model, batch):
    """The mean cross-entropy over the batch's labelled positions, times its sequences (the loop divides by
    them): run_ner's loss when a step is one batch."""
    logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).float()
    labels = batch["label_ids"][:, : logits.shape[1]].long()
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                            ignore_index=tagging.IGNORE, reduction="sum")
    return total / (labels != tagging.IGNORE).sum().clamp(min=1) * len(labels)


def predict_tags(model, encoded: tagging.Encoded, sentences, labels: list[str], pad_id: int, device,
                 settings: TrainSettings) -> list[list[str]]:
    (logits,) = predicting.predict(model, encoded.features, pad_id, device, settings.eval_batch_size,
                                   settings.precision, per_token=True)
    per_word = tagging.word_logits(encoded.features, logits, [len(w) for w in sentences.words])
    return [[labels[i] for i in rows.argmax(-1)] for rows in per_word]


def scores(gold: list[list[str]], predicted: list[list[str]], scheme: str) -> dict:
    """Entity F1 (seqeval's default mode) first, then its precision and recall, the strict mode's in the
    scheme, and token accuracy; part of speech: accuracy alone."""
    accuracy = tag_metrics.token_accuracy(gold, predicted)
    if scheme == "none":
        return {"accuracy": accuracy}
    default = tag_metrics.entity_scores(gold, predicted)
    strict = tag_metrics.entity_scores(gold, predicted, strict=tag_schemes.STRICT_NAMES[scheme])
    return {"f1": default["f1"], "precision": default["precision"], "recall": default["recall"],
            "strict_f1": strict["f1"], "strict_precision": strict["precision"], "strict_recall": strict["recall"],
            "accuracy": accuracy}


def by_type(gold, predicted, scheme: str) -> dict:
    if scheme == "none":
        return {}
    return {name: {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}
            for name, values in tag_metrics.entity_scores(gold, predicted)["by_type"].items()}


def write_predictions(path: Path, sentences, predicted: list[list[str]]) -> None:
    """predictions.conll: each word, its tag in the file, the tag predicted; a blank line after each sentence."""
    with open_atomic(path) as f:
        for words, gold, tags in zip(sentences.words, sentences.tags, predicted):
            f.write("".join(f"{w}\t{g}\t{p}\n" for w, g, p in zip(words, gold, tags)) + "\n")


@devices.keeps_global_rng
def finetune_ner(options: NerOptions, settings: TrainSettings | None = None) -> dict:
    """Fine-tune a tagger and return the results written to results.json."""
    settings = settings or replace(NER_DEFAULTS)
    check_options(options)
    output_dir = options.output_dir or "runs/ner"
    runs.check_output_dir(output_dir)
    # the files are read and checked before the model loads: a bad line is named at once
    train = read(options.train_file, options, "sentences to train on").take(options.max_train_samples)
    evaluation = read(options.eval_file, options, "sentences to evaluate on").take(options.max_eval_samples)
    validation = read(options.validation_file, options, "sentences to choose the best epoch on") \
        if options.validation_file else None
    scheme = tag_schemes.detect(train.tags) if options.tag_scheme == "auto" else options.tag_scheme
    notes = []
    for sentences in (train, evaluation, *([validation] if validation else [])):
        kept_scheme, rewritten = tag_schemes.normalize(sentences, scheme, options.bad_tags)
        if rewritten:
            notes.append(f"{sentences.source}: {rewritten} tags rewritten to parse in {kept_scheme} "
                         f"({'read as iob1' if scheme == 'iob1' else '--bad-tags repair'})")
        if sentences.num_skipped:
            notes.append(f"{sentences.source}: skipped {sentences.num_skipped} of {sentences.num_read} sentences "
                         f"({'; '.join(sentences.skip_reasons[:3])})")
    scheme = kept_scheme
    labels = label_set(train.tags, scheme)
    counts = tag_metrics.tag_counts(train.tags)
    unseen = sorted({t for s in (evaluation, validation) if s for sentence in s.tags for t in sentence} - set(labels))
    run = start_run(output_dir, settings, options.model, head="tagging", num_labels=len(labels),
                    tokenizer=options.tokenizer, num_heads=options.num_heads, overwrite=options.overwrite,
                    quiet=options.quiet)
    say, tokenizer = run.say, run.tokenizer
    for note in notes:
        say(note)
    say(f"labels ({len(labels)}, scheme {scheme}) from {train.source}: "
        + ", ".join(f"{label} {counts[label]}" for label in labels))
    if unseen:
        say(f"note: tags of the evaluation files absent from training, never predicted: {', '.join(unseen[:10])}")
    positions = run.model.bert.config.max_position_embeddings
    if options.max_seq_length > positions:
        raise ConfigError(f"--max-seq-length {options.max_seq_length} exceeds the model's {positions} positions")
    index = {label: i for i, label in enumerate(labels)}
    start = time.perf_counter()
    window = dict(max_seq_length=options.max_seq_length, stride=options.stride)
    train_encoded = tagging.encode(train.words, tokenizer, **window,
                                   label_ids=[[index[t] for t in tags] for tags in train.tags],
                                   label_all_subtokens=options.label_all_subtokens,
                                   continuation=tagging.continuation_labels(labels))
    eval_encoded = tagging.encode(evaluation.words, tokenizer, **window)
    validation_encoded = tagging.encode(validation.words, tokenizer, **window) if validation else None
    say(f"ner: {len(train)} training sentences ({train_encoded.num_words} words) -> {len(train_encoded.features)} "
        f"windows ({train_encoded.num_windowed} sentences longer than {options.max_seq_length} tokens cut into "
        f"overlapping windows, {train_encoded.num_unknown_words} words read as [UNK]); "
        + (f"{len(validation)} validation sentences to choose the best epoch on; " if validation else "")
        + f"{len(evaluation)} evaluation sentences -> {len(eval_encoded.features)} windows; "
        f"{time.perf_counter() - start:.1f}s")

    latest = {}

    def evaluate(model) -> dict:
        chosen = {}
        if validation:
            predicted = predict_tags(model, validation_encoded, validation, labels, run.pad_id, run.device, settings)
            chosen = {VALIDATION + k: v for k, v in scores(validation.tags, predicted, scheme).items()}
        latest["predicted"] = predict_tags(model, eval_encoded, evaluation, labels, run.pad_id, run.device, settings)
        return {**chosen, **scores(evaluation.tags, latest["predicted"], scheme)}

    def save_best(model, values) -> None:
        reported = {k: v for k, v in values.items() if not k.startswith(VALIDATION)}
        extra = {"task": "pos" if scheme == "none" else "ner", "scheme": scheme, "pos_column": options.pos_column,
                 **window,
                 "label_all_subtokens": options.label_all_subtokens, "metrics": reported}
        save_pretrained(model, tokenizer, run.model_dir, labels=labels, extra=extra)
        write_predictions(run.dir / "predictions.conll", evaluation, latest["predicted"])
        latest["kept"] = latest["predicted"]

    with run.lock():
        result = run.fit(train_encoded.features, token_loss, evaluate, save_best,
                         keep="best" if validation else "last", task="ner", scheme=scheme, labels=labels,
                         windows=window, label_all_subtokens=options.label_all_subtokens)
        reported = {k: v for k, v in result.best_metrics.items() if not k.startswith(VALIDATION)}
        on_validation = {k.removeprefix(VALIDATION): v for k, v in result.best_metrics.items()
                         if k.startswith(VALIDATION)}
        data_counts = {
            "eval_examples": len(evaluation),
            "train_examples": len(train),
            **({"validation_examples": len(validation)} if validation else {}),
            "train_windows": len(train_encoded.features),
            "train_words": train_encoded.num_words,
            "eval_words": eval_encoded.num_words,
            "windowed_sentences": train_encoded.num_windowed + eval_encoded.num_windowed,
            "unknown_words": train_encoded.num_unknown_words + eval_encoded.num_unknown_words,
            "skipped_examples": train.num_skipped + evaluation.num_skipped + (validation.num_skipped if validation else 0),
            "label_counts": {label: counts[label] for label in labels},
        }
        chosen = {"model_chosen_by": f"best validation {next(iter(reported))} ({options.validation_file})"
                  if validation else "final epoch",
                  **({"validation_metrics": on_validation} if on_validation else {}),
                  **({"by_type": by_type(evaluation.tags, latest.get("kept", []), scheme)} if latest.get("kept")
                     else {})}
        settings_of_task = {**window, "scheme": scheme, "label_all_subtokens": options.label_all_subtokens,
                            "labels": labels}
        return run.finish("pos" if scheme == "none" else "ner", result, settings_of_task, data_counts,
                          title="ner" if scheme != "none" else "pos", metrics=reported, chosen=chosen)


VALIDATION = "validation_"


# ---- after training -----------------------------------------------------------------------------

def predict_file(run, path: str, out_dir: str | Path | None = None, batch_size: int = 128) -> tuple[Path, dict]:
    """Tag the words of a CoNLL, CoNLL-U or JSONL file with a finished run (inference.Run) and write
    OUT/predictions-NAME.conll (word, its tag in the file or _, the predicted tag); when every word has a tag,
    also the scores, as `bertfit ner` scores its evaluation file. Returns (the file written, the scores)."""
    sentences = tagged_files.read_tagged_file(path, run.extra.get("pos_column", "upos"), words_only=True)
    require_examples(len(sentences), path, "sentences to tag", sentences.num_read, sentences.num_skipped)
    encoded = tagging.encode(sentences.words, run.tokenizer, run.max_seq_length, run.setting("stride"))
    (logits,) = predicting.predict(run.model, encoded.features, run.pad_id, run.device, batch_size, run.precision,
                                   per_token=True)
    per_word = tagging.word_logits(encoded.features, logits, [len(w) for w in sentences.words])
    predicted = [[run.labels[i] for i in rows.argmax(-1)] for rows in per_word]
    values = {}
    if not any(t == tagged_files.UNTAGGED for tags in sentences.tags for t in tags):
        scheme = run.setting("scheme") or "none"
        tag_schemes.normalize(sentences, scheme)
        values = scores(sentences.tags, predicted, scheme)
    out = Path(out_dir or Path(run.source or run.folder) / "predictions")
    out.mkdir(parents=True, exist_ok=True)
    written = out / f"predictions-{Path(path).stem}.conll"
    write_predictions(written, sentences, predicted)
    return written, values
