"""Tiny models of each family as transformers builds them, with a tokenizer of the family's kind trained here
(plain helpers for tests, not tests)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import nn

CORPUS = [
    "The cat sat on the mat, and the dog watched it from the door.",
    "A much longer sentence about the weather in Paris today, which was grey and wet.",
    "Stocks fell sharply on Monday after the announcement of new tariffs.",
    "Café Müller served crème brûlée near the façade; naïve guests paid ¥500 😀.",
    "Question answering reads a paragraph and points at the answer's first and last token.",
    "東京タワー is a tower in Tokyo, and señor García's piñata was blue.",
] * 20

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)


def wordpiece(lowercase: bool = True) -> Tokenizer:
    """BERT's kind: WordPiece with [CLS] a [SEP] b [SEP] (DistilBERT, ELECTRA share it)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def byte_level_bpe() -> Tokenizer:
    """RoBERTa's kind: byte-level BPE, <s> a </s></s> b </s>, offsets trimmed of the leading space."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                            add_prefix_space=False)
    return tokenizer


def sentencepiece_unigram() -> Tokenizer:
    """XLM-R's and CamemBERT's kind: a SentencePiece-style Unigram (▁ marks a word's start), <s> a </s></s> b </s>."""
    tokenizer = Tokenizer(models.Unigram())
    # runs of spaces count once, as in XLM-R's files (and in the pipeline transformers builds for it)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tokenizer


def deberta_unigram() -> Tokenizer:
    """DeBERTa-v3's kind: a SentencePiece Unigram (▁ before every word) with [CLS] a [SEP] b [SEP], token types 0
    then 1, and the normaliser transformers' DebertaV2Tokenizer builds (runs of spaces as one, NFC, no trailing
    space)."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "),
                                                 normalizers.NFC(), normalizers.Strip(left=False, right=True)])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], unk_token="[UNK]"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tokenizer


def albert_unigram() -> Tokenizer:
    """ALBERT's kind: a SentencePiece Unigram (▁ before every word), lowercased without accents, [CLS] a [SEP] b [SEP]
    with token types 0 then 1, and a [MASK] that takes the space before it (lstrip), as in ALBERT's tokenizer.json."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(), normalizers.StripAccents(),
        normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "<unk>", "[CLS]", "[SEP]", AddedToken("[MASK]", lstrip=True)],
        unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


# DeBERTa-v3's parts at a tiny size: 8 buckets (exact distances under 4), distances past 16 all alike, so the test
# sentences (up to ~40 tokens) reach the logarithmic buckets and the clamp
DEBERTA_V3 = dict(relative_attention=True, position_buckets=8, max_relative_positions=16, pos_att_type=["p2c", "c2p"],
                  share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)
def byte_level_bpe_with_cls() -> Tokenizer:
    """ModernBERT's kind: byte-level BPE with BERT's special tokens, [CLS] a [SEP] b [SEP], and a [MASK] that takes
    the space before it (lstrip), as in ModernBERT's tokenizer.json."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", AddedToken("[MASK]", lstrip=True)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=True),
        processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                      special_tokens=[("[CLS]", cls), ("[SEP]", sep)])])
    return tokenizer


# ModernBERT's: sequences of the tests longer than the local window (8 tokens: 4 either side); the last layer local
MODERNBERT = dict(local_attention=8, global_attn_every_n_layers=2, global_rope_theta=1000.0, local_rope_theta=50.0)


def transformers_config(family: str, vocab_size: int, **overrides):
    import transformers

    if family == "distilbert":
        return transformers.DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                                             max_position_embeddings=128, **overrides)
    if family in ("roberta", "xlm-roberta", "camembert"):
        cls = {"roberta": transformers.RobertaConfig, "xlm-roberta": transformers.XLMRobertaConfig,
               "camembert": transformers.CamembertConfig}[family]
        return cls(vocab_size=vocab_size, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                   bos_token_id=0, eos_token_id=2, **SIZES, **overrides)
    if family == "deberta-v2":
        return transformers.DebertaV2Config(vocab_size=vocab_size, max_position_embeddings=128,
                                            **{**SIZES, **DEBERTA_V3, **overrides})
    if family == "modernbert":
        ids = dict(pad_token_id=3, cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2)
        return transformers.ModernBertConfig(vocab_size=vocab_size, max_position_embeddings=128,
                                             **{**SIZES, **ids, **MODERNBERT, **overrides})
    if family == "albert":  # three layers, all the one shared block
        return transformers.AlbertConfig(vocab_size=vocab_size, embedding_size=16, max_position_embeddings=128,
                                         **{**SIZES, "num_hidden_layers": 3, **overrides})
    if family == "electra":
        return transformers.ElectraConfig(vocab_size=vocab_size, embedding_size=16, max_position_embeddings=128,
                                          **SIZES, **overrides)
    return transformers.BertConfig(vocab_size=vocab_size, max_position_embeddings=128, **SIZES, **overrides)


TOKENIZER_OF = {"bert": wordpiece, "distilbert": wordpiece, "electra": wordpiece, "roberta": byte_level_bpe,
                "xlm-roberta": sentencepiece_unigram, "camembert": sentencepiece_unigram, "deberta-v2": deberta_unigram,
                "modernbert": byte_level_bpe_with_cls, "albert": albert_unigram}
TOKENIZER_CLASS = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer", "electra": "ElectraTokenizer",
                   "roberta": "RobertaTokenizer", "xlm-roberta": "XLMRobertaTokenizer",
                   "camembert": "CamembertTokenizer", "deberta-v2": "DebertaV2Tokenizer",
                   "modernbert": "PreTrainedTokenizerFast", "albert": "AlbertTokenizer"}


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, LayerNorm scales and shifts included, so a wrong mapping shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = 0.2 * torch.randn(param.shape, generator=generator)
            is_norm_scale = name.endswith(("norm.weight", "LayerNorm.weight", "layer_norm.weight"))
            param.copy_(1 + noise if is_norm_scale else noise)
    return model.eval()


def save_with_tokenizer(model, tokenizer: Tokenizer, family: str, folder: Path) -> Path:
    """transformers' save_pretrained, with the tokenizer files its AutoTokenizer reads."""
    model.save_pretrained(str(folder))
    return save_tokenizer_folder(tokenizer, family, folder)


def save_tokenizer_folder(tokenizer: Tokenizer, family: str, folder: Path) -> Path:
    """tokenizer.json and the family's tokenizer_config.json in `folder` (made if missing): what AutoTokenizer reads."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return save_with_tokenizer_files(tokenizer, family, folder)


def save_with_tokenizer_files(tokenizer: Tokenizer, family: str, folder: Path) -> Path:
    """tokenizer_config.json as the family's tokenizer has it, beside tokenizer.json."""
    roles = {"cls_token": ("[CLS]", "<s>"), "sep_token": ("[SEP]", "</s>"), "pad_token": ("[PAD]", "<pad>"),
             "unk_token": ("[UNK]", "<unk>"), "mask_token": ("[MASK]", "<mask>")}
    special = {role: next(n for n in names if tokenizer.token_to_id(n) is not None) for role, names in roles.items()}
    if special["cls_token"] == "<s>":
        special.update(bos_token="<s>", eos_token="</s>")
    if family == "modernbert":  # no token types
        special["model_input_names"] = ["input_ids", "attention_mask"]
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": TOKENIZER_CLASS[family], "model_max_length": 60, **special}))
    return folder
