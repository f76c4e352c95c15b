"""Token classification: the readers, the tag schemes, the windows of long sentences, `bertfit ner` end to end,
and `bertfit tag` against transformers' token-classification pipeline on the same weights."""
import json

import numpy as np
import pytest
import torch

import tiny

from bertfit import cli, inference
from bertfit.errors import DataError
from bertfit.model import BertConfig, BertForTokenClassification
from bertfit.pretrained import save_pretrained
from bertfit.tasks import tag_decoding, tag_schemes, tagged_files, tagging

pytestmark = pytest.mark.usefixtures("one_thread")
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [("John lives in Paris .".split(), "B-PER O O B-LOC O".split()),
             ("Mary Ann went to New York today".split(), "B-PER I-PER O O B-LOC I-LOC O".split()),
             ("I love Berlin".split(), "O O B-LOC".split())]


def write_conll(path, sentences, end="\n"):
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + end for words, tags in sentences))
    return path


# ---- readers -------------------------------------------------------------------------------------

def test_conll_reads_tabs_spaces_docstart_four_columns_and_wnuts_tab_line(tmp_path):
    wnut = write_conll(tmp_path / "wnut.conll", SENTENCES, end="\t\n")  # WNUT-17's train ends sentences so
    read = tagged_files.read_tagged_file(wnut)
    assert read.words == [w for w, _ in SENTENCES] and read.tags == [t for _, t in SENTENCES]
    conll2003 = tmp_path / "eng.train"
    conll2003.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    read = tagged_files.read_tagged_file(conll2003)
    assert read.words == [["EU", "rejects"], ["Peter"]] and read.tags == [["B-ORG", "O"], ["B-PER"]]
    assert read.lines == [[3, 4], [6]]


def test_conllu_tags_the_words_of_a_multiword_token_and_passes_over_empty_nodes(tmp_path):
    path = tmp_path / "ud.conllu"
    rows = ["# text = Vámonos al mar", "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_",
            "1\tVamos\tir\tVERB\tV\t_\t0\troot\t_\t_", "2\tnos\tnosotros\tPRON\tP\t_\t1\tobj\t_\t_",
            "2.1\tir\tir\tVERB\tV\t_\t_\t_\t1:conj\t_",
            "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_", "3\ta\ta\tADP\tS\t_\t5\tcase\t_\t_", "4\tel\tel\tDET\tD\t_\t5\tdet\t_\t_",
            "5\tmar\tmar\tNOUN\tN\t_\t1\tobl\t_\t_", ""]
    path.write_text("\n".join(rows))
    read = tagged_files.read_tagged_file(path)
    assert read.words == [["Vamos", "nos", "a", "el", "mar"]] and read.tags == [["VERB", "PRON", "ADP", "DET", "NOUN"]]
    assert tagged_files.read_tagged_file(path, pos_column="xpos").tags == [["V", "P", "S", "D", "N"]]


@pytest.mark.parametrize("content, problem", [
    ("John\tB-PER\nlives\n\nParis\tB-LOC\n", "line 2: a token line needs the token and its tag"),
    ("John\tB-PER\nlives O\n\nParis\tB-LOC\n", "line 2: columns separated by spaces"),
    ("John B-PER\nlives\tO\n\nParis B-LOC\n", "line 2: a tab where"),
])
def test_a_bad_conll_line_is_named_by_file_and_line_or_skipped_and_counted(tmp_path, content, problem):
    path = tmp_path / "bad.conll"
    path.write_text(content)
    with pytest.raises(DataError, match=f"{path}, {problem}"):
        tagged_files.read_tagged_file(path)
    read = tagged_files.read_tagged_file(path, skip_bad=True)
    assert (len(read), read.num_read, read.num_skipped) == (1, 2, 1)


def test_jsonl_records_and_their_mistakes(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"tokens": ["John", "runs"], "tags": ["B-PER", "O"]}) + "\n"
                    + json.dumps({"tokens": [], "tags": []}) + "\n")
    with pytest.raises(DataError, match=r"line 2: an empty sentence"):
        tagged_files.read_tagged_file(path)
    path.write_text(json.dumps({"tokens": ["John", "runs"], "tags": ["B-PER"]}) + "\n")
    with pytest.raises(DataError, match=r"line 1: 2 tokens but 1 tags"):
        tagged_files.read_tagged_file(path)


