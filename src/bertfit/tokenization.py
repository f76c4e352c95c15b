"""The model's `tokenizers` tokenizer, set up the way every task encodes with it, and the layout of its
special tokens around one text or a pair, read from the tokenizer itself."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import CheckpointError

# The names the families give their special tokens: BERT's (also DistilBERT's, ELECTRA's, DeBERTa's, ModernBERT's)
# and RoBERTa's (also XLM-R's, CamemBERT's). Where the tokenizer has a template, [CLS] and [SEP] are its own.
TOKEN_NAMES = {"cls": ("[CLS]", "<s>"), "sep": ("[SEP]", "</s>"), "pad": ("[PAD]", "<pad>"), "unk": ("[UNK]", "<unk>"),
               "mask": ("[MASK]", "<mask>")}


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    unk: int | None
    mask: int | None = None


@dataclass(frozen=True)
class Template:
    """Where the special tokens go around text a, or a and b, and each position's token type: `[CLS] a [SEP]
    b [SEP]` with types 0 then 1 in BERT, `<s> a </s></s> b </s>` with types all 0 in RoBERTa.

    Each layout is a tuple of (piece, type id); a piece is a special token's id, or "A" / "B" for the text.
    """

    single: tuple[tuple[int | str, int], ...]
    pair: tuple[tuple[int | str, int], ...]

    def num_special(self, pair: bool) -> int:
        return sum(isinstance(piece, int) for piece, _ in (self.pair if pair else self.single))

    def before(self, text: str) -> int:
        """How many special tokens of the pair layout come before text "A" or "B" (SQuAD's context is B)."""
        pieces = [piece for piece, _ in self.pair]
        return sum(isinstance(piece, int) for piece in pieces[: pieces.index(text)])

    def apply(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        """(input ids, token type ids) of a, or of the pair a, b."""
        ids, types = [], []
        for piece, type_id in (self.single if b is None else self.pair):
            part = a if piece == "A" else b if piece == "B" else [piece]
            ids += part
            types += [type_id] * len(part)
        return ids, types


def prepare(tokenizer: Tokenizer) -> Tokenizer:
    """Turn off the file's own truncation, padding and special tokens: tasks add them."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _by_name(tokenizer: Tokenizer, role: str) -> int | None:
    for name in TOKEN_NAMES[role]:
        if (token_id := tokenizer.token_to_id(name)) is not None:
            return token_id
    return None


def special_ids(tokenizer: Tokenizer, source: str | Path = "tokenizer") -> SpecialIds:
    """The template's first special token (cls) and the one after text a (sep), the padding, unknown and mask
    tokens; refuses a tokenizer that lacks one the tasks need."""
    found = {role: _by_name(tokenizer, role) for role in TOKEN_NAMES}
    if found["pad"] is not None and (layout := _probe(tokenizer, found["pad"])) is not None:
        pieces = [piece for piece, _ in layout.single]
        if pieces[0] != "A" and pieces[-1] != "A":
            found["cls"], found["sep"] = pieces[0], pieces[pieces.index("A") + 1]
    missing = [TOKEN_NAMES[role][0] for role in ("cls", "sep", "pad") if found[role] is None]
    if missing:
        raise CheckpointError(f"{source}: tokenizer has no {', '.join(missing)} token (nor RoBERTa's "
                              f"<s>, </s>, <pad>); the tasks need a first token, a separator and padding")
    return SpecialIds(**found)


def mask_token(tokenizer: Tokenizer) -> str | None:
    """The tokenizer's mask token, [MASK] or RoBERTa's <mask>; None without one."""
    return next((name for name in TOKEN_NAMES["mask"] if tokenizer.token_to_id(name) is not None), None)


def template(tokenizer: Tokenizer) -> Template:
    """The tokenizer's own layout of special tokens (its post-processor's: whatever kind the file declares), or
    BERT's for a tokenizer without one (the tutorial's WordPiece file)."""
    ids = special_ids(tokenizer)
    layout = _probe(tokenizer, ids.pad)
    if layout is not None:
        return layout
    return Template(single=((ids.cls, 0), ("A", 0), (ids.sep, 0)),
                    pair=((ids.cls, 0), ("A", 0), (ids.sep, 0), ("B", 1), (ids.sep, 1)))


def _probe(tokenizer: Tokenizer, pad: int) -> Template | None:
    """Encode the padding token as text a and as text b with the tokenizer's post-processor and read where it puts
    its special tokens (None when it adds none): the padding token, being special, is one token whatever the
    model (byte-level, SentencePiece or WordPiece)."""
    if tokenizer.padding or tokenizer.truncation:  # a file's own settings would pad the probe: probe a copy
        tokenizer = prepare(Tokenizer.from_str(tokenizer.to_str()))
    text = tokenizer.id_to_token(pad)
    layouts = []
    for encoding in (tokenizer.encode(text), tokenizer.encode(text, text)):
        if encoding.sequence_ids.count(0) != 1:
            return None
        layouts.append(tuple(("AB"[sequence] if sequence is not None else token_id, type_id)
                             for token_id, type_id, sequence in
                             zip(encoding.ids, encoding.type_ids, encoding.sequence_ids)))
    if all(isinstance(piece, str) for piece, _ in layouts[0]):
        return None
    return Template(*layouts)


def longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of a and b survive longest-first truncation to `budget`, in closed form.

    Trimming the longer text one token at a time comes to: cut only the longer one when the shorter
    takes at most half the budget, else give each half. The odd token goes to the longer text, to b
    on a tie, as in the `tokenizers` library (Hugging Face's fast tokenizers).
    """
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:
        keep_short, keep_long = short, budget - short
    else:
        keep_short, keep_long = budget // 2, budget - budget // 2
    return (keep_long, keep_short) if len_a > len_b else (keep_short, keep_long)
