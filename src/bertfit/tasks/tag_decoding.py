"""A tagger's answer for a raw text, as transformers' token-classification pipeline gives it: each sub-token's
label probabilities (softmax), then `aggregation_strategy` none (one entry per sub-token that is not O),
simple (adjacent sub-tokens of one type grouped, B- starting a new group), or first, average and max (each
word takes the label of its first sub-token, of its averaged probabilities, or of its most confident
sub-token, and the words are then grouped as simple groups them). Character offsets are into the text.

A word is its first sub-token and the `##` pieces after it (a WordPiece tokenizer marks them: the piece is
longer than the text it covers), as the pipeline reads words. Pure functions on plain data: the model runs
elsewhere (inference.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..tokenization import special_ids

STRATEGIES = ("none", "simple", "first", "average", "max")


@dataclass
class TextPieces:
    """One text's sub-tokens: ids, token strings, character spans, and whether each continues a word."""

    text: str
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    is_subword: list[bool]


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"aggregation_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")


def text_pieces(tokenizer, text: str) -> TextPieces:
    encoding = tokenizer.encode(text, add_special_tokens=False)
    unk = special_ids(tokenizer).unk
    marks_pieces = getattr(tokenizer.model, "continuing_subword_prefix", None)
    tokens, subword = list(encoding.tokens), []
    for i, (token_id, (start, end)) in enumerate(zip(encoding.ids, encoding.offsets)):
        covered = text[start:end]
        if token_id == unk:  # the pipeline shows an unknown token as the text it covers, starting a word
            tokens[i] = covered
            subword.append(False)
        elif marks_pieces:
            subword.append(len(encoding.tokens[i]) != len(covered))
        else:  # no word marks: a piece joined to the character before it continues a word
            subword.append(start > 0 and " " not in text[start - 1 : start + 1])
    return TextPieces(text, list(encoding.ids), tokens, [tuple(o) for o in encoding.offsets], subword)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _join(decoder, tokens: list[str]) -> str:
    return decoder.decode(tokens) if decoder is not None else " ".join(tokens)


def aggregate(pieces: TextPieces, probabilities: np.ndarray, labels: list[str], strategy: str, decoder) -> list[dict]:
    """The entities of one text: `probabilities` is (sub-tokens, labels); `decoder` the tokenizer's, which
    joins a group's pieces into its word (None: joined by spaces)."""
    check_strategy(strategy)
    entries = []
    if strategy in ("none", "simple"):
        for i, row in enumerate(probabilities):
            best = int(row.argmax())
            entries.append({"entity": labels[best], "score": float(row[best]), "index": i + 1,
                            "word": pieces.tokens[i], "start": pieces.offsets[i][0], "end": pieces.offsets[i][1]})
        if strategy == "none":
            return [e for e in entries if e["entity"] != "O"]
    else:
        words = []
        for i in range(len(probabilities)):
            if words and pieces.is_subword[i]:
                words[-1].append(i)
            else:
                words.append([i])
        for word in words:
            rows = probabilities[word]
            if strategy == "first":
                row = rows[0]
            elif strategy == "max":
                row = rows[int(rows.max(-1).argmax())]
            else:
                row = np.nanmean(rows, axis=0)
            best = int(row.argmax())
            entries.append({"entity": labels[best], "score": float(row[best]),
                            "word": _join(decoder, [pieces.tokens[i] for i in word]),
                            "start": pieces.offsets[word[0]][0], "end": pieces.offsets[word[-1]][1]})
    return [g for g in group(entries, decoder) if g["entity_group"] != "O"]


def _split(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label  # not B-/I-: a continuation


def group(entries: list[dict], decoder) -> list[dict]:
    """Adjacent entries of one type joined into an entity (a B- starts a new one): type, mean score, text span."""
    groups, current = [], []
    for entry in entries:
        prefix, kind = _split(entry["entity"])
        if current and kind == _split(current[-1]["entity"])[1] and prefix != "B":
            current.append(entry)
            continue
        if current:
            groups.append(current)
        current = [entry]
    if current:
        groups.append(current)
    return [{"entity_group": g[0]["entity"].split("-", 1)[-1], "score": float(np.nanmean([e["score"] for e in g])),
             "word": _join(decoder, [e["word"] for e in g]), "start": g[0]["start"], "end": g[-1]["end"]}
            for g in groups]
