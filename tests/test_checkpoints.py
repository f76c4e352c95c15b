"""The model-file modules: each format's name table read both ways, and a damaged config.json refused with one
line naming it, wherever a user hands bertfit a model folder or a run dir."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

import tiny
from mistakes import refused
from runs import classification_run, masked_lm_run, squad_run

from bertfit.demo import write_sentiment_data
from bertfit.checkpoints.hf import HF_NAMES, hf_to_ours, is_head, ours_to_hf, read_config
from bertfit.checkpoints.names import NameTable
from bertfit.checkpoints.tutorial import TUTORIAL_NAMES, ours_to_tutorial, tutorial_to_ours
from bertfit.errors import CheckpointError
from bertfit.model import BertConfig, BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification, BertModel


# ---- the name tables --------------------------------------------------------------------------------

@pytest.mark.parametrize("table", [HF_NAMES, TUTORIAL_NAMES], ids=["hf", "tutorial"])
def test_each_name_table_maps_every_name_back_to_itself_both_ways(table):
    for theirs, ours in table.rows:
        for name, other in ((theirs, ours), (ours, theirs)):
            concrete = name.format(layer=3, kind="bias")
            mapped = (table.ours if name == theirs else table.theirs)(concrete)
            assert mapped == other.format(layer=3, kind="bias")
            assert (table.theirs if name == theirs else table.ours)(mapped) == concrete


def test_a_table_with_a_name_twice_is_refused_when_written():
    with pytest.raises(ValueError, match="twice"):
        NameTable([("a.{kind}", "x.{kind}"), ("b.{kind}", "x.{kind}")])


@pytest.mark.parametrize("build", [BertModel, BertForPreTraining, BertForQuestionAnswering,
                                   lambda c: BertForSequenceClassification(c, 3)])
def test_every_tensor_of_every_model_round_trips_through_the_hugging_face_names(build):
    torch.manual_seed(0)
    model = build(tiny.config())
    theirs = ours_to_hf(model)
    assert not any(k.startswith("bert.") for k in theirs) or hasattr(model, "bert")
    back = hf_to_ours(theirs, Path("memory"))
    mine = {k.removeprefix("bert."): v for k, v in model.state_dict().items()}
    assert back.keys() == mine.keys() and all(torch.equal(back[k], mine[k]) for k in mine)
    assert {k for k in mine if is_head(k)} == {k for k in mine if k.split(".")[0] in
                                               ("classifier", "qa_outputs", "cls", "seq_relationship")}


def test_the_encoder_round_trips_through_the_tutorials_names():
    torch.manual_seed(0)
    encoder = BertModel(tiny.config())
    back = tutorial_to_ours(ours_to_tutorial(encoder), Path("memory"))
    assert back.keys() == encoder.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in encoder.state_dict().items())


# ---- a damaged config.json ----------------------------------------------------------------------------

DAMAGE = {
    "not JSON": (b"{'hidden_size': 64,", "not valid JSON"),
    "not UTF-8": (b'{"hidden_size": "\xff\xfe"}', "not UTF-8 text (byte 17)"),
    "a list": (b"[1, 2]", "config must be a JSON object, not list"),
    "a string for a float": ({"layer_norm_eps": "small"}, "layer_norm_eps must be a number, not 'small'"),
    "zero heads": ({"num_attention_heads": 0}, "num_attention_heads must be at least 1, not 0"),
    "a bool for an integer": ({"num_hidden_layers": True}, "num_hidden_layers must be an integer, not True"),
    "a dropout of 2": ({"hidden_dropout_prob": 2}, "hidden_dropout_prob must be in [0, 1), not 2"),
    "labels as a list": ({"id2label": ["neg", "pos"]}, "id2label must be an object of label names"),
    "a bertfit section that is text": ({"bertfit": "sst2"}, "the bertfit section must be an object"),
}


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("good")
    return {"classification": classification_run(folder / "sst2"), "squad": squad_run(folder / "squad"),
            "fill-mask": masked_lm_run(folder / "mlm")}


def damaged_copy(good_run: Path, folder: Path, damage) -> Path:
    shutil.copytree(good_run, folder)
    config = folder / "model" / "config.json"
    if isinstance(damage, bytes):
        config.write_bytes(damage)
    else:
        config.write_text(json.dumps({**json.loads(config.read_text()), **damage}))
    return folder


COMMANDS = {
    "classify": lambda run, tmp: ["classify", run, "a fine film"],
    "predict": lambda run, tmp: ["predict", run, "--split", "dev", "--output-dir", tmp / "predictions"],
    "qa": lambda run, tmp: ["qa", run, "--question", "who?", "--context", "someone"],
    "fill-mask": lambda run, tmp: ["fill-mask", run, "a [MASK] film"],
    "export": lambda run, tmp: ["export", run, "--output", tmp / "onnx"],
    # glue reads its data before the model: real files, so that the model is what is refused
    "glue --model": lambda run, tmp: ["glue", "sst2", "--model", run / "model", "--data-dir",
                                      write_sentiment_data(tmp / "glue", 8, 4), "--output-dir", tmp / "out"],
    "pretrain --model": lambda run, tmp: ["pretrain", "--model", run / "model", "--train-file", tmp / "text.txt",
                                          "--output-dir", tmp / "out"],
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_config_json_is_refused_in_one_line_naming_it(good_runs, tmp_path, capsys, command, damage):
    contents, problem = DAMAGE[damage]
    kind = {"qa": "squad", "fill-mask": "fill-mask"}.get(command, "classification")  # a run of the command's kind
    run = damaged_copy(good_runs[kind], tmp_path / "run", contents)
    message = refused(COMMANDS[command](run, tmp_path), watch=[tmp_path], capsys=capsys)
    assert str(run / "model" / "config.json") in message and problem in message


# ---- the model card ---------------------------------------------------------------------------------------

def test_the_card_names_a_hub_base_model_only_for_a_hub_name_or_the_embedded_model(tmp_path):
    from bertfit.checkpoints.model_card import EMBEDDED_MODEL, base_model

    assert base_model("embedded") == EMBEDDED_MODEL
    assert base_model("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert base_model(str(tmp_path)) is None and base_model("./model") is None and base_model("new tiny") is None


# ---- any config.json: a BertConfig or one CheckpointError, nothing else ------------------------------------

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
FIELDS = st.sampled_from(sorted(BertConfig.fields() | {"model_type", "id2label", "architectures", "bertfit",
                                                       "hidden_act", "label2id", "something_else"}))


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, JSON_VALUES, max_size=6) | JSON_VALUES)
def test_any_json_in_config_json_reads_as_a_config_or_one_checkpoint_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("config") / "config.json"
    if isinstance(raw, dict):
        raw = {**{"vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "intermediate_size": 128}, **raw}
    path.write_text(json.dumps(raw))
    try:
        config = read_config(path)
    except CheckpointError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
    else:
        assert config.hidden_size % config.num_attention_heads == 0 and config.vocab_size >= 1


@hypothesis_settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["weight", "bias"]))
def test_any_layer_number_maps_back_to_itself_through_both_tables(layer, kind):
    for table in (HF_NAMES, TUTORIAL_NAMES):
        for theirs, ours in table.rows:
            name = ours.format(layer=layer, kind=kind)
            assert table.ours(table.theirs(name)) == name


# ---- saving: the files' modes, and nothing left behind when a save fails --------------------------------

@pytest.fixture
def umask_027():
    """A umask that lets the group read and others nothing, so that 0600 and 0644 would both be wrong."""
    import os

    before = os.umask(0o027)
    yield 0o640
    os.umask(before)


def modes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir() if p.is_file()}


def test_every_file_of_a_saved_model_has_the_mode_the_umask_gives(tmp_path, umask_027):
    folder = classification_run(tmp_path / "run") / "model"
    assert "model.safetensors" in modes(folder)
    assert modes(folder) == {name: umask_027 for name in modes(folder)}


def test_a_checkpoints_files_have_the_mode_the_umask_gives_and_restoring_it_draws_nothing(tmp_path, umask_027):
    from bertfit.runs import CheckpointStore

    model = tiny.classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = CheckpointStore(tmp_path / "checkpoints").save(model, optimizer, scheduler, torch.amp.GradScaler("cpu",
                                                            enabled=False), {"step": 1})
    assert "model.safetensors" in modes(folder)
    assert modes(folder) == {name: umask_027 for name in modes(folder)}
    torch.manual_seed(5)
    state = torch.get_rng_state()
    assert CheckpointStore(tmp_path / "checkpoints").load_latest(model, optimizer, scheduler, torch.amp.GradScaler(
        "cpu", enabled=False))["step"] == 1
    assert torch.equal(torch.get_rng_state(), state)  # restoring leaves the caller's random stream as it was


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_save_refused_by_the_folder_it_would_replace_leaves_no_temporary_folder(tmp_path, tokenizer):
    from bertfit.pretrained import save_pretrained

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not a folder bertfit wrote"):
        save_pretrained(tiny.classifier(), tokenizer, tmp_path / "model")
    assert leftovers(tmp_path) == ["model"] and leftovers(tmp_path / "model") == ["notes.txt"]


def test_a_save_whose_write_fails_leaves_no_temporary_folder_nor_the_parents_made_for_it(tmp_path, tokenizer):
    from bertfit.pretrained import save_pretrained

    model = tiny.classifier()
    model.adapter = torch.nn.Linear(2, 2)  # a tensor with no Hugging Face name: the weights file cannot be written
    with pytest.raises(AssertionError, match="no Hugging Face name"):
        save_pretrained(model, tokenizer, tmp_path / "new" / "deeper" / "model")
    assert leftovers(tmp_path) == []
