"""Pretraining data: the token file and its cache, MLM blocks, NSP pairs and BERT's dynamic masking.

The corpus marks each paragraph with its document and position (`d3p7x` at its start and end), so a test
can read back from the token ids where every segment came from.
"""
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertfit import batching, runs
from bertfit.errors import ConfigError, DataError
from bertfit.tasks import pretraining_data
from bertfit.tasks.pretraining_data import (TokenFile, full_sentence_features, mask_tokens, nsp_features,
                                            packed_features, special_token_ids, split_documents, tokenize_corpus)
from bertfit.tasks.text import read_documents
from bertfit.tokenization import longest_first
from bertfit.tokenizer_training import train_wordpiece

FILLER = "the river runs north through an old city where kings built towers and bridges over water".split()
MARKER = re.compile(r"\bd(\d+)p(\d+)x\b")


def write_corpus(path, documents=60, paragraphs=(1, 10), words=(0, 40), seed=0):
    """A WikiText-like file whose paragraph p of document d reads `dDpPx words... dDpPx`."""
    rng = random.Random(seed)
    lines = []
    for d in range(documents):
        lines += [f" = Document {d} = ", " "]
        for p in range(rng.randint(*paragraphs)):
            filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(*words)))
            lines += [f" d{d}p{p}x {filler} d{d}p{p}x ", " "]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    path = write_corpus(folder / "wiki.train.raw")
    tokenizer, _ = train_wordpiece([str(path)], folder / "tokenizer.json", vocab_size=200, min_frequency=1,
                                   quiet=True)
    return path, tokenizer


@pytest.fixture(scope="module")
def token_file(corpus, tmp_path_factory) -> TokenFile:
    path, tokenizer = corpus
    return tokenize_corpus([str(path)], tokenizer, tmp_path_factory.mktemp("cache"), chunk_paragraphs=16,
                           quiet=True)[0]


def ids_of(tokenizer, *names):
    return [tokenizer.token_to_id(name) for name in names]


def markers(tokenizer, ids) -> list[tuple[int, int]]:
    return [(int(d), int(p)) for d, p in MARKER.findall(tokenizer.decode(list(map(int, ids))))]


# ---- the token file ------------------------------------------------------------------------------

def test_the_token_file_holds_each_paragraph_encoded_without_specials_memory_mapped(corpus, token_file):
    path, tokenizer = corpus
    documents = list(read_documents(str(path)))
    assert isinstance(token_file.tokens, np.memmap) and token_file.tokens.dtype == np.uint16
    assert token_file.num_documents == len(documents) == token_file.stats["documents"] == 60
    assert token_file.num_paragraphs == sum(map(len, documents)) == token_file.stats["paragraphs"]
    assert token_file.stats["skipped_lines"] == 60  # the titles
    p, d = token_file.paragraph_offsets, token_file.document_offsets
    assert p[0] == 0 and p[-1] == len(token_file.tokens) == token_file.stats["tokens"] and d[0] == 0
    paragraph = 0
    for i, document in enumerate(documents):
        assert (d[i], d[i + 1]) == (paragraph, paragraph + len(document))
        for text in document:
            expected = tokenizer.encode(text, add_special_tokens=False).ids
            assert token_file.tokens[p[paragraph] : p[paragraph + 1]].tolist() == expected
            paragraph += 1
        assert markers(tokenizer, token_file.document_tokens(i)) == [(i, j) for j in range(len(document))
                                                                     for _ in range(2)]


def test_a_second_run_on_the_same_files_opens_the_cache_without_tokenizing(corpus, tmp_path, monkeypatch):
    path, tokenizer = corpus
    first, from_cache = tokenize_corpus([str(path)], tokenizer, tmp_path, quiet=True)
    assert not from_cache

    def refuse(*args):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(pretraining_data, "encode_paragraphs", refuse)
    again, from_cache = tokenize_corpus([str(path)], tokenizer, tmp_path, quiet=True)
    assert from_cache and again.folder == first.folder and again.digest == first.digest
    assert np.array_equal(again.tokens, first.tokens) and isinstance(again.tokens, np.memmap)
    assert [p.name for p in tmp_path.iterdir()] == [first.digest]


