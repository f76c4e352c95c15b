"""`bertfit export` of a sentence-embedding model: the ONNX file gives the torch engine's embeddings, its folder
carries the sentence-transformers files, int8 is checked by direction, and the onnx engine embeds from it."""
import json

import numpy as np
import pytest

import runs

from bertfit import inference
from bertfit.cli import main

pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]
TEXTS = ["A man is playing a guitar.", "Stocks fell sharply on Monday after the announcement.", "word " * 80]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_an_embedding_export_embeds_as_torch_does(tmp_path, pooling, capsys):
    folder = runs.embedding_folder(tmp_path / "model", pooling=pooling)
    assert main(["export", str(folder), "--output", str(tmp_path / "onnx"), "--quantize", "int8"]) == 0
    manifest = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert manifest["head"] == "embedding" and manifest["engine_file"] == "model.int8.onnx"
    assert manifest["files"]["model.onnx"]["least_cosine"] > 0.99999
    assert manifest["files"]["model.int8.onnx"]["least_cosine"] >= 0.9
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        assert (tmp_path / "onnx" / name).read_text() == (folder / name).read_text()
    expected = inference.embed(inference.load_run(folder, precision="fp32", need="embed"), TEXTS)
    manifest["engine_file"] = "model.onnx"  # the float32 file: equal to torch to rounding
    (tmp_path / "onnx" / "onnx.json").write_text(json.dumps(manifest))
    got = inference.embed(inference.load_run(tmp_path / "onnx", engine="onnx", need="embed"), TEXTS)
    assert np.abs(got.vectors - expected.vectors).max() < 1e-5
    assert got.truncated == expected.truncated == [False, False, True]
