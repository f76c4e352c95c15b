"""Scores of token tags, as seqeval computes them: entity-level precision, recall and F1 (micro over all
entities, and by type) in seqeval's default mode (conlleval's chunking, lenient with ill-formed sequences)
and in its strict mode (an entity counts only where the scheme's grammar makes one); token accuracy.

Written from seqeval 1.2's definitions (`get_entities`, `Tokens.entities`, `precision_recall_fscore_support`),
including their quirks: in the default mode a tag's first character is its prefix and the rest after the
first "-" its type (`O` has type "_"); ill-formed runs (an I- after O, an I- of another type) start an
entity there. tests/test_tag_metrics.py compares both modes with seqeval on generated sequences.
"""
from __future__ import annotations

from collections import Counter

Entity = tuple  # (sentence, type, start, end): end exclusive


# ---- the default mode (conlleval) ----------------------------------------------------------------

def _prefix_and_type(tag: str) -> tuple[str, str]:
    return tag[0], tag[1:].split("-", 1)[-1] or "_"


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO")
            or (prev_tag not in "O." and prev_type != type_))


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (tag in "BS" or (prev_tag in "ES" and tag in "EI") or (prev_tag == "O" and tag in "EI")
            or (tag not in "O." and prev_type != type_))


def chunks(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end exclusive) of each entity of one sentence, by seqeval's default (conlleval) rules."""
    found, prev_tag, prev_type, begin = [], "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, type_ = _prefix_and_type(tag)
        if _end_of_chunk(prev_tag, prefix, prev_type, type_):
            found.append((prev_type, begin, i))
        if _start_of_chunk(prev_tag, prefix, prev_type, type_):
            begin = i
        prev_tag, prev_type = prefix, type_
    return found


# ---- the strict mode (a scheme's grammar) -------------------------------------------------------

ANY = "IOBES"
# per scheme: its prefixes, and (previous prefixes, current prefixes, type condition) patterns that start an
# entity, continue one, and end one (the end patterns are checked on the token after it), as seqeval.scheme
SCHEMES = {
    "IOB2": ("IOB",
             [(ANY, "B", "any")],
             [("B", "I", "same"), ("I", "I", "same")],
             [("I", "O", "any"), ("I", "I", "diff"), ("I", "B", "any"), ("B", "O", "any"), ("B", "I", "diff"),
              ("B", "B", "any")]),
    "IOB1": ("IOB",
             [("O", "I", "any"), ("I", "I", "diff"), ("B", "I", "any"), ("I", "B", "same"), ("B", "B", "same")],
             [("B", "I", "same"), ("I", "I", "same")],
             [("I", "I", "diff"), ("I", "O", "any"), ("I", "B", "any"), ("B", "O", "any"), ("B", "I", "diff"),
              ("B", "B", "same")]),
    "IOBES": ("IOBES",
              [(ANY, "B", "any"), (ANY, "S", "any")],
              [("B", "I", "same"), ("B", "E", "same"), ("I", "I", "same"), ("I", "E", "same")],
              [("S", ANY, "any"), ("E", ANY, "any")]),
}


class SchemeError(ValueError):
    """A tag whose prefix the strict scheme does not allow (seqeval raises too)."""


def _strict_token(tag: str) -> tuple[str, str]:
    return tag[0], tag[1:].strip("-") or "_"


def _matches(patterns, prev: tuple[str, str], current: tuple[str, str]) -> bool:
    for prev_prefixes, current_prefixes, condition in patterns:
        same = prev[1] == current[1]
        if prev[0] in prev_prefixes and current[0] in current_prefixes and (
                condition == "any" or (condition == "same") == same):
            return True
    return False


def strict_chunks(tags: list[str], scheme: str = "IOB2") -> list[tuple[str, int, int]]:
    """(type, start, end exclusive) of each entity the scheme's grammar makes of one sentence."""
    allowed, starts, insides, ends = SCHEMES[scheme]
    tokens = [_strict_token(t) for t in tags] + [("O", "_")]
    for tag, (prefix, _) in zip(tags, tokens):
        if prefix not in allowed:
            raise SchemeError(f"tag {tag!r} is not in the {scheme} scheme (prefixes {', '.join(allowed)})")
    found, i, prev = [], 0, ("O", "_")
    while i < len(tokens):
        token = tokens[i]
        if _matches(starts, prev, token):
            end, inner = i + 1, token
            while end < len(tokens) and _matches(insides, inner, tokens[end]):
                inner, end = tokens[end], end + 1
            if _matches(ends, tokens[end - 1], tokens[end]):
                found.append((token[1], i, end))
            i = end
        else:
            i += 1
        prev = tokens[i - 1]
    return found


# ---- scores ------------------------------------------------------------------------------------

def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _prf(correct: int, predicted: int, gold: int) -> dict:
    precision, recall = _ratio(correct, predicted), _ratio(correct, gold)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def entity_scores(gold: list[list[str]], predicted: list[list[str]], strict: str | None = None) -> dict:
    """Micro precision, recall and F1 over all entities, and each type's with its support (gold entities);
    `strict`: a seqeval scheme (IOB2, IOB1, IOBES) for its strict mode, None for the default mode."""
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tags differ in shape")
    extract = (lambda tags: strict_chunks(tags, strict)) if strict else chunks
    gold_set = {(s, *c) for s, tags in enumerate(gold) for c in extract(tags)}
    predicted_set = {(s, *c) for s, tags in enumerate(predicted) for c in extract(tags)}
    correct = gold_set & predicted_set
    by_type = {}
    for name in sorted({e[1] for e in gold_set | predicted_set}):
        count = lambda entities: sum(e[1] == name for e in entities)
        by_type[name] = {**_prf(count(correct), count(predicted_set), count(gold_set)), "support": count(gold_set)}
    return {**_prf(len(correct), len(predicted_set), len(gold_set)), "support": len(gold_set), "by_type": by_type}


def token_accuracy(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """The share of tokens tagged right (seqeval's accuracy_score, the part-of-speech score)."""
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    return _ratio(sum(g == p for g, p in pairs), len(pairs))


def tag_counts(tags: list[list[str]]) -> Counter:
    return Counter(t for sentence in tags for t in sentence)
