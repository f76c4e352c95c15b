"""DeBERTa-v2/v3 beyond what test_families checks for every family: its relative-position buckets, the v2 choices
(own position projections, absolute positions, token types, a projected embedding, exact distances), the tagger,
the MLM head under its non-legacy names, the config.json fields it refuses, and its ONNX export."""
from __future__ import annotations

import json

import pytest
import torch

import families
from bertfit import model as model_module
from bertfit.disentangled import bucket_positions
from bertfit.errors import CheckpointError
from bertfit.pretrained import load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

# sentences of 40 to 80 tokens with the test tokenizer: past every bucket and clamp below
TEXTS = ["The cat sat on the mat.",
         "A much longer sentence about the weather in Paris today, which was grey and wet, and the cat sat on the "
         "mat while the dog watched it from the door.",
         "Stocks fell sharply on Monday after the announcement of new tariffs; naïve guests paid ¥500 😀."]
PAIR = ("Was it sunny in Paris today?", TEXTS[1])
# DeBERTa-v2's choices where v3 makes others
V2 = dict(relative_attention=True, position_buckets=-1, max_relative_positions=12, pos_att_type="c2p|p2c",
          share_att_key=False, norm_rel_ebd="none", position_biased_input=True, type_vocab_size=2, embedding_size=16)


def saved_by_transformers(auto: str, tmp_path, **overrides):
    """(folder, their model, fast tokenizer) of a tiny random DeBERTa that transformers built and saved."""
    tokenizer = families.deberta_unigram()
    config = families.transformers_config("deberta-v2", tokenizer.get_vocab_size(), **overrides)
    theirs = families.randomise(getattr(transformers, auto).from_config(config))
    folder = families.save_with_tokenizer(theirs, tokenizer, "deberta-v2", tmp_path / "theirs")
    return folder, theirs, transformers.AutoTokenizer.from_pretrained(str(folder))


def encoded(fast) -> dict:
    rows = [fast(text) for text in TEXTS] + [fast(*PAIR)]
    return dict(fast.pad(rows, return_tensors="pt"))


