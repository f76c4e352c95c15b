"""Filling [MASK]s with a pretraining run, through the Python API and `bertfit fill-mask`, against transformers."""
import numpy as np
import pytest
import torch

import runs

from bertfit import inference
from bertfit.cli import main
from bertfit.errors import ConfigError, DataError

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["The cat sat on the [MASK].", "Paris is the [MASK] of France, and the [MASK] is its river.", "[MASK]",
         "A much longer sentence about the weather in Paris today, which was [MASK] and wet, so nobody went out."]


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    return runs.masked_lm_run(tmp_path_factory.mktemp("mlm") / "pretrain")


@pytest.fixture(scope="module")
def pretraining_run(tmp_path_factory):
    return runs.masked_lm_run(tmp_path_factory.mktemp("pretraining") / "pretrain", seed=1, pretraining=True)


def transformers_fills(folder, texts: list[str], top_k: int, their_class) -> list[list[tuple[list[int], np.ndarray]]]:
    """For each text and [MASK]: transformers' top_k token ids and their softmax probabilities."""
    model = their_class.from_pretrained(str(folder)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    results = []
    for text in texts:
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            output = model(**encoded)
        logits = output.logits if hasattr(output, "logits") else output.prediction_logits
        probabilities = logits[0][encoded["input_ids"][0] == tokenizer.mask_token_id].double().softmax(-1)
        top = probabilities.topk(top_k)
        results.append([(ids.tolist(), values.numpy()) for ids, values in zip(top.indices, top.values)])
    return results


@pytest.mark.parametrize("which, their_class", [("mlm", "BertForMaskedLM"), ("pretraining", "BertForPreTraining")])
def test_fill_mask_gives_transformers_top_tokens_and_probabilities(mlm_run, pretraining_run, which, their_class):
    run_dir = mlm_run if which == "mlm" else pretraining_run
    run = inference.load_run(run_dir, precision="fp32")
    filled = inference.fill_mask(run, TEXTS, top_k=4)
    expected = transformers_fills(run_dir / "model", TEXTS, 4, getattr(transformers, their_class))

    assert run.task == "fill-mask" and run.head == which
    assert [len(masks) for masks in filled] == [1, 2, 1, 1]
    for masks, reference in zip(filled, expected):
        for candidates, (ids, probabilities) in zip(masks, reference):
            assert [c["token_id"] for c in candidates] == ids
            assert [c["token"] for c in candidates] == [run.tokenizer.id_to_token(i) for i in ids]
            np.testing.assert_allclose([c["probability"] for c in candidates], probabilities, atol=1e-5, rtol=0)
    assert filled[1][0] != filled[1][1]  # each mask its own candidates
    assert 0.05 < filled[0][0][0]["probability"] < 1  # clear favourites, so the comparison means something


def test_fill_mask_in_one_batch_equals_one_text_at_a_time(mlm_run):
    run = inference.load_run(mlm_run, precision="fp32")
    together = inference.fill_mask(run, TEXTS, top_k=3)
    for text, masks in zip(TEXTS, together):
        (alone,) = inference.fill_mask(run, [text], top_k=3)
        assert [[c["token_id"] for c in m] for m in alone] == [[c["token_id"] for c in m] for m in masks]
        np.testing.assert_allclose([[c["probability"] for c in m] for m in alone],
                                   [[c["probability"] for c in m] for m in masks], atol=1e-6, rtol=0)


@pytest.mark.parametrize("texts, problem", [
    (["a [MASK] film", "a fine film"], r"text 2 \('a fine film'\) has no \[MASK\]"),
    (["a [MASK] film", "  "], "text 2 is empty"),
    (["[MASK] " + "word " * 200], r"text 1 \('\[MASK\] word word .*'\) is 203 tokens long .* at most 128"),
])
def test_fill_mask_refuses_texts_it_cannot_fill_naming_them(mlm_run, texts, problem):
    run = inference.load_run(mlm_run, precision="fp32")
    with pytest.raises(DataError, match=problem):
        inference.fill_mask(run, texts)


def test_fill_mask_refuses_a_bad_top_k_and_a_run_that_is_no_masked_language_model(mlm_run, tmp_path):
    run = inference.load_run(mlm_run, precision="fp32")
    with pytest.raises(ConfigError, match="top_k must be between 1 and the vocabulary's 30522 tokens, not 0"):
        inference.fill_mask(run, ["a [MASK] film"], top_k=0)
    classifier = inference.load_run(runs.classification_run(tmp_path / "glue-sst2"))
    with pytest.raises(ConfigError, match="a sst2 model, not a masked-language model"):
        inference.fill_mask(classifier, ["a [MASK] film"])


def test_a_fill_mask_pass_keeps_top_k_tokens_per_mask_not_the_vocabulary(mlm_run):
    run = inference.load_run(mlm_run, precision="fp32")
    texts = TEXTS + [" ".join(["[MASK]"] * 100)]
    prepared = inference.prepare_masked(run, texts, top_k=3)
    outputs = inference.run_model(run, prepared.features, top_k=3)
    masks = [1, 2, 1, 1, 100]
    assert [o.token_ids.shape for o in outputs] == [(m, 3) for m in masks]
    assert [o.probabilities.shape for o in outputs] == [(m, 3) for m in masks]
    kept = sum(o.token_ids.nbytes + o.probabilities.nbytes for o in outputs)
    assert kept == sum(masks) * 3 * 16  # a vocabulary row would be 30,522 x 4 bytes per mask
    answers = inference.finish(run, prepared, outputs)
    assert [len(m) for m in answers] == masks and all(len(c) == 3 for m in answers for c in m)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_top_tokens_are_a_stable_sort_of_the_whole_rows_softmax_ties_included(k):
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(40, 2000, generator=generator)).bfloat16().float()  # bf16 logits: many ties
    logits[0] = 0.0  # every token tied
    logits[1, :] = -1.0
    logits[1, [7, 3, 1999, 500]] = 2.0  # ties at the top, in no order of id
    ids, probabilities = inference.top_tokens(logits, k)
    for row, got_ids, got in zip(logits.double().numpy(), ids, probabilities):
        reference = np.exp(row - row.max())
        reference /= reference.sum()
        best = np.argsort(-reference, kind="stable")[:k]
        assert got_ids.tolist() == best.tolist()
        np.testing.assert_allclose(got, reference[best], rtol=1e-6, atol=0)
    assert ids[1][: min(k, 4)].tolist() == [3, 7, 500, 1999][:k]