def test_one_changed_character_or_another_tokenizer_makes_a_new_cache(corpus, tmp_path):
    path, tokenizer = corpus
    copy = tmp_path / "copy.raw"
    copy.write_bytes(path.read_bytes())
    first, _ = tokenize_corpus([str(copy)], tokenizer, tmp_path / "cache", quiet=True)
    copy.write_bytes(path.read_bytes().replace(b"river", b"rivet", 1))
    changed, from_cache = tokenize_corpus([str(copy)], tokenizer, tmp_path / "cache", quiet=True)
    assert not from_cache and changed.digest != first.digest
    assert changed.stats["tokens"] != first.stats["tokens"] or not np.array_equal(changed.tokens, first.tokens)
    other, _ = train_wordpiece([str(copy)], tmp_path / "other.json", vocab_size=150, min_frequency=1, quiet=True)
    assert not tokenize_corpus([str(copy)], other, tmp_path / "cache", quiet=True)[1]
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_an_interrupted_tokenization_leaves_no_cache_that_looks_finished(corpus, tmp_path, monkeypatch):
    path, tokenizer = corpus
    broken = tmp_path / "broken.raw"
    broken.write_bytes(path.read_bytes() + b" = Late = \n caf\xe9 \n")  # not UTF-8, after many chunks were written
    with pytest.raises(DataError, match="not UTF-8"):
        tokenize_corpus([str(broken)], tokenizer, tmp_path / "cache", chunk_paragraphs=8, quiet=True)
    assert list((tmp_path / "cache").iterdir()) == []

    calls = []

    def fail_on_third_chunk(tokenizer, paragraphs):
        calls.append(len(paragraphs))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [e.ids for e in tokenizer.encode_batch(paragraphs, add_special_tokens=False)]

    monkeypatch.setattr(pretraining_data, "encode_paragraphs", fail_on_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus([str(path)], tokenizer, tmp_path / "cache", chunk_paragraphs=8, quiet=True)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    assert not tokenize_corpus([str(path)], tokenizer, tmp_path / "cache", quiet=True)[1]


def test_documents_split_into_disjoint_sets_at_least_one_held_out_the_same_for_a_seed(token_file):
    train, held = split_documents(token_file, 0.1, seed=3)
    assert len(held) == 6 and len(train) == 54
    assert sorted([*train, *held]) == list(range(60))
    assert all(np.array_equal(a, b) for a, b in zip((train, held), split_documents(token_file, 0.1, seed=3)))
    assert not np.array_equal(held, split_documents(token_file, 0.1, seed=4)[1])
    assert len(split_documents(token_file, 0.001, seed=0)[1]) == 1
    assert len(split_documents(token_file, 0.0, seed=0)[1]) == 0


def test_a_corpus_too_small_to_hold_out_from_is_a_clear_error(corpus, tmp_path):
    _, tokenizer = corpus
    (tmp_path / "one.txt").write_text("just one document\nof two paragraphs\n", encoding="utf-8")
    one, _ = tokenize_corpus([str(tmp_path / "one.txt")], tokenizer, tmp_path, quiet=True)
    with pytest.raises(ConfigError, match="has 1 document: too few to hold out"):
        split_documents(one, 0.1, seed=0)
    with pytest.raises(ConfigError, match="at least two documents"):
        nsp_features(one, 32, 1, 2, seed=0)


# ---- MLM blocks ----------------------------------------------------------------------------------

def test_packed_blocks_are_the_documents_tokens_with_sep_between_documents_cut_into_full_blocks(corpus, token_file):
    _, tokenizer = corpus
    cls, sep = ids_of(tokenizer, "[CLS]", "[SEP]")
    train, _ = split_documents(token_file, 0.2, seed=0)
    features, counts = packed_features(token_file, 32, cls, sep, train)
    stream = [t for i, d in enumerate(train) for t in ([sep] if i else []) + token_file.document_tokens(d).tolist()]

    assert isinstance(features.ids, np.memmap) and features.ids.dtype == np.int32
    assert Path(features.ids.filename).parent.parent == token_file.folder
    assert len(features) == counts["blocks"] == len(stream) // 30 and set(features.lengths) == {32}
    blocks = np.asarray(features.ids).reshape(-1, 32)
    assert (blocks[:, 0] == cls).all() and (blocks[:, -1] == sep).all()
    assert blocks[:, 1:-1].reshape(-1).tolist() == stream[: counts["tokens_used"]]
    assert counts["tokens_used"] + counts["tokens_dropped"] == len(stream) and 0 <= counts["tokens_dropped"] < 30
    assert not np.asarray(features.type_ids).any() and len(features.type_ids) == len(features.ids)


def test_packed_features_work_with_collate_length_grouping_and_the_run_digest_and_come_from_cache(corpus, token_file):
    _, tokenizer = corpus
    cls, sep, pad = ids_of(tokenizer, "[CLS]", "[SEP]", "[PAD]")
    features, counts = packed_features(token_file, 16, cls, sep)
    batches = batching.length_grouped_batches(features.lengths, batch_size=4, seed=0, epoch=0)
    batch = batching.collate(features, batches[0], pad)
    assert batch["input_ids"].shape == (4, 16) and batch["attention_mask"].all()
    assert batch["input_ids"][:, 0].eq(cls).all()
    ids_file = Path(features.ids.filename)
    modified = ids_file.stat().st_mtime_ns
    again, counts_again = packed_features(token_file, 16, cls, sep)
    assert counts_again == counts and runs.features_digest(again) == runs.features_digest(features)
    assert Path(again.ids.filename) == ids_file and ids_file.stat().st_mtime_ns == modified
    other, _ = packed_features(token_file, 16, cls, sep, np.arange(10))
    assert Path(other.ids.filename) != ids_file and len(other) < len(features)


# ---- RoBERTa's full sentences ----------------------------------------------------------------------

def test_full_sentences_pack_whole_paragraphs_across_documents_up_to_the_length_and_drop_nothing(corpus, token_file):
    _, tokenizer = corpus
    cls, sep, pad = ids_of(tokenizer, "[CLS]", "[SEP]", "[PAD]")
    train, _ = split_documents(token_file, 0.2, seed=0)
    seq_len, budget = 32, 30
    features, counts = full_sentence_features(token_file, seq_len, cls, sep, train)
    # the paragraphs in order, each with whether it opens a document
    offsets, bounds = np.asarray(token_file.document_offsets), np.asarray(token_file.paragraph_offsets)
    paragraphs = [(p == offsets[d], token_file.tokens[bounds[p] : bounds[p + 1]].tolist())
                  for d in train for p in range(offsets[d], offsets[d + 1]) if bounds[p + 1] > bounds[p]]
    contents = [features.input_ids(i).tolist() for i in range(len(features))]
    assert all(c[0] == cls and c[-1] == sep and len(c) <= seq_len for c in contents)
    contents = [c[1:-1] for c in contents]
    # nothing dropped: without the separators, the sequences are the documents' tokens end to end
    assert [t for c in contents for t in c if t != sep] == [t for _, tokens in paragraphs for t in tokens]
    assert counts["tokens_used"] == sum(map(len, contents)) and counts["paragraphs"] == len(paragraphs)
    assert counts["padding"] == seq_len * len(contents) - sum(len(c) + 2 for c in contents) > 0
    # walk the paragraphs through the sequences: each starts a sequence only when it would not fit in the one
    # before (or is longer than a whole one, and cut), and a new document mid-sequence comes after one </s>
    row, column, cut = 0, 0, 0
    for opens_document, tokens in paragraphs:
        if column and column + opens_document + len(tokens) > budget:
            assert column == len(contents[row]), "a sequence ended before a paragraph that fit"
            row, column = row + 1, 0
        elif column and opens_document:
            assert contents[row][column] == sep
            column += 1
        cut += len(tokens) > budget
        while len(tokens) > budget - column:
            assert column == 0 and contents[row] == tokens[:budget]
            row, tokens = row + 1, tokens[budget:]
        assert contents[row][column : column + len(tokens)] == tokens
        column += len(tokens)
    assert row == len(contents) - 1 and column == len(contents[row])
    assert counts["paragraphs_cut"] == cut > 0 and counts["sequences"] == len(features)
    assert not np.asarray(features.type_ids).any()
    batch = batching.collate(features, np.arange(4), pad)  # padded in batches, as NSP pairs are
    assert batch["attention_mask"].sum(1).tolist() == [len(c) + 2 for c in contents[:4]]


def test_full_sentences_are_the_same_written_in_small_pieces_and_come_from_cache(corpus, token_file, monkeypatch):
    _, tokenizer = corpus
    cls, sep = ids_of(tokenizer, "[CLS]", "[SEP]")
    whole, counts = full_sentence_features(token_file, 40, cls, sep)
    again, counts_again = full_sentence_features(token_file, 40, cls, sep)
    assert Path(again.ids.filename) == Path(whole.ids.filename) and counts_again == counts
    monkeypatch.setattr(pretraining_data, "PIECE_TOKENS", 50)
    pieces, _ = full_sentence_features(token_file, 40, cls, sep, cache=False)
    assert runs.features_digest(pieces) == runs.features_digest(whole)


@settings(max_examples=150, deadline=None)
@given(documents=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=6), min_size=1, max_size=8),
       seq_len=st.integers(3, 24))
