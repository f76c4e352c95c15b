"""Each family against transformers: a tiny model transformers builds and saves loads in bertfit with equal hidden
states and logits, padded and packed; bertfit's saved model loads in transformers' Auto class, equal again."""
from __future__ import annotations

import json

import pytest
import torch

import families
from bertfit import model as model_module
from bertfit import tokenization
from bertfit.checkpoints.families import FAMILIES, LISTED, families_table
from bertfit.pretrained import load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

FAMILY_NAMES = ["bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra", "deberta-v2", "modernbert"]
AUTO = {"base": "AutoModel", "classification": "AutoModelForSequenceClassification",
        "qa": "AutoModelForQuestionAnswering", "mlm": "AutoModelForMaskedLM",
        "tagging": "AutoModelForTokenClassification"}
# each family with each head it has
FAMILY_HEADS = [(family, head) for family in FAMILY_NAMES for head in AUTO if head in FAMILIES[family].heads]
TEXTS = [("The cat sat on the mat.", None),
         ("A much longer sentence about the weather in Paris today, which was grey and wet.", "Was it sunny?"),
         ("hi", None),
         ("Stocks fell sharply on Monday after the announcement.", "Markets dropped at the start of the week.")]


def transformers_model(family: str, head: str, tmp_path):
    """(folder, their model, fast tokenizer) of a tiny random model of `family` with `head`, saved by transformers."""
    tokenizer = families.TOKENIZER_OF[family]()
    config = families.transformers_config(family, tokenizer.get_vocab_size(),
                                          num_labels=3 if head in ("classification", "tagging") else 2)
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
@pytest.mark.parametrize("family, head", FAMILY_HEADS)
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


@pytest.mark.parametrize("family, head", FAMILY_HEADS)
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
    # the special tokens transformers' config names are the tokenizer's, not its config class's defaults
    ids = tokenization.special_ids(tokenizer)
    for field, role in (("cls_token_id", "cls"), ("sep_token_id", "sep"), ("bos_token_id", "cls"),
                        ("eos_token_id", "sep"), ("pad_token_id", "pad")):
        if getattr(theirs.config, field, None) is not None:
            assert getattr(theirs.config, field) == getattr(ids, role), field
    inputs = batch(transformers.AutoTokenizer.from_pretrained(str(saved)))
    assert inputs["input_ids"].tolist() == batch(fast)["input_ids"].tolist()
    assert_equal_at_real_tokens(outputs(ours, head, inputs, True)[:2 if head == "qa" else 1],
                                outputs(theirs, head, inputs, False)[:2 if head == "qa" else 1],
                                inputs["attention_mask"])


def test_the_families_table_names_every_family_and_model_type():
    table = families_table()
    for family in LISTED:  # each family once (a variant of one, under other weight names, is not a row)
        assert f"| {family.name} |" in table
        for model_type in family.model_types:
            assert f"`{model_type}`" in table


# ---- tokenization: the family's own template, as its fast tokenizer in transformers encodes ---------------------

def many_strings(n: int = 300, seed: int = 0) -> list[str]:
    """Short and long texts with accents, emoji, CJK, numbers and very long words."""
    import random

    rng = random.Random(seed)
    words = ["the", "cat", "Café", "naïve", "façade", "crème", "brûlée", "😀", "👍🏽", "東京タワー", "¥500",
             "señor", "García's", "piñata", "Question", "answering", "don't", "U.S.A.", "3.14", "e-mail",
             "supercalifragilisticexpialidocious" * 3, "Ünter", "\u00e9t\u00e9", "e\u0301te\u0301", "ß", "İstanbul"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) + rng.choice(["", ".", " !", "  "])
            for _ in range(n)]


