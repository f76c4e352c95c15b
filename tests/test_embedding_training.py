"""Fine-tuning a bi-encoder (`bertfit embed-train`): the losses against sentence-transformers' own, the pairs cut
apart as they were joined, the evaluators' metrics against their definitions, and a run whose saved model
sentence-transformers loads with bertfit's embeddings."""
import json

import numpy as np
import pytest
import torch

import runs

from bertfit import embedding, embedding_losses, embedding_metrics, inference
from bertfit.batching import collate
from bertfit.cli import main
from bertfit.recipes.embed import EmbedOptions, Pairs, encode_pairs
from bertfit.pretrained import embedded_model_path, load_tokenizer

st = pytest.importorskip("sentence_transformers")
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]


def st_loss(name: str):
    from sentence_transformers.sentence_transformer import losses

    return {"mnrl": losses.MultipleNegativesRankingLoss, "cosent": losses.CoSENTLoss,
            "cosine": losses.CosineSimilarityLoss}[name](model=None)


@pytest.mark.parametrize("name", ["mnrl", "cosent", "cosine"])
def test_each_loss_equals_sentence_transformers_loss_times_the_batch_size(name):
    torch.manual_seed(0)
    a, b = torch.randn(6, 16), torch.randn(6, 16)
    scores = torch.tensor([0.1, 0.9, 0.4, 0.4, 0.7, 0.0])
    expected = st_loss(name).compute_loss_from_embeddings([a, b], scores)
    ours = {"mnrl": lambda: embedding_losses.multiple_negatives_ranking_loss(a, b),
            "cosent": lambda: embedding_losses.cosent_loss(a, b, scores),
            "cosine": lambda: embedding_losses.cosine_similarity_loss(a, b, scores)}[name]()
    # the loop divides a recipe's loss by the batch size: sentence-transformers' mean, step for step
    torch.testing.assert_close(ours / 6, expected, atol=1e-5, rtol=1e-5)


def test_joined_pairs_split_into_their_two_sides():
    tokenizer = load_tokenizer(embedded_model_path())
    pairs = Pairs(["a short one", "a somewhat longer first text here", "x"], ["b", "second", "the last second text"],
                  [1.0, 2.0, 3.0], "test", 3)
    features, cut = encode_pairs(pairs, tokenizer, 6)
    assert cut == 1  # room for 4 words: the second a-side alone lost some
    batch = collate(features, [0, 1, 2], pad_id=0)
    both = embedding_losses.both_sides(batch, pad_id=0)
    for side, texts in ((slice(0, 3), pairs.texts_a), (slice(3, 6), pairs.texts_b)):
        ids, mask = both["input_ids"][side], both["attention_mask"][side]
        expected, _ = embedding.encode_texts(tokenizer, texts, 6)
        assert [row[m].tolist() for row, m in zip(ids, mask)] == expected
        assert not ids[~mask].any()  # padded with the pad id
    assert torch.equal(batch["score"], torch.tensor([1.0, 2.0, 3.0]))


def test_retrieval_metrics_by_their_definitions():
    documents = np.eye(4)
    queries = np.array([[1, 0.1, 0, 0], [0.9, 1, 0, 0], [0, 0.5, 0.4, 0.3], [0, 0, 0, 1.0]])
    relevant = [{0}, {0}, {2}, {3}]  # ranks of the relevant document: 1, 2, 2, 1
    got = embedding_metrics.retrieval_metrics(queries, documents, relevant, k=10)
    assert got == pytest.approx({"mrr@10": (1 + 0.5 + 0.5 + 1) / 4, "recall@1": 0.5, "recall@10": 1.0})
    assert embedding_metrics.retrieval_metrics(queries, documents, relevant, k=1)["mrr@1"] == pytest.approx(0.5)


def test_similarity_metric_is_scipys_spearman_of_cosines():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b, gold = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)), rng.uniform(0, 5, 20)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert embedding_metrics.similarity_metrics(a, b, gold)["spearman_cosine"] == pytest.approx(spearmanr(cos, gold)[0])


def squad_file(path, paragraphs: int = 6):
    topics = ["music and guitars", "the stock market", "rivers and forests", "football in winter",
              "cooking pasta", "old castles", "space rockets", "coffee farms"]
    data = [{"title": t, "paragraphs": [{"context": f"This paragraph is about {t}. It says a lot about {t}.",
                                         "qas": [{"id": f"{i}-{j}", "question": f"What about {t}, question {j}?",
                                                  "answers": [{"text": t, "answer_start": 24}]} for j in range(2)]}]}
            for i, t in enumerate(topics[:paragraphs])]
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