def test_full_sentences_keep_every_token_in_order_within_the_length_whatever_the_paragraphs(documents, seq_len):
    """Any paragraph lengths (empty ones too, and longer than a sequence): every token once, in order, no sequence
    over the length or opening with a separator, one separator where a document starts mid-sequence."""
    sep = 1
    lengths = [n for document in documents for n in document]
    tokens = np.arange(2, 2 + sum(lengths), dtype=np.int32)  # all distinct, none the separator
    token_file = TokenFile(Path("."), tokens, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           np.concatenate([[0], np.cumsum([len(d) for d in documents])]).astype(np.int64), {}, "")
    counts = {"paragraphs": 0, "paragraphs_cut": 0}
    contents = [np.concatenate(c).tolist() for c in
                pretraining_data.full_sentences(token_file, seq_len, np.arange(len(documents)), sep, counts)]
    assert [t for c in contents for t in c if t != sep] == tokens.tolist()
    assert all(0 < len(c) <= seq_len - 2 and c[0] != sep and c[-1] != sep for c in contents)
    starts = {int(token_file.paragraph_offsets[token_file.document_offsets[d]]) + 2
              for d in range(1, len(documents)) if sum(documents[d])}  # the first token of each later document
    separators = [c[i + 1] for c in contents for i in range(len(c) - 1) if c[i] == sep]
    assert len(separators) == len([t for c in contents for t in c if t == sep])
    assert set(separators) <= starts and counts["paragraphs"] == sum(n > 0 for n in lengths)