def assert_glue_encoding_equals(ours, fast, texts: list[str], token_types: bool) -> None:
    """bertfit's GLUE encoding of `texts`, single and in pairs, cut longest-first at 16 and 40 tokens, gives the ids
    of transformers' `fast` tokenizer, and its token types where `token_types`."""
    from bertfit.tasks import glue_encoding
    from bertfit.tasks.glue import Examples

    firsts, seconds = texts[:150], texts[150:]
    for max_length in (16, 40):
        for pair in (False, True):
            examples = Examples(texts_a=firsts, texts_b=seconds if pair else None, labels=None,
                                indices=list(range(len(firsts))), source="strings")
            features, stats = glue_encoding.encode(examples, ours, max_length)
            encoded = fast(firsts, seconds if pair else None, truncation=True, max_length=max_length,
                           return_token_type_ids=True)
            assert stats.num_truncated > 0
            for i in range(len(firsts)):
                assert features.input_ids(i).tolist() == encoded["input_ids"][i]
                if token_types:
                    assert features.token_type_ids(i).tolist() == encoded["token_type_ids"][i]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_glue_encoding_equals_the_families_fast_tokenizer_on_pairs_with_truncation(family, tmp_path):
    from bertfit.pretrained import load_tokenizer

    folder = families.save_tokenizer_folder(families.TOKENIZER_OF[family](), family, tmp_path / family)
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))
    ours = load_tokenizer(folder)
    # token types where the tokenizer writes them
    assert_glue_encoding_equals(ours, fast, many_strings(), FAMILIES[family].name in ("bert", "electra", "deberta-v2"))


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "deberta-v2", "modernbert"])
def test_squad_windows_point_at_the_answers_characters_with_each_kind_of_tokenizer(family, tmp_path):
    """Byte-level BPE's tokens carry their leading space (Ġ) and SentencePiece's its ▁: the offsets the answer
    positions come from must still cover the answer's characters alone. The windows are the fast tokenizer's pair
    encoding of question and context."""
    from bertfit.pretrained import load_tokenizer
    from bertfit.tasks.squad import Answer, SquadQuestion, make_windows

    folder = families.save_tokenizer_folder(families.TOKENIZER_OF[family](), family, tmp_path / family)
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))
    ours = load_tokenizer(folder)
    context = "Café Müller served crème brûlée in Paris today; naïve guests paid ¥500 for señor García's piñata 😀."
    questions = []
    for i, answer in enumerate(["crème brûlée", "Paris", "¥500", "señor García's piñata", "Café"]):
        questions.append(SquadQuestion(str(i), "t", f"What about {answer}?", context,
                                       [Answer(answer, context.index(answer))]))
    features, windows = make_windows(questions, ours, max_seq_length=128, doc_stride=32, max_query_length=32,
                                     training=True)
    assert len(windows) == len(questions)  # one window each: the whole context fits
    for w, question in enumerate(questions):
        assert features.input_ids(w).tolist() == fast(question.question, context)["input_ids"]
        start, end = features.columns["start_positions"][w], features.columns["end_positions"][w]
        offsets = windows.token_offsets(w)
        assert context[offsets[start][0]:offsets[end][1]] == question.answers[0].text


# ---- every command for each family, from a masked-language model transformers saved ----------------------------

CLI_FAMILIES = ["distilbert", "roberta", "xlm-roberta", "electra", "deberta-v2", "modernbert"]


@pytest.fixture(scope="module", params=CLI_FAMILIES)
def family_mlm(request, tmp_path_factory):
    """(family, folder) of a tiny masked-language model of the family, as transformers saves it."""
    folder, _, _ = transformers_model(request.param, "mlm", tmp_path_factory.mktemp(request.param))
    return request.param, folder


def their_probabilities(folder, auto: str, texts: list[str], max_length: int = 128) -> torch.Tensor:
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = getattr(transformers, auto).from_pretrained(str(folder)).eval()
    with torch.no_grad():
        inputs = fast(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        return torch.softmax(model(**inputs).logits, -1)


def test_fill_mask_of_each_family_gives_transformers_probabilities(family_mlm, capsys):
    from bertfit import inference
    from bertfit.cli import main

    family, folder = family_mlm
    text = "The cat sat on the [MASK] and watched the dog."
    assert main(["fill-mask", str(folder), text]) == 0
    run = inference.load_run(folder, precision="fp32", need="fill-mask")
    (masks,) = inference.fill_mask(run, [text], top_k=3)
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))
    their_text = text.replace("[MASK]", fast.mask_token)
    theirs = their_probabilities(folder, "AutoModelForMaskedLM", [their_text])[0]
    position = fast(their_text)["input_ids"].index(fast.mask_token_id)
    top = theirs[position].topk(3)
    assert [m["token_id"] for m in masks[0]] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([m["probability"] for m in masks[0]]), top.values, atol=1e-5, rtol=0)


