"""bench/families_sst2.py's parts: each family's model and tokenizer as the bench makes them are read alike by
bertfit and transformers (the same token ids and logits, so its speed figures compare the same math), and the
check that serve and the export answer as classify does names what differs."""
from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# by path: tests/families.py is also `families` on the path of other tests
_spec = importlib.util.spec_from_file_location("bench_families_sst2", ROOT / "bench" / "families_sst2.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up
_spec.loader.exec_module(bench)

SENTENCES = ["the movie was a charming and often affecting journey .",
             "unflinchingly bleak and desperate",
             "Café Müller's crème brûlée was naïve , and the plot 😀 had none of it",
             "a", "it 's a slow , dull and ultimately pointless film about nothing much at all ."] * 30
SIZE = Namespace(hidden=32, layers=2, heads=4, intermediate=48, max_positions=64)


def tokenizer_of(kind: str, tmp_path: Path):
    """The bench's tokenizer of `kind`, trained on a few sentences: the library call `bertfit tokenizer` makes
    for WordPiece and byte-level BPE, the bench's own for the others."""
    from bertfit.tokenizer_training import train_tokenizer

    if kind in ("wordpiece", "bpe"):
        text = tmp_path / "train.txt"
        text.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
        tokenizer, _ = train_tokenizer([str(text)], tmp_path / "tokenizer.json", kind, vocab_size=400,
                                       lowercase=kind == "wordpiece", min_frequency=1, quiet=True)
        return tokenizer
    return bench.train_library_tokenizer(kind, SENTENCES, 300)


@pytest.mark.parametrize("name", [row.name for row in bench.FAMILIES])
def test_each_familys_bench_model_gives_transformers_token_ids_and_logits_in_bertfit(name, tmp_path):
    import transformers

    from bertfit.pretrained import load_pretrained

    row = bench.BY_NAME[name]
    folder = bench.save_model(row, SIZE, tokenizer_of(row.tokenizer, tmp_path), tmp_path / name, "classification",
                              seed=0, **bench.attention_dropout_zero(row))
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    ours, our_tokenizer = load_pretrained(folder, head="classification", num_labels=2)
    ours.eval()
    assert ours.bert.config.family == row.family
    assert ours.bert.config.attention_probs_dropout_prob == 0.0  # the same-math setting reached bertfit's model

    texts = SENTENCES[:5]
    assert [their_tokenizer(t)["input_ids"] for t in texts] == [our_tokenizer.encode(t).ids for t in texts]
    inputs = their_tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = theirs(**inputs).logits
        types = inputs.get("token_type_ids", torch.zeros_like(inputs["input_ids"]))
        got = ours(inputs["input_ids"], types, inputs["attention_mask"].bool())
    got = got[0] if isinstance(got, tuple) else got
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_answers_agree_unless_a_label_or_a_probability_beyond_the_tolerance_differs():
    classify = [("positive", 0.9132), ("negative", 0.5021)]
    assert bench.agree(classify, [("positive", 0.91325), ("negative", 0.50205)], 2e-4) == "ok"
    assert bench.agree(classify, [("negative", 0.9132), ("negative", 0.5021)], 2e-4).startswith("differs: sentence 0")
    assert "sentence 1" in bench.agree(classify, [("positive", 0.9132), ("negative", 0.5031)], 2e-4)
    assert "1 answers for 2" in bench.agree(classify, [("positive", 0.9132)], 2e-4)
