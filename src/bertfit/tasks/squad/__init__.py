"""SQuAD v1.1 / v2.0: read the official JSON (`reading`), cut contexts into windows (`windows`), decode
logits into answers (`decoding`).

The pipeline follows google-research/bert `run_squad.py`, with character offsets from the fast
tokenizer instead of whitespace tokens, so answers are always cut from the original context text.
"""
from .decoding import NO_SPAN_NULL_ODDS, Predictions, decode
from .reading import HUB_NAMES, Answer, ReadStats, SquadQuestion, load_hub_squad, read_squad
from .windows import Windows, check_window_settings, make_windows

__all__ = ["NO_SPAN_NULL_ODDS", "HUB_NAMES", "Answer", "Predictions", "ReadStats", "SquadQuestion", "Windows",
           "check_window_settings", "decode", "load_hub_squad", "make_windows", "read_squad"]
