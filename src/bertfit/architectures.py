"""What `bertfit pretrain --architecture` builds, one row each: the family of the new model, the kind of tokenizer
it takes (`bertfit tokenizer --kind`), the objectives it may train with and how its sequences are cut.

Plain data, so `bertfit --help` reads it without torch. Adding an architecture whose family is in
`checkpoints.families` is adding a row here: the recipe reads everything else from the family.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# `bertfit tokenizer --kind` -> the model type its tokenizer.json declares, by which a given file is told apart
TOKENIZER_KINDS = {"wordpiece": "WordPiece", "bpe": "BPE"}
MLM_PROBABILITY = 0.15  # BERT's share of tokens masked, --mlm-probability's default where no row says otherwise


@dataclass(frozen=True)
class Architecture:
    name: str  # --architecture
    family: str  # its row in checkpoints.families: weight names, heads, config.json, tokenizer class
    tokenizer: str  # the TOKENIZER_KINDS key of the tokenizer it takes
    objectives: tuple[str, ...]  # "mlm" always; "nsp" where --nsp is allowed
    # how MLM sequences are cut from the text: "blocks" (the stream cut every max length, every sequence full) or
    # "full-sentences" (whole paragraphs packed up to the max length across documents, as RoBERTa)
    packing: str
    config: dict = field(default_factory=dict)  # BertConfig fields a new model fixes beyond its family's defaults, parts
    mlm_probability: float = MLM_PROBABILITY  # --mlm-probability's default
    # the size preset's intermediate_size times this (rounded to a multiple of 32): GeGLU's three matrices at 2/3
    # of the width hold the parameters and the work of the preset's two, so "the same size" stays the same size
    intermediate_ratio: float = 1.0
    tutorial_files: bool = False  # also the tutorial's bert_model.pth (a BERT's state dict)
    summary: str = ""  # for the docs


ARCHITECTURES = {a.name: a for a in (
    Architecture("bert", family="bert", tokenizer="wordpiece", objectives=("mlm", "nsp"), packing="blocks",
                 tutorial_files=True,
                 summary="BERT: WordPiece, MLM on packed blocks (with --nsp: sentence pairs and next-sentence "
                         "prediction), token types, the tutorial's files too"),
    Architecture("roberta", family="roberta", tokenizer="bpe", objectives=("mlm",), packing="full-sentences",
                 config={"type_vocab_size": 1},
                 summary="RoBERTa: byte-level BPE, MLM alone on whole paragraphs packed across documents, no "
                         "token types, positions counted from the padding id + 1"),
    # ModernBERT's recipe (Warner et al. 2024) masks 30%; the rest is its family's defaults (no biases, no dropout,
    # every third layer global, a 128-token window). Its own tokenizer is a BPE with BERT's special tokens; a
    # byte-level BPE of `bertfit tokenizer` takes its place
    Architecture("modernbert", family="modernbert", tokenizer="bpe", objectives=("mlm",), packing="full-sentences",
                 mlm_probability=0.3, intermediate_ratio=2 / 3,
                 summary="ModernBERT: byte-level BPE, MLM alone at 30% masking on whole paragraphs packed across "
                         "documents; pre-norm, rotary positions, GeGLU, no biases, no dropout, every third layer "
                         "global and the others a 128-token window"),
)}


def described() -> str:
    """The architectures and the tokenizer each takes, for a refusal's one line."""
    return ", ".join(f"{a.name} (a --kind {a.tokenizer} tokenizer)" for a in ARCHITECTURES.values())
