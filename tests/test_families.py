"""Each family against transformers: a tiny model transformers builds and saves loads in bertfit with equal hidden
states and logits, padded and packed; bertfit's saved model loads in transformers' Auto class, equal again."""
from __future__ import annotations

import pytest
import torch

import families
from bertfit import model as model_module
from bertfit.checkpoints.families import FAMILIES, families_table
from bertfit.pretrained import load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

FAMILY_NAMES = ["bert", "distilbert", "roberta", "xlm-roberta", "electra"]
AUTO = {"base": "AutoModel", "classification": "AutoModelForSequenceClassification",
        "qa": "AutoModelForQuestionAnswering", "mlm": "AutoModelForMaskedLM"}
TEXTS = [("The cat sat on the mat.", None),
         ("A much longer sentence about the weather in Paris today, which was grey and wet.", "Was it sunny?"),
         ("hi", None),
         ("Stocks fell sharply on Monday after the announcement.", "Markets dropped at the start of the week.")]


def transformers_model(family: str, head: str, tmp_path):
    """(folder, their model, fast tokenizer) of a tiny random model of `family` with `head`, saved by transformers."""
    tokenizer = families.TOKENIZER_OF[family]()
    config = families.transformers_config(family, tokenizer.get_vocab_size(), num_labels=3 if head == "classification" else 2)
    theirs = families.randomise(getattr(transformers, AUTO[head]).from_config(config))
    folder = families.save_with_tokenizer(theirs, tokenizer, family, tmp_path / f"{family}-{head}")
    return folder, theirs, transformers.AutoTokenizer.from_pretrained(str(folder))


def batch(fast_tokenizer) -> dict:
    firsts, seconds = zip(*[(a, b or "") for a, b in TEXTS])
    rows = [fast_tokenizer(a, b) if b else fast_tokenizer(a) for a, b in TEXTS]
    encoded = fast_tokenizer.pad(rows, return_tensors="pt")
    return dict(encoded)


def outputs(model, head: str, inputs: dict, ours: bool) -> list[torch.Tensor]:
    with torch.no_grad():
        if ours:
            types = inputs.get("token_type_ids", torch.zeros_like(inputs["input_ids"]))
            result = model(inputs["input_ids"], types, inputs["attention_mask"].bool())
            if head == "base":
                return [result[0]] + ([result[1]] if result[1] is not None else [])
            return list(result) if isinstance(result, tuple) else [result]
        result = model(**inputs)
        if head == "base":  # RoBERTa's pooler feeds no head (ours has none): BERT's is compared
            pooled = getattr(result, "pooler_output", None) if "Roberta" not in type(model).__name__ else None
            return [result.last_hidden_state] + ([pooled] if pooled is not None else [])
        if head == "qa":
            return [result.start_logits, result.end_logits]
        return [result.logits]


def assert_equal_at_real_tokens(ours: list[torch.Tensor], theirs: list[torch.Tensor], mask: torch.Tensor):
    for a, b in zip(ours, theirs):
        if a.dim() >= 2 and a.shape[:2] == mask.shape:  # per token: padding positions are nobody's business
            a, b = a[mask.bool()], b[mask.bool()]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("head", list(AUTO))
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_transformers_model_of_each_family_and_head_gives_the_same_outputs_in_bertfit(
        family, head, layout, tmp_path, monkeypatch):
    folder, theirs, fast = transformers_model(family, head, tmp_path)
    # the packed path runs on every padded batch, or on none
    monkeypatch.setattr(model_module, "PACK_BELOW", {False: 1.0 if layout == "packed" else 0, True: 0})
    ours, _ = load_pretrained(folder, head=head, num_labels=3)
    ours.eval()
    assert (ours.bert if head != "base" else ours).config.family == FAMILIES[family].name
    inputs = batch(fast)
    assert not inputs["attention_mask"].all()  # mixed lengths: padding in the batch
    assert_equal_at_real_tokens(outputs(ours, head, inputs, True), outputs(theirs, head, inputs, False),
                                inputs["attention_mask"])


@pytest.mark.parametrize("head", list(AUTO))
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_bertfits_saved_model_of_each_family_loads_in_transformers_auto_class_with_the_same_outputs(
        family, head, tmp_path):
    folder, _, fast = transformers_model(family, head, tmp_path)
    ours, tokenizer = load_pretrained(folder, head=head, num_labels=3)
    ours.eval()
    saved = save_pretrained(ours, tokenizer, tmp_path / "saved")
    theirs, info = getattr(transformers, AUTO[head]).from_pretrained(str(saved), output_loading_info=True)
    theirs.eval()
    assert type(theirs).__name__ == FAMILIES[family].architecture(head)
    missing = [k for k in info["missing_keys"] if not k.startswith(("pooler.", "roberta.pooler."))]
    assert not missing and not info["unexpected_keys"] and not info["mismatched_keys"]
    inputs = batch(transformers.AutoTokenizer.from_pretrained(str(saved)))
    assert inputs["input_ids"].tolist() == batch(fast)["input_ids"].tolist()
    assert_equal_at_real_tokens(outputs(ours, head, inputs, True)[:2 if head == "qa" else 1],
                                outputs(theirs, head, inputs, False)[:2 if head == "qa" else 1],
                                inputs["attention_mask"])


def test_the_families_table_names_every_family_and_model_type():
    table = families_table()
    for family in FAMILIES.values():
        assert f"| {family.name} |" in table
        for model_type in family.model_types:
            assert f"`{model_type}`" in table
