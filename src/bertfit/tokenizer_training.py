"""A WordPiece tokenizer trained from raw text, for pretraining a BERT from scratch.

The pipeline is BERT's, with two deliberate differences from `BertPreTokenizer` and `BertNormalizer`:
- pre-tokenizer `Whitespace` (the regex `\\w+|[^\\w\\s]+`), as the tutorial series this follows: words
  split from punctuation as in BERT, but a run of punctuation stays one word (`...`, `!!`, WikiText's
  `@-@` and `@,@`), which WordPiece can then learn as one token, and `_` counts as a letter
  (`foo_bar` is one word). `BertPreTokenizer` makes every punctuation character a word of its own;
  the two agree on text without punctuation runs or underscores.
- normalizer NFKC (then lowercasing with `lowercase`), without BERT's accent stripping, so accented
  letters stay distinct tokens.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from .errors import ConfigError, DataError
from .files import write_atomic
from .tasks.text import CorpusStats, read_paragraphs

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")  # in this order: [PAD] is id 0
TRAIN_BATCH = 1000  # paragraphs handed to the trainer at a time


def untrained_wordpiece(lowercase: bool = False) -> Tokenizer:
    """The pipeline without a vocabulary: WordPiece with [UNK] and `##`, NFKC, whitespace words."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def train_wordpiece(sources: Sequence[str], output: str | Path, vocab_size: int = 30522, lowercase: bool = False,
                    min_frequency: int = 2, quiet: bool = False, text_field: str = "text") -> tuple[Tokenizer, CorpusStats]:
    """Train on every paragraph of `sources` (see `tasks.text`), write the tokenizer JSON atomically to `output`."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ConfigError(f"--vocab-size must exceed the {len(SPECIAL_TOKENS)} special tokens, not {vocab_size}")
    if min_frequency < 1:
        raise ConfigError(f"--min-frequency must be at least 1, not {min_frequency}")
    if not sources:
        raise ConfigError("give at least one training file")
    check_output(Path(output))
    tokenizer = untrained_wordpiece(lowercase)
    # the trainer's progress bars draw on stdout; elsewhere than a terminal they leave only blank lines there
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), continuing_subword_prefix="##",
                                        show_progress=not quiet and sys.stdout.isatty())
    stats = CorpusStats()
    tokenizer.train_from_iterator(_batches(read_paragraphs(sources, text_field, stats)), trainer)
    if not stats.paragraphs:
        raise DataError(f"{', '.join(map(str, sources))}: no text to train a tokenizer on (read {stats.summary()})")
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, tokenizer.to_str(pretty=True))
    return tokenizer, stats


def check_output(output: Path) -> None:
    """Refuse to replace anything but a tokenizer this command wrote: a folder, a file that is not a tokenizer,
    or another tool's tokenizer (a downloaded model's tokenizer.json) stays."""
    if output.is_dir():
        raise ConfigError(f"{output}: a folder; --output names the tokenizer file to write (e.g. {output}/tokenizer.json)")
    if output.exists():
        try:
            Tokenizer.from_file(str(output))
        except Exception:  # the tokenizers library raises its own exception types for every kind of bad file
            raise ConfigError(f"{output}: exists and is not a tokenizer file, so it is not replaced; choose another "
                              f"--output") from None
        if not written_by_this_command(output):
            raise ConfigError(f"{output}: exists and is a tokenizer that `bertfit tokenizer` did not write (another "
                              f"normalizer, pre-tokenizer or model), so it is not replaced; choose another --output")


def written_by_this_command(path: Path) -> bool:
    """Whether the tokenizer file at `path` has this command's pipeline (WordPiece, NFKC with or without
    lowercasing, whitespace words): only such a file is ours to replace."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict) or (data.get("model") or {}).get("type") != "WordPiece":
        return False
    ours = (json.loads(untrained_wordpiece(lowercase).to_str()) for lowercase in (False, True))
    return any(all(data.get(part) == pipeline.get(part) for part in ("normalizer", "pre_tokenizer", "decoder"))
               for pipeline in ours)


def _batches(paragraphs: Iterator[str]) -> Iterator[list[str]]:
    # the trainer takes lists as well as strings; lists cross into Rust far fewer times
    batch = []
    for paragraph in paragraphs:
        batch.append(paragraph)
        if len(batch) == TRAIN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def train_and_report(sources: Sequence[str], output: str | Path, vocab_size: int = 30522, lowercase: bool = False,
                     min_frequency: int = 2, text_field: str = "text", quiet: bool = False) -> str:
    """`train_wordpiece`, then what `bertfit tokenizer` prints: what was read, the vocabulary, the time, the file."""
    start = time.perf_counter()
    tokenizer, stats = train_wordpiece(sources, output, vocab_size, lowercase, min_frequency, quiet, text_field)
    seconds = time.perf_counter() - start
    return (f"read {stats.summary()}\n"
            f"vocabulary {tokenizer.get_vocab_size():,} tokens (asked {vocab_size:,}) in {seconds:.1f}s\n"
            f"wrote {output}")
