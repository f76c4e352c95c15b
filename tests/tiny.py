"""A tiny BERT and data it can learn, for tests of the training loop (plain helpers, not tests)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from bertfit import predicting
from bertfit.batching import Features
from bertfit.model import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, init_weights

VOCAB = 40
PAD, CLS, SEP = 0, 2, 3


# the tiny BERT over the embedded model's real vocabulary, for tests that go through the tokenizer and the CLI
REAL_VOCAB_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=128)


def config(dropout: float = 0.1) -> BertConfig:
    return BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout)


def classifier(dropout: float = 0.1, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config(dropout), num_labels=2)
    init_weights(model, model.bert.config)
    return model


def albert_classifier(dropout: float = 0.1, seed: int = 0) -> BertForSequenceClassification:
    """The tiny classifier as an ALBERT: one block run for both layers, narrower embeddings projected up, gelu_new."""
    torch.manual_seed(seed)
    albert = dataclasses.replace(config(dropout), family="albert", shared_layers=True, embedding_size=16,
                                 hidden_act="gelu_new")
    model = BertForSequenceClassification(albert, num_labels=2)
    init_weights(model, albert)
    return model


def span_model(dropout: float = 0.0, seed: int = 0) -> BertForQuestionAnswering:
    torch.manual_seed(seed)
    model = BertForQuestionAnswering(config(dropout))
    init_weights(model, model.bert.config)
    return model


def features(n: int, seed: int = 0, min_length: int = 3, max_length: int = 20) -> Features:
    """[CLS] tokens [SEP] of varied lengths; the label says whether the first token is in the low half
    of the vocabulary; start/end positions point at the two highest tokens, for the span model."""
    rng = np.random.default_rng(seed)
    ids, labels, starts, ends = [], [], [], []
    for _ in range(n):
        tokens = rng.integers(5, VOCAB, size=int(rng.integers(min_length, max_length + 1))).tolist()
        ids.append([CLS, *tokens, SEP])
        labels.append(int(tokens[0] < (5 + VOCAB) // 2))
        a, b = sorted(np.argsort(tokens)[-2:] + 1)
        starts.append(int(a))
        ends.append(int(b))
    return Features.from_lists(ids, [[0] * len(x) for x in ids], label_ids=labels, start_positions=starts,
                               end_positions=ends)


def classification_loss(model, batch) -> torch.Tensor:
    logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    return F.cross_entropy(logits.float(), batch["label_ids"], reduction="sum")


def accuracy_on(dev: Features):
    """An evaluation for `fit`: accuracy and mean loss on `dev` (through `predict`, so it gathers under torchrun)."""

    def evaluate(model) -> dict:
        (logits,) = predicting.predict(model, dev, PAD, torch.device("cpu"), batch_size=8, precision="fp32")
        labels = dev.columns["label_ids"]
        loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
        return {"accuracy": float((logits.argmax(-1) == labels).mean()), "loss": loss}

    return evaluate


def span_accuracy_on(dev: Features):
    def evaluate(model) -> dict:
        starts, _ = predicting.predict(model, dev, PAD, torch.device("cpu"), batch_size=8, precision="fp32",
                                       per_token=True)
        hits = [s.argmax() == t for s, t in zip(starts, dev.columns["start_positions"])]
        return {"start_accuracy": float(np.mean(hits))}

    return evaluate


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