def test_an_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.conll").write_text("")
    with pytest.raises(DataError, match="empty.conll: no sentences"):
        tagged_files.read_tagged_file(tmp_path / "empty.conll")


# ---- schemes -------------------------------------------------------------------------------------

def sentences_of(*tags):
    return tagged_files.TaggedSentences([["w"] * len(t) for t in tags], [list(t) for t in tags],
                                        [list(range(1, len(t) + 1)) for t in tags], "f.conll")


def test_an_i_after_o_is_refused_or_repaired_as_the_option_says():
    with pytest.raises(DataError, match=r"f.conll, line 2: I-PER after O does not parse in bio"):
        tag_schemes.normalize(sentences_of(["O", "I-PER", "I-PER"]), "bio")
    repaired = sentences_of(["O", "I-PER", "I-PER", "I-LOC"])
    assert tag_schemes.normalize(repaired, "bio", "repair") == ("bio", 2)
    assert repaired.tags == [["O", "B-PER", "I-PER", "B-LOC"]]
    iob1 = sentences_of(["I-PER", "B-PER", "O"])
    assert tag_schemes.normalize(iob1, "iob1") == ("bio", 1) and iob1.tags == [["B-PER", "B-PER", "O"]]


def test_a_tag_outside_the_scheme_is_named():
    with pytest.raises(DataError, match=r"line 2: tag 'PER' is outside the bio scheme"):
        tag_schemes.normalize(sentences_of(["B-PER", "PER"]), "bio")
    assert tag_schemes.detect([["NOUN", "VERB"]]) == "none" and tag_schemes.detect([["S-PER", "O"]]) == "bioes"


# ---- windows -------------------------------------------------------------------------------------

def test_a_2000_word_sentence_is_read_in_windows_and_every_word_predicted_once(tokenizer):
    words = [["word", "Paris", "unbelievably"][i % 3] for i in range(2000)]
    encoded = tagging.encode([words, ["short"]], tokenizer, max_seq_length=64, stride=16,
                             label_ids=[[i % 5 for i in range(2000)], [0]])
    owned = encoded.features.columns["word_ids"]
    counts = np.bincount(owned[encoded.features.columns["example_index"] == 0].ravel() + 1, minlength=2001)[1:]
    assert (counts == 1).all() and encoded.num_windowed == 1 and len(encoded.features) > 40
    assert encoded.features.lengths.max() <= 64
    # each word's logits come from its owner: a fake logit row that names the word's own index comes back
    logits = [np.stack([np.eye(2001)[max(0, int(w)) + 0] for w in owned[f][: encoded.features.lengths[f]]])
              for f in range(len(encoded.features))]
    per_word = tagging.word_logits(encoded.features, logits, [2000, 1])
    assert (per_word[0].argmax(-1) == np.arange(2000)).all()


def test_labels_go_on_the_first_sub_token_or_on_all_with_b_continuing_as_i(tokenizer):
    words = [["unbelievably", "Paris"]]
    first = tagging.encode(words, tokenizer, 32, 8, label_ids=[[1, 3]])
    every = tagging.encode(words, tokenizer, 32, 8, label_ids=[[1, 3]], label_all_subtokens=True,
                           continuation=tagging.continuation_labels(LABELS))
    pieces = len(tokenizer.encode("unbelievably", add_special_tokens=False).ids)
    assert pieces > 1
    row_first, row_every = first.features.columns["label_ids"][0], every.features.columns["label_ids"][0]
    assert row_first[1] == 1 and (row_first[2 : 1 + pieces] == tagging.IGNORE).all()
    assert row_every[1] == 1 and (row_every[2 : 1 + pieces] == 2).all()  # B-PER continues as I-PER


