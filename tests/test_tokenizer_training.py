"""A WordPiece tokenizer trained from raw text loads the same in tokenizers, bertfit and transformers."""
import random

import pytest
from tokenizers import Tokenizer

from bertfit.errors import ConfigError, DataError
from bertfit.pretrained import load_tokenizer
from bertfit.tokenization import special_ids
from bertfit.tokenizer_training import SPECIAL_TOKENS, train_wordpiece

WORDS = ("the river runs north through an old city where kings built towers and bridges over water "
         "during a long war between rival houses ; songs about battles were written afterwards").split()
TEXTS = ["The river runs north, through the old city.", "Kings built towers and bridges!",
         "songs about battles", "An unseen word: zygomorphic.", ""]


def write_corpus(path, documents=40, seed=0):
    rng = random.Random(seed)
    lines = []
    for d in range(documents):
        lines.append(f" = Document {d} = ")
        for _ in range(rng.randint(2, 6)):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + " .")
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wordpiece")
    corpus = write_corpus(folder / "corpus.txt")
    tokenizer, stats = train_wordpiece([str(corpus)], folder / "tokenizer.json", vocab_size=120, min_frequency=1,
                                       quiet=True)
    return tokenizer, stats, folder / "tokenizer.json"


def test_the_special_tokens_come_first_in_order_so_pad_is_zero(trained):
    tokenizer, _, path = trained
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    ids = special_ids(load_tokenizer(path))
    assert (ids.pad, ids.cls, ids.sep, ids.unk) == (0, 1, 2, 4)


def test_the_vocabulary_has_the_size_asked_and_words_split_into_wordpieces(trained):
    tokenizer, stats, _ = trained
    assert tokenizer.get_vocab_size() == 120
    assert stats.documents == 40 and stats.skipped_lines == 40  # the title lines
    tokens = tokenizer.encode("northwater", add_special_tokens=False).tokens  # unseen, of seen letters
    assert len(tokens) > 1 and all(t.startswith("##") for t in tokens[1:])
    assert tokenizer.encode("zygomorphic", add_special_tokens=False).tokens == ["[UNK]"]  # z was never seen
    assert tokenizer.decode(tokenizer.encode("the river runs north").ids) == "the river runs north"


def test_the_file_gives_the_same_ids_in_tokenizers_bertfit_and_transformers(trained):
    from transformers import PreTrainedTokenizerFast

    _, _, path = trained
    raw, ours = Tokenizer.from_file(str(path)), load_tokenizer(path)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(path), pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                 mask_token="[MASK]", unk_token="[UNK]")
    assert hf.pad_token_id == 0 and hf.mask_token_id == 3
    for text in TEXTS:
        expected = raw.encode(text).ids
        assert expected[0] == 1 and expected[-1] == 2  # [CLS] ... [SEP]
        assert ours.encode(text).ids == expected
        assert hf(text)["input_ids"] == expected
    pair = raw.encode(TEXTS[0], TEXTS[1])
    encoded = hf(TEXTS[0], TEXTS[1], return_token_type_ids=True)
    assert encoded["input_ids"] == pair.ids and encoded["token_type_ids"] == pair.type_ids
    first_sep = pair.ids.index(2)
    assert pair.type_ids == [0] * (first_sep + 1) + [1] * (len(pair.ids) - first_sep - 1)


def test_lowercase_folds_case_and_nfkc_folds_compatibility_forms(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", documents=10)
    tokenizer, _ = train_wordpiece([str(corpus)], tmp_path / "t.json", vocab_size=80, lowercase=True,
                                   min_frequency=1, quiet=True)
    assert tokenizer.encode("THE River").ids == tokenizer.encode("the river").ids
    assert tokenizer.encode("ﬁve").ids == tokenizer.encode("five").ids  # the ligature ﬁ is f + i under NFKC


def test_bad_settings_and_bad_files_write_nothing(tmp_path):
    output = tmp_path / "t.json"
    with pytest.raises(ConfigError, match="--vocab-size"):
        train_wordpiece([str(write_corpus(tmp_path / "c.txt"))], output, vocab_size=5)
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfe\n")
    with pytest.raises(DataError, match="line 2: not UTF-8"):
        train_wordpiece([str(tmp_path / "bad.txt")], output, vocab_size=50, quiet=True)
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match="no text"):
        train_wordpiece([str(tmp_path / "empty.txt")], output, vocab_size=50, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "c.txt", "empty.txt"]