def ours_on(model, inputs: dict):
    with torch.no_grad():
        return model(inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"].bool())


@pytest.mark.parametrize("buckets, max_position", [(8, 16), (8, 512), (256, 512), (32, 64)])
def test_log_buckets_are_transformers_buckets_for_every_distance(buckets, max_position):
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    relative = torch.arange(-3 * max_position, 3 * max_position + 1)
    theirs = make_log_bucket_position(relative, buckets, max_position).long()
    assert bucket_positions(relative, buckets, max_position).tolist() == theirs.tolist()
    assert bucket_positions(relative, buckets, max_position)[3 * max_position + buckets // 2 - 1] == buckets // 2 - 1


@pytest.mark.parametrize("grad", [False, True])
def test_the_packed_path_gives_the_padded_paths_numbers(grad, tmp_path, monkeypatch):
    """Distances are counted within each sequence and attention runs in the padded layout, so removing the padding
    from everything else changes nothing, with or without gradients (training and serving)."""
    folder, _, fast = saved_by_transformers("AutoModel", tmp_path)
    ours, _ = load_pretrained(folder)
    ours.eval()
    inputs = encoded(fast)
    mask = inputs["attention_mask"].bool()
    results = {}
    for layout, share in (("padded", 0), ("packed", 1.0)):
        monkeypatch.setattr(model_module, "PACK_BELOW", {False: share, True: share})
        with torch.set_grad_enabled(grad):
            assert (model_module.Packing.worth_it(mask) is not None) == (layout == "packed")
            results[layout] = ours(inputs["input_ids"], inputs["token_type_ids"], mask)[0][mask].detach()
    torch.testing.assert_close(results["packed"], results["padded"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("terms", ["c2p|p2c", "c2p", "p2c"])
def test_deberta_v2s_choices_give_transformers_outputs_padded_and_packed(terms, layout, tmp_path, monkeypatch):
    folder, theirs, fast = saved_by_transformers("AutoModelForSequenceClassification", tmp_path,
                                                 **{**V2, "pos_att_type": terms})
    monkeypatch.setattr(model_module, "PACK_BELOW", {False: 1.0 if layout == "packed" else 0, True: 0})
    ours, tokenizer = load_pretrained(folder, head="classification")
    ours.eval()
    assert ours.bert.embeddings.project is not None and ours.bert.embeddings.position_embeddings is not None
    inputs = encoded(fast)
    assert inputs["token_type_ids"].any() and inputs["input_ids"].shape[1] > 2 * V2["max_relative_positions"]
    with torch.no_grad():
        expected = theirs(**inputs).logits
    torch.testing.assert_close(ours_on(ours, inputs), expected, atol=1e-5, rtol=1e-5)
    # and back: transformers reads bertfit's files as the same network
    saved = save_pretrained(ours, tokenizer, tmp_path / "saved")
    again = transformers.AutoModelForSequenceClassification.from_pretrained(str(saved)).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, expected, atol=1e-5, rtol=1e-5)


def assert_same_logits(ours, theirs, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Our model (put in eval mode) gives transformers' logits at the real tokens (fp32, 1e-5); returns their
    logits and the real tokens' mask, for the saved model's turn."""
    ours.eval()
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected = theirs(**inputs).logits
    torch.testing.assert_close(ours_on(ours, inputs)[mask], expected[mask], atol=1e-5, rtol=1e-5)
    return expected, mask


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_the_deberta_tagger_gives_transformers_token_logits_and_loads_back(layout, tmp_path, monkeypatch):
    folder, theirs, fast = saved_by_transformers("AutoModelForTokenClassification", tmp_path, num_labels=5)
    monkeypatch.setattr(model_module, "PACK_BELOW", {False: 1.0 if layout == "packed" else 0, True: 0})
    ours, tokenizer = load_pretrained(folder, head="tagging", num_labels=5)
    inputs = encoded(fast)
    expected, mask = assert_same_logits(ours, theirs, inputs)
    saved = save_pretrained(ours, tokenizer, tmp_path / "saved")
    again = transformers.AutoModelForTokenClassification.from_pretrained(str(saved)).eval()
    assert type(again).__name__ == "DebertaV2ForTokenClassification"
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_a_masked_lm_saved_with_legacy_false_reads_and_writes_its_lm_predictions_head(tmp_path):
    folder, theirs, fast = saved_by_transformers("AutoModelForMaskedLM", tmp_path, legacy=False)
    ours, tokenizer = load_pretrained(folder, head="mlm")
    inputs = encoded(fast)
    expected, mask = assert_same_logits(ours, theirs, inputs)
    saved = save_pretrained(ours, tokenizer, tmp_path / "saved")
    assert json.loads((saved / "config.json").read_text())["legacy"] is False
    again, info = transformers.AutoModelForMaskedLM.from_pretrained(str(saved), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(**inputs).logits[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_the_encoder_of_a_checkpoint_with_both_of_debertas_unused_heads_loads(tmp_path):
    """microsoft's DeBERTa-v3 files hold an lm_predictions head and the replaced-token head (mask_predictions) under
    a config.json without `legacy`: transformers' default legacy model uses neither, and neither does bertfit."""
    from safetensors.torch import load_file, save_file

    folder, theirs, fast = saved_by_transformers("AutoModel", tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    hidden = families.SIZES["hidden_size"]
    weights.update({"lm_predictions.lm_head.dense.weight": torch.zeros(hidden, hidden),
                    "mask_predictions.classifier.weight": torch.zeros(1, hidden)})
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    ours, _ = load_pretrained(folder)
    inputs = encoded(fast)
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        torch.testing.assert_close(ours_on(ours.eval(), inputs)[0][mask], theirs(**inputs).last_hidden_state[mask],
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fields, problem", [
    ({"conv_kernel_size": 3}, r"conv_kernel_size 3 \(DeBERTa-v2-xlarge's convolution beside the first layer\) is "
                              r"not supported"),
    ({"pooler_hidden_size": 64}, "pooler_hidden_size 64 differs from hidden_size"),
    ({"pos_att_type": ["c2p", "p2p"]}, "pos_att_type must name c2p and/or p2c"),
    ({"pos_att_type": 3}, "pos_att_type must be a list of c2p and p2c, not 3"),
    ({"share_att_key": "yes"}, "share_att_key must be true or false, not 'yes'"),
    ({"norm_rel_ebd": "rms_norm"}, "norm_rel_ebd must be none or layer_norm"),
    ({"relative_attention": False}, "pos_att_type must name c2p and/or p2c, with relative_attention"),
    ({"position_buckets": -2}, "position_buckets must be at least -1, not -2"),
])
def test_a_deberta_config_that_builds_another_network_is_refused_in_one_line(fields, problem, tmp_path):
    folder, _, _ = saved_by_transformers("AutoModel", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))
    with pytest.raises(CheckpointError, match=problem) as refused:
        load_pretrained(folder)
    assert str(folder / "config.json") in str(refused.value) and "\n" not in str(refused.value)


def test_the_onnx_export_of_a_deberta_classifier_computes_its_buckets_as_pytorch_does(tmp_path):
    """The buckets (log, ceil, sign) and the gathers are traced, not frozen at the trace's length: sequences longer
    than the trace's, padded and not, give PyTorch's logits."""
    pytest.importorskip("onnxruntime")
    from bertfit import inference
    from bertfit.export import export_onnx

    folder, theirs, fast = saved_by_transformers("AutoModelForSequenceClassification", tmp_path)
    export_onnx(folder, tmp_path / "onnx", say=lambda *_: None)
    onnx_run = inference.load_run(tmp_path / "onnx", engine="onnx", need="classify")
    torch_run = inference.load_run(folder, precision="fp32", need="classify")
    texts = [TEXTS[1], TEXTS[0], TEXTS[2]]
    assert 64 < len(fast(texts[0])["input_ids"]) <= 128  # whole, at the run's max_seq_length
    onnx = [a["probabilities"] for a in inference.classify(onnx_run, texts)]
    pytorch = [a["probabilities"] for a in inference.classify(torch_run, texts)]
    with torch.no_grad():
        inputs = fast(texts, padding=True, return_tensors="pt")
        expected = torch.softmax(theirs(**inputs).logits, -1)
    torch.testing.assert_close(torch.tensor([list(p.values()) for p in onnx]), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor([list(p.values()) for p in pytorch]), expected, atol=1e-5, rtol=0)


def test_ner_trains_a_deberta_tagger_saved_as_transformers_class_and_tag_reads_the_run(tmp_path):
    from test_ner import SENTENCES, write_conll

    from bertfit import cli

    folder, _, _ = saved_by_transformers("AutoModelForMaskedLM", tmp_path)
    write_conll(tmp_path / "train.conll", SENTENCES * 2)
    write_conll(tmp_path / "dev.conll", SENTENCES)
    run = tmp_path / "run"
    assert cli.main(["ner", "--train-file", str(tmp_path / "train.conll"), "--eval-file", str(tmp_path / "dev.conll"),
                     "--model", str(folder), "--output-dir", str(run), "--epochs", "1", "--batch-size", "4",
                     "--precision", "fp32", "--quiet"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == ["DebertaV2ForTokenClassification"]
    assert cli.main(["tag", str(run), "Mary Ann visited New York.", "--precision", "fp32"]) == 0


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_tag_of_a_deberta_tagger_gives_the_pipelines_entities_and_offsets(strategy, tmp_path):
    """SentencePiece's ▁ before each word: the character offsets and the grouping are still the pipeline's."""
    from bertfit import inference

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    folder, _, _ = saved_by_transformers("AutoModelForTokenClassification", tmp_path, num_labels=len(labels),
                                         id2label=dict(enumerate(labels)))
    pipeline = transformers.pipeline("token-classification", model=str(folder), aggregation_strategy=strategy)
    run = inference.load_run(folder, precision="fp32", need="tag")
    key = "entity" if strategy == "none" else "entity_group"
    for text in ["Mary Ann visited New York and Paris-Berlin yesterday, unbelievably.",
                 "Café Müller served crème brûlée in Paris today 😀 (twice)!"]:
        theirs, ours = pipeline(text), inference.tag(run, [text], strategy)[0]
        assert len(theirs) > 1
        assert [(t[key], t["word"], t["start"], t["end"]) for t in theirs] == \
               [(o[key], o["word"], o["start"], o["end"]) for o in ours]
        torch.testing.assert_close(torch.tensor([float(t["score"]) for t in theirs]),
                                   torch.tensor([o["score"] for o in ours]), atol=1e-4, rtol=0)
