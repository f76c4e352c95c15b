"""`bertfit export`: the ONNX graph computes what the PyTorch model computes, on inputs the export never saw,
at other batch sizes and lengths; int8 is a fraction of the size; `--engine onnx` gives the CLI's answers."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import runs  # noqa: E402
from runs import PROBABILITY_TOLERANCE, answer, classify, predict_glue  # noqa: E402

from bertfit import inference  # noqa: E402
from bertfit.cli import main  # noqa: E402
from bertfit.errors import CheckpointError  # noqa: E402
from bertfit.export import FILES, INPUT_NAMES, OnnxModel, check, check_inputs, export_onnx  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = ["An unusually smart thriller.", "no", "Two hours of nothing: slow, loud, and far too pleased with "
             "itself, it mistakes noise for wit at every turn of a plot that goes nowhere.", "Well made."]


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """A classification run exported twice: float32 only (RUN/onnx), and with int8 (elsewhere)."""
    root = tmp_path_factory.mktemp("export")
    run = runs.classification_run(root / "glue-sst2")
    export_onnx(run, say=lambda *a: None)
    export_onnx(run, root / "int8", quantize="int8", say=lambda *a: None)
    return run, root / "int8"


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    run = runs.squad_run(tmp_path_factory.mktemp("export-qa") / "squad-v2.0")
    export_onnx(run, say=lambda *a: None)
    return run


def batch_of(run: inference.Run, texts: list[str]) -> dict[str, torch.Tensor]:
    prepared = inference.prepare_texts(run, texts)
    from bertfit.batching import collate

    batch = collate(prepared.features, np.arange(len(texts)), run.pad_id)
    return {name: batch[name] for name in INPUT_NAMES}


def test_onnx_logits_equal_torch_at_other_batch_sizes_and_lengths(sentiment):
    run_dir, _ = sentiment
    torch_run = inference.load_run(run_dir, precision="fp32")
    onnx_model = OnnxModel(run_dir / "onnx" / "model.onnx", "classification")
    for texts in (SENTENCES, SENTENCES[:1], SENTENCES * 5):  # 4, 1 and 20 rows; padded and not
        batch = batch_of(torch_run, texts)
        with torch.no_grad():
            expected = torch_run.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        got = onnx_model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"].long())
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_the_graph_has_dynamic_batch_and_sequence_axes_and_hugging_face_names(sentiment, reader):
    import onnx

    for path, outputs in [(sentiment[0] / "onnx" / "model.onnx", ["logits"]),
                          (reader / "onnx" / "model.onnx", ["start_logits", "end_logits"])]:
        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == INPUT_NAMES and [o.name for o in graph.output] == outputs
        for tensor in graph.input:
            assert [d.dim_param for d in tensor.type.tensor_type.shape.dim] == ["batch", "sequence"]


def test_the_manifest_records_the_check(sentiment):
    run_dir, int8_dir = sentiment
    manifest = json.loads((run_dir / "onnx" / "onnx.json").read_text())
    assert manifest["engine_file"] == "model.onnx" and manifest["head"] == "classification"
    assert manifest["files"]["model.onnx"]["max_abs_diff"] < 1e-5
    assert manifest["files"]["model.onnx"]["checked_sequences"] == 4
    int8 = json.loads((int8_dir / "onnx.json").read_text())
    assert int8["engine_file"] == "model.int8.onnx" and set(int8["files"]) == {"model.onnx", "model.int8.onnx"}


def test_int8_file_is_under_30_percent_of_float32_and_stays_close(sentiment):
    run_dir, int8_dir = sentiment
    fp32, int8 = (int8_dir / FILES[None]).stat().st_size, (int8_dir / FILES["int8"]).stat().st_size
    assert int8 <= 0.30 * fp32
    torch_run = inference.load_run(run_dir, precision="fp32")
    quantized = inference.load_run(int8_dir, engine="onnx")
    assert quantized.describe()["file"] == "model.int8.onnx"
    for want, got in zip(inference.classify(torch_run, SENTENCES), inference.classify(quantized, SENTENCES)):
        assert got["probability"] != want["probability"]  # int8 arithmetic, not the float32 file
        assert got["probabilities"]["positive"] == pytest.approx(want["probabilities"]["positive"], abs=0.05)


def test_the_onnx_engine_says_the_precision_its_export_records(sentiment, tmp_path, capsys):
    import shutil

    run_dir, int8_dir = sentiment
    for folder, precision in ((run_dir, "fp32"), (int8_dir, "int8")):
        assert main(["classify", str(folder), SENTENCES[0], "--engine", "onnx"]) == 0
        assert f"precision {precision} (the ONNX file's own)" in capsys.readouterr().err
        assert inference.load_run(folder, engine="onnx").describe()["precision"] == precision  # GET /v1/models
    assert json.loads((int8_dir / "onnx.json").read_text())["precision"] == "int8"
    older = shutil.copytree(int8_dir, tmp_path / "older")  # an export written before onnx.json named it
    manifest = json.loads((older / "onnx.json").read_text())
    del manifest["precision"]
    (older / "onnx.json").write_text(json.dumps(manifest))
    assert inference.load_run(older, engine="onnx").precision == "int8"


def test_span_logits_equal_torch_on_every_window(reader):
    torch_run = inference.load_run(reader, precision="fp32")
    onnx_run = inference.load_run(reader, engine="onnx")
    pairs = [("Who won Super Bowl 50?", runs.PASSAGE), ("When?", "February 7, 2016.")]
    prepared = inference.prepare_questions(torch_run, pairs)
    assert len(prepared.features) > len(pairs)  # the passage spans several windows
    for (want_start, want_end), (start, end) in zip(inference.run_model(torch_run, prepared.features),
                                                    inference.run_model(onnx_run, prepared.features)):
        assert np.allclose(start, want_start, atol=1e-5) and np.allclose(end, want_end, atol=1e-5)


def test_check_refuses_a_file_that_is_not_the_model(sentiment, tmp_path):
    other = inference.load_run(runs.classification_run(tmp_path / "other", seed=1), precision="fp32")
    inputs = check_inputs(other)
    with pytest.raises(CheckpointError, match="differs from the PyTorch model"):
        check(sentiment[0] / "onnx" / "model.onnx", other.model, "classification", inputs, 1e-4)


def test_cli_classify_and_predict_with_engine_onnx_equal_torch(sentiment, auto_precision, tmp_path, capsys):
    run_dir, _ = sentiment
    for text in SENTENCES:
        label, probability = classify(run_dir, text, engine="onnx")
        want_label, want_probability = classify(run_dir, text)
        assert label == want_label and probability == pytest.approx(want_probability, abs=1e-5)
    # the ONNX file computes in float32: the torch engine's answer in float32, to the printed digit
    assert main(["classify", str(run_dir), SENTENCES[0], "--engine", "onnx"]) == 0
    assert main(["classify", str(run_dir), SENTENCES[0], "--precision", "fp32"]) == 0
    onnx_line, torch_line = capsys.readouterr().out.splitlines()
    assert onnx_line == torch_line
    # --precision auto computes in what auto became on this CPU kind, and says so
    assert main(["classify", str(run_dir), SENTENCES[0]]) == 0
    captured = capsys.readouterr()
    (result,) = inference.classify(inference.load_run(run_dir, precision="auto"), [SENTENCES[0]])
    assert captured.out.splitlines() == [f"{result['label']}\t{result['probability']:.4f}"]
    assert captured.err.startswith(f"precision {auto_precision} (--precision auto: BERTFIT_CPU_KIND=")
    auto_label, auto_probability = captured.out.split()
    fp32_label, fp32_probability = torch_line.split()
    assert auto_label == fp32_label
    assert float(auto_probability) == pytest.approx(float(fp32_probability),
                                                    abs=PROBABILITY_TOLERANCE[auto_precision] + 1e-4)

    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    (data / "test.tsv").write_text("index\tsentence\n" + "".join(f"{i}\t{s}\n" for i, s in enumerate(SENTENCES * 3)))
    [with_onnx] = predict_glue(run_dir, "test", str(tmp_path / "glue"), tmp_path / "onnx-out", engine="onnx")
    [with_torch] = predict_glue(run_dir, "test", str(tmp_path / "glue"), tmp_path / "torch-out")
    assert with_onnx.read_text() == with_torch.read_text()


def test_qa_with_engine_onnx_equals_torch(reader):
    for question in ("Who won Super Bowl 50?", "Where was it played?"):
        got, want = answer(reader, question, runs.PASSAGE, engine="onnx"), answer(reader, question, runs.PASSAGE)
        assert got["answer"] == want["answer"] and got["windows"] == want["windows"]
        assert got["null_odds"] == pytest.approx(want["null_odds"], abs=1e-4)


def test_export_of_a_folder_without_a_model_is_one_error_line(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertfit: error:") and len(err.strip().splitlines()) == 1
    assert main(["classify", str(tmp_path), "x", "--engine", "onnx"]) == 2
    assert "bertfit export" in capsys.readouterr().err


def test_cli_export_writes_the_folder_and_says_what_it_checked(tmp_path, capsys):
    run = runs.classification_run(tmp_path / "run")
    assert main(["export", str(run), "--format", "onnx", "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "largest difference from PyTorch" in out and str(tmp_path / "out" / "model.onnx") in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "model.onnx", "onnx.json", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt"]


# ---- what an export may replace, and what a failed one leaves --------------------------------------

def test_export_replaces_only_an_earlier_export_of_the_same_run(tmp_path, capsys):
    run = runs.classification_run(tmp_path / "run")
    other = runs.classification_run(tmp_path / "other", seed=1)
    export_onnx(other, tmp_path / "other-export", say=lambda *a: None)
    mine = tmp_path / "myfiles"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for output in (mine, run, run / "model", tmp_path / "other-export"):
        before = sorted(str(p) for p in output.rglob("*"))
        assert main(["export", str(run), "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not an earlier export of" in err and "Traceback" not in err
        assert sorted(str(p) for p in output.rglob("*")) == before
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myfiles", "other", "other-export", "run"]

    for _ in range(2):  # the second export replaces the first: it names this run
        assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "onnx.json").read_text())["source"] == str((run / "model").resolve())


def test_export_keeps_a_file_added_to_its_earlier_export_and_never_replaces_the_current_folder(tmp_path, capsys,
                                                                                              monkeypatch):
    run = runs.classification_run(tmp_path / "run")
    assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 0
    (tmp_path / "out" / "Dockerfile").write_text("mine")
    before = sorted(str(p) for p in (tmp_path / "out").rglob("*"))
    assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "also holds Dockerfile" in err and "Traceback" not in err
    assert sorted(str(p) for p in (tmp_path / "out").rglob("*")) == before
    monkeypatch.chdir(tmp_path / "out")  # an export of this run, yet the folder the user stands in
    (tmp_path / "out" / "Dockerfile").unlink()
    assert main(["export", str(run), "--output", "."]) == 2
    assert "the current folder" in capsys.readouterr().err
    assert (tmp_path / "out" / "onnx.json").is_file()


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import bertfit.export

    run = runs.classification_run(tmp_path / "run")

    def fails(fp32, int8):
        raise CheckpointError("quantization failed")

    monkeypatch.setattr(bertfit.export, "quantize_int8", fails)
    for output in (None, tmp_path / "deep" / "er" / "out"):
        with pytest.raises(CheckpointError, match="quantization failed"):
            export_onnx(run, output, quantize="int8", say=lambda *a: None)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
        assert sorted(p.name for p in run.iterdir()) == ["model"]


def test_quantize_int8_leaves_the_root_loggers_level(sentiment, tmp_path):
    import logging

    from bertfit.export import quantize_int8

    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        quantize_int8(sentiment[0] / "onnx" / "model.onnx", tmp_path / "model.int8.onnx")
        assert root.level == logging.INFO
    finally:
        root.setLevel(level)


# ---- masked-language models ---------------------------------------------------------------------

MASKED = ["The cat sat on the [MASK].", "Paris is the [MASK] of France, and the [MASK] is its river."]


@pytest.mark.parametrize("pretraining", [False, True])
def test_a_pretraining_run_exports_and_fills_masks_on_onnx_as_on_torch(tmp_path, capsys, pretraining):
    run = runs.masked_lm_run(tmp_path / "pretrain", pretraining=pretraining)
    export_onnx(run, say=lambda *a: None)
    manifest = json.loads((run / "onnx" / "onnx.json").read_text())
    assert manifest["head"] == ("pretraining" if pretraining else "mlm")
    on_torch = inference.fill_mask(inference.load_run(run, precision="fp32"), MASKED, 3)
    on_onnx = inference.fill_mask(inference.load_run(run, engine="onnx"), MASKED, 3)
    for want, got in zip(on_torch, on_onnx):
        for want_mask, got_mask in zip(want, got):
            assert [c["token"] for c in got_mask] == [c["token"] for c in want_mask]
            assert [c["probability"] for c in got_mask] == pytest.approx([c["probability"] for c in want_mask],
                                                                         abs=1e-5)
    assert main(["fill-mask", str(run), MASKED[0], "--engine", "onnx"]) == 0
    assert main(["fill-mask", str(run), MASKED[0], "--precision", "fp32"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[: len(out) // 2] == out[len(out) // 2 :]


@pytest.mark.parametrize("flags, widest", [({"avx2", "avx512f"}, 64), ({"avx2", "avx512_vnni"}, 127)],
                         ids=["no VNNI: 7 bits", "VNNI: 8 bits"])
def test_int8_weights_take_7_bits_on_cpus_without_vnni(tmp_path, monkeypatch, flags, widest):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bertfit import devices, export

    weight = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "one-matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
                              [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "model.onnx")
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(flags))
    export.quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    quantized = [numpy_helper.to_array(t) for t in onnx.load(tmp_path / "model.int8.onnx").graph.initializer
                 if t.data_type == TensorProto.INT8 and t.dims == [64, 64]]
    assert len(quantized) == 1
    assert np.abs(quantized[0].astype(np.int32)).max() == widest  # per channel, the largest weight at the widest