def test_bertfit_tokenizer_writing_to_a_pipe_starts_with_what_it_read_not_blank_lines(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    result = subprocess.run([sys.executable, "-m", "bertfit", "tokenizer", "--train-file", str(write_corpus(tmp_path / "c.txt")),
                             "--output", str(tmp_path / "t.json"), "--vocab-size", "120"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": src})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("read "), repr(result.stdout[:40])
    assert result.stdout.splitlines()[-1] == f"wrote {tmp_path / 't.json'}"


# ---- byte-level BPE, RoBERTa's kind (`bertfit tokenizer --kind bpe`) --------------------------------------------

PIECES = ["the", "river", "Café", "Müller", "crème", "brûlée", "naïve", "señor", "García's", "piñata", "😀", "👍🏽",
          "東京タワー", "¥500", "Zürich", "ÉCOLE", "pneumonoultramicroscopicsilicovolcanoconiosis", "x" * 60, "—",
          "don't", "U.S.A.", "3.14159", "  ", "\t", "ﬁve", "Ωmega", "naïveté", "l'été", "a-b-c", "«quoted»"]


def mixed_strings(count: int, seed: int = 0) -> list[str]:
    """Strings of accents, emoji, CJK, very long words, odd spacing and punctuation, in random mixtures."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 25))) for _ in range(count)]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A byte-level BPE trained by bertfit, and the folder a pretraining run saves it in (transformers' files)."""
    from bertfit.checkpoints.tokenizer_files import save_tokenizer
    from bertfit.tokenizer_training import train_bpe

    folder = tmp_path_factory.mktemp("bpe")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(mixed_strings(200, seed=1)) + "\n", encoding="utf-8")
    train_bpe([str(corpus)], folder / "bpe.json", vocab_size=400, min_frequency=1, quiet=True)
    model = folder / "model"
    model.mkdir()
    # as save_pretrained writes it for a RoBERTa: its one token type tells nothing, so none is named
    save_tokenizer(load_tokenizer(folder / "bpe.json"), model, "RobertaTokenizer", token_types=False)
    return folder / "bpe.json", model


def test_bpe_has_robertas_special_tokens_template_and_no_token_types(bpe):
    from bertfit.tokenization import template
    from bertfit.tokenizer_training import BPE_SPECIAL_TOKENS

    path, _ = bpe
    tokenizer = load_tokenizer(path)
    assert [tokenizer.token_to_id(t) for t in BPE_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    ids = special_ids(tokenizer)
    assert (ids.cls, ids.pad, ids.sep, ids.unk, ids.mask) == (0, 1, 2, 3, 4)
    layout = template(tokenizer)
    assert layout.pair == ((0, 0), ("A", 0), (2, 0), (2, 0), ("B", 0), (2, 0))  # <s> A </s></s> B </s>, types 0
    # every byte is in the alphabet: no text is unknown, and decoding gives the text back
    for text in mixed_strings(30, seed=2):
        encoding = tokenizer.encode(text, add_special_tokens=False)
        assert 3 not in encoding.ids
        assert tokenizer.decode(encoding.ids) == text


@pytest.mark.parametrize("loader", ["AutoTokenizer", "RobertaTokenizerFast"])
def test_bpe_saved_with_a_model_tokenizes_in_transformers_as_in_bertfit(bpe, loader):
    """A few hundred strings, single and in pairs, whole and truncated longest-first: transformers' RoBERTa tokenizer
    read from the saved folder gives bertfit's ids (bertfit's pairs and truncation: GLUE's encoding)."""
    import transformers

    from bertfit.tasks.glue import Examples
    from bertfit.tasks.glue_encoding import encode

    path, model = bpe
    ours = load_tokenizer(path)
    theirs = getattr(transformers, loader).from_pretrained(str(model))
    assert "Roberta" in type(theirs).__name__
    assert (theirs.cls_token_id, theirs.pad_token_id, theirs.sep_token_id, theirs.mask_token_id) == (0, 1, 2, 4)
    singles = mixed_strings(300, seed=3)
    firsts, seconds = mixed_strings(150, seed=4), mixed_strings(150, seed=5)
    for text in singles:
        assert theirs(text)["input_ids"] == ours.encode(text).ids, text
    assert "token_type_ids" not in theirs(singles[0], seconds[0])  # RoBERTa feeds no token types
    for max_length in (512, 24):  # whole, then most pairs cut longest-first
        features, stats = encode(Examples(firsts, seconds, None, list(range(150)), "test"), ours, max_length)
        if max_length == 24:
            assert stats.num_truncated > 100
        for i, (a, b) in enumerate(zip(firsts, seconds)):
            expected = theirs(a, b, truncation="longest_first", max_length=max_length)["input_ids"]
            assert features.input_ids(i).tolist() == expected, (a, b)
            assert not features.token_type_ids(i).any()


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("tokenizer_class", ["BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer"])
def test_wordpiece_saved_with_a_model_tokenizes_in_transformers_as_in_bertfit(tokenizer_class, lowercase, tmp_path):
    """transformers' WordPiece classes build BERT's own normaliser and pre-tokenizer: `bertfit tokenizer`'s WordPiece
    (NFKC, whitespace words, runs of punctuation kept whole) is saved for the generic class, which reads the file as
    it is, so cased and accented words and punctuation runs get bertfit's ids, in pairs too."""
    import transformers

    from bertfit.checkpoints.tokenizer_files import save_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(mixed_strings(200, seed=1)) + "\n", encoding="utf-8")
    train_wordpiece([str(corpus)], tmp_path / "wordpiece.json", vocab_size=300, lowercase=lowercase,
                    min_frequency=1, quiet=True)
    ours = load_tokenizer(tmp_path / "wordpiece.json")
    model = tmp_path / "model"
    model.mkdir()
    save_tokenizer(ours, model, tokenizer_class)
    theirs = transformers.AutoTokenizer.from_pretrained(str(model))
    for text in mixed_strings(300, seed=3) + ["Kings built towers... and bridges!!", "foo_bar ÉCOLE"]:
        assert theirs(text)["input_ids"] == ours.encode(text).ids, text
    firsts, seconds = mixed_strings(50, seed=4), mixed_strings(50, seed=5)
    for a, b in zip(firsts, seconds):
        pair = ours.encode(a, b)
        encoded = theirs(a, b)
        assert encoded["input_ids"] == pair.ids and encoded["token_type_ids"] == pair.type_ids, (a, b)


def test_the_tokenizer_replaces_its_own_bpe_file_but_refuses_lowercase_with_bpe(tmp_path):
    from bertfit.tokenizer_training import train_bpe, train_tokenizer

    corpus = write_corpus(tmp_path / "c.txt", documents=10)
    train_bpe([str(corpus)], tmp_path / "t.json", vocab_size=300, min_frequency=1, quiet=True)
    train_wordpiece([str(corpus)], tmp_path / "t.json", vocab_size=80, min_frequency=1, quiet=True)  # ours: replaced
    assert load_tokenizer(tmp_path / "t.json").token_to_id("[CLS]") == 1
    with pytest.raises(ConfigError, match="--lowercase is for --kind wordpiece"):
        train_tokenizer([str(corpus)], tmp_path / "u.json", kind="bpe", lowercase=True)
    with pytest.raises(ConfigError, match=r"exceed the 261 tokens of every byte-level BPE \(5 special, 256 bytes\)"):
        train_bpe([str(corpus)], tmp_path / "u.json", vocab_size=261)
    assert not (tmp_path / "u.json").exists()
