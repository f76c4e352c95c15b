"""Sentence embeddings (`inference.embed`, `bertfit embed`) against sentence-transformers' own `encode` on the
embedded model, as it ships and with its pooling changed (CLS, max, no Normalize module)."""
import json
import random

import numpy as np
import pytest
import torch

from bertfit import embedding, inference
from bertfit.cli import main
from bertfit.pretrained import embedded_model_path

st = pytest.importorskip("sentence_transformers")
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """n texts of real words from the tokenizer's vocabulary: mostly a sentence, some paragraphs, a few longer
    than the model's 256 tokens, with punctuation, capitals and accents."""
    words = [w for w in json.loads((embedded_model_path() / "tokenizer.json").read_text())["model"]["vocab"]
             if w.isalpha() and w.isascii() and len(w) > 2][1000:6000]
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        length = rng.choice([rng.randint(1, 12)] * 6 + [rng.randint(20, 120)] * 3 + [rng.randint(250, 400)])
        picked = [rng.choice(words) for _ in range(length)]
        picked[0] = picked[0].capitalize()
        if i % 7 == 0:
            picked.insert(length // 2, "café, naïve —")
        texts.append(" ".join(picked) + rng.choice([".", "?", "!", ""]))
    return texts


def variant(tmp_path, pooling: dict | None, normalize: bool, name: str):
    """The embedded model's folder with another pooling config and with or without its Normalize module
    (the weights and tokenizer linked, not copied)."""
    folder = tmp_path / name
    folder.mkdir()
    for path in embedded_model_path().iterdir():
        if path.is_file() and path.name != "modules.json":
            (folder / path.name).symlink_to(path)
    modules = json.loads((embedded_model_path() / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules if normalize else modules[:2]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


@pytest.fixture(scope="module")
def texts():
    return mixed_texts(300)


@pytest.fixture(scope="module")
def embedded_run():
    return inference.load_run("embedded", precision="fp32", need="embed")


def reference(folder, texts, **options) -> np.ndarray:
    model = st.SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, batch_size=32, convert_to_numpy=True, **options)


def test_embed_equals_sentence_transformers_encode_on_the_embedded_model(embedded_run, texts):
    got = inference.embed(embedded_run, texts)
    expected = reference(embedded_model_path(), texts)
    assert got.vectors.shape == expected.shape == (300, 384)
    assert np.abs(got.vectors - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(got.vectors, axis=1), 1, atol=1e-5)  # the folder's Normalize module
    assert 0 < got.num_truncated < 300  # the long texts were cut, and counted
    assert max(got.tokens) == embedded_run.max_seq_length == 256


def test_a_served_pass_of_mixed_lengths_equals_sentence_transformers_encode(embedded_run, texts, monkeypatch):
    """Texts as a server's pass holds them (requests of mixed lengths in one `run_many`): the packed path attends
    in groups of similar lengths, and each vector is sentence-transformers' own."""
    from bertfit.model import Packing

    grouped, groups = [], Packing.groups
    monkeypatch.setattr(Packing, "groups", lambda self: grouped.append(len(groups(self))) or groups(self))
    chosen = texts[:48]
    requests = [inference.prepare_embed(embedded_run, chosen[i : i + 3]) for i in range(0, len(chosen), 3)]
    got = np.stack([a["embedding"] for answers in inference.run_many(embedded_run, requests) for a in answers])
    assert max(grouped, default=0) > 1  # a pass attended in several groups
    assert np.abs(got - reference(embedded_model_path(), chosen)).max() < 1e-5


@pytest.mark.parametrize("pooling, normalize", [
    ({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}, False),
    ({"word_embedding_dimension": 384, "pooling_mode_cls_token": True}, False),
    ({"embedding_dimension": 384, "pooling_mode": "max"}, True),
    ({"embedding_dimension": 384, "pooling_mode": ["mean", "cls", "mean_sqrt_len_tokens"]}, False),
], ids=["mean, not normalised", "cls", "max, normalised", "mean+cls+sqrt, concatenated"])
def test_each_pooling_equals_sentence_transformers(tmp_path, texts, pooling, normalize):
    folder = variant(tmp_path, pooling, normalize, "model")
    run = inference.load_run(folder, precision="fp32", need="embed")
    chosen = texts[::10]
    got = inference.embed(run, chosen).vectors
    expected = reference(folder, chosen)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5) == normalize


@pytest.mark.parametrize("mode", embedding.POOLING_MODES)
def test_pool_equals_sentence_transformers_pooling_on_padded_batches(mode):
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    torch.manual_seed(0)
    hidden = torch.randn(4, 9, 8)
    mask = torch.tensor([[1] * n + [0] * (9 - n) for n in (9, 1, 5, 3)])
    expected = Pooling(8, mode)({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
    torch.testing.assert_close(embedding.pool(hidden, mask, (mode,)), expected)


def test_normalize_argument_overrides_the_folders_choice(embedded_run, texts):
    raw = inference.embed(embedded_run, texts[:20], normalize=False).vectors
    unit = inference.embed(embedded_run, texts[:20]).vectors
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-6)


def test_cli_writes_npy_and_jsonl_equal_to_the_python_call(tmp_path, embedded_run, texts, capsys):
    chosen = texts[:12]
    (tmp_path / "texts.txt").write_text("\n".join(chosen) + "\n")
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(chosen)))
    expected = inference.embed(embedded_run, chosen)
    assert main(["embed", "embedded", "--input-file", str(tmp_path / "texts.txt"), "--precision", "fp32",
                 "--output", str(tmp_path / "out.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected.vectors)
    assert main(["embed", "embedded", "--input-file", str(tmp_path / "texts.jsonl"), "--text-field", "body",
                 "--precision", "fp32", "--output", str(tmp_path / "out.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(12))
    np.testing.assert_array_equal(np.array([r["embedding"] for r in records], np.float32), expected.vectors)
    assert [r["truncated"] for r in records] == expected.truncated
    assert [r["tokens"] for r in records] == expected.tokens
    err = capsys.readouterr().err
    assert f"12 texts, 384 dimensions, normalised; {expected.num_truncated} cut to the model's 256 tokens" in err
    assert main(["embed", "embedded", chosen[0], chosen[1], "--precision", "fp32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # two texts alone make other batches (other padding) than twelve: equal within float32 rounding
    np.testing.assert_allclose(np.array([json.loads(line)["embedding"] for line in lines], np.float32),
                               expected.vectors[:2], atol=1e-6)
