"""Each head in one place: the module it builds, the tensors that prove it trained, the architecture name
transformers knows it by, the questions it answers, its route and Hugging Face task, its ONNX outputs, and
the encoding settings a run falls back to when its config.json does not record them.

The tables the rest of the package keys by head (inference's NEEDS, HEAD_TENSORS and ARCHITECTURES, the
loader's HEADS and HEAD_MODULES, the server's ROUTES and TASKS, the ONNX engine's OUTPUT_NAMES) are read off
`HEADS` below, so that a new head is one entry here and the module that does its task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from . import model


@dataclass(frozen=True)
class Head:
    name: str  # how runs, manifests and `load_pretrained(head=...)` call it
    model_class: type[nn.Module]  # built over one shared encoder: model_class(config[, num_labels])
    architecture: str  # config.json's `architectures`, as transformers names BERT's class (each family's: families.py)
    tensors: tuple[str, ...]  # our names of the tensors a weights file holds when the head was trained
    modules: tuple[str, ...]  # our module names of its weights (each loads whole or starts afresh; `head`: ModernBERT's)
    answers: tuple[str, ...]  # the questions it answers: `load_run(..., need=...)`
    task: str  # the task a run of it is, when its config.json names none
    routes: tuple[str, ...]  # the serving routes that answer from it, its own first
    hf_task: str  # the Hugging Face pipeline task of the served inference format
    outputs: tuple[str, ...]  # the ONNX graph's outputs, with Hugging Face's names
    encoding: dict = field(default_factory=dict)  # encoding settings of a run that does not record them
    labelled: bool = False  # its outputs are named by config.json's id2label
    per_token: bool = True  # its outputs are per token (False: one row per sequence)

    @property
    def has_weights(self) -> bool:
        """A module of its own over the encoder, trained and saved with it (the embedding head is the encoder
        itself, pooled as its sentence-transformers files say)."""
        return bool(self.tensors)


# Every head, in the order a weights file whose config.json names none is tried (head_of).
HEADS: dict[str, Head] = {head.name: head for head in (
    Head("qa", model.BertForQuestionAnswering, "BertForQuestionAnswering", ("qa_outputs.weight",), ("head", "qa_outputs"),
         answers=("answer",), task="squad", routes=("/v1/answer",), hf_task="question-answering",
         outputs=("start_logits", "end_logits"),
         encoding={"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64, "n_best": 20,
                   "max_answer_length": 30, "null_threshold": 0.0, "version": "1.1"}),
    # a classification run also reranks (/rerank), as a cross-encoder
    Head("classification", model.BertForSequenceClassification, "BertForSequenceClassification",
         ("classifier.weight",), ("pre_classifier", "head", "classifier"), answers=("classify", "predict"), task="classification",
         routes=("/v1/classify", "/rerank"), hf_task="text-classification", outputs=("logits",),
         encoding={"max_seq_length": 128, "long_texts": "truncate", "stride": 64}, labelled=True, per_token=False),
    # the tagger's classifier has the sequence classifier's name: config.json's architectures tells them apart
    Head("tagging", model.BertForTokenClassification, "BertForTokenClassification", ("classifier.weight",),
         ("head", "classifier"), answers=("tag", "predict"), task="ner", routes=("/v1/token-classification",),
         hf_task="token-classification", outputs=("logits",),
         encoding={"max_seq_length": 128, "stride": 32, "label_all_subtokens": False, "scheme": "bio"},
         labelled=True),
    # a masked-language model reads as far as its positions when its run recorded no length (None)
    Head("pretraining", model.BertForPreTraining, "BertForPreTraining",
         ("cls.dense.weight", "seq_relationship.weight"), ("cls", "seq_relationship"),
         answers=("fill-mask",), task="fill-mask", routes=("/v1/fill-mask",), hf_task="fill-mask", outputs=("logits",),
         encoding={"max_seq_length": None}),
    Head("mlm", model.BertForMaskedLM, "BertForMaskedLM", ("cls.dense.weight",), ("cls",),
         answers=("fill-mask",), task="fill-mask", routes=("/v1/fill-mask",), hf_task="fill-mask", outputs=("logits",),
         encoding={"max_seq_length": None}),
    # a sentence-transformers folder (the embedded model's included): the encoder and the pooling its files declare
    Head("embedding", model.BertModel, "BertModel", (), (), answers=("embed",), task="embedding",
         routes=("/v1/embeddings", "/embed"), hf_task="feature-extraction", outputs=("sentence_embedding",),
         per_token=False),
)}
# the heads with weights of their own: what a weights file is searched for, and what load_pretrained builds
WEIGHTED = {name: head for name, head in HEADS.items() if head.has_weights}


def setting(head: str, extra: dict, name: str):
    """A run's encoding setting: what its config.json's bertfit section records, else its head's default."""
    return extra.get(name, HEADS[head].encoding.get(name))


def heads_answering(need: str) -> tuple[str, ...]:
    return tuple(name for name, head in HEADS.items() if need in head.answers)


HEAD_MODULES = tuple(dict.fromkeys(m for head in HEADS.values() for m in head.modules))
NEEDS = {need: heads_answering(need) for need in dict.fromkeys(n for h in HEADS.values() for n in h.answers)}
