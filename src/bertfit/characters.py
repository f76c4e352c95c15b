"""Whole characters: a Python str can hold lone surrogates (U+D800-U+DFFF), which no UTF-8 text can. They come
from a JSON `\\ud800` escape, or from command-line bytes that are not UTF-8 (Python keeps those as U+DC80-U+DCFF);
the tokenizers refuse such a str with a TypeError and UTF-8 files cannot hold it. Every reader of user data and
the CLI's text arguments ask `lone_surrogate` first, so the user hears which line or argument, not a traceback."""
from __future__ import annotations

import os
import re

SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """What is wrong with `text`, to follow the name of its field, line or argument; None when UTF-8 can carry it."""
    found = SURROGATE.search(text)
    if found is None:
        return None
    return f"holds a lone surrogate ({found.group()!r} at character {found.start() + 1}), which is no character"


def argument_problem(text: str) -> str | None:
    """`lone_surrogate` for a command-line argument: the bytes that are not UTF-8, as the shell passed them."""
    if lone_surrogate(text) is None:
        return None
    try:
        raw = os.fsencode(text)  # the argument's own bytes, where Python escaped them
        raw.decode("utf-8")
    except UnicodeEncodeError:  # a surrogate no byte became: given from Python, not a shell
        return lone_surrogate(text)
    except UnicodeDecodeError as error:
        return (f"is not UTF-8 (byte {raw[error.start]:#04x} at byte {error.start + 1} of {len(raw)}); "
                f"give the text as UTF-8")
    return lone_surrogate(text)
