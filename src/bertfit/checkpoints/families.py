"""The encoder families bertfit reads and writes, one row each: what sets a family apart from BERT.

A row says which config.json `model_type`s it reads, which parts of the one model (`bertfit.model`) it
picks, its config.json names where they differ from BERT's, its weight names (one table read both ways,
encoder and heads), and transformers' class names. A family is a config, not a copy of the model: adding
one is mostly adding a row. `docs/families.md` is rendered from this table (`families_table`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .. import heads
from .names import NameTable

# The model's head modules and the tensors that show a head trained, by our name (heads.py: each head in one place)
HEAD_MODULES = heads.HEAD_MODULES
HEAD_TENSORS = {name: head.tensors for name, head in heads.WEIGHTED.items()}
# BertConfig fields a config.json sets, in BERT's names; a family renames some and lacks others.
CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_dropout_prob",
                 "attention_probs_dropout_prob", "classifier_dropout", "pad_token_id", "initializer_range")
# transformers' class name for each head: {family's prefix}{suffix}, the suffix of BERT's class (heads.py)
ARCHITECTURE_SUFFIXES = {"base": "Model", **{name: head.architecture.removeprefix("Bert")
                                             for name, head in heads.WEIGHTED.items()}}


@dataclass(frozen=True)
class Family:
    name: str  # BertConfig.family
    model_types: tuple[str, ...]  # the config.json model_types read as this family (the first is written)
    classes: str  # transformers' class-name prefix: {classes}Model, {classes}ForSequenceClassification, ...
    prefix: str  # the encoder's name inside transformers' head models ("roberta." in RobertaForMaskedLM)
    names: NameTable  # their tensor name (without the prefix) <-> ours, the encoder's and the heads'
    qkv: str  # their query/key/value tensors: {layer}, {which} (one of qkv_names), {kind}
    qkv_names: tuple[str, str, str]
    tied_bias: str | None  # their copy of the LM head's bias under the decoder's name (read when alone)
    ignored: str  # their tensors bertfit reads past (a regex): copies of tied weights, buffers, unused heads
    config_names: dict[str, str] = field(default_factory=dict)  # their config.json name -> ours, where they differ
    fields: tuple[str, ...] = CONFIG_FIELDS  # the BertConfig fields their config.json sets (our names)
    defaults: dict = field(default_factory=dict)  # their config class's defaults that are not BertConfig's
    parts: dict = field(default_factory=dict)  # BertConfig fields the family fixes (the parts it picks)
    positions_after_padding: bool = False  # positions count from pad_token_id + 1 (RoBERTa's fairseq heritage)
    written: dict = field(default_factory=dict)  # config.json fields written as they are (no BertConfig field)
    config_ignored: frozenset = frozenset()  # config.json fields of this family that do not change the network
    same_as: dict = field(default_factory=dict)  # config.json fields that must equal a BertConfig field (ours)
    optional: frozenset = frozenset()  # BertConfig fields written only when set (their config has no null for them)
    heads: tuple[str, ...] = ("base", "classification", "qa", "mlm")
    tokenizer_class: str = "BertTokenizer"
    summary: str = ""  # how it differs from BERT, for the docs' table

    def architecture(self, head: str) -> str:
        return self.classes + ARCHITECTURE_SUFFIXES[head]

    def their_field(self, ours: str) -> str:
        return {v: k for k, v in self.config_names.items()}.get(ours, ours)

    def is_ignored(self, name: str) -> bool:
        return bool(self.ignored) and re.fullmatch(self.ignored, name) is not None


BERT_ENCODER = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    ("embeddings.LayerNorm.{kind}", "embeddings.norm.{kind}"),
    ("encoder.layer.{layer}.attention.output.dense.{kind}", "layers.{layer}.attention.out.{kind}"),
    ("encoder.layer.{layer}.attention.output.LayerNorm.{kind}", "layers.{layer}.attention_norm.{kind}"),
    ("encoder.layer.{layer}.intermediate.dense.{kind}", "layers.{layer}.intermediate.{kind}"),
    ("encoder.layer.{layer}.output.dense.{kind}", "layers.{layer}.output.{kind}"),
    ("encoder.layer.{layer}.output.LayerNorm.{kind}", "layers.{layer}.output_norm.{kind}"),
    ("pooler.dense.{kind}", "pooler.dense.{kind}"),
]
BERT_QKV = "encoder.layer.{layer}.attention.self.{which}.{kind}"
# RoBERTa's and ELECTRA's sentence head: dense, activation, out_proj (ours: pre_classifier, classifier)
DENSE_SENTENCE_HEAD = [("classifier.dense.{kind}", "pre_classifier.{kind}"),
                       ("classifier.out_proj.{kind}", "classifier.{kind}"),
                       ("qa_outputs.{kind}", "qa_outputs.{kind}")]
COMMON_IGNORED = r"embeddings\.position_ids"

BERT = Family(
    name="bert", model_types=("bert",), classes="Bert", prefix="bert.",
    names=NameTable(BERT_ENCODER + [
        ("classifier.{kind}", "classifier.{kind}"),
        ("qa_outputs.{kind}", "qa_outputs.{kind}"),
        ("cls.predictions.transform.dense.{kind}", "cls.dense.{kind}"),
        ("cls.predictions.transform.LayerNorm.{kind}", "cls.norm.{kind}"),
        ("cls.predictions.bias", "cls.bias"),
        ("cls.seq_relationship.{kind}", "seq_relationship.{kind}"),
    ]),
    qkv=BERT_QKV, qkv_names=("query", "key", "value"),
    tied_bias="cls.predictions.decoder.bias", ignored=COMMON_IGNORED + r"|cls\.predictions\.decoder\.weight",
    written={"hidden_act": "gelu", "position_embedding_type": "absolute"},
    heads=("base", "classification", "qa", "tagging", "mlm", "pretraining"),
    summary="post-norm blocks, absolute positions, token types, tanh pooler under the classifier",
)

ROBERTA = Family(
    name="roberta", model_types=("roberta",), classes="Roberta", prefix="roberta.",
    names=NameTable(BERT_ENCODER + DENSE_SENTENCE_HEAD + [
        ("lm_head.dense.{kind}", "cls.dense.{kind}"),
        ("lm_head.layer_norm.{kind}", "cls.norm.{kind}"),
        ("lm_head.bias", "cls.bias"),
    ]),
    qkv=BERT_QKV, qkv_names=("query", "key", "value"),
    tied_bias="lm_head.decoder.bias", ignored=COMMON_IGNORED + r"|lm_head\.decoder\.weight",
    defaults={"vocab_size": 50265, "pad_token_id": 1},
    parts={"sentence_head": "dense", "sentence_activation": "tanh"}, positions_after_padding=True,
    written={"hidden_act": "gelu", "bos_token_id": 0, "eos_token_id": 2},
    tokenizer_class="RobertaTokenizer",
    summary="BERT's blocks; positions counted from the padding id + 1; one token type; "
            "dense-tanh-out head on `<s>`; byte-level BPE, `<s> A </s></s> B </s>`",
)
# the same network under other names: multilingual (SentencePiece) and French RoBERTa
XLM_ROBERTA = dataclasses.replace(ROBERTA, name="xlm-roberta", model_types=("xlm-roberta",), classes="XLMRoberta",
                                  tokenizer_class="XLMRobertaTokenizer", summary="RoBERTa's network, SentencePiece vocabulary")
CAMEMBERT = dataclasses.replace(ROBERTA, name="camembert", model_types=("camembert",), classes="Camembert",
                                tokenizer_class="CamembertTokenizer", summary="RoBERTa's network, SentencePiece vocabulary")

DISTILBERT = Family(
    name="distilbert", model_types=("distilbert",), classes="DistilBert", prefix="distilbert.",
    names=NameTable([
        ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
        ("embeddings.LayerNorm.{kind}", "embeddings.norm.{kind}"),
        ("transformer.layer.{layer}.attention.out_lin.{kind}", "layers.{layer}.attention.out.{kind}"),
        ("transformer.layer.{layer}.sa_layer_norm.{kind}", "layers.{layer}.attention_norm.{kind}"),
        ("transformer.layer.{layer}.ffn.lin1.{kind}", "layers.{layer}.intermediate.{kind}"),
        ("transformer.layer.{layer}.ffn.lin2.{kind}", "layers.{layer}.output.{kind}"),
        ("transformer.layer.{layer}.output_layer_norm.{kind}", "layers.{layer}.output_norm.{kind}"),
        ("pre_classifier.{kind}", "pre_classifier.{kind}"),
        ("classifier.{kind}", "classifier.{kind}"),
        ("qa_outputs.{kind}", "qa_outputs.{kind}"),
        ("vocab_transform.{kind}", "cls.dense.{kind}"),
        ("vocab_layer_norm.{kind}", "cls.norm.{kind}"),
        ("vocab_projector.bias", "cls.bias"),
    ]),
    qkv="transformer.layer.{layer}.attention.{which}.{kind}", qkv_names=("q_lin", "k_lin", "v_lin"),
    tied_bias=None, ignored=COMMON_IGNORED + r"|vocab_projector\.weight",
    config_names={"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                  "hidden_dim": "intermediate_size", "dropout": "hidden_dropout_prob",
                  "attention_dropout": "attention_probs_dropout_prob", "seq_classif_dropout": "classifier_dropout"},
    fields=tuple(f for f in CONFIG_FIELDS if f not in ("type_vocab_size", "layer_norm_eps")),
    defaults={"num_hidden_layers": 6, "classifier_dropout": 0.2},
    parts={"type_vocab_size": 0, "layer_norm_eps": 1e-12, "sentence_head": "dense", "sentence_activation": "relu"},
    written={"activation": "gelu", "sinusoidal_pos_embds": False},
    config_ignored=frozenset({"qa_dropout", "tie_weights_"}),
    tokenizer_class="DistilBertTokenizer",
    summary="BERT's blocks, half the layers; no token types; pre-classifier + ReLU head",
)

ELECTRA = Family(
    name="electra", model_types=("electra",), classes="Electra", prefix="electra.",
    names=NameTable([row for row in BERT_ENCODER if not row[0].startswith("pooler.")] + [
        ("embeddings_project.{kind}", "embeddings.project.{kind}"),
    ] + DENSE_SENTENCE_HEAD + [
        ("generator_predictions.dense.{kind}", "cls.dense.{kind}"),
        ("generator_predictions.LayerNorm.{kind}", "cls.norm.{kind}"),
        ("generator_lm_head.bias", "cls.bias"),
    ]),
    qkv=BERT_QKV, qkv_names=("query", "key", "value"),
    # the discriminator's replaced-token head answers no question bertfit asks
    tied_bias=None, ignored=COMMON_IGNORED + r"|generator_lm_head\.weight|discriminator_predictions\..*",
    fields=CONFIG_FIELDS + ("embedding_size",),
    defaults={"embedding_size": 128, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    parts={"sentence_head": "dense", "sentence_activation": "gelu"},
    written={"hidden_act": "gelu"},
    config_ignored=frozenset({"summary_type", "summary_use_proj", "summary_activation", "summary_last_dropout"}),
    tokenizer_class="ElectraTokenizer",
    summary="BERT's blocks; embeddings narrower than the hidden size, projected up; dense-GELU-out head",
)

# DeBERTa-v2's relative positions and the parts of its embeddings, as config.json names them
DEBERTA_FIELDS = ("relative_attention", "pos_att_type", "position_buckets", "max_relative_positions", "share_att_key",
                  "norm_rel_ebd", "position_biased_input")
DEBERTA_LM_HEAD = [("cls.predictions.transform.dense.{kind}", "cls.dense.{kind}"),
                   ("cls.predictions.transform.LayerNorm.{kind}", "cls.norm.{kind}"),
                   ("cls.predictions.bias", "cls.bias")]
DEBERTA_ENCODER_AND_HEADS = [row for row in BERT_ENCODER if not row[0].startswith("pooler.")] + [
    ("embeddings.embed_proj.weight", "embeddings.project.weight"),
    ("encoder.rel_embeddings.weight", "relative.embeddings.weight"),
    ("encoder.LayerNorm.{kind}", "relative.norm.{kind}"),
    ("encoder.layer.{layer}.attention.self.pos_key_proj.{kind}",
     "layers.{layer}.attention.disentangled.pos_key.{kind}"),
    ("encoder.layer.{layer}.attention.self.pos_query_proj.{kind}",
     "layers.{layer}.attention.disentangled.pos_query.{kind}"),
    ("pooler.dense.{kind}", "pre_classifier.{kind}"),  # its ContextPooler, beside the encoder
    ("classifier.{kind}", "classifier.{kind}"),
    ("qa_outputs.{kind}", "qa_outputs.{kind}"),
]

DEBERTA_V2 = Family(
    name="deberta-v2", model_types=("deberta-v2",), classes="DebertaV2", prefix="deberta.",
    names=NameTable(DEBERTA_ENCODER_AND_HEADS + DEBERTA_LM_HEAD),
    qkv="encoder.layer.{layer}.attention.self.{which}.{kind}", qkv_names=("query_proj", "key_proj", "value_proj"),
    # transformers' MLM head by default (`legacy`): the encoder's other one and the replaced-token head go unused
    tied_bias="cls.predictions.decoder.bias",
    ignored=COMMON_IGNORED + r"|cls\.predictions\.decoder\.weight|lm_predictions\..*|mask_predictions\..*",
    config_names={"cls_dropout": "classifier_dropout", "pooler_hidden_act": "sentence_activation"},
    fields=CONFIG_FIELDS + DEBERTA_FIELDS + ("embedding_size", "pooler_dropout", "sentence_activation"),
    defaults={"vocab_size": 128100, "hidden_size": 1536, "num_hidden_layers": 24, "num_attention_heads": 24,
              "intermediate_size": 6144, "type_vocab_size": 0, "layer_norm_eps": 1e-7, "pooler_dropout": 0.0,
              "sentence_activation": "gelu"},
    parts={"sentence_head": "dense", "project_then_norm": True},
    written={"hidden_act": "gelu"},
    config_ignored=frozenset({"legacy", "pooler_hidden_size", "conv_kernel_size", "conv_act", "conv_groups"}),
    same_as={"pooler_hidden_size": "hidden_size"},
    optional=frozenset({"embedding_size"}),
    heads=("base", "classification", "qa", "tagging", "mlm"),
    tokenizer_class="DebertaV2Tokenizer",
    summary="disentangled attention: content-to-position and position-to-content terms over log-bucketed relative "
            "positions; absolute positions optional (none in v3), token types optional (none in v3); context pooler "
            "(dense + GELU on `[CLS]`) under the classifier; SentencePiece vocabulary, `[CLS] A [SEP] B [SEP]`",
)
# the same network with the MLM head under its other names, which config.json's `legacy: false` picks
DEBERTA_V2_LM_PREDICTIONS = dataclasses.replace(
    DEBERTA_V2, name="deberta-v2-lm-predictions",
    names=NameTable(DEBERTA_ENCODER_AND_HEADS + [("lm_predictions.lm_head.dense.{kind}", "cls.dense.{kind}"),
                                                 ("lm_predictions.lm_head.LayerNorm.{kind}", "cls.norm.{kind}"),
                                                 ("lm_predictions.lm_head.bias", "cls.bias")]),
    tied_bias=None, ignored=COMMON_IGNORED + r"|cls\.predictions\..*|mask_predictions\..*",
    written={"hidden_act": "gelu", "legacy": False})

LISTED = (BERT, DISTILBERT, ROBERTA, XLM_ROBERTA, CAMEMBERT, ELECTRA, DEBERTA_V2)
FAMILIES = {f.name: f for f in (*LISTED, DEBERTA_V2_LM_PREDICTIONS)}
BY_MODEL_TYPE = {model_type: f for f in LISTED for model_type in f.model_types}
# (model_type, config.json field, value) -> the variant of the family a model of that value is saved as
VARIANTS = {("deberta-v2", "legacy", False): DEBERTA_V2_LM_PREDICTIONS}


def of_config(raw: dict) -> Family | None:
    """The family whose names a config.json's model is saved under (BERT without a model_type), None for a
    model_type bertfit does not build."""
    model_type = raw.get("model_type", "bert")
    if not isinstance(model_type, str) or model_type not in BY_MODEL_TYPE:
        return None
    return next((variant for (kind, key, value), variant in VARIANTS.items()
                 if kind == model_type and raw.get(key) is value), BY_MODEL_TYPE[model_type])


def supported() -> str:
    """The model_types bertfit builds, for the one line that refuses another."""
    return ", ".join(BY_MODEL_TYPE)


def families_table() -> str:
    """The Markdown table of the families in docs/families.md."""
    rows = ["| family | config.json `model_type` | transformers classes | heads | how it differs from BERT |",
            "|---|---|---|---|---|"]
    for f in LISTED:
        heads = ", ".join(f.heads)
        rows.append(f"| {f.name} | {', '.join(f'`{t}`' for t in f.model_types)} | `{f.classes}Model`, "
                    f"`{f.architecture('classification')}`, ... | {heads} | {f.summary} |")
    return "\n".join(rows) + "\n"
