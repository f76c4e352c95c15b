"""ALBERT against transformers: one block's weights shared by every layer (one set of parameters run N times, saved
and optimised once), embeddings narrower than the hidden size projected up, GELU's tanh approximation; each head
equal to transformers' padded and packed, both ways; its config.json groupings bertfit does not build refused in one
line; its SentencePiece tokenizer as transformers' fast one; glue, classify, export and fill-mask through the CLI;
a resumed run equal to an uninterrupted one."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import families
from test_families import AUTO, assert_equal_at_real_tokens, assert_glue_encoding_equals, many_strings, outputs, \
    their_probabilities, transformers_model
from bertfit import model as model_module
from bertfit.checkpoints.families import FAMILIES
from bertfit.errors import CheckpointError, ConfigError
from bertfit.model import BertConfig
from bertfit.pretrained import load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

HEADS = ["base", "classification", "qa", "mlm", "tagging"]
# mixed lengths, pairs among them: the second text's token type is 1
TEXTS = [("The cat sat on the mat.", None),
         ("A much longer sentence about the weather in Paris today, which was grey and wet.", "Was it sunny?"),
         ("hi", None),
         ("Stocks fell sharply on Monday after the announcement.", "Markets dropped at the start of the week.")]
ONE_BLOCK = "encoder.albert_layer_groups.0.albert_layers.0."


def with_token_types(fast) -> dict:
    """The test texts padded, with the token types of the [CLS] A [SEP] B [SEP] template (ALBERT's tokenizer class
    gives none unless asked)."""
    rows = [fast(a, b, return_token_type_ids=True) if b else fast(a, return_token_type_ids=True) for a, b in TEXTS]
    inputs = dict(fast.pad(rows, return_tensors="pt"))
    assert inputs["token_type_ids"].any() and not inputs["attention_mask"].all()
    return inputs


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("head", HEADS)
def test_an_albert_transformers_saved_gives_the_same_hidden_states_and_logits_in_bertfit(head, layout, tmp_path,
                                                                                        monkeypatch):
    folder, theirs, fast = transformers_model("albert", head, tmp_path)
    monkeypatch.setattr(model_module, "PACK_BELOW", {False: 1.0 if layout == "packed" else 0, True: 0})
    ours, _ = load_pretrained(folder, head=head, num_labels=3)
    ours.eval()
    encoder = ours if head == "base" else ours.bert
    assert encoder.config.family == "albert" and encoder.config.hidden_act == "gelu_new"
    assert encoder.config.num_hidden_layers == 3 and len(encoder.layers) == 1
    inputs = with_token_types(fast)
    assert_equal_at_real_tokens(outputs(ours, head, inputs, True), outputs(theirs, head, inputs, False),
                                inputs["attention_mask"])


@pytest.mark.parametrize("head", HEADS)
def test_bertfits_saved_albert_holds_one_block_and_loads_in_transformers_auto_class_with_the_same_outputs(head,
                                                                                                         tmp_path):
    folder, theirs, their_fast = transformers_model("albert", head, tmp_path)
    ours, tokenizer = load_pretrained(folder, head=head, num_labels=3)
    ours.eval()
    saved = save_pretrained(ours, tokenizer, tmp_path / "saved")
    tensors = load_file(saved / "model.safetensors")
    assert set(tensors) == set(load_file(folder / "model.safetensors"))  # transformers' names, one block, once
    assert any(name.startswith(("albert." + ONE_BLOCK, ONE_BLOCK)) for name in tensors)
    back, info = getattr(transformers, AUTO[head]).from_pretrained(str(saved), output_loading_info=True)
    back.eval()
    assert type(back).__name__ == type(theirs).__name__ == FAMILIES["albert"].architecture(head)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    fast = transformers.AutoTokenizer.from_pretrained(str(saved))
    inputs = dict(fast.pad([fast(a, b) if b else fast(a) for a, b in TEXTS], return_tensors="pt"))
    assert inputs["token_type_ids"].any()  # the saved tokenizer gives the model's token types unasked
    assert inputs["input_ids"].tolist() == with_token_types(their_fast)["input_ids"].tolist()
    assert_equal_at_real_tokens(outputs(back, head, inputs, False), outputs(theirs, head, inputs, False),
                                inputs["attention_mask"])


@pytest.mark.parametrize("head", ["classification", "mlm"])
def test_one_block_runs_every_layer_counts_once_and_gets_the_gradient_of_all_its_uses(head, tmp_path):
    """As many parameters as transformers' model, the optimizer's included; the block runs num_hidden_layers times
    a pass; its gradient, summed over its three uses, is transformers'."""
    from bertfit.optim import make_optimizer

    folder, theirs, fast = transformers_model("albert", head, tmp_path)
    ours, _ = load_pretrained(folder, head=head, num_labels=3)
    ours.eval()  # no dropout: the gradients compare
    count = sum(p.numel() for p in theirs.parameters())
    assert sum(p.numel() for p in ours.parameters()) == count
    assert sum(p.numel() for group in make_optimizer(ours, 1e-3, 0.01).param_groups for p in group["params"]) == count
    assert not any(name.startswith("bert.layers.1.") for name in ours.state_dict())
    runs = []
    ours.bert.layers[0].register_forward_hook(lambda *_: runs.append(1))
    inputs = with_token_types(fast)
    real = inputs["attention_mask"].bool()
    for logits in (ours(inputs["input_ids"], inputs["token_type_ids"], real), theirs(**inputs).logits):
        if head == "mlm":  # the real tokens' scores: the padding's are nobody's business
            logits = logits[real]
        (logits * torch.linspace(-1, 1, logits.shape[-1])).sum().backward()
    assert len(runs) == 3
    block = theirs.albert.encoder.albert_layer_groups[0].albert_layers[0]
    # sums over hundreds of scores: fp32 rounding of that order (a gradient of one use alone would be far off)
    torch.testing.assert_close(ours.bert.layers[0].intermediate.weight.grad, block.ffn.weight.grad,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.bert.layers[0].output_norm.weight.grad, block.full_layer_layer_norm.weight.grad,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fields, problem", [
    ({"num_hidden_groups": 2}, r"num_hidden_groups 2 is not supported \(bertfit builds ALBERT with every layer "
                               r"sharing one set of weights"),
    ({"inner_group_num": 2}, "inner_group_num 2 is not supported"),
    ({"hidden_act": "silu"}, "hidden_act must be one of gelu, gelu_new, relu, not 'silu'"),
    ({"embedding_size": 32}, "embedding_size 32 equal to hidden_size is not supported"),
])
def test_an_albert_config_bertfit_would_build_otherwise_is_refused_in_one_line_naming_the_field(fields, problem,
                                                                                              tmp_path, capsys):
    from bertfit.cli import main
    from bertfit.demo import write_sentiment_data

    folder, _, _ = transformers_model("albert", "mlm", tmp_path)
    raw = {**json.loads((folder / "config.json").read_text()), **fields}
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=problem):
        load_pretrained(folder, head="classification")
    data = write_sentiment_data(tmp_path / "glue", 8, 4)
    capsys.readouterr()  # transformers' progress bars while it saved
    assert main(["glue", "sst2", "--model", str(folder), "--data-dir", str(data), "--output-dir",
                 str(tmp_path / "run"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bertfit: error: ") and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()


def test_a_config_as_the_released_checkpoints_write_it_reads_as_transformers_does(tmp_path):
    """The original code's options that transformers never reads, and the relu of some released ALBERTs
    (albert_chinese_*): the same outputs as transformers' model of that config.json."""
    folder, _, fast = transformers_model("albert", "base", tmp_path)
    raw = json.loads((folder / "config.json").read_text())
    raw.update(hidden_act="relu", down_scale_factor=1, gap_size=0, net_structure_type=0, num_memory_blocks=0,
               layers_to_keep=[])
    (folder / "config.json").write_text(json.dumps(raw))
    theirs = transformers.AutoModel.from_pretrained(str(folder)).eval()
    ours, _ = load_pretrained(folder)
    ours.eval()
    assert ours.config.hidden_act == "relu"
    inputs = with_token_types(fast)
    assert_equal_at_real_tokens(outputs(ours, "base", inputs, True), outputs(theirs, "base", inputs, False),
                                inputs["attention_mask"])


def test_shared_layers_are_refused_with_pre_norm_blocks():
    with pytest.raises(ConfigError, match="shared_layers .* not pre_norm"):
        BertConfig(shared_layers=True, pre_norm=True)


def test_glue_encoding_equals_albert_fast_tokenizer_on_pairs_with_truncation_and_token_types(tmp_path):
    """bertfit's encoding of the tokenizer.json against transformers' AlbertTokenizer, which builds its normaliser
    from tokenizer_config.json's flags: of the folder transformers' conventions make, and of the one bertfit saves."""
    from bertfit.checkpoints.tokenizer_files import save_tokenizer
    from bertfit.pretrained import load_tokenizer

    folder = families.save_tokenizer_folder(families.albert_unigram(), "albert", tmp_path / "albert")
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))
    ours = load_tokenizer(folder)
    (tmp_path / "saved").mkdir()
    save_tokenizer(ours, tmp_path / "saved", "AlbertTokenizer")
    saved = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    texts = many_strings()
    assert saved(texts)["input_ids"] == fast(texts)["input_ids"]  # lowercased, accents stripped, as ALBERT's
    assert_glue_encoding_equals(ours, fast, texts, token_types=True)


def test_squad_windows_point_at_the_answers_characters_through_albert_lowercasing_and_accent_stripping(tmp_path):
    """ALBERT's normaliser lowercases and strips accents (NFKD): the offsets still cover the answer's characters in
    the context as written."""
    from bertfit.pretrained import load_tokenizer
    from bertfit.tasks.squad import Answer, SquadQuestion, make_windows

    folder = families.save_tokenizer_folder(families.albert_unigram(), "albert", tmp_path / "albert")
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))
    context = "Café Müller served crème brûlée in Paris today; naïve guests paid ¥500 for señor García's piñata 😀."
    questions = [SquadQuestion(str(i), "t", f"What about {answer}?", context, [Answer(answer, context.index(answer))])
                 for i, answer in enumerate(["crème brûlée", "Paris", "¥500", "señor García's piñata", "Café"])]
    features, windows = make_windows(questions, load_tokenizer(folder), max_seq_length=128, doc_stride=32,
                                     max_query_length=32, training=True)
    assert len(windows) == len(questions)
    for w, question in enumerate(questions):
        assert features.input_ids(w).tolist() == fast(question.question, context)["input_ids"]
        start, end = features.columns["start_positions"][w], features.columns["end_positions"][w]
        offsets = windows.token_offsets(w)
        assert context[offsets[start][0]:offsets[end][1]] == question.answers[0].text


