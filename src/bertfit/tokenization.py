"""The model's `tokenizers` tokenizer, set up the way every task encodes with it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import CheckpointError


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    unk: int | None


def prepare(tokenizer: Tokenizer) -> Tokenizer:
    """Turn off the file's own truncation, padding and special tokens: tasks add them."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def special_ids(tokenizer: Tokenizer, source: str | Path = "tokenizer") -> SpecialIds:
    ids = {name: tokenizer.token_to_id(f"[{name}]") for name in ("CLS", "SEP", "PAD", "UNK")}
    missing = [f"[{name}]" for name in ("CLS", "SEP", "PAD") if ids[name] is None]
    if missing:
        raise CheckpointError(f"{source}: tokenizer has no {', '.join(missing)} token; BERT needs [CLS], [SEP] and [PAD]")
    return SpecialIds(cls=ids["CLS"], sep=ids["SEP"], pad=ids["PAD"], unk=ids["UNK"])


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