def test_masking_is_dynamic_a_sequence_seen_at_another_step_gets_another_mask():
    """The loop seeds torch's generator per step (training.step_seed): a sequence seen again in a later epoch is
    masked anew, as RoBERTa's dynamic masking, and a resumed step masks as the uninterrupted one did."""
    from bertfit.training import step_seed

    ids = torch.arange(10, 110).reshape(2, 50)

    def masked_at(step):
        torch.manual_seed(step_seed(42, step, 0))
        return mask_tokens(ids, [0], vocab_size=200, mask_id=3)[1]

    assert torch.equal(masked_at(7), masked_at(7))
    assert not torch.equal(masked_at(7), masked_at(8))


# ---- NSP pairs -----------------------------------------------------------------------------------

def segments(features, i, sep):
    ids, types = features.input_ids(i), features.token_type_ids(i)
    first_sep = int(np.flatnonzero(ids == sep)[0])
    return ids, types, ids[1:first_sep], ids[first_sep + 1 : -1]


def test_nsp_label_0_pairs_continue_in_the_same_document_and_label_1_pairs_come_from_another(corpus, token_file):
    _, tokenizer = corpus
    cls, sep = ids_of(tokenizer, "[CLS]", "[SEP]")
    train, _ = split_documents(token_file, 0.1, seed=0)
    features, counts = nsp_features(token_file, 64, cls, sep, seed=1, documents=train)
    labels = features.columns["next_sentence_label"]
    assert labels.dtype == np.int64 and len(labels) == len(features) == counts["pairs"]
    assert counts["next"] == int((labels == 0).sum()) and counts["random"] == int((labels == 1).sum())
    assert counts["truncated"] > 0 and features.lengths.max() <= 64
    chosen = set(train.tolist())
    for i in range(len(features)):
        ids, types, a, b = segments(features, i, sep)
        assert ids[0] == cls and ids[-1] == sep
        assert types.tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        a_marks, b_marks = markers(tokenizer, a), markers(tokenizer, b)
        # A is cut from its start and B from its end: A's last and B's first paragraph keep their seam marker
        (a_doc, a_last), (b_doc, b_first) = a_marks[-1], b_marks[0]
        assert {d for d, _ in a_marks} == {a_doc} and a_doc in chosen and b_doc in chosen
        if labels[i] == 0:
            assert b_doc == a_doc and b_first == a_last + 1 and {d for d, _ in b_marks} == {a_doc}
        else:
            assert b_doc != a_doc
    # a fair coin for each pair; those told "next" at a document's last lone paragraph became random
    told_next, n = counts["next"] + counts["forced_random"], counts["pairs"]
    assert abs(told_next - n / 2) < 4 * math.sqrt(n / 4)


