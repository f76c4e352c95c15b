"""Pretraining from raw text on the one loop: masked-language modelling, and with `nsp` the tutorial's
next-sentence pairs. read → tokenize once into a token file → pack (or pair) → mask each step → train →
held-out loss → a Hugging Face folder with its MLM head, and (a BERT's) the tutorial's `bert_model.pth`.

What a new model is (its family, tokenizer, objectives, packing and share of tokens masked) is its row of
`architectures.ARCHITECTURES`.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import devices, runs
from ..architectures import ARCHITECTURES, MLM_PROBABILITY, Architecture, described
from ..batching import Features, collate, eval_batches
from ..checkpoints.families import FAMILIES
from ..checkpoints.tutorial import TUTORIAL_MAX_POSITIONS, TUTORIAL_VOCAB_SIZE, tutorial_holds
from ..devices import autocast, resolve_precision
from ..errors import ConfigError
from ..files import tokens_cache_dir
from ..model import PRETRAIN_SIZES, init_weights, pretrain_config
from ..pretrained import build_model, load_pretrained, load_tokenizer, save_pretrained, save_tutorial
from ..settings import PRETRAIN_DEFAULTS, TrainSettings
from ..tasks import pretraining_data
from ..tokenization import mask_token, special_ids
from ..tokenizer_training import tokenizer_kind
from .run import Run

# the fields of a new model's config that its size preset and tokenizer set, whatever its family's defaults
SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings", "pad_token_id")
EVAL_MASK_SEED = 1234  # every evaluation masks the held-out blocks the same way, so evaluations compare


@dataclass
class PretrainOptions:
    """What to pretrain and on what: a size preset with a tokenizer (from scratch), or a model to continue."""

    train_files: tuple[str, ...] = ()
    validation_file: str | None = None
    validation_fraction: float = 0.01  # of the documents, held out when there is no validation file
    tokenizer: str | None = None
    size: str | None = None
    architecture: str | None = None  # a new model's (ARCHITECTURES; None: bert); --model keeps the model's own
    model: str | None = None
    num_heads: int | None = None  # a tutorial .pth holds no config
    output_dir: str | None = None
    max_seq_length: int = 128
    mlm_probability: float | None = None  # None: the architecture's (ARCHITECTURES; BERT's 0.15)
    nsp: bool = False
    text_field: str = "text"
    max_eval_samples: int | None = 2000  # held-out sequences each evaluation reads
    name: str = "bertfit"  # the tutorial files: bert_model.pth and <name>_wordpiece.json
    overwrite: bool = False
    quiet: bool = False


def check_options(options: PretrainOptions) -> None:
    """Refuse options that cannot work, before anything is loaded."""
    if not options.train_files:
        raise ConfigError("pretraining needs text: pass --train-file FILE (text, JSONL, or a hub dataset name)")
    if bool(options.model) == bool(options.size):
        raise ConfigError("pass either --size NAME with --tokenizer FILE (a new model) or --model PATH "
                          "(continued pretraining), not both or neither")
    if options.size and not options.tokenizer:
        raise ConfigError(f"--size {options.size} starts a model from scratch: it needs --tokenizer FILE.json "
                          f"(`bertfit tokenizer` trains one)")
    if options.architecture is not None and options.architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown --architecture {options.architecture!r}; known: {described()}")
    if options.architecture and options.model:
        raise ConfigError(f"--architecture {options.architecture} picks what a new model (--size) is; --model "
                          f"continues pretraining the model's own architecture: leave --architecture out")
    if options.nsp and options.size and "nsp" not in new_architecture(options).objectives:
        raise ConfigError(f"--nsp (next-sentence prediction) is BERT's: --architecture {options.architecture} "
                          f"pretrains with masked-language modelling alone")
    if options.mlm_probability is not None and not 0 < options.mlm_probability < 1:
        raise ConfigError(f"--mlm-probability must be between 0 and 1, not {options.mlm_probability:g}")
    if not 0 <= options.validation_fraction < 1:
        raise ConfigError(f"--validation-fraction must be in [0, 1), not {options.validation_fraction:g}")
    if options.max_seq_length < 8:
        raise ConfigError(f"--max-seq-length must be at least 8 tokens, not {options.max_seq_length}")
    if options.max_eval_samples is not None and options.max_eval_samples < 1:
        raise ConfigError(f"--max-eval-samples must be at least 1, not {options.max_eval_samples}")


def new_architecture(options: PretrainOptions) -> Architecture:
    """The row of a new model (--size): --architecture's, BERT's by default."""
    return ARCHITECTURES[options.architecture or "bert"]


def architecture_of(model) -> Architecture | None:
    """The row whose family is the model's (a new model's, or a continued one's), None for a family without one."""
    family = (model.bert if hasattr(model, "bert") else model).config.family
    return next((a for a in ARCHITECTURES.values() if a.family == family), None)


