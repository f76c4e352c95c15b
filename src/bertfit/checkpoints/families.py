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
from typing import Callable

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
    qkv: str | None  # their query/key/value tensors: {layer}, {which} (one of qkv_names), {kind}; None: fused, as ours
    qkv_names: tuple[str, str, str]
    tied_bias: str | None  # their copy of the LM head's bias under the decoder's name (read when alone)
    ignored: str  # their tensors bertfit reads past (a regex): copies of tied weights, buffers, unused heads
    config_names: dict[str, str] = field(default_factory=dict)  # their config.json name -> ours, where they differ
    fields: tuple[str, ...] = CONFIG_FIELDS  # the BertConfig fields their config.json sets (our names)
    defaults: dict = field(default_factory=dict)  # their config class's defaults that are not BertConfig's
    parts: dict = field(default_factory=dict)  # BertConfig fields the family fixes (the parts it picks)
    positions_after_padding: bool = False  # positions count from pad_token_id + 1 (RoBERTa's fairseq heritage)
    written: dict = field(default_factory=dict)  # config.json fields written as they are (no BertConfig field)
    # config.json's special-token ids, written from the tokenizer saved beside it: field -> role (cls, sep); a
    # field left out takes their config class's default, which may lie outside a small vocabulary
    token_ids: dict = field(default_factory=dict)
    config_ignored: frozenset = frozenset()  # config.json fields of this family that do not change the network
    same_as: dict = field(default_factory=dict)  # config.json fields that must equal a BertConfig field (ours)
    optional: frozenset = frozenset()  # BertConfig fields written only when set (their config has no null for them)
    heads: tuple[str, ...] = ("base", "classification", "qa", "tagging", "mlm")
    tokenizer_class: str = "BertTokenizer"
    summary: str = ""  # how it differs from BERT, for the docs' table
    # the tables of heads whose tensors are named otherwise than in `names` (ModernBERT's span head is its
    # `classifier`, its LM head's dense layer is every head's `head.dense`): encoder and head, read both ways
    head_names: dict[str, NameTable] = field(default_factory=dict)
    # config.json in a newer spelling than `fields` reads, rewritten to it, and fields of which bertfit builds one
    # value, checked and dropped: (fields, problems)
    rewrite_config: Callable[[dict], tuple[dict, list[str]]] | None = None

    def architecture(self, head: str) -> str:
        return self.classes + ARCHITECTURE_SUFFIXES[head]

    def their_field(self, ours: str) -> str:
        return {v: k for k, v in self.config_names.items()}.get(ours, ours)

    def is_ignored(self, name: str) -> bool:
        return bool(self.ignored) and re.fullmatch(self.ignored, name) is not None

    def table(self, head: str) -> NameTable:
        """Their names <-> ours for a model with `head` (base: the encoder's, and the heads' the family shares)."""
        return self.head_names.get(head, self.names)

    def knows(self, name: str) -> bool:
        """A name of theirs some table of the family reads (a tensor of another head is skipped, not refused)."""
        return any(t.ours(name) is not None for t in (self.names, *self.head_names.values()))


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
# their token classifier beside that head: a plain `classifier` on every token (with the family's encoder rows)
TOKEN_CLASSIFIER = [("classifier.{kind}", "classifier.{kind}")]
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
    head_names={"tagging": NameTable(BERT_ENCODER + TOKEN_CLASSIFIER)},
    tied_bias="lm_head.decoder.bias", ignored=COMMON_IGNORED + r"|lm_head\.decoder\.weight",
    defaults={"vocab_size": 50265, "pad_token_id": 1},
    parts={"sentence_head": "dense", "sentence_activation": "tanh"}, positions_after_padding=True,
    written={"hidden_act": "gelu"}, token_ids={"bos_token_id": "cls", "eos_token_id": "sep"},
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
    fields=tuple(f for f in CONFIG_FIELDS if f not in ("type_vocab_size", "layer_norm_eps")) + ("qa_dropout",),
    defaults={"num_hidden_layers": 6, "classifier_dropout": 0.2, "qa_dropout": 0.1},
    parts={"type_vocab_size": 0, "layer_norm_eps": 1e-12, "sentence_head": "dense", "sentence_activation": "relu",
           "tagger_dropout": "hidden"},
    written={"activation": "gelu", "sinusoidal_pos_embds": False},
    config_ignored=frozenset({"tie_weights_"}),
    tokenizer_class="DistilBertTokenizer",
    summary="BERT's blocks, half the layers; no token types; pre-classifier + ReLU head",
)

