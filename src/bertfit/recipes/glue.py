"""GLUE fine-tuning and evaluation, end to end: read → encode → train → score → save (predictions after
training: inference.py)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from .. import devices, glue_metrics, predicting, runs
from ..errors import ConfigError, require_examples
from ..pretrained import save_pretrained
from ..files import features_cache_dir as cache_dir
from ..settings import TrainSettings, epochs_text, glue_defaults, glue_settings
from ..tasks import glue, glue_encoding, glue_hub, glue_tsv, table_files
from ..tasks.glue import predictions_from_logits
from .run import start_run


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
    # The labels a row of the own files may have, in id order; a row with another is bad. None: every distinct
    # label of the training file is a class (a typo too: `label_counts` and `rare_label_warning` tell).
    labels: tuple[str, ...] | None = None
    long_texts: str = "truncate"
    stride: int = 64
    skip_bad_examples: bool = False
    # A seeded share of the training examples held out to choose the best epoch on; None: the final
    # epoch's model is kept, so that no dev score is chosen on the dev set itself.
    validation_fraction: float | None = None
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
        examples = table_files.read_table_file(path, options.text_columns, options.label_column, labels=task.labels,
                                               skip_bad=options.skip_bad_examples)
        if task.is_regression and examples.label_names is not None:  # whole-number scores read as classes
            examples = replace(examples, labels=[float(examples.label_names[i]) for i in examples.labels],
                               label_names=None)
        return examples
    if options.data_dir:
        return glue_tsv.read_glue_split(task, options.data_dir, split, skip_bad=options.skip_bad_examples)
    return glue_hub.load_hub_split(task, split)


def custom_task(options: GlueOptions) -> glue.GlueTask:
    """A task described by the user's files: label set and regression read off the training file."""
    if not options.text_columns or not options.label_column:
        raise ConfigError("with --train-file, name the text columns (--text-columns a[,b]) and --label-column")
    probe = table_files.read_table_file(options.train_file, options.text_columns, options.label_column,
                                        labels=options.labels, skip_bad=options.skip_bad_examples)
    # the label set and regression are read off the examples: none is the empty set finetune_glue refuses
    require_examples(len(probe), probe.source, "examples to train on", probe.num_read, probe.num_skipped)
    labels = tuple(options.labels) if options.labels else probe.label_names
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


def _take(examples: glue.Examples, rows) -> glue.Examples:
    pick = lambda values: [values[i] for i in rows] if values is not None else None
    return replace(examples, texts_a=pick(examples.texts_a), texts_b=pick(examples.texts_b),
                   labels=pick(examples.labels), indices=pick(examples.indices))


def hold_out(examples: glue.Examples, fraction: float, seed: int,
             stratify: bool = True) -> tuple[glue.Examples, glue.Examples]:
    """(the rest, the held-out part): a seeded `fraction` of the examples, in file order, the same share of
    each label when `stratify` (classification); the rest keeps every other example, in file order too."""
    labels = np.asarray(examples.labels)
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)] if stratify else [np.arange(len(labels))]
    rng = np.random.default_rng(seed)
    held = np.sort(np.concatenate([rng.permutation(group)[: round(fraction * len(group))] for group in groups]))
    if len(held) == 0 or len(held) == len(labels):
        raise ConfigError(f"--validation-fraction {fraction:g} of {len(labels)} training examples holds out "
                          f"{len(held)}: nothing to {'choose on' if len(held) == 0 else 'train on'}")
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return _take(examples, rest.tolist()), _take(examples, held.tolist())


def loss_fn(task: glue.GlueTask):
    """Summed loss over the batch (the loop divides by the global batch size)."""
    if task.is_regression:
        return lambda model, batch: F.mse_loss(model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
                                               .squeeze(-1).float(), batch["label_ids"].float(), reduction="sum")
    return lambda model, batch: F.cross_entropy(model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
                                                .float(), batch["label_ids"], reduction="sum")