def test_nsp_walks_every_paragraph_and_is_the_same_for_a_seed(corpus, token_file):
    _, tokenizer = corpus
    cls, sep = ids_of(tokenizer, "[CLS]", "[SEP]")
    features, counts = nsp_features(token_file, 512, cls, sep, seed=5)
    assert counts["truncated"] == 0
    seen = set()
    for i in range(len(features)):
        _, _, a, b = segments(features, i, sep)
        seen.update(markers(tokenizer, a))
        if features.columns["next_sentence_label"][i] == 0:
            seen.update(markers(tokenizer, b))
    p, d = token_file.paragraph_offsets, token_file.document_offsets
    assert seen == {(doc, j) for doc in range(token_file.num_documents) for j in range(d[doc + 1] - d[doc])}
    again, _ = nsp_features(token_file, 512, cls, sep, seed=5, cache=False)
    assert runs.features_digest(again) == runs.features_digest(features)
    other, _ = nsp_features(token_file, 512, cls, sep, seed=6)
    assert runs.features_digest(other) != runs.features_digest(features)
    assert isinstance(features.ids, np.memmap)
    batch = batching.collate(features, np.arange(8), pad_id=0)
    assert batch["next_sentence_label"].dtype == torch.int64 and batch["token_type_ids"].max() == 1


def test_blocks_and_pairs_are_the_same_written_in_small_pieces(corpus, token_file, monkeypatch):
    _, tokenizer = corpus
    cls, sep = ids_of(tokenizer, "[CLS]", "[SEP]")
    whole = [runs.features_digest(packed_features(token_file, 24, cls, sep)[0]),
             runs.features_digest(nsp_features(token_file, 40, cls, sep, seed=2)[0])]
    monkeypatch.setattr(pretraining_data, "PIECE_TOKENS", 50)  # many writes, documents cut across pieces
    pieces = [runs.features_digest(packed_features(token_file, 24, cls, sep, cache=False)[0]),
              runs.features_digest(nsp_features(token_file, 40, cls, sep, seed=2, cache=False)[0])]
    assert pieces == whole