ELECTRA_ENCODER = [row for row in BERT_ENCODER if not row[0].startswith("pooler.")] + [
    ("embeddings_project.{kind}", "embeddings.project.{kind}")]
ELECTRA = Family(
    name="electra", model_types=("electra",), classes="Electra", prefix="electra.",
    names=NameTable(ELECTRA_ENCODER + DENSE_SENTENCE_HEAD + [
        ("generator_predictions.dense.{kind}", "cls.dense.{kind}"),
        ("generator_predictions.LayerNorm.{kind}", "cls.norm.{kind}"),
        ("generator_lm_head.bias", "cls.bias"),
    ]),
    head_names={"tagging": NameTable(ELECTRA_ENCODER + TOKEN_CLASSIFIER)},
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
    parts={"sentence_head": "dense", "project_then_norm": True, "tagger_dropout": "hidden"},
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


def modernbert_config(raw: dict) -> tuple[dict, list[str]]:
    """transformers 5's spelling of ModernBERT's attention pattern and rotary bases (`layer_types`,
    `rope_parameters`) as the checkpoints' own (`global_attn_every_n_layers`, `global_rope_theta`,
    `local_rope_theta`); where both are there, the newer wins, as in transformers."""
    fields, problems = dict(raw), []
    layer_types = fields.pop("layer_types", None)
    if layer_types is not None:
        kinds = layer_types if isinstance(layer_types, list) else []
        every = next((i for i, kind in enumerate(kinds) if i and kind == "full_attention"), len(kinds))
        if not kinds or kinds != ["sliding_attention" if i % every else "full_attention" for i in range(len(kinds))]:
            problems.append(f"layer_types {layer_types!r} is not one global layer every n, from the first "
                            f"(the others sliding_attention)")
        else:
            fields["global_attn_every_n_layers"] = every
    rope = fields.pop("rope_parameters", None)
    if rope is not None:
        for kind, ours in (("full_attention", "global_rope_theta"), ("sliding_attention", "local_rope_theta")):
            params = rope.get(kind) if isinstance(rope, dict) else None
            if params is None:
                continue
            if not isinstance(params, dict) or params.get("rope_type", "default") != "default" \
                    or set(params) - {"rope_type", "rope_theta"}:
                problems.append(f"rope_parameters {kind} {params!r} is not supported (only the default rotary "
                                f"positions, a rope_theta)")
            elif "rope_theta" in params:
                fields[ours] = params["rope_theta"]
    return fields, problems


MODERNBERT_ENCODER = [
    ("embeddings.tok_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.norm.{kind}", "embeddings.norm.{kind}"),
    ("layers.{layer}.attn_norm.{kind}", "layers.{layer}.attention_norm.{kind}"),
    ("layers.{layer}.attn.Wqkv.{kind}", "layers.{layer}.attention.qkv.{kind}"),
    ("layers.{layer}.attn.Wo.{kind}", "layers.{layer}.attention.out.{kind}"),
    ("layers.{layer}.mlp_norm.{kind}", "layers.{layer}.output_norm.{kind}"),
    ("layers.{layer}.mlp.Wi.{kind}", "layers.{layer}.intermediate.{kind}"),
    ("layers.{layer}.mlp.Wo.{kind}", "layers.{layer}.output.{kind}"),
    ("final_norm.{kind}", "final_norm.{kind}"),
]
# every head but the LM head: its prediction head (`head`), then `classifier`
MODERNBERT_HEAD = [("head.dense.{kind}", "head.dense.{kind}"), ("head.norm.{kind}", "head.norm.{kind}")]

MODERNBERT = Family(
    name="modernbert", model_types=("modernbert",), classes="ModernBert", prefix="model.",
    names=NameTable(MODERNBERT_ENCODER + MODERNBERT_HEAD + [("classifier.{kind}", "classifier.{kind}")]),
    head_names={
        "qa": NameTable(MODERNBERT_ENCODER + MODERNBERT_HEAD + [("classifier.{kind}", "qa_outputs.{kind}")]),
        "mlm": NameTable(MODERNBERT_ENCODER + [("head.dense.{kind}", "cls.dense.{kind}"),
                                               ("head.norm.{kind}", "cls.norm.{kind}"), ("decoder.bias", "cls.bias")]),
    },
    qkv=None, qkv_names=("query", "key", "value"),
    tied_bias=None, ignored=r"decoder\.weight",  # the word embeddings, tied
    config_names={"norm_eps": "layer_norm_eps", "embedding_dropout": "hidden_dropout_prob",
                  "attention_dropout": "attention_probs_dropout_prob", "classifier_activation": "sentence_activation"},
    fields=tuple(f for f in CONFIG_FIELDS if f != "type_vocab_size") + (
        "norm_bias", "attention_bias", "mlp_bias", "classifier_bias", "decoder_bias", "global_rope_theta",
        "local_rope_theta", "local_attention", "global_attn_every_n_layers", "classifier_pooling",
        "sentence_activation"),
    defaults={"vocab_size": 50368, "intermediate_size": 1152, "num_hidden_layers": 22, "max_position_embeddings": 8192,
              "layer_norm_eps": 1e-5, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
              "classifier_dropout": 0.0, "pad_token_id": 50283, "norm_bias": False, "attention_bias": False,
              "mlp_bias": False, "classifier_bias": False, "local_attention": 128, "global_attn_every_n_layers": 3,
              "sentence_activation": "gelu"},
    parts={"type_vocab_size": 0, "pre_norm": True, "positions": "rotary", "mlp": "geglu",
           "sentence_head": "prediction"},
    written={"hidden_activation": "gelu"},
    token_ids={"cls_token_id": "cls", "sep_token_id": "sep", "bos_token_id": "cls", "eos_token_id": "sep"},
    # mlp_dropout: bertfit's blocks drop out after the MLP (hidden_dropout_prob, their embedding_dropout), not
    # inside it; the rest are kernels, training-time options and BERT's unused names in the checkpoints' files
    config_ignored=frozenset({"mlp_dropout", "initializer_cutoff_factor", "deterministic_flash_attn",
                              "sparse_prediction", "sparse_pred_ignore_index", "reference_compile",
                              "repad_logits_with_grad", "layer_norm_eps"}),
    heads=("base", "classification", "qa", "tagging", "mlm"),
    tokenizer_class="PreTrainedTokenizerFast",
    rewrite_config=modernbert_config,
    summary="pre-norm blocks with embedding and final norms; rotary positions, global and local bases; GeGLU; "
            "no biases; every n-th layer global, the others a sliding window; no token types; prediction head "
            "(dense, GELU, norm) under every classifier, on `[CLS]` or the mean; BPE, `[CLS] A [SEP] B [SEP]`",
)

# ALBERT's config.json defaults (AlbertConfig's), where they are not BertConfig's
ALBERT_DEFAULTS = {"vocab_size": 30000, "embedding_size": 128, "hidden_size": 4096, "num_attention_heads": 64,
                   "intermediate_size": 16384, "hidden_act": "gelu_new", "hidden_dropout_prob": 0.0,
                   "attention_probs_dropout_prob": 0.0, "classifier_dropout": 0.1}


def albert_config(raw: dict) -> tuple[dict, list[str]]:
    """ALBERT's sharing of layer weights as bertfit builds it: every layer the one block (one group of one layer);
    other groupings, and an embedding as wide as the hidden size (whose projection up bertfit's embeddings leave
    out), refused naming the field."""
    fields, problems = dict(raw), []
    for name in ("num_hidden_groups", "inner_group_num"):
        value = fields.pop(name, 1)
        if value != 1:
            problems.append(f"{name} {value!r} is not supported (bertfit builds ALBERT with every layer sharing one "
                            f"set of weights: num_hidden_groups 1, inner_group_num 1)")
    width, hidden = (fields.get(f, ALBERT_DEFAULTS[f]) for f in ("embedding_size", "hidden_size"))
    if width == hidden:
        problems.append(f"embedding_size {width!r} equal to hidden_size is not supported (bertfit projects ALBERT's "
                        f"embeddings up only when they are narrower)")
    return fields, problems


# their one layer group of one layer, every layer's weights (`{layer}` is 0: the group, our one block)
ALBERT_LAYER = "encoder.albert_layer_groups.{layer}.albert_layers.0."

ALBERT = Family(
    name="albert", model_types=("albert",), classes="Albert", prefix="albert.",
    names=NameTable([
        ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
        ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
        ("embeddings.LayerNorm.{kind}", "embeddings.norm.{kind}"),
        ("encoder.embedding_hidden_mapping_in.{kind}", "embeddings.project.{kind}"),
        (ALBERT_LAYER + "attention.dense.{kind}", "layers.{layer}.attention.out.{kind}"),
        (ALBERT_LAYER + "attention.LayerNorm.{kind}", "layers.{layer}.attention_norm.{kind}"),
        (ALBERT_LAYER + "ffn.{kind}", "layers.{layer}.intermediate.{kind}"),
        (ALBERT_LAYER + "ffn_output.{kind}", "layers.{layer}.output.{kind}"),
        (ALBERT_LAYER + "full_layer_layer_norm.{kind}", "layers.{layer}.output_norm.{kind}"),
        ("pooler.{kind}", "pooler.dense.{kind}"),
        ("classifier.{kind}", "classifier.{kind}"),
        ("qa_outputs.{kind}", "qa_outputs.{kind}"),
        ("predictions.dense.{kind}", "cls.dense.{kind}"),
        ("predictions.LayerNorm.{kind}", "cls.norm.{kind}"),
        ("predictions.bias", "cls.bias"),
    ]),
    qkv=ALBERT_LAYER + "attention.{which}.{kind}", qkv_names=("query", "key", "value"),
    # the pretraining model's sentence-order head answers no question bertfit asks
    tied_bias="predictions.decoder.bias",
    ignored=COMMON_IGNORED + r"|embeddings\.token_type_ids|predictions\.decoder\.weight|sop_classifier\..*",
    config_names={"classifier_dropout_prob": "classifier_dropout"},
    fields=CONFIG_FIELDS + ("embedding_size", "hidden_act"),
    defaults=ALBERT_DEFAULTS,
    parts={"shared_layers": True},
    written={"num_hidden_groups": 1, "inner_group_num": 1},
    # the original TensorFlow code's options, in the released checkpoints' files, which transformers' ALBERT never reads
    config_ignored=frozenset({"down_scale_factor", "gap_size", "net_structure_type", "num_memory_blocks",
                              "layers_to_keep"}),
    heads=("base", "classification", "qa", "tagging", "mlm"),
    tokenizer_class="AlbertTokenizer",
    rewrite_config=albert_config,
    summary="BERT's blocks with one set of weights shared by every layer; embeddings narrower than the hidden size, "
            "projected up; GELU's tanh approximation (`gelu_new`); tanh pooler under the classifier; SentencePiece "
            "vocabulary, `[CLS] A [SEP] B [SEP]`",
)

LISTED = (BERT, DISTILBERT, ROBERTA, XLM_ROBERTA, CAMEMBERT, ELECTRA, DEBERTA_V2, MODERNBERT, ALBERT)
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