def mlm_probability(options: PretrainOptions, model) -> float:
    """The share of tokens masked: --mlm-probability, else the model's architecture's (ModernBERT's 30%)."""
    if options.mlm_probability is not None:
        return options.mlm_probability
    architecture = architecture_of(model)
    return architecture.mlm_probability if architecture is not None else MLM_PROBABILITY


def writes_tutorial(model) -> bool:
    """Whether the run also writes the tutorial's bert_model.pth: a BERT's state dict, so only a BERT's."""
    architecture = architecture_of(model)
    return architecture is not None and architecture.tutorial_files


def new_config(architecture: Architecture, size: str, tokenizer, tokenizer_path: str, max_seq_length: int):
    """A new model's config: the size preset in the architecture's family, with the family's defaults and parts."""
    family = FAMILIES[architecture.family]
    pad = special_ids(tokenizer, tokenizer_path).pad
    offset = pad + 1 if family.positions_after_padding else 0  # RoBERTa's positions start after the padding id
    # the family's config class's own defaults (ModernBERT's: no biases, no dropout, a GELU head, its window), but
    # for the sizes, which the preset and the tokenizer set; then the parts it picks, then the architecture's
    defaults = {k: v for k, v in family.defaults.items() if k not in SIZE_FIELDS}
    parts = {**defaults, **family.parts, **architecture.config}
    if architecture.intermediate_ratio != 1 and size in PRETRAIN_SIZES:
        width = PRETRAIN_SIZES[size]["intermediate_size"] * architecture.intermediate_ratio
        parts["intermediate_size"] = 32 * max(1, round(width / 32))
    return pretrain_config(size, vocab_size=tokenizer.get_vocab_size(), pad_token_id=pad,
                           max_position_embeddings=max(512, max_seq_length) + offset,
                           family=family.name, position_offset=offset, **parts)


def check_tokenizer(architecture: Architecture, tokenizer, path: str) -> None:
    """Refuse a tokenizer of another kind than the architecture's (a WordPiece for RoBERTa)."""
    kind = tokenizer_kind(tokenizer)
    if kind != architecture.tokenizer:
        raise ConfigError(f"{path}: a {kind or 'different'} tokenizer, and --architecture {architecture.name} takes "
                          f"a {architecture.tokenizer} one (`bertfit tokenizer --kind {architecture.tokenizer}`); "
                          f"architectures: {described()}")


def start(options: PretrainOptions, settings: TrainSettings) -> Run:
    """Join torchrun when launched by it, seed, and build the model (new from a preset, or loaded)."""
    runs.check_output_dir(options.output_dir or "runs/pretrain")
    device = devices.setup_distributed()
    torch.manual_seed(settings.seed)  # a new model's (or head's) weights
    head = "pretraining" if options.nsp else "mlm"
    if options.model:
        model, tokenizer = load_pretrained(options.model, head=head, tokenizer_path=options.tokenizer,
                                           num_heads=options.num_heads)
    else:
        tokenizer = load_tokenizer(options.tokenizer)
        architecture = new_architecture(options)
        check_tokenizer(architecture, tokenizer, options.tokenizer)
        config = new_config(architecture, options.size, tokenizer, options.tokenizer, options.max_seq_length)
        model = build_model(config, head)
        init_weights(model, config)
    if mask_token(tokenizer) is None:
        raise ConfigError(f"{options.tokenizer or options.model}: the tokenizer has no mask token ([MASK], or "
                          f"RoBERTa's <mask>), which masked-language modelling needs")
    if options.size == "tutorial" and writes_tutorial(model) and devices.is_main_process() and \
            (note := tutorial_misfit(tokenizer, options)):
        print(f"warning: {note}", file=sys.stderr)
    return Run(Path(options.output_dir or "runs/pretrain"), settings, device, model, tokenizer,
               options.model or f"new {options.size}", options.overwrite, options.quiet, devices.is_main_process())


def tutorial_misfit(tokenizer, options: PretrainOptions) -> str | None:
    """Why the tutorial's fine-tuning scripts, which build BertModel(BertConfig()), cannot load this run's
    bert_model.pth strictly; None when they can. Its pooler is always written, and a smaller vocabulary padded."""
    problems = []
    if tokenizer.get_vocab_size() > TUTORIAL_VOCAB_SIZE:
        problems.append(f"the tokenizer has {tokenizer.get_vocab_size():,} tokens, more than the {TUTORIAL_VOCAB_SIZE:,} "
                        f"rows of its word embeddings")
    if options.max_seq_length > TUTORIAL_MAX_POSITIONS:
        problems.append(f"--max-seq-length {options.max_seq_length} needs more than its {TUTORIAL_MAX_POSITIONS} "
                        f"positions")
    if not problems:
        return None
    return (f"the tutorial's scripts build BertModel(BertConfig()), which will not load this run's bert_model.pth: "
            f"{'; and '.join(problems)}. Set vocab_size and max_seq_len in their BertConfig to the model's "
            f"(bertfit loads the file as it is)")