def test_glue_classify_and_export_work_for_each_family(family_mlm, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from bertfit import inference
    from bertfit.cli import main
    from bertfit.demo import write_sentiment_data

    family, folder = family_mlm
    data = write_sentiment_data(tmp_path / "glue", 24, 8)
    run = tmp_path / "run"
    assert main(["glue", "sst2", "--model", str(folder), "--data-dir", str(data), "--output-dir", str(run),
                 "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32", "--precision", "fp32",
                 "--quiet"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["model_type"] == FAMILIES[family].model_types[0]
    assert config["architectures"] == [FAMILIES[family].architecture("classification")]
    texts = ["a fine film", "Two hours of nothing: slow, loud, and far too pleased with itself."]
    assert main(["classify", str(run), *texts]) == 0
    torch_run = inference.load_run(run, precision="fp32", need="classify")
    answers = inference.classify(torch_run, texts)
    theirs = their_probabilities(run / "model", "AutoModelForSequenceClassification", texts, max_length=32)
    torch.testing.assert_close(torch.tensor([list(a["probabilities"].values()) for a in answers]), theirs,
                               atol=1e-5, rtol=0)
    # a pair's truncation is told by the family's own count of special tokens (RoBERTa's pairs have 4)
    fast = transformers.AutoTokenizer.from_pretrained(str(run / "model"))
    pairs = [("the cat sat " * n, "on the mat " * m + "dog" + "!" * k) for n in range(1, 8) for m in range(1, 8)
             for k in range(3)]
    lengths = [len(fast(a, b)["input_ids"]) for a, b in pairs]
    assert {32, 33} <= set(lengths)  # one token either side of the limit
    told = [a["truncated"] for a in inference.classify(torch_run, [], pairs)]
    assert told == [length > 32 for length in lengths]
    assert main(["export", str(run), "--output", str(tmp_path / "onnx")]) == 0
    onnx_run = inference.load_run(tmp_path / "onnx", engine="onnx", need="classify")
    assert onnx_run.model_positions == torch_run.model_positions == 128  # RoBERTa's table: 130 rows, 2 unused
    onnx = inference.classify(onnx_run, texts)
    torch.testing.assert_close(torch.tensor([list(a["probabilities"].values()) for a in onnx]), theirs,
                               atol=1e-4, rtol=0)


def test_squad_trains_and_answers_for_each_family(family_mlm, tmp_path, capsys):
    from test_squad_recipe import WINDOWS, people_file

    from bertfit.cli import main

    family, folder = family_mlm
    train = people_file(tmp_path / "train.json", 16, seed=1, long_every=5)
    dev = people_file(tmp_path / "dev.json", 8, seed=2, long_every=4)
    run = tmp_path / "run"
    assert main(["squad", "--train-file", str(train), "--eval-file", str(dev), "--model", str(folder),
                 "--output-dir", str(run), "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--quiet",
                 *WINDOWS]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["eval_examples"] == 8
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == [FAMILIES[family].architecture("qa")]
    assert main(["qa", str(run), "--question", "where does alice live ?",
                 "--context", "alice lives in paris and works as a baker ."]) == 0


def test_a_head_the_family_lacks_is_refused_naming_the_heads_it_has(tmp_path):
    from bertfit.errors import CheckpointError

    folder, _, _ = transformers_model("roberta", "mlm", tmp_path)
    with pytest.raises(CheckpointError, match=r"a roberta model has no pretraining head in bertfit \(heads: base, "
                                              r"classification, qa, tagging, mlm\); .* without --nsp"):
        load_pretrained(folder, head="pretraining")


@pytest.mark.parametrize("family", ["roberta", "deberta-v2", "modernbert"])
def test_serve_answers_a_classifier_and_masked_lm_of_the_family_as_the_inference_layer_does(family, tmp_path):
    """A server of a classifier and a masked-language model of the family, as transformers saved them."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import http.client

    import runs

    from bertfit import inference

    classifier, _, _ = transformers_model(family, "classification", tmp_path / "c")
    filler, _, _ = transformers_model(family, "mlm", tmp_path / "f")
    server = runs.Server([f"sentiment={classifier}", f"filler={filler}"], "--precision", "fp32",
                         log=tmp_path / "server.log")

    def post(path: str, body: dict) -> dict:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        try:
            connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200
            return json.loads(response.read())
        finally:
            connection.close()

    try:
        texts = ["a fine film", "The cat sat on the mat and watched the dog."]
        served = post("/v1/classify", {"texts": texts, "model": "sentiment"})["predictions"]
        expected = inference.classify(inference.load_run(classifier, precision="fp32", need="classify"), texts)
        for got, want in zip(served, expected):
            assert got["label"] == want["label"] and got["probability"] == pytest.approx(want["probability"], abs=1e-5)
        text = "The cat sat on the [MASK] and watched the dog."
        served = post("/v1/fill-mask", {"text": text, "top_k": 3, "model": "filler"})["predictions"]
        (expected,) = inference.fill_mask(inference.load_run(filler, precision="fp32", need="fill-mask"), [text], 3)
        assert [c["token_id"] for c in served[0]] == [c["token_id"] for c in expected[0]]
    finally:
        assert server.stop() == 0


# ---- ModernBERT's choices beyond the defaults, and its config.json as the checkpoints spell it ----------------------

@pytest.mark.parametrize("head", ["classification", "mlm"])
def test_modernbert_with_biases_mean_pooling_and_no_decoder_bias_gives_transformers_outputs_both_ways(head, tmp_path,
                                                                                                        monkeypatch):
    """Every bias on (norms, attention, MLP, prediction head), the classifier on the mean of the real tokens, the LM
    head without its output bias; three layers, the last two local, windows of 6 tokens (3 either side)."""
    tokenizer = families.TOKENIZER_OF["modernbert"]()
    config = families.transformers_config(
        "modernbert", tokenizer.get_vocab_size(), num_labels=3, num_hidden_layers=3, global_attn_every_n_layers=3,
        local_attention=6, norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True,
        classifier_pooling="mean", decoder_bias=False)
    theirs = families.randomise(getattr(transformers, AUTO[head]).from_config(config))
    folder = families.save_with_tokenizer(theirs, tokenizer, "modernbert", tmp_path / head)
    inputs = batch(transformers.AutoTokenizer.from_pretrained(str(folder)))
    expected = outputs(theirs, head, inputs, False)
    for layout in ("padded", "packed"):
        monkeypatch.setattr(model_module, "PACK_BELOW", {False: 1.0 if layout == "packed" else 0, True: 0})
        ours, tokenizer_ours = load_pretrained(folder, head=head, num_labels=3)
        ours.eval()
        assert ours.bert.config.classifier_pooling == "mean" and not ours.bert.config.decoder_bias
        assert_equal_at_real_tokens(outputs(ours, head, inputs, True), expected, inputs["attention_mask"])
    saved = save_pretrained(ours, tokenizer_ours, tmp_path / "saved")
    back = getattr(transformers, AUTO[head]).from_pretrained(str(saved)).eval()
    assert_equal_at_real_tokens(outputs(back, head, inputs, False), expected, inputs["attention_mask"])


def test_modernbert_config_in_the_checkpoints_own_spelling_reads_as_transformers_newer_one(tmp_path):
    """The released checkpoints' config.json names the attention pattern and the rotary bases
    (global_attn_every_n_layers, global_rope_theta, local_rope_theta) where transformers 5 writes layer_types and
    rope_parameters; both read as the same network. BERT's leftovers in those files change nothing."""
    from bertfit.pretrained import read_config

    tokenizer = families.TOKENIZER_OF["modernbert"]()
    config = families.transformers_config("modernbert", tokenizer.get_vocab_size(), num_hidden_layers=4)
    newer = families.save_with_tokenizer(transformers.AutoModel.from_config(config), tokenizer, "modernbert",
                                         tmp_path / "newer")
    raw = json.loads((newer / "config.json").read_text())
    assert "layer_types" in raw and "rope_parameters" in raw
    older = {k: v for k, v in raw.items() if k not in ("layer_types", "rope_parameters")}
    older.update(global_attn_every_n_layers=2, global_rope_theta=1000.0, local_rope_theta=50.0, layer_norm_eps=1e-5,
                 position_embedding_type="absolute", reference_compile=None, repad_logits_with_grad=False)
    (tmp_path / "older.json").write_text(json.dumps(older))
    ours = read_config(newer / "config.json")
    assert ours == read_config(tmp_path / "older.json")
    assert (ours.global_attn_every_n_layers, ours.local_attention, ours.global_rope_theta, ours.local_rope_theta) == (
        2, 8, 1000.0, 50.0)


@pytest.mark.parametrize("fields, problem", [
    ({"layer_types": ["full_attention", "sliding_attention", "full_attention", "full_attention"]},
     "layer_types .* is not one global layer every n"),
    ({"rope_parameters": {"full_attention": {"rope_type": "linear", "rope_theta": 10.0, "factor": 2.0}}},
     "rope_parameters full_attention .* is not supported"),
    ({"hidden_activation": "silu"}, "hidden_activation 'silu' is not supported"),
    ({"classifier_pooling": "max"}, "classifier_pooling must be one of cls, mean, not 'max'"),
    ({"norm_bias": "no"}, "norm_bias must be true or false, not 'no'"),
])
def test_a_modernbert_config_bertfit_would_build_otherwise_is_refused_naming_the_field(fields, problem, tmp_path):
    from bertfit.errors import CheckpointError
    from bertfit.pretrained import read_config

    tokenizer = families.TOKENIZER_OF["modernbert"]()
    config = families.transformers_config("modernbert", tokenizer.get_vocab_size(), num_hidden_layers=4)
    config.save_pretrained(str(tmp_path))
    raw = {**json.loads((tmp_path / "config.json").read_text()), **fields}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=problem):
        read_config(tmp_path / "config.json")


def ner_run(family: str, tmp_path, epochs: int):
    """`bertfit ner` from a tiny random masked LM of `family`, on test_ner's sentences: the run folder and the saved
    model's config.json."""
    from test_ner import SENTENCES, write_conll

    from bertfit.cli import main

    folder, _, _ = transformers_model(family, "mlm", tmp_path)
    write_conll(tmp_path / "train.conll", SENTENCES * 4)
    write_conll(tmp_path / "dev.conll", SENTENCES)
    run = tmp_path / "run"
    assert main(["ner", "--train-file", str(tmp_path / "train.conll"), "--eval-file", str(tmp_path / "dev.conll"),
                 "--model", str(folder), "--output-dir", str(run), "--epochs", str(epochs), "--lr", "3e-3",
                 "--batch-size", "4", "--precision", "fp32", "--quiet"]) == 0
    return run, json.loads((run / "model" / "config.json").read_text())


def test_ner_trains_a_modernbert_tagger_and_tag_answers_as_transformers_pipeline_does(tmp_path):
    """`bertfit ner` from a ModernBERT masked-language model as transformers saved it: the run's model is a
    ModernBertForTokenClassification, and `bertfit tag` gives the token-classification pipeline's entities."""
    from bertfit import inference
    from bertfit.cli import main

    run, config = ner_run("modernbert", tmp_path, epochs=1)
    assert config["architectures"] == ["ModernBertForTokenClassification"]
    text = "Mary Ann visited New York and Paris yesterday with John."
    assert main(["tag", str(run), text]) == 0
    ours = inference.tag(inference.load_run(run, precision="fp32", need="tag"), [text], "none")[0]
    pipeline = transformers.pipeline("token-classification", model=str(run / "model"), aggregation_strategy="none")
    theirs = pipeline(text)
    assert [(t["entity"], t["start"], t["end"]) for t in theirs] == [(o["entity"], o["start"], o["end"]) for o in ours]
    torch.testing.assert_close(torch.tensor([float(t["score"]) for t in theirs]),
                               torch.tensor([o["score"] for o in ours], dtype=torch.float32), atol=1e-4, rtol=0)


def test_a_modernbert_head_config_json_does_not_name_is_refused_as_its_heads_share_tensor_names(tmp_path):
    """ModernBERT's classifier, tagger and span head are all `head` + `classifier`: without architectures a
    classifier's weights would load as a span head."""
    from bertfit import inference
    from bertfit.errors import CheckpointError

    folder, _, _ = transformers_model("modernbert", "classification", tmp_path)
    assert inference.load_run(folder, precision="fp32").head == "classification"
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="could be any of its qa, classification, tagging, mlm heads, and "
                                              "config.json's architectures names none"):
        inference.load_run(folder, precision="fp32")


# ---- token classification: each word's first sub-token, as transformers' run_ner labels it ----------------------

@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "deberta-v2"])
def test_ner_labels_each_words_first_sub_token_as_run_ner_does_with_each_kind_of_tokenizer(family, tmp_path):
    """Byte-level BPE marks a word's start by its leading space (Ġ), which a word given alone lacks: the words are
    encoded as run_ner encodes them (`add_prefix_space` for RoBERTa's kind), each label on its first sub-token."""
    from bertfit.pretrained import load_tokenizer
    from bertfit.tasks import tagging

    folder = families.save_tokenizer_folder(families.TOKENIZER_OF[family](), family, tmp_path / family)
    fast = transformers.AutoTokenizer.from_pretrained(str(folder), add_prefix_space=True)
    words = [text.split() for text in many_strings(60)]
    labels = [[i % 5 for i in range(len(sentence))] for sentence in words]
    encoded = tagging.encode(words, load_tokenizer(folder), max_seq_length=4096, stride=8, label_ids=labels)
    assert encoded.num_windowed == 0 and encoded.num_unknown_words == 0
    theirs = fast(words, is_split_into_words=True)
    for s in range(len(words)):
        word_ids = theirs.word_ids(s)
        expected = [labels[s][w] if w is not None and (i == 0 or word_ids[i - 1] != w) else tagging.IGNORE
                    for i, w in enumerate(word_ids)]
        assert encoded.features.input_ids(s).tolist() == theirs["input_ids"][s]
        assert encoded.features.columns["label_ids"][s][: len(expected)].tolist() == expected


