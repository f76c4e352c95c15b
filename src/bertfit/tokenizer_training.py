"""A WordPiece tokenizer trained from raw text, for pretraining a BERT from scratch.

The pipeline is BERT's, with two deliberate differences from `BertPreTokenizer` and `BertNormalizer`:
- pre-tokenizer `Whitespace` (the regex `\\w+|[^\\w\\s]+`), as the tutorial series this follows: words
  split from punctuation as in BERT, but a run of punctuation stays one word (`...`, `!!`, WikiText's
  `@-@` and `@,@`), which WordPiece can then learn as one token, and `_` counts as a letter
  (`foo_bar` is one word). `BertPreTokenizer` makes every punctuation character a word of its own;
  the two agree on text without punctuation runs or underscores.
- normalizer NFKC (then lowercasing with `lowercase`), without BERT's accent stripping, so accented
  letters stay distinct tokens.

`kind="bpe"` trains RoBERTa's kind instead: byte-level BPE (every byte in the alphabet, so no text is ever
unknown), no normalizer, the ByteLevel pre-tokenizer without a prefix space, `<s> <pad> </s> <unk> <mask>`
first (so `<pad>` is 1, as RoBERTa's), and RoBERTa's template `<s> A </s></s> B </s>` with no token types.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from .architectures import TOKENIZER_KINDS
from .errors import ConfigError, DataError
from .files import write_atomic
from .tasks.text import CorpusStats, read_paragraphs

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")  # in this order: [PAD] is id 0
BPE_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0-3 (its <mask> is its last id)
BYTES = 256  # byte-level BPE's alphabet, in every vocabulary
TRAIN_BATCH = 1000  # paragraphs handed to the trainer at a time


def untrained_wordpiece(lowercase: bool = False) -> Tokenizer:
    """The pipeline without a vocabulary: WordPiece with [UNK] and `##`, NFKC, whitespace words."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def untrained_bpe() -> Tokenizer:
    """RoBERTa's pipeline without a vocabulary: byte-level BPE, no normalizer, no prefix space."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(sources: Sequence[str], output: str | Path, kind: str = "wordpiece", vocab_size: int = 30522,
                    lowercase: bool = False, min_frequency: int = 2, quiet: bool = False,
                    text_field: str = "text") -> tuple[Tokenizer, CorpusStats]:
    """Train a tokenizer of `kind` (wordpiece or bpe) on every paragraph of `sources` (see `tasks.text`), write
    its JSON atomically to `output`."""
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(TOKENIZER_KINDS)}, not {kind!r}")
    specials = SPECIAL_TOKENS if kind == "wordpiece" else BPE_SPECIAL_TOKENS
    smallest = len(specials) + (BYTES if kind == "bpe" else 0)
    if vocab_size <= smallest:
        what = ("special tokens" if kind == "wordpiece"
                else f"tokens of every byte-level BPE ({len(specials)} special, {BYTES} bytes)")
        raise ConfigError(f"--vocab-size must exceed the {smallest} {what}, not {vocab_size}")
    if min_frequency < 1:
        raise ConfigError(f"--min-frequency must be at least 1, not {min_frequency}")
    if kind == "bpe" and lowercase:
        raise ConfigError("--lowercase is for --kind wordpiece: byte-level BPE keeps the text as it is, as RoBERTa's")
    if not sources:
        raise ConfigError("give at least one training file")
    check_output(Path(output))
    # the trainer's progress bars draw on stdout; elsewhere than a terminal they leave only blank lines there
    progress = not quiet and sys.stdout.isatty()
    if kind == "wordpiece":
        tokenizer = untrained_wordpiece(lowercase)
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=list(specials), continuing_subword_prefix="##",
                                            show_progress=progress)
    else:
        tokenizer = untrained_bpe()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(specials),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=progress)
    stats = CorpusStats()
    tokenizer.train_from_iterator(_batches(read_paragraphs(sources, text_field, stats)), trainer)
    if not stats.paragraphs:
        raise DataError(f"{', '.join(map(str, sources))}: no text to train a tokenizer on (read {stats.summary()})")
    if kind == "wordpiece":
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    else:
        # RoBERTa's own processor, as its tokenizer.json has it: offsets trimmed of the leading space (Ġ)
        tokenizer.post_processor = processors.RobertaProcessing(
            ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), trim_offsets=True,
            add_prefix_space=False)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, tokenizer.to_str(pretty=True))
    return tokenizer, stats


def train_wordpiece(sources: Sequence[str], output: str | Path, vocab_size: int = 30522, lowercase: bool = False,
                    min_frequency: int = 2, quiet: bool = False, text_field: str = "text") -> tuple[Tokenizer, CorpusStats]:
    """`train_tokenizer` of BERT's kind."""
    return train_tokenizer(sources, output, "wordpiece", vocab_size, lowercase, min_frequency, quiet, text_field)


def train_bpe(sources: Sequence[str], output: str | Path, vocab_size: int = 30522, min_frequency: int = 2,
              quiet: bool = False, text_field: str = "text") -> tuple[Tokenizer, CorpusStats]:
    """`train_tokenizer` of RoBERTa's kind."""
    return train_tokenizer(sources, output, "bpe", vocab_size, False, min_frequency, quiet, text_field)


def tokenizer_kind(tokenizer: Tokenizer) -> str | None:
    """The TOKENIZER_KINDS key of a tokenizer (by its model type), or None for another kind (Unigram)."""
    model_type = (json.loads(tokenizer.to_str()).get("model") or {}).get("type")
    return next((kind for kind, declared in TOKENIZER_KINDS.items() if declared == model_type), None)


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
    """Whether the tokenizer file at `path` has one of this command's pipelines (WordPiece, NFKC with or without
    lowercasing, whitespace words; or byte-level BPE): only such a file is ours to replace."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict) or (data.get("model") or {}).get("type") not in ("WordPiece", "BPE"):
        return False
    untrained = [untrained_wordpiece(False), untrained_wordpiece(True)] if data["model"]["type"] == "WordPiece" \
        else [untrained_bpe()]
    ours = (json.loads(tokenizer.to_str()) for tokenizer in untrained)
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
                     min_frequency: int = 2, text_field: str = "text", quiet: bool = False,
                     kind: str = "wordpiece") -> str:
    """`train_tokenizer`, then what `bertfit tokenizer` prints: what was read, the vocabulary, the time, the file."""
    start = time.perf_counter()
    tokenizer, stats = train_tokenizer(sources, output, kind, vocab_size, lowercase, min_frequency, quiet, text_field)
    seconds = time.perf_counter() - start
    return (f"read {stats.summary()}\n"
            f"vocabulary {tokenizer.get_vocab_size():,} tokens (asked {vocab_size:,}) in {seconds:.1f}s\n"
            f"wrote {output}")
