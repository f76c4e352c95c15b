"""How embeddings are scored, as sentence-transformers' evaluators score them: the Spearman correlation of pairs'
cosine similarities with gold scores (EmbeddingSimilarityEvaluator), and retrieval of each query's relevant
document among all documents by cosine (InformationRetrievalEvaluator: MRR@10, recall@1, recall@10)."""
from __future__ import annotations

import numpy as np

from .glue_metrics import spearman


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row i of a against row i of b."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def similarity_metrics(a: np.ndarray, b: np.ndarray, gold) -> dict[str, float]:
    """spearman_cosine (a fraction, as GLUE's correlations) of the pairs' cosines with their gold scores."""
    return {"spearman_cosine": spearman(cosines(a, b), np.asarray(gold, dtype=np.float64))}


def retrieval_metrics(queries: np.ndarray, documents: np.ndarray, relevant: list[set[int]], k: int = 10,
                      chunk: int = 1024) -> dict[str, float]:
    """Each query against every document by cosine: MRR@k (1/rank of the first relevant document in the top k,
    else 0), recall@1 and recall@k (the share of a query's relevant documents in its top 1 and top k), averaged
    over queries. Ties rank in document order."""
    if len(queries) != len(relevant) or not len(queries):
        raise ValueError(f"{len(queries)} queries for {len(relevant)} sets of relevant documents")
    queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    documents = documents / np.maximum(np.linalg.norm(documents, axis=1, keepdims=True), 1e-12)
    shown = min(k, len(documents))
    mrr = recall_1 = recall_k = 0.0
    for start in range(0, len(queries), chunk):  # the score matrix a chunk of queries at a time
        scores = queries[start : start + chunk] @ documents.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :shown]
        for row, ranked in enumerate(top):
            wanted = relevant[start + row]
            hits = [rank for rank, doc in enumerate(ranked) if int(doc) in wanted]
            mrr += 1.0 / (hits[0] + 1) if hits else 0.0
            recall_1 += (int(ranked[0]) in wanted) / len(wanted)
            recall_k += len(hits) / len(wanted)
    n = len(queries)
    return {f"mrr@{k}": mrr / n, "recall@1": recall_1 / n, f"recall@{k}": recall_k / n}
