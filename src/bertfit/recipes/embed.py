"""Fine-tune a bi-encoder (a sentence-embedding model): only the task's part; the loop and the run are shared.

Data: text pairs (anchor, positive) trained with in-batch negatives (MultipleNegativesRankingLoss), or scored pairs
trained with CoSENT or the cosine loss; from a CSV/TSV/JSONL file (GLUE's STS-B train.tsv is one: sentence1,
sentence2, score) or a SQuAD JSON file (each question and its paragraph). Evaluation as sentence-transformers'
evaluators: scored pairs by the Spearman correlation of their cosines (STS-B dev), a SQuAD file by retrieval (each
question against every paragraph of the file: MRR@10, recall@1, recall@10). The model is saved as a
sentence-transformers folder: `SentenceTransformer(RUN/model)` loads it and gives bertfit's embeddings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import devices, embedding, embedding_losses, embedding_metrics, predicting, runs
from ..batching import Features
from ..errors import ConfigError, DataError, require_examples
from ..files import replace_folder, temporary_name
from ..pretrained import resolve_model_path, save_pretrained
from ..settings import TrainSettings
from ..tasks.squad import read_squad
from ..tasks.table_files import read_table_file
from ..tokenization import special_ids
from .run import start_run


@dataclass
class EmbedOptions:
    train_file: str | None = None  # pairs or scored pairs (CSV/TSV/JSONL), or SQuAD JSON
    eval_file: str | None = None  # scored pairs (Spearman of cosines), or SQuAD JSON (retrieval)
    text_columns: tuple[str, ...] = ("sentence1", "sentence2")
    label_column: str | None = None  # the gold score of scored pairs (STS-B: score)
    loss: str | None = None  # mnrl, cosent or cosine; default: mnrl for pairs, cosent for scored pairs
    max_seq_length: int | None = None  # tokens per text; default: the model's own
    pooling: str = "mean"  # for a model folder without a pooling config of its own
    model: str | None = None
    tokenizer: str | None = None
    num_heads: int | None = None
    output_dir: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    skip_bad_examples: bool = False
    overwrite: bool = False
    quiet: bool = False


@dataclass
class Pairs:
    """Text pairs read from a file, with gold scores (scored pairs) or without (anchor and positive)."""

    texts_a: list[str]
    texts_b: list[str]
    scores: list[float] | None
    source: str
    num_read: int
    num_skipped: int = 0
    # SQuAD: the paragraphs, and each question's paragraph among them (retrieval)
    documents: list[str] | None = None
    relevant: list[int] | None = None

    def __len__(self) -> int:
        return len(self.texts_a)

    def first(self, n: int | None) -> "Pairs":
        if n is None or n >= len(self):
            return self
        documents, relevant = self.documents, self.relevant
        if relevant is not None:  # the paragraphs of the questions kept, renumbered
            kept = sorted(set(relevant[:n]))
            renumber = {old: new for new, old in enumerate(kept)}
            documents, relevant = [documents[i] for i in kept], [renumber[i] for i in relevant[:n]]
        return Pairs(self.texts_a[:n], self.texts_b[:n], self.scores[:n] if self.scores is not None else None,
                     self.source, self.num_read, self.num_skipped, documents, relevant)


def read_pairs(path: str, options: EmbedOptions) -> Pairs:
    """A SQuAD JSON file's (question, paragraph) pairs, or a table file's pairs and scores."""
    if Path(path).suffix.lower() == ".json":
        questions, stats = read_squad(path, skip_bad=options.skip_bad_examples)
        questions = [q for q in questions if q.context.strip()]
        documents = list(dict.fromkeys(q.context for q in questions))
        where = {text: i for i, text in enumerate(documents)}
        return Pairs([q.question for q in questions], [q.context for q in questions], None, str(path),
                     len(questions) + len(stats.skipped), len(stats.skipped), documents,
                     [where[q.context] for q in questions])
    if len(options.text_columns) != 2:
        raise ConfigError(f"--text-columns: a bi-encoder trains on pairs: give two columns, not "
                          f"{', '.join(options.text_columns)}")
    examples = read_table_file(path, options.text_columns, options.label_column, skip_bad=options.skip_bad_examples)
    scores = None
    if options.label_column:
        names = examples.label_names
        try:
            scores = [float(names[i]) if names is not None else float(i) for i in examples.labels]
        except ValueError:
            raise DataError(f"{path}: the {options.label_column!r} column must hold numbers (gold similarity "
                            f"scores), not labels such as {names[0]!r}") from None
    return Pairs(examples.texts_a, examples.texts_b, scores, str(path), examples.num_read, examples.num_skipped)


def encode_pairs(pairs: Pairs, tokenizer, max_len: int) -> tuple[Features, int]:
    """Each pair as one sequence `[CLS] a [SEP] [CLS] b [SEP]` with `length_a` (and `score`) columns, for the
    shared loop to batch; `embedding_losses.split_pairs` parts them again. Also the number of sides cut."""
    ids_a, cut_a = embedding.encode_texts(tokenizer, pairs.texts_a, max_len)
    ids_b, cut_b = embedding.encode_texts(tokenizer, pairs.texts_b, max_len)
    joined = [a + b for a, b in zip(ids_a, ids_b)]
    columns = {"length_a": np.array([len(a) for a in ids_a], np.int64)}
    if pairs.scores is not None:
        columns["score"] = np.asarray(pairs.scores, np.float32)
    return Features.from_lists(joined, [[0] * len(x) for x in joined], **columns), sum(cut_a) + sum(cut_b)


def loss_fn(loss: str, pad_id: int, score_scale: float):
    def compute(model, batch: dict):
        vectors = model(**embedding_losses.both_sides(batch, pad_id)).chunk(2)
        if loss == "mnrl":
            return embedding_losses.multiple_negatives_ranking_loss(*vectors)
        if loss == "cosent":
            return embedding_losses.cosent_loss(*vectors, batch["score"])
        return embedding_losses.cosine_similarity_loss(*vectors, batch["score"] / score_scale)

    return compute


def embed_texts(model, tokenizer, texts: list[str], max_len: int, device, settings: TrainSettings) -> np.ndarray:
    """The pooled vectors of texts, as inference makes them (length-sorted batches, no padding beyond a batch's longest)."""
    ids, _ = embedding.encode_texts(tokenizer, texts, max_len)
    features = Features.from_lists(ids, [[0] * len(x) for x in ids])
    (vectors,) = predicting.predict(model, features, special_ids(tokenizer).pad, device, settings.eval_batch_size,
                                    settings.precision)
    return vectors


def check_options(options: EmbedOptions) -> None:
    if not options.train_file:
        raise ConfigError("--train-file is required: pairs (CSV/TSV/JSONL, --text-columns), scored pairs "
                          "(--label-column), or a SQuAD JSON file")
    if options.loss is not None and options.loss not in embedding_losses.LOSSES:
        raise ConfigError(f"--loss must be one of {', '.join(embedding_losses.LOSSES)}, not {options.loss!r}")
    if options.pooling not in embedding.POOLING_MODES:
        raise ConfigError(f"--pooling must be one of {', '.join(embedding.POOLING_MODES)}, not {options.pooling!r}")
    if options.max_seq_length is not None and options.max_seq_length < 3:
        raise ConfigError(f"--max-seq-length must be at least 3, not {options.max_seq_length}")


@devices.keeps_global_rng
def finetune_embeddings(options: EmbedOptions, settings: TrainSettings | None = None) -> dict:
    """Fine-tune a sentence-embedding model on pairs or scored pairs; return the results written to results.json."""
    settings = settings or TrainSettings()
    settings.validate()
    check_options(options)
    output_dir = options.output_dir or "runs/embed"
    runs.check_output_dir(output_dir)
    # the data is read before the model loads: a missing, empty or malformed file is refused at once
    train = read_pairs(options.train_file, options).first(options.max_train_samples)
    require_examples(len(train), train.source, "pairs to train on", train.num_read, train.num_skipped)
    evaluation = read_pairs(options.eval_file, options).first(options.max_eval_samples) if options.eval_file else None
    if evaluation is not None:
        require_examples(len(evaluation), evaluation.source, "pairs to evaluate on", evaluation.num_read,
                         evaluation.num_skipped)
        if evaluation.scores is None and evaluation.documents is None:
            raise ConfigError(f"{evaluation.source}: evaluation needs scored pairs (--label-column) or a SQuAD file "
                              f"(retrieval)")
    loss = options.loss or ("cosent" if train.scores is not None else "mnrl")
    if loss != "mnrl" and train.scores is None:
        raise ConfigError(f"--loss {loss} needs scored pairs: name their score column with --label-column")

    base = resolve_model_path(options.model)
    run = start_run(output_dir, settings, options.model, head="base", tokenizer=options.tokenizer,
                    num_heads=options.num_heads, overwrite=options.overwrite, quiet=options.quiet)
    encoder, tokenizer, say = run.model, run.tokenizer, run.say
    positions = encoder.config.max_position_embeddings
    if base.is_dir() and embedding.is_sentence_folder(base):
        sentence = embedding.read_sentence_config(base, encoder.config.hidden_size, positions)
    else:  # a plain encoder: the pooling asked for, no Normalize module, as sentence-transformers builds one
        sentence = embedding.SentenceConfig((options.pooling,), False, min(256, positions), encoder.config.hidden_size)
    if options.max_seq_length:
        sentence = embedding.SentenceConfig(sentence.pooling, sentence.normalize,
                                            min(options.max_seq_length, positions), sentence.hidden_size)
    if encoder.pooler is not None:  # kept as it came (transformers' BertModel reads one), but no loss reaches it,
        encoder.pooler.requires_grad_(False)  # and torchrun's DistributedDataParallel refuses parameters left out
    run.model = embedding.SentenceEmbedder(encoder, sentence.pooling).to(run.device)
    max_len = sentence.max_seq_length
    start = time.perf_counter()
    features, cut = encode_pairs(train, tokenizer, max_len)
    score_scale = max(1.0, float(np.abs(train.scores).max())) if train.scores is not None else 1.0
    say(f"embedding: {len(train)} {'scored ' if train.scores is not None else ''}pairs to train on ({cut} sides cut to "
        f"{max_len} tokens), loss {loss}, pooling {'+'.join(sentence.pooling)}"
        f"{', normalised' if sentence.normalize else ''}; "
        + (f"{len(evaluation)} to evaluate on" if evaluation else "no evaluation") +
        f"; encoded in {time.perf_counter() - start:.1f}s")

    def evaluate(model) -> dict:
        if evaluation is None:
            return {}
        vectors_a = embed_texts(model, tokenizer, evaluation.texts_a, max_len, run.device, run.settings)
        if evaluation.documents is not None:
            documents = embed_texts(model, tokenizer, evaluation.documents, max_len, run.device, run.settings)
            return embedding_metrics.retrieval_metrics(vectors_a, documents, [{i} for i in evaluation.relevant])
        vectors_b = embed_texts(model, tokenizer, evaluation.texts_b, max_len, run.device, run.settings)
        return embedding_metrics.similarity_metrics(vectors_a, vectors_b, evaluation.scores)

    def save_best(model, scores) -> None:
        save_sentence_model(model, tokenizer, sentence, run.model_dir,
                            {"task": "embedding", "loss": loss, "max_seq_length": max_len, "metrics": scores})

    with run.lock():
        result = run.fit(features, loss_fn(loss, run.pad_id, score_scale), evaluate, save_best, keep="last",
                         task="embedding", loss=loss, max_seq_length=max_len)
        counts = {"train_pairs": len(train), "eval_pairs": len(evaluation) if evaluation else 0,
                  "truncated_train_sides": cut,
                  "skipped_examples": train.num_skipped + (evaluation.num_skipped if evaluation else 0)}
        return run.finish("embedding", result, {"loss": loss, "max_seq_length": max_len,
                                                "pooling": list(sentence.pooling), "normalize": sentence.normalize},
                          counts, title="embedding")


def save_sentence_model(model: embedding.SentenceEmbedder, tokenizer, sentence: embedding.SentenceConfig,
                        folder: Path, extra: dict) -> Path:
    """The encoder as a Hugging Face folder with the sentence-transformers files beside it, put in place whole."""
    folder = Path(folder)
    staging = temporary_name(folder)  # this run's own: written whole, then moved into place
    save_pretrained(model.bert, tokenizer, staging, extra=extra)
    embedding.write_sentence_files(staging, sentence)
    return replace_folder(staging, folder, marker="config.json")
