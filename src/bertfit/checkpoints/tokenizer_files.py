"""Tokenizer files: `tokenizers`' tokenizer.json, or BERT's vocab.txt with tokenizer_config.json; and the set
of them transformers' AutoTokenizer reads, written beside a saved model."""
from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import Tokenizer

from .. import tokenization
from ..errors import CheckpointError


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A `tokenizers` tokenizer from tokenizer.json, or from vocab.txt (+ tokenizer_config.json)."""
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").exists():
            return load_tokenizer(path / "tokenizer.json")
        if (path / "vocab.txt").exists():
            return wordpiece_from_vocab(path / "vocab.txt", path / "tokenizer_config.json")
        raise CheckpointError(f"{path}: no tokenizer.json or vocab.txt")
    if not path.exists():
        raise CheckpointError(f"{path}: tokenizer file not found")
    if path.name == "vocab.txt":
        return wordpiece_from_vocab(path, path.with_name("tokenizer_config.json"))
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a `tokenizers` JSON file ({exc})") from None
    tokenization.special_ids(tokenizer, path)
    return tokenization.prepare(tokenizer)


def wordpiece_from_vocab(vocab_path: Path, config_path: Path) -> Tokenizer:
    """BERT's WordPiece tokenizer from vocab.txt, cased or not as tokenizer_config.json says (uncased without one)."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    options = {}
    if config_path.exists():
        try:
            options = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_path}: cannot read ({exc})") from None
    lowercase = bool(options.get("do_lower_case", True))
    strip_accents = options.get("strip_accents")
    vocab = {}
    for i, line in enumerate(vocab_path.read_text(encoding="utf-8").splitlines()):
        vocab.setdefault(line.rstrip("\n"), i)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=options.get("unk_token", "[UNK]")))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=bool(options.get("tokenize_chinese_chars", True)),
        strip_accents=strip_accents, lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenization.special_ids(tokenizer, vocab_path)
    return tokenization.prepare(tokenizer)


def save_tokenizer(tokenizer: Tokenizer, folder: Path, tokenizer_class: str = "BertTokenizer",
                   token_types: bool = True) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json (and a WordPiece model's vocab.txt) into
    `folder`; `tokenizer_class`: the family's, as transformers' AutoTokenizer reads it; `token_types`: whether the
    model takes them, so AutoTokenizer gives them or not whatever its class's default (ModernBERT's generic class
    would give them, ALBERT's would not)."""
    from tokenizers import processors

    ids = tokenization.special_ids(tokenizer)
    if tokenizer.post_processor is None:
        # transformers reads the [CLS] a [SEP] b [SEP] layout from the post-processor
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids.cls), ("[SEP]", ids.sep)])
    tokenizer.save(str(folder / "tokenizer.json"))
    described = json.loads(tokenizer.to_str())
    if not bert_pipeline(described):
        # transformers' WordPiece classes (BertTokenizer, DistilBertTokenizer, ElectraTokenizer) build BERT's own
        # normaliser and pre-tokenizer, not the file's: `bertfit tokenizer`'s NFKC and whitespace words would be
        # read cased and split otherwise. The generic class takes tokenizer.json as it is.
        tokenizer_class = "PreTrainedTokenizerFast"
    if (described.get("model") or {}).get("type") == "WordPiece":
        vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
        (folder / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    normalizer = described.get("normalizer") or {}
    steps = normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    flags = {"do_lower_case": any(step.get("type") == "Lowercase" or step.get("lowercase") for step in steps)}
    if tokenizer_class == "AlbertTokenizer":  # its class builds the normaliser from these flags, not tokenizer.json's
        flags["keep_accents"] = not any(step.get("type") == "StripAccents" for step in steps)
    roles = {"cls_token": ids.cls, "sep_token": ids.sep, "pad_token": ids.pad, "unk_token": ids.unk,
             "mask_token": ids.mask}
    special = {role: tokenizer.id_to_token(i) for role, i in roles.items() if i is not None}
    if special["cls_token"] == "<s>":  # RoBERTa's: its first token is also its beginning and end of text
        special.update(bos_token="<s>", eos_token=special["sep_token"])
    # the model's inputs, named: ALBERT's tokenizer class gives no token types by default, though its model reads them
    inputs = {"model_input_names": ["input_ids", *(["token_type_ids"] if token_types else []), "attention_mask"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": tokenizer_class, **flags, "model_max_length": 512, **special, **inputs},
        indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def bert_pipeline(described: dict) -> bool:
    """Whether transformers' WordPiece classes read a tokenizer.json (as a dict) as it is: not a WordPiece, or
    one with BERT's normaliser and pre-tokenizer."""
    if (described.get("model") or {}).get("type") != "WordPiece":
        return True
    return ((described.get("normalizer") or {}).get("type") == "BertNormalizer"
            and (described.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer")