@pytest.fixture(scope="module")
def albert_mlm(tmp_path_factory):
    """The folder of a tiny ALBERT masked-language model, as transformers saves it."""
    folder, _, _ = transformers_model("albert", "mlm", tmp_path_factory.mktemp("albert"))
    return folder


def test_fill_mask_of_albert_gives_transformers_probabilities(albert_mlm, capsys):
    """ALBERT's [MASK] takes the space before it (lstrip), as in its tokenizer.json."""
    from bertfit import inference
    from bertfit.cli import main

    text = "The cat sat on the [MASK] and watched the dog."
    assert main(["fill-mask", str(albert_mlm), text]) == 0
    (masks,) = inference.fill_mask(inference.load_run(albert_mlm, precision="fp32", need="fill-mask"), [text], top_k=3)
    fast = transformers.AutoTokenizer.from_pretrained(str(albert_mlm))
    theirs = their_probabilities(albert_mlm, "AutoModelForMaskedLM", [text])[0]
    top = theirs[fast(text)["input_ids"].index(fast.mask_token_id)].topk(3)
    assert [m["token_id"] for m in masks[0]] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor([m["probability"] for m in masks[0]]), top.values, atol=1e-5, rtol=0)


def test_glue_trains_an_albert_whose_saved_model_holds_one_block_and_classify_and_export_answer_as_transformers(
        albert_mlm, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from bertfit import inference
    from bertfit.cli import main
    from bertfit.demo import write_sentiment_data

    data = write_sentiment_data(tmp_path / "glue", 24, 8)
    run = tmp_path / "run"
    assert main(["glue", "sst2", "--model", str(albert_mlm), "--data-dir", str(data), "--output-dir", str(run),
                 "--epochs", "1", "--batch-size", "8", "--max-seq-length", "32", "--precision", "fp32",
                 "--quiet"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert (config["model_type"], config["architectures"]) == ("albert", ["AlbertForSequenceClassification"])
    assert (config["num_hidden_layers"], config["num_hidden_groups"], config["inner_group_num"]) == (3, 1, 1)
    trained = load_file(run / "model" / "model.safetensors")
    start = load_file(albert_mlm / "model.safetensors")
    name = "albert." + ONE_BLOCK + "ffn.weight"
    assert not torch.equal(trained[name], start[name])  # the one block trained
    assert not any("albert_layer_groups.1" in k or "albert_layers.1" in k for k in trained)
    texts = ["a fine film", "Two hours of nothing: slow, loud, and far too pleased with itself."]
    assert main(["classify", str(run), *texts]) == 0
    answers = inference.classify(inference.load_run(run, precision="fp32", need="classify"), texts)
    theirs = their_probabilities(run / "model", "AutoModelForSequenceClassification", texts, max_length=32)
    torch.testing.assert_close(torch.tensor([list(a["probabilities"].values()) for a in answers]), theirs,
                               atol=1e-5, rtol=0)
    assert main(["export", str(run), "--output", str(tmp_path / "onnx")]) == 0
    onnx = inference.classify(inference.load_run(tmp_path / "onnx", engine="onnx", need="classify"), texts)
    torch.testing.assert_close(torch.tensor([list(a["probabilities"].values()) for a in onnx]), theirs,
                               atol=1e-4, rtol=0)


def test_a_crashed_albert_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """The checkpoint holds the one block once, and the optimizer one entry per parameter."""
    import tiny

    from bertfit import training
    from bertfit.runs import CheckpointStore
    from bertfit.settings import TrainSettings

    settings = TrainSettings(epochs=2, lr=1e-3, batch_size=4, warmup_ratio=0.2, precision="fp32", eval_every=5,
                             save_every=3, keep_checkpoints=2, log_every=2, seed=7)
    train, dev = tiny.features(22, seed=1), tiny.features(12, seed=2)

    def fit(run_dir, loss_fn=tiny.classification_loss):
        model = tiny.albert_classifier()
        training.fit(model, train, loss_fn, tiny.accuracy_on(dev), lambda m, metrics: None, settings, run_dir,
                     tiny.PAD, torch.device("cpu"), resume=True, run_fingerprint={"model": "albert"}, quiet=True)
        return model

    class Crash(Exception):
        pass

    calls = [0]

    def crash_at_step_8(model, batch):
        calls[0] += 1
        if calls[0] == 8:
            raise Crash
        return tiny.classification_loss(model, batch)

    reference = fit(tmp_path / "reference")
    assert len(reference.bert.layers) == 1 and reference.bert.config.num_hidden_layers == 2
    with pytest.raises(Crash):
        fit(tmp_path / "resumed", crash_at_step_8)
    checkpoint = CheckpointStore(tmp_path / "resumed" / "checkpoints").checkpoints()[0]
    assert not any(k.startswith("bert.layers.1.") for k in load_file(checkpoint / "model.safetensors"))
    groups = torch.load(checkpoint / "trainer.pt", weights_only=True)["optimizer"]["param_groups"]
    assert sum(len(group["params"]) for group in groups) == len(list(reference.parameters()))
    resumed = fit(tmp_path / "resumed")
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_squad_trains_an_albert_span_head_and_qa_answers(albert_mlm, tmp_path, capsys):
    from test_squad_recipe import WINDOWS, people_file

    from bertfit.cli import main

    train = people_file(tmp_path / "train.json", 16, seed=1, long_every=5)
    dev = people_file(tmp_path / "dev.json", 8, seed=2, long_every=4)
    run = tmp_path / "run"
    assert main(["squad", "--train-file", str(train), "--eval-file", str(dev), "--model", str(albert_mlm),
                 "--output-dir", str(run), "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--quiet",
                 *WINDOWS]) == 0
    assert json.loads((run / "results.json").read_text())["eval_examples"] == 8
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == ["AlbertForQuestionAnswering"]
    assert main(["qa", str(run), "--question", "where does alice live ?",
                 "--context", "alice lives in paris and works as a baker ."]) == 0


def test_ner_trains_an_albert_tagger_saved_as_transformers_class_and_tag_reads_the_run(albert_mlm, tmp_path):
    from test_ner import SENTENCES, write_conll

    from bertfit.cli import main

    write_conll(tmp_path / "train.conll", SENTENCES * 2)
    write_conll(tmp_path / "dev.conll", SENTENCES)
    run = tmp_path / "run"
    assert main(["ner", "--train-file", str(tmp_path / "train.conll"), "--eval-file", str(tmp_path / "dev.conll"),
                 "--model", str(albert_mlm), "--output-dir", str(run), "--epochs", "1", "--batch-size", "4",
                 "--precision", "fp32", "--quiet"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == ["AlbertForTokenClassification"]
    assert main(["tag", str(run), "Mary Ann visited New York.", "--precision", "fp32"]) == 0


@pytest.mark.parametrize("strategy", ["none", "simple"])
def test_tag_of_an_albert_tagger_gives_the_pipelines_entities_and_offsets(strategy, tmp_path):
    """Through ALBERT's lowercasing and accent stripping (NFKD) the character offsets and the grouping are still
    the pipeline's."""
    from bertfit import inference

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    tokenizer = families.albert_unigram()
    config = families.transformers_config("albert", tokenizer.get_vocab_size(), num_labels=len(labels),
                                          id2label=dict(enumerate(labels)))
    theirs = families.randomise(transformers.AutoModelForTokenClassification.from_config(config))
    folder = families.save_with_tokenizer(theirs, tokenizer, "albert", tmp_path / "tagger")
    pipeline = transformers.pipeline("token-classification", model=str(folder), aggregation_strategy=strategy)
    run = inference.load_run(folder, precision="fp32", need="tag")
    key = "entity" if strategy == "none" else "entity_group"
    for text in ["Mary Ann visited New York and Paris-Berlin yesterday, unbelievably.",
                 "Café Müller served crème brûlée in Paris today 😀 (twice)!"]:
        their_tags, ours = pipeline(text), inference.tag(run, [text], strategy)[0]
        assert len(their_tags) > 1
        assert [(t[key], t["word"], t["start"], t["end"]) for t in their_tags] == \
               [(o[key], o["word"], o["start"], o["end"]) for o in ours]
        torch.testing.assert_close(torch.tensor([float(t["score"]) for t in their_tags]),
                                   torch.tensor([o["score"] for o in ours]), atol=1e-4, rtol=0)