def test_fill_mask_refuses_more_masks_than_max_masks_counting_every_text(mlm_run):
    run = inference.load_run(mlm_run, precision="fp32")
    with pytest.raises(DataError, match=r"the texts hold 3 \[MASK\]s; at most 2 in one request \(--max-masks\)"):
        inference.fill_mask(run, ["a [MASK] film", "[MASK] and [MASK]"], max_masks=2)
    assert len(inference.fill_mask(run, ["a [MASK] film", "[MASK] and [MASK]"], max_masks=3)) == 2


def test_models_description_says_fill_mask(mlm_run):
    info = inference.load_run(mlm_run, precision="fp32").describe()
    assert info == {"task": "fill-mask", "head": "mlm", "engine": "torch", "precision": "fp32", "max_seq_length": 128,
                    "mask_token": "[MASK]"}


# ---- the command line ---------------------------------------------------------------------------

def test_cli_prints_each_masks_tokens_and_probabilities(mlm_run, capsys):
    texts = TEXTS[:2]
    assert main(["fill-mask", str(mlm_run), *texts, "--top-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()

    filled = inference.fill_mask(inference.load_run(mlm_run), texts, top_k=3)  # the CLI's precision: auto
    expected = []
    for text, masks in zip(texts, filled):
        expected.append(text)
        for number, candidates in enumerate(masks, 1):
            expected.append(f"  [MASK] {number} of {len(masks)}")
            width = max(len(c["token"]) for c in candidates)
            expected.extend(f"    {c['token']:<{width}}  {c['probability']:.4f}" for c in candidates)
    assert out == expected and len(out) == 2 + 3 * 4


def test_cli_fill_mask_without_a_mask_is_one_error_line(mlm_run, capsys):
    assert main(["fill-mask", str(mlm_run), "a fine film"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertfit: error: text 1 ('a fine film') has no [MASK]") and "Traceback" not in err