def score(task: glue.GlueTask, split_logits: dict[str, np.ndarray], split_examples: dict[str, glue.Examples]) -> dict:
    """The task's metrics on each dev split; the main metric comes first (it picks the best model)."""
    results = {}
    for split, logits in split_logits.items():
        examples = split_examples[split]
        name = task.name if task.name != "custom" else ("stsb" if task.is_regression else "sst2")
        values = glue_metrics.glue_metrics(name, predictions_from_logits(task, logits), np.asarray(examples.labels))
        if task.name == "custom" and not task.is_regression and task.num_labels == 2:
            values = glue_metrics.glue_metrics("mrpc", predictions_from_logits(task, logits), np.asarray(examples.labels))
        prefix = {"dev_matched": "", "dev_mismatched": "mismatched_", "dev": ""}.get(split, f"{split}_")
        results.update({prefix + k: float(v) for k, v in values.items()})
    main = task.metrics[0]
    return {main: results[main], **results}


def _logits(model, features, tokenizer_pad, device, settings, num_examples) -> np.ndarray:
    (logits,) = predicting.predict(model, features, tokenizer_pad, device, settings.eval_batch_size, settings.precision)
    if len(features) != num_examples:  # long texts: average the windows of each example
        logits = glue_encoding.average_by_example(logits, features.columns["example_index"], num_examples)
    return logits


def check_options(options: GlueOptions) -> None:
    """Refuse options that cannot work, before anything is loaded."""
    for name in ("max_train_samples", "max_eval_samples"):
        if getattr(options, name) is not None and getattr(options, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(options, name)}")
    if options.max_seq_length < 8:
        raise ConfigError(f"--max-seq-length must be at least 8 tokens, not {options.max_seq_length}")
    if options.long_texts not in ("truncate", "window"):
        raise ConfigError(f"--long-texts must be truncate or window, not {options.long_texts!r}")
    if options.stride < 0:
        raise ConfigError(f"--stride must be zero or positive, not {options.stride}")
    if options.labels is not None:
        if not options.train_file:
            raise ConfigError("--labels goes with --train-file: an official GLUE task's labels are fixed")
        if len(options.labels) < 2 or len(set(options.labels)) != len(options.labels):
            raise ConfigError(f"--labels needs two or more different labels, not {', '.join(options.labels) or 'none'}")
    if options.validation_fraction is not None and not 0 < options.validation_fraction < 1:
        raise ConfigError(f"--validation-fraction must be between 0 and 1, not {options.validation_fraction:g}")