def test_truncation_cuts_the_longer_side_first():
    assert longest_first(10, 20, 40) == (10, 20)
    assert longest_first(10, 50, 40) == (10, 30)
    assert longest_first(50, 10, 40) == (30, 10)
    assert longest_first(30, 25, 41) == (21, 20)
    assert longest_first(25, 30, 40) == (20, 20)


def test_nsp_truncation_differs_from_google_bert_only_where_an_odd_token_goes_to_the_longer_b():
    """NSP pairs once cut by google-research/bert's rule (one token at a time from the longer side, B on a tie),
    whose odd token always stays with A; the shared rule gives it to the longer side, B on a tie."""
    def one_at_a_time(a, b, budget):
        while a + b > budget:
            a, b = (a - 1, b) if a > b else (a, b - 1)
        return a, b

    for budget in range(1, 30):
        for a in range(0, 35):
            for b in range(0, 35):
                ours, google = longest_first(a, b, budget), one_at_a_time(a, b, budget)
                if budget % 2 and 2 * min(a, b) > budget and a <= b:
                    assert ours == (budget // 2, budget - budget // 2) and google == (ours[1], ours[0])
                else:
                    assert ours == google, (a, b, budget)


# ---- masking -------------------------------------------------------------------------------------

VOCAB, SPECIALS, MASK = 100, (0, 1, 2, 3, 4), 3


def within(count, n, p, stds=5.0) -> bool:
    return abs(count - n * p) < stds * math.sqrt(n * p * (1 - p))


def test_masking_chooses_15_percent_of_ordinary_tokens_then_80_10_10():
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (256, 512))
    ids[:, 400:] = 0  # padding
    ids[:, 0], ids[:, 399] = 1, 2
    masked, labels = mask_tokens(ids, SPECIALS, VOCAB, MASK, generator=torch.Generator().manual_seed(1))
    special = torch.isin(ids, torch.tensor(SPECIALS))
    chosen = labels != -100
    assert not (chosen & special).any() and (masked[special] == ids[special]).all()
    assert (labels[chosen] == ids[chosen]).all() and (masked[~chosen] == ids[~chosen]).all()
    candidates, n = int((~special).sum()), int(chosen.sum())
    assert within(n, candidates, 0.15)
    ordinary = VOCAB - len(SPECIALS)
    to_mask = chosen & (masked == MASK)
    kept = chosen & (masked == ids)
    replaced = chosen & ~to_mask & ~kept
    assert within(int(to_mask.sum()), n, 0.8)
    assert within(int(kept.sum()), n, 0.1 + 0.1 / ordinary)  # a random token can be the same one
    assert within(int(replaced.sum()), n, 0.1 - 0.1 / ordinary)
    drawn = masked[replaced]
    assert not torch.isin(drawn, torch.tensor(SPECIALS)).any()
    assert set(drawn.tolist()) == set(range(len(SPECIALS), VOCAB))  # every ordinary id is drawn


def test_masking_is_the_same_for_the_same_generator_seed_or_global_seed():
    ids = torch.randint(5, VOCAB, (8, 64))
    first = mask_tokens(ids, SPECIALS, VOCAB, MASK, generator=torch.Generator().manual_seed(7))
    again = mask_tokens(ids, SPECIALS, VOCAB, MASK, generator=torch.Generator().manual_seed(7))
    other = mask_tokens(ids, SPECIALS, VOCAB, MASK, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[1], other[1])
    torch.manual_seed(3)
    global_first = mask_tokens(ids, SPECIALS, VOCAB, MASK)
    torch.manual_seed(3)
    assert all(torch.equal(x, y) for x, y in zip(global_first, mask_tokens(ids, SPECIALS, VOCAB, MASK)))


def test_the_special_ids_of_a_trained_tokenizer_are_its_five_specials(corpus):
    _, tokenizer = corpus
    assert special_token_ids(tokenizer) == [0, 1, 2, 3, 4]
