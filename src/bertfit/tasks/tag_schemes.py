"""Tag schemes: which one a file's tags are in, whether each sentence parses in it, and the repair of one
that does not (an `I-` that follows `O` or another type starts the entity there, as IOB1 reads it).

bio is IOB2 (every entity starts with B-), iob1 is read into bio, bioes (IOBES) adds E- and S-; none is a
tag set without entities (part of speech), scored by token accuracy.
"""
from __future__ import annotations

import re

from ..errors import ConfigError, DataError
from .tagged_files import TaggedSentences

SCHEMES = ("auto", "bio", "iob1", "bioes", "none")
BAD_TAGS = ("refuse", "repair")
ENTITY_TAG = re.compile(r"[BIES]-.+")
STRICT_NAMES = {"bio": "IOB2", "bioes": "IOBES"}  # seqeval's names of the schemes (tag_metrics.SCHEMES)


def detect(tags: list[list[str]]) -> str:
    """bioes when E- or S- tags occur, bio when B- or I- tags do (any other tag is then outside the scheme, which
    `normalize` says), else none (part of speech: no tag has an entity prefix)."""
    seen = {t for sentence in tags for t in sentence}
    if not any(ENTITY_TAG.fullmatch(t) for t in seen):
        return "none"
    return "bioes" if any(t[:2] in ("E-", "S-") for t in seen) else "bio"


def check_scheme(scheme: str, bad_tags: str) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"--tag-scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if bad_tags not in BAD_TAGS:
        raise ConfigError(f"--bad-tags must be refuse or repair, not {bad_tags!r}")


def _where(sentences: TaggedSentences, s: int, i: int) -> str:
    return f"{sentences.source}, line {sentences.lines[s][i]}"


def normalize(sentences: TaggedSentences, scheme: str, bad_tags: str = "refuse") -> tuple[str, int]:
    """Check every tag against `scheme` (bio, iob1, bioes, none) and make the sentences parse in it, in place:
    iob1 is rewritten as bio; an ill-formed run is refused (DataError naming the line) or, with bad_tags
    "repair", started where it stands. Returns (the scheme the tags are now in, how many tags were rewritten)."""
    if scheme == "none":
        return "none", 0
    prefixes = "BIES" if scheme == "bioes" else "BI"
    for s, tags in enumerate(sentences.tags):
        for i, tag in enumerate(tags):
            if tag != "O" and not (tag[:1] in prefixes and ENTITY_TAG.fullmatch(tag)):
                raise DataError(f"{_where(sentences, s, i)}: tag {tag!r} is outside the {scheme} scheme (O, or "
                                f"{'/'.join(prefixes)}- and a type); pass --tag-scheme to read another scheme, or "
                                f"none for tags without entities (part of speech)")
    rewritten = 0
    for s, tags in enumerate(sentences.tags):
        for i, tag in enumerate(tags):
            previous = tags[i - 1] if i else "O"
            if scheme == "bioes":
                problem = _bioes_problem(previous, tag, tags[i + 1] if i + 1 < len(tags) else "O")
                if problem:
                    raise DataError(f"{_where(sentences, s, i)}: {problem} does not parse in bioes; fix the file "
                                    f"(--bad-tags repair rewrites bio and iob1 tags only)")
                continue
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                if scheme == "bio" and bad_tags == "refuse":
                    raise DataError(f"{_where(sentences, s, i)}: {tag} after {previous} does not parse in bio (an "
                                    f"entity starts with B-); --bad-tags repair starts it there (B-{tag[2:]}), "
                                    f"--tag-scheme iob1 reads the file as IOB1")
                tags[i] = "B-" + tag[2:]
                rewritten += 1
    return ("bioes" if scheme == "bioes" else "bio"), rewritten


def _bioes_problem(previous: str, tag: str, following: str) -> str | None:
    kind = tag[2:]
    if tag[:2] in ("I-", "E-") and not (previous[:2] in ("B-", "I-") and previous[2:] == kind):
        return f"{tag} after {previous}"
    if tag[:2] in ("B-", "I-") and not (following[:2] in ("I-", "E-") and following[2:] == kind):
        return f"{tag} before {following}"
    return None