def test_ner_trains_a_roberta_tagger_whose_predictions_are_transformers_first_sub_token_labels(tmp_path):
    """`bertfit ner` from a RoBERTa masked-language model as transformers saved it, with a byte-level BPE
    tokenizer: every word of the evaluation file is predicted, with the label transformers' model of the saved run
    gives the word's first sub-token, and `bertfit tag` gives the token-classification pipeline's entities."""
    from test_ner import SENTENCES

    from bertfit import inference, predicting
    from bertfit.cli import main
    from bertfit.tasks import tagging

    run, config = ner_run("roberta", tmp_path, epochs=2)
    assert config["architectures"] == ["RobertaForTokenClassification"]
    rows = [[r.split("\t") for r in s.split("\n")]
            for s in (run / "predictions.conll").read_text().strip("\n").split("\n\n")]
    assert [[r[0] for r in s] for s in rows] == [words for words, _ in SENTENCES]
    # each word's logits, as bertfit reads them off the run (those its predictions come from) and as transformers'
    # model of the saved run gives them at the word's first sub-token of run_ner's encoding
    tagger = inference.load_run(run, precision="fp32", need="tag")
    words = [words for words, _ in SENTENCES]
    encoded = tagging.encode(words, tagger.tokenizer, tagger.max_seq_length, tagger.setting("stride"))
    (logits,) = predicting.predict(tagger.model, encoded.features, tagger.pad_id, tagger.device, precision="fp32",
                                   per_token=True)
    ours = tagging.word_logits(encoded.features, logits, [len(w) for w in words])
    fast = transformers.AutoTokenizer.from_pretrained(str(run / "model"), add_prefix_space=True)
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(str(run / "model")).eval()
    for sentence, per_word, predicted in zip(words, ours, rows):
        inputs = fast(sentence, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            their_logits = theirs(**inputs).logits[0]
        first = [inputs.word_ids(0).index(w) for w in range(len(sentence))]
        torch.testing.assert_close(torch.from_numpy(per_word), their_logits[first], atol=1e-5, rtol=1e-5)
        assert [tagger.labels[i] for i in per_word.argmax(-1)] == [r[2] for r in predicted]
    text = "Mary Ann visited New York and Paris yesterday with John."
    assert main(["tag", str(run), text, "--precision", "fp32"]) == 0
    entities = inference.tag(tagger, [text], "none")[0]
    pipeline = transformers.pipeline("token-classification", model=str(run / "model"), aggregation_strategy="none")
    assert [(t["entity"], t["start"], t["end"]) for t in pipeline(text)] == \
           [(o["entity"], o["start"], o["end"]) for o in entities]


@pytest.mark.parametrize("family", ["distilbert", "roberta", "xlm-roberta", "electra"])
def test_tag_and_the_onnx_export_of_each_familys_tagger_give_the_pipelines_entities(family, tmp_path):
    """A tagger transformers saved: `tag` groups its sub-tokens into words and entities as the pipeline does (each
    kind of word mark: WordPiece's ##, byte-level BPE's Ġ, SentencePiece's ▁), and its ONNX export tags alike."""
    pytest.importorskip("onnxruntime")
    from bertfit import inference
    from bertfit.export import export_onnx

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tokenizer = families.TOKENIZER_OF[family]()
    config = families.transformers_config(family, tokenizer.get_vocab_size(), num_labels=len(labels),
                                          id2label=dict(enumerate(labels)))
    theirs = families.randomise(transformers.AutoModelForTokenClassification.from_config(config), seed=1)
    with torch.no_grad():  # every sub-token an entity (never O), of labels that change from token to token
        weight = theirs.classifier.weight
        weight.copy_(2.0 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
        theirs.classifier.bias[0] = -20.0
    folder = families.save_with_tokenizer(theirs, tokenizer, family, tmp_path / "run" / "model")
    texts = ["Mary Ann visited New York and Paris-Berlin yesterday, unbelievably.",
             "Café Müller served crème brûlée in Paris today 😀 (twice)!"]
    run = inference.load_run(folder.parent, precision="fp32", need="tag")
    for strategy, key in (("none", "entity"), ("first", "entity_group")):
        pipeline = transformers.pipeline("token-classification", model=str(folder), aggregation_strategy=strategy)
        for text, entities in zip(texts, inference.tag(run, texts, strategy)):
            expected = pipeline(text)
            assert len(expected) > (10 if strategy == "none" else 0)  # none: each sub-token, none of them O
            assert [(e[key], e["word"], e["start"], e["end"]) for e in expected] == \
                   [(e[key], e["word"], e["start"], e["end"]) for e in entities]
    assert export_onnx(folder.parent, tmp_path / "onnx", say=lambda *_: None)["head"] == "tagging"
    onnx = inference.tag(inference.load_run(tmp_path / "onnx", engine="onnx"), texts, "none")
    for expected, entities in zip(inference.tag(run, texts, "none"), onnx):
        assert [(e["entity"], e["start"], e["end"]) for e in entities] == \
               [(e["entity"], e["start"], e["end"]) for e in expected]
        torch.testing.assert_close(torch.tensor([e["score"] for e in entities]),
                                   torch.tensor([e["score"] for e in expected]), atol=1e-4, rtol=0)


def head_dropouts(model: torch.nn.Module, encoder: str) -> list[float]:
    """The rates of a head model's dropouts outside its encoder, in the order the model holds them."""
    return sorted(m.p for name, m in model.named_modules()
                  if isinstance(m, torch.nn.Dropout) and not name.startswith(encoder) and m.p > 0)


@pytest.mark.parametrize("family, head", [(f, h) for f, h in FAMILY_HEADS if h in ("tagging", "qa")])
def test_the_tagger_and_span_head_of_each_family_drop_out_at_transformers_rates(family, head, tmp_path):
    """Each head drops out where transformers' does, at the same rate: DistilBERT's tagger at its hidden rate and its
    span head at qa_dropout, DeBERTa's tagger at its hidden rate, the others' taggers at the classifier's."""
    tokenizer = families.TOKENIZER_OF[family]()
    their = FAMILIES[family].their_field
    rates = {their("hidden_dropout_prob"): 0.11, their("classifier_dropout"): 0.23}
    if family == "distilbert":
        rates["qa_dropout"] = 0.37
    labels = 3 if head == "tagging" else 2
    config = families.transformers_config(family, tokenizer.get_vocab_size(), num_labels=labels, **rates)
    theirs = getattr(transformers, AUTO[head]).from_config(config)
    folder = families.save_with_tokenizer(theirs, tokenizer, family, tmp_path / family)
    ours, _ = load_pretrained(folder, head=head, num_labels=labels)
    their_encoder = FAMILIES[family].prefix.rstrip(".")
    expected = head_dropouts(theirs, their_encoder)
    assert head_dropouts(ours, "bert") == pytest.approx(expected)
    if head == "tagging" or family == "distilbert":
        assert expected  # the comparison above saw a dropout