@devices.keeps_global_rng
def finetune_glue(options: GlueOptions, settings: TrainSettings | dict | None = None) -> dict:
    """Fine-tune on a GLUE task (or your own files) and return the results written to results.json.

    `settings`: all of them as TrainSettings; or a dict of those chosen (None: none), the others from
    `settings.GLUE_DEFAULTS` for the task and the size of its training set.
    """
    chosen = None if isinstance(settings, TrainSettings) else dict(settings or {})
    (TrainSettings(**chosen) if chosen is not None else settings).validate()
    check_options(options)
    task = custom_task(options) if options.train_file else glue.resolve_task(options.task)
    if task.name == "ax":
        raise ConfigError("AX has no training data: train MNLI, then `bertfit glue ax --model RUN_DIR/model`")
    runs.check_output_dir(options.output_dir or f"runs/glue-{task.name}")
    # the data is read before the model loads: a missing, empty or unlabelled file is refused at once
    train_examples = _limit(read_split(task, options, "train"), options.max_train_samples)
    eval_examples = {s: _limit(read_split(task, options, s), options.max_eval_samples) for s in dev_splits(task)}
    for examples, what in ((train_examples, "examples to train on"),
                           *((ex, "examples to evaluate on") for ex in eval_examples.values())):
        require_examples(len(examples), examples.source, what, examples.num_read, examples.num_skipped)
        if examples.labels is None:
            raise ConfigError(f"{examples.source}: has no labels; training and evaluation need labelled files")
    # the seed and all but the table's settings are known now; the table's row waits for the training set's size
    given = TrainSettings(**chosen) if chosen is not None else settings
    labels_said = None if task.is_regression else (label_counts(task, train_examples),
                                                   rare_label_warning(task, train_examples, bool(options.labels)))
    # the defaults table goes by the training set before holding out: the settings of the same command without it
    table_size = len(train_examples)
    held_examples = None
    if options.validation_fraction:  # before the model loads: a fraction that holds out none (or all) is refused
        train_examples, held_examples = hold_out(train_examples, options.validation_fraction, given.seed,
                                                 stratify=not task.is_regression)
    run = start_run(options.output_dir or f"runs/glue-{task.name}", given, options.model,
                    head="classification", num_labels=task.num_labels, tokenizer=options.tokenizer,
                    num_heads=options.num_heads, overwrite=options.overwrite, quiet=options.quiet)
    say, tokenizer = run.say, run.tokenizer
    max_len = min(options.max_seq_length, run.model.bert.config.max_length)
    for examples in (train_examples, *eval_examples.values()):
        if examples.num_skipped:
            say(f"{examples.source}: skipped {examples.num_skipped} of {examples.num_read} rows "
                f"({'; '.join(examples.skip_reasons[:3])})")
    if labels_said:
        counts, warning = labels_said
        say(f"{train_examples.source}: labels {counts}")
        if warning and run.main:
            print(f"warning: {warning}", file=sys.stderr)
    if chosen is not None:
        settings = glue_settings(task.name, table_size, chosen)
        settings.validate()
        run.settings = settings
    encode = lambda ex: glue_encoding.encode_cached(ex, tokenizer, max_len, cache_dir(), options.long_texts,
                                                    options.stride)
    start = time.perf_counter()
    train_features, train_stats, hit = encode(train_examples)
    eval_features = {s: encode(ex)[0] for s, ex in eval_examples.items()}
    held_features = encode(held_examples)[0] if held_examples is not None else None
    say(f"{task.name}: {len(train_examples)} training examples -> {len(train_features)} features "
        f"({train_stats.num_tokens} tokens, {train_stats.num_truncated} truncated to {max_len}); "
        + (f"{len(held_examples)} held out of train (fraction {options.validation_fraction:g}, seed "
           f"{settings.seed}) to choose the best epoch on; " if held_examples is not None else "")
        + f"{', '.join(f'{s} {len(ex)}' for s, ex in eval_examples.items())} for evaluation; "
        f"{'encoded features from cache' if hit else 'encoded'} in {time.perf_counter() - start:.1f}s")
    if chosen is not None:
        from_table = [k.replace("_size", "") for k in glue_defaults(task.name, table_size) if k not in chosen]
        say(f"training {epochs_text(settings.epochs)} at lr {settings.lr:g}, batch {settings.batch_size}"
            + (f" ({', '.join(from_table)}: the defaults for {task.name} with {table_size:,} training "
               f"examples; `bertfit glue --help` shows them all)" if from_table else ""))

    latest, best = {}, {}  # predictions per class on the first dev split: of the last evaluation, of the best

    def evaluate(model) -> dict:
        """The dev scores; with a held-out part, its scores first (HELD_OUT + name), so that they pick the best."""
        logits = {s: _logits(model, f, run.pad_id, run.device, settings, len(eval_examples[s]))
                  for s, f in eval_features.items()}
        if not task.is_regression:
            latest["counts"] = np.bincount(next(iter(logits.values())).argmax(-1), minlength=task.num_labels)
        scores = score(task, logits, eval_examples)
        if held_features is None:
            return scores
        held = score(task, {"dev": _logits(model, held_features, run.pad_id, run.device, settings,
                                           len(held_examples))}, {"dev": held_examples})
        return {**{HELD_OUT + k: v for k, v in held.items()}, **scores}

    def save_best(model, scores) -> None:
        best.update(latest)
        # absolute, so `bertfit predict RUN_DIR` finds the test files from any working directory
        data_dir = str(Path(options.data_dir).resolve()) if options.data_dir else None
        dev, held = split_held_out(scores)
        extra = {"task": task.name, "max_seq_length": max_len, "long_texts": options.long_texts,
                 "stride": options.stride, "data_dir": data_dir, "metrics": dev,
                 **({"held_out_metrics": held} if held else {})}
        save_pretrained(model, tokenizer, run.model_dir,
                        labels=list(task.label_names) if task.labels else ["score"], extra=extra)

    keep = "best" if held_features is not None else "last"
    with run.lock():
        result = run.fit(train_features, loss_fn(task), evaluate, save_best, keep=keep, task=task.name,
                         max_seq_length=max_len)
        counts = {
            "eval_examples": {s: len(ex) for s, ex in eval_examples.items()} if len(eval_examples) > 1
            else len(next(iter(eval_examples.values()))),
            "train_examples": len(train_examples),
            **({"held_out_examples": len(held_examples)} if held_examples is not None else {}),
            "train_features": len(train_features),
            "truncated_train_examples": train_stats.num_truncated,
            "skipped_examples": train_examples.num_skipped + sum(ex.num_skipped for ex in eval_examples.values()),
        }
        dev, held = split_held_out(result.best_metrics)
        chosen = {"model_chosen_by": model_chosen_by(options.validation_fraction, result.stopped_early),
                  **({"held_out_metrics": held} if held else {})}
        results = run.finish(task.name, result, {"max_seq_length": max_len, "long_texts": options.long_texts,
                                                 "validation_fraction": options.validation_fraction},
                             counts, title=task.name, metrics=dev, chosen=chosen)
        if run.main and "counts" in best:
            dev = next(iter(eval_examples.values()))
            warning = one_class_warning(task, best["counts"], dev.labels, settings, len(train_examples), result.steps)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
    return results