def read_data(run: Run, options: PretrainOptions) -> tuple[Features, Features, dict]:
    """Training and held-out sequences (packed blocks, or NSP pairs), each from the cached token files."""
    tokenizer, ids = run.tokenizer, special_ids(run.tokenizer)
    started = time.perf_counter()
    train_tokens, hit = pretraining_data.tokenize_corpus(list(options.train_files), tokenizer, tokens_cache_dir(),
                                                          text_field=options.text_field, quiet=options.quiet)
    if options.validation_file:
        held_tokens, _ = pretraining_data.tokenize_corpus([options.validation_file], tokenizer, tokens_cache_dir(),
                                                          text_field=options.text_field, quiet=options.quiet)
        train_docs = held_docs = None
    elif options.validation_fraction:
        held_tokens = train_tokens
        train_docs, held_docs = pretraining_data.split_documents(train_tokens, options.validation_fraction,
                                                                 run.settings.seed)
    else:
        raise ConfigError("pretraining evaluates on held-out text: pass --validation-file or a positive "
                          "--validation-fraction")

    architecture = architecture_of(run.model)

    def sequences(token_file, documents, seed):
        if options.nsp:
            return pretraining_data.nsp_features(token_file, options.max_seq_length, ids.cls, ids.sep, seed=seed,
                                                 documents=documents)
        if architecture is not None and architecture.packing == "full-sentences":
            return pretraining_data.full_sentence_features(token_file, options.max_seq_length, ids.cls, ids.sep,
                                                           documents=documents)
        return pretraining_data.packed_features(token_file, options.max_seq_length, ids.cls, ids.sep,
                                                documents=documents)

    train, train_counts = sequences(train_tokens, train_docs, run.settings.seed)
    held, held_counts = sequences(held_tokens, held_docs, EVAL_MASK_SEED)
    if options.max_eval_samples and len(held) > options.max_eval_samples:
        held = held.select(np.arange(options.max_eval_samples))
    if not len(train) or not len(held):
        raise ConfigError(f"too little text: {len(train)} training and {len(held)} held-out sequences of "
                          f"{options.max_seq_length} tokens")
    stats = train_tokens.stats
    run.say(f"pretraining text: {stats.get('documents')} documents, {stats.get('paragraphs')} paragraphs, "
            f"{stats.get('tokens')} tokens ({'token file from cache' if hit else 'tokenized'} in "
            f"{time.perf_counter() - started:.1f}s) -> {len(train)} training sequences "
            f"({', '.join(f'{k} {v}' for k, v in train_counts.items())}); {len(held)} held-out sequences "
            f"from {'--validation-file' if options.validation_file else f'{len(held_docs)} held-out documents'}")
    counts = {"train_sequences": len(train), "eval_sequences": len(held), "train_text": stats,
              "train_sequence_counts": train_counts, "eval_sequence_counts": held_counts,
              "held_out": options.validation_file or f"{options.validation_fraction:g} of the documents"}
    return train, held, counts


def pretrain_loss(tokenizer, probability: float, nsp: bool):
    """The loss of a batch, masked afresh each step: the MLM loss (mean over masked tokens) times the batch's
    sequences, as the loop divides by the global batch; with NSP plus its summed loss."""
    specials = pretraining_data.special_token_ids(tokenizer)
    mask_id, vocab_size = tokenizer.token_to_id(mask_token(tokenizer)), tokenizer.get_vocab_size()

    def loss_fn(model, batch: dict) -> torch.Tensor:
        # the loop seeds torch's generator each step, so the masks, like dropout, resume exactly
        inputs, labels = pretraining_data.mask_tokens(batch["input_ids"], specials, vocab_size, mask_id, probability)
        positions = labels != -100
        output = model(inputs, batch["token_type_ids"], batch["attention_mask"], positions=positions)
        mlm_logits, nsp_logits = output if nsp else (output, None)
        loss = F.cross_entropy(mlm_logits.float(), labels[positions], reduction="sum")
        loss = loss / positions.sum().clamp(min=1) * len(inputs)
        if nsp:
            loss = loss + F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"], reduction="sum")
        return loss

    return loss_fn, specials


