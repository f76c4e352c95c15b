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