# A label is rare, and likely a typo, with fewer than RARE_COUNT examples and under RARE_SHARE of the most
# common label's: both, so that a small class of a large set (500 of 100,000) is not taken for one.
RARE_COUNT, RARE_SHARE = 10, 0.01


def label_counts(task: glue.GlueTask, examples: glue.Examples) -> str:
    """Each label with its count in `examples`, as the run says it: `negative 480, positive 520`."""
    counts = np.bincount(np.asarray(examples.labels, dtype=np.int64), minlength=task.num_labels)
    return ", ".join(f"{name} {count:,}" for name, count in zip(task.label_names, counts.tolist()))


def rare_label_warning(task: glue.GlueTask, examples: glue.Examples, declared: bool = False) -> str | None:
    """What to say when a label of the training set is rare next to the most common (see RARE_COUNT), else None.
    `declared`: the labels were given with --labels; only own files' undeclared labels may be typos."""
    counts = np.bincount(np.asarray(examples.labels, dtype=np.int64), minlength=task.num_labels)
    names, most = task.label_names, int(counts.argmax())
    rare = [k for k, count in enumerate(counts.tolist()) if count < RARE_COUNT and count < RARE_SHARE * counts[most]]
    if not rare:
        return None
    said = ", ".join(f"{names[k]!r} has {counts[k]:,} training example{'s' if counts[k] != 1 else ''}" for k in rare)
    hint = ("a class the model can hardly learn" if declared or task.name != "custom" else
            f"a typo? --labels {','.join(n for k, n in enumerate(names) if k not in rare)} declares the label set "
            f"and refuses rows with other labels")
    return (f"{examples.source}: rare label{'s' if len(rare) > 1 else ''}: {said}, against "
            f"{counts[most]:,} of {names[most]!r}: {hint}")


HELD_OUT = "held_out_"  # the prefix of the held-out part's scores in an evaluation


def split_held_out(scores: dict) -> tuple[dict, dict]:
    """(dev scores, held-out scores) of an evaluation, the prefix dropped from the second."""
    dev = {k: v for k, v in scores.items() if not k.startswith(HELD_OUT)}
    return dev, {k.removeprefix(HELD_OUT): v for k, v in scores.items() if k.startswith(HELD_OUT)}


def model_chosen_by(validation_fraction: float | None, stopped_early: bool) -> str:
    """How a run's model was chosen, as results.json says it."""
    if validation_fraction:
        return f"held-out train (fraction {validation_fraction:g})"
    return "final evaluation (stopped early: --patience watched the dev set)" if stopped_early else "final epoch"


def one_class_warning(task: glue.GlueTask, counts, dev_labels, settings: TrainSettings, train_examples: int,
                      steps: int) -> str | None:
    """What to say when the model kept predicts one class for the whole dev set, which has several; else None."""
    if len(set(dev_labels)) < 2 or np.count_nonzero(counts) != 1:
        return None
    name = (task.label_names or [str(i) for i in range(len(counts))])[int(np.argmax(counts))]
    wnli = " (on WNLI this is usual: its dev set is built so that the training set misleads)" if task.name == "wnli" else ""
    return (f"the model predicts {name!r} for every one of the {int(sum(counts))} dev examples{wnli}: it has not "
            f"learned to tell the classes apart. It trained {steps} optimizer steps on {train_examples:,} examples "
            f"at lr {settings.lr:g}; try more steps (--epochs, now {settings.epochs:g}, or more training examples) "
            f"or a higher --lr (say {2.5 * settings.lr:g})")