@torch.no_grad()
def evaluate_mlm(model, held: Features, tokenizer, specials: list[int], probability: float, nsp: bool,
                 device: torch.device, settings: TrainSettings) -> dict:
    """Held-out MLM loss, accuracy and perplexity (and NSP accuracy), with the same masks every time."""
    model.eval()
    generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
    mask_id, vocab_size = tokenizer.token_to_id(mask_token(tokenizer)), tokenizer.get_vocab_size()
    pad_id = special_ids(tokenizer).pad
    dtype = resolve_precision(settings.precision, device)
    loss_sum, masked, correct, nsp_correct = 0.0, 0, 0, 0
    for indices in eval_batches(held.lengths, settings.eval_batch_size):
        batch = collate(held, np.sort(indices), pad_id)
        inputs, labels = pretraining_data.mask_tokens(batch["input_ids"], specials, vocab_size, mask_id, probability,
                                                      generator=generator)
        positions = labels != -100
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, dtype):
            output = model(inputs.to(device), batch["token_type_ids"], batch["attention_mask"],
                           positions=positions.to(device))
        mlm_logits, nsp_logits = output if nsp else (output, None)
        targets = labels[positions].to(device)
        loss_sum += float(F.cross_entropy(mlm_logits.float(), targets, reduction="sum"))
        masked += int(positions.sum())
        correct += int((mlm_logits.argmax(-1) == targets).sum())
        if nsp:
            nsp_correct += int((nsp_logits.argmax(-1) == batch["next_sentence_label"]).sum())
    loss = loss_sum / max(1, masked)
    metrics = {"mlm_accuracy": correct / max(1, masked), "mlm_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if nsp:
        metrics["nsp_accuracy"] = nsp_correct / len(held)
    return metrics


@devices.keeps_global_rng
def pretrain(options: PretrainOptions, settings: TrainSettings | dict | None = None) -> dict:
    """Pretrain (or continue pretraining) on raw text and return the results written to results.json.

    `settings`: all of them as TrainSettings, or a dict of those chosen over PRETRAIN_DEFAULTS.
    """
    if not isinstance(settings, TrainSettings):
        settings = replace(PRETRAIN_DEFAULTS, **(settings or {}))
    settings.validate()
    check_options(options)
    run = start(options, settings)
    options = replace(options, mlm_probability=mlm_probability(options, run.model))
    train, held, counts = read_data(run, options)
    loss_fn, specials = pretrain_loss(run.tokenizer, options.mlm_probability, options.nsp)
    evaluate = lambda model: evaluate_mlm(model, held, run.tokenizer, specials, options.mlm_probability, options.nsp,
                                          run.device, settings)
    objective = "mlm+nsp" if options.nsp else "mlm"
    architecture = architecture_of(run.model)
    architecture_name = architecture.name if architecture else run.model.bert.config.family
    with run.lock():
        # the model kept is the last one (pretraining has no dev score to pick by); it is written after training
        result = run.fit(train, loss_fn, evaluate, lambda model, metrics: None, keep="last", task="pretrain",
                         objective=objective, mlm_probability=options.mlm_probability,
                         max_seq_length=options.max_seq_length)
        if run.main:
            # the length it trained at: inference refuses longer texts (their positions were never trained)
            save_pretrained(run.model, run.tokenizer, run.model_dir,
                            extra={"task": "pretrain", "objective": objective, "architecture": architecture_name,
                                   "max_seq_length": options.max_seq_length, "mlm_probability": options.mlm_probability})
            if writes_tutorial(run.model) and tutorial_holds(run.model.bert):
                # the tutorial's BertModel always holds a pooler, and its BertConfig() 30,522 vocabulary rows
                pth, vocab = save_tutorial(run.model, run.tokenizer, run.dir, options.name, pooler_seed=settings.seed,
                                           vocab_size=TUTORIAL_VOCAB_SIZE if options.size == "tutorial" else None)
                run.say(f"wrote {run.model_dir} (Hugging Face, with its MLM head), {pth} and {vocab} (the tutorial's "
                        f"files)")
            else:
                run.say(f"wrote {run.model_dir} (Hugging Face, with its MLM head); no tutorial files: they hold a "
                        f"BERT's weights alone, not a {run.model.bert.config.family} model's")
        return run.finish("pretrain", result,
                          {"size": options.size, "architecture": architecture_name,
                           "train_files": list(options.train_files), "objective": objective,
                           "max_seq_length": options.max_seq_length, "mlm_probability": options.mlm_probability,
                           "validation_file": options.validation_file},
                          counts,
                          "pretraining, held-out", chosen={"model_chosen_by": "the last step (pretraining keeps no best)"})