def test_a_run_saves_a_model_sentence_transformers_loads_with_equal_embeddings(tmp_path, capsys):
    folder = runs.embedding_folder(tmp_path / "base")
    squad = squad_file(tmp_path / "squad.json")
    assert main([str(a) for a in ["embed-train", "--model", folder, "--train-file", squad, "--eval-file", squad,
                                  "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--precision", "fp32",
                                  "--output-dir", tmp_path / "run", "--quiet"]]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["metrics"]) == {"mrr@10", "recall@1", "recall@10"}
    assert results["settings"]["loss"] == "mnrl" and results["train_pairs"] == 12
    model = tmp_path / "run" / "model"
    texts = ["What about old castles?", "This paragraph is about coffee farms.", "word " * 100]
    ours = inference.embed(inference.load_run(model, precision="fp32", need="embed"), texts)
    theirs = st.SentenceTransformer(str(model), device="cpu").encode(texts, convert_to_numpy=True)
    assert np.abs(ours.vectors - theirs).max() < 1e-5
    assert ours.truncated == [False, False, True]  # the base model's 64 tokens, kept
    before = inference.embed(inference.load_run(folder, precision="fp32", need="embed"), texts).vectors
    assert np.abs(ours.vectors - before).max() > 1e-3  # it trained


def test_in_batch_negatives_are_the_micro_batch_one_forward_pass_holds(tmp_path, monkeypatch):
    """docs/embeddings.md: nothing gathers embeddings, so each anchor is ranked against the positives of its own
    micro-batch (under torchrun: its rank's share of it), not of the step's whole --batch-size."""
    from bertfit.recipes.embed import finetune_embeddings
    from bertfit.settings import TrainSettings

    ranked, loss = [], embedding_losses.multiple_negatives_ranking_loss

    def counted(a, b):
        ranked.append((len(a), len(b)))
        return loss(a, b)

    monkeypatch.setattr(embedding_losses, "multiple_negatives_ranking_loss", counted)
    squad = squad_file(tmp_path / "squad.json", paragraphs=4)  # 8 questions
    finetune_embeddings(EmbedOptions(train_file=str(squad), eval_file=str(squad), output_dir=str(tmp_path / "run"),
                                     model=str(runs.embedding_folder(tmp_path / "base")), quiet=True),
                        TrainSettings(epochs=1, batch_size=8, grad_accum=2, precision="fp32"))
    assert ranked == [(4, 4), (4, 4)]  # one step of 8 pairs: two passes, each anchor against 4 positives, not 8


def test_scored_pairs_train_with_cosent_and_score_by_spearman(tmp_path):
    from bertfit.recipes.embed import finetune_embeddings
    from bertfit.settings import TrainSettings

    rows = ["sentence1,sentence2,score"] + [f"a {w} text,another {w} one,{i % 5}.5" for i, w in
                                            enumerate(["cat", "dog", "car", "sea", "sun", "oak", "bus", "ice"])]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    results = finetune_embeddings(EmbedOptions(train_file=str(tmp_path / "pairs.csv"), label_column="score",
                                               eval_file=str(tmp_path / "pairs.csv"),
                                               model=str(runs.embedding_folder(tmp_path / "base")),
                                               output_dir=str(tmp_path / "run"), quiet=True),
                                  TrainSettings(epochs=1, batch_size=4, precision="fp32"))
    assert results["settings"]["loss"] == "cosent" and list(results["metrics"]) == ["spearman_cosine"]
    assert -1 <= results["metrics"]["spearman_cosine"] <= 1


def test_a_run_without_an_evaluation_file_trains_and_keeps_its_final_model(tmp_path):
    """Nothing to score on is no reason to fail: the run trains, keeps its last model and reports no metric."""
    folder = runs.embedding_folder(tmp_path / "base")
    squad = squad_file(tmp_path / "squad.json")
    assert main([str(a) for a in ["embed-train", "--model", folder, "--train-file", squad, "--epochs", "1",
                                  "--batch-size", "4", "--lr", "1e-3", "--precision", "fp32",
                                  "--output-dir", tmp_path / "run", "--quiet"]]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"] == {} and results["eval_pairs"] == 0 and results["steps"] == 3
    texts = ["What about old castles?", "This paragraph is about coffee farms."]
    ours = inference.embed(inference.load_run(tmp_path / "run" / "model", precision="fp32", need="embed"), texts)
    before = inference.embed(inference.load_run(folder, precision="fp32", need="embed"), texts).vectors
    assert np.abs(ours.vectors - before).max() > 1e-3  # it trained, and the trained model is the one kept
