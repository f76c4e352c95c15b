"""Each head is one entry of heads.HEADS, and the tables keyed by head elsewhere are read off it: a head's
architecture is one transformers knows, its model saves with that name, and a saved folder loads back as it."""
import pytest
import torch

from bertfit import heads, inference, onnx_engine
from bertfit.checkpoints import hf, loading
from bertfit.model import BertConfig
from bertfit.pretrained import save_pretrained
from bertfit.serve import app, hf as serve_hf


def test_the_tables_keyed_by_head_are_read_off_heads_py():
    names, weighted = set(heads.HEADS), set(heads.WEIGHTED)
    assert set(onnx_engine.OUTPUT_NAMES) == set(app.ROUTES) == set(serve_hf.TASKS) == names
    assert set(inference.HEAD_TENSORS) == set(inference.ARCHITECTURES.values()) == weighted == names - {"embedding"}
    assert set(loading.HEADS) == weighted | {"base"}
    assert set(hf.HEAD_MODULES) == {m for head in heads.HEADS.values() for m in head.modules}
    assert {h for needed in inference.NEEDS.values() for h in needed} == names


@pytest.mark.parametrize("name", list(heads.WEIGHTED))  # the embedding head: tests/test_embedding.py
def test_a_heads_model_saves_under_its_architecture_and_loads_back_as_that_head(name, tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    head = heads.HEADS[name]
    assert hasattr(transformers, head.architecture)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    model = loading.build_model(config, name, num_labels=3)
    assert isinstance(model, head.model_class)
    folder = save_pretrained(model, tokenizer, tmp_path / "model", labels=["a", "b", "c"] if head.labelled else None)
    run = inference.load_run(folder, precision="fp32")
    assert run.head == name and run.labels == (["a", "b", "c"] if head.labelled else [])
    assert run.setting("max_seq_length") == head.encoding["max_seq_length"]