# ---- training and tagging ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("ner")
    write_conll(root / "train.conll", SENTENCES * 4, end="\t\n")
    write_conll(root / "dev.conll", SENTENCES)
    code = cli.main(["ner", "--train-file", str(root / "train.conll"), "--eval-file", str(root / "dev.conll"),
                     "--validation-file", str(root / "dev.conll"), "--model", tiny_model,
                     "--output-dir", str(root / "run"), "--epochs", "2", "--lr", "3e-3", "--batch-size", "4",
                     "--precision", "fp32", "--quiet"])
    assert code == 0
    return root / "run"


def test_bertfit_ner_writes_a_run_scored_as_seqeval_scores_its_predictions(ner_run):
    from seqeval.metrics import f1_score

    results = json.loads((ner_run / "results.json").read_text())
    assert results["task"] == "ner" and results["settings"]["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    rows = [s.split("\n") for s in (ner_run / "predictions.conll").read_text().strip("\n").split("\n\n")]
    gold = [[r.split("\t")[1] for r in s] for s in rows]
    predicted = [[r.split("\t")[2] for r in s] for s in rows]
    assert [[r.split("\t")[0] for r in s] for s in rows] == [w for w, _ in SENTENCES]
    assert results["metrics"]["f1"] == pytest.approx(f1_score(gold, predicted))
    assert (ner_run / "report.md").is_file() and (ner_run / "model" / "README.md").is_file()
    config = json.loads((ner_run / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"] and config["id2label"]["1"] == "B-LOC"


@pytest.fixture(scope="module")
def random_tagger(tmp_path_factory, tokenizer):
    """A tagger with random weights whose labels vary from token to token, so that grouping is exercised."""
    torch.manual_seed(3)
    model = BertForTokenClassification(BertConfig(vocab_size=tokenizer.get_vocab_size(), **tiny.REAL_VOCAB_SIZES),
                                       num_labels=len(LABELS))
    with torch.no_grad():
        model.classifier.weight.normal_(std=2.0)
    folder = tmp_path_factory.mktemp("tagger") / "model"
    save_pretrained(model, tokenizer, folder, labels=LABELS, extra={"task": "ner", "max_seq_length": 64})
    return folder


TEXTS = ["Mary Ann visited New York and Paris-Berlin yesterday, unbelievably.",
         "Zürich's ÉCOLE hosted José Nuñez in 2023 (twice)!"]


@pytest.mark.parametrize("strategy", tag_decoding.STRATEGIES)
def test_tag_gives_the_pipelines_entities_and_scores_for_each_strategy(random_tagger, strategy):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    pipeline = transformers.pipeline("token-classification", model=str(random_tagger), aggregation_strategy=strategy)
    run = inference.load_run(random_tagger, precision="fp32", need="tag")
    key = "entity" if strategy == "none" else "entity_group"
    for text in TEXTS:
        theirs, ours = pipeline(text), inference.tag(run, [text], strategy)[0]
        assert len(theirs) > 1
        assert [(t[key], t["word"], t["start"], t["end"]) for t in theirs] == \
               [(o[key], o["word"], o["start"], o["end"]) for o in ours]
        assert np.allclose([float(t["score"]) for t in theirs], [o["score"] for o in ours], atol=1e-4)
        if strategy == "none":
            assert [t["index"] for t in theirs] == [o["index"] for o in ours]


def test_tag_prints_entities_with_character_offsets(random_tagger, capsys):
    assert cli.main(["tag", str(random_tagger), TEXTS[0], "--precision", "fp32", "--aggregation", "simple"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    (entities,) = inference.tag(inference.load_run(random_tagger, precision="fp32"), [TEXTS[0]], "simple")
    assert [line.split("\t")[:3] for line in lines] == [[str(e["start"]), str(e["end"]), e["entity_group"]]
                                                         for e in entities]


def test_a_long_text_is_tagged_in_windows_each_sub_token_once(random_tagger):
    run = inference.load_run(random_tagger, precision="fp32")
    text = " ".join(TEXTS * 20)
    prepared = inference.prepare_tags(run, [text], "none")
    assert len(prepared.features) > 1
    owned = prepared.features.columns["word_ids"]
    assert sorted(owned[owned >= 0].tolist()) == list(range(len(prepared.pieces[0].ids)))


def test_tag_refuses_a_classification_run(tiny_model):
    with pytest.raises(Exception, match="not a token-classification run"):
        inference.load_run(tiny_model, need="tag")


def test_the_onnx_export_and_its_int8_file_tag_as_the_torch_model_does(random_tagger, tmp_path):
    pytest.importorskip("onnxruntime")
    import shutil

    from bertfit.export import export_onnx

    run_dir = tmp_path / "run"
    shutil.copytree(random_tagger, run_dir / "model")
    manifest = export_onnx(run_dir, say=lambda *_: None)
    assert manifest["head"] == "tagging"
    expected = inference.tag(inference.load_run(run_dir, precision="fp32"), TEXTS, "first")
    got = inference.tag(inference.load_run(run_dir, engine="onnx"), TEXTS, "first")
    for theirs, ours in zip(expected, got):
        assert [(e["entity_group"], e["start"], e["end"]) for e in ours] == \
               [(e["entity_group"], e["start"], e["end"]) for e in theirs]
        assert np.allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-4)
    export_onnx(run_dir, tmp_path / "int8", quantize="int8", say=lambda *_: None)
    int8 = inference.load_run(tmp_path / "int8", engine="onnx")
    assert int8.model.path.name == "model.int8.onnx"
    assert all(e["end"] > e["start"] for entities in inference.tag(int8, TEXTS, "simple") for e in entities)


def test_predict_tags_a_file_with_or_without_tags_and_scores_it_as_bertfit_ner_did(ner_run, tmp_path, capsys):
    from seqeval.metrics import f1_score

    tagged = write_conll(tmp_path / "test.conll", SENTENCES)
    assert cli.main(["predict", str(ner_run), "--input-file", str(tagged), "--output-dir", str(tmp_path / "out"),
                     "--precision", "fp32"]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)
    rows = [s.split("\n") for s in (tmp_path / "out" / "predictions-test.conll").read_text().strip().split("\n\n")]
    predicted = [[r.split("\t")[2] for r in s] for s in rows]
    assert float(printed["f1"]) == pytest.approx(f1_score([t for _, t in SENTENCES], predicted), abs=1e-4)
    # the same file scored by the run itself: the same predictions as its predictions.conll
    kept = (ner_run / "predictions.conll").read_text()
    assert [[r.split("\t")[2] for r in s.split("\n")] for s in kept.strip().split("\n\n")] == predicted
    words = tmp_path / "words.conll"
    words.write_text("".join("".join(f"{w}\n" for w in s) + "\n" for s, _ in SENTENCES))
    assert cli.main(["predict", str(ner_run), "--input-file", str(words), "--output-dir", str(tmp_path / "out"),
                     "--precision", "fp32"]) == 0
    assert "f1" not in capsys.readouterr().out
    assert [[r.split("\t")[2] for r in s.split("\n")] for s in
            (tmp_path / "out" / "predictions-words.conll").read_text().strip().split("\n\n")] == predicted


def test_token_loss_is_the_mean_cross_entropy_transformers_model_computes(random_tagger, tokenizer):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    from bertfit.batching import collate
    from bertfit.pretrained import load_pretrained
    from bertfit.recipes.ner import token_loss

    ours, _ = load_pretrained(random_tagger, head="tagging", num_labels=len(LABELS))
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(random_tagger)
    encoded = tagging.encode([w for w, _ in SENTENCES], tokenizer, 64, 16,
                             label_ids=[[LABELS.index(t) for t in tags] for _, tags in SENTENCES])
    batch = collate(encoded.features, np.arange(len(encoded.features)), 0)
    width = batch["input_ids"].shape[1]
    with torch.no_grad():
        expected = theirs.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long(),
                                 token_type_ids=batch["token_type_ids"],
                                 labels=batch["label_ids"][:, :width].long()).loss
        got = token_loss(ours.eval(), batch) / len(SENTENCES)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
