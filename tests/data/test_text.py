"""Tests for ppgen.data.text: tokenizer, validated containers, loaders."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from ppgen.data.text import (
    BagOfWords,
    DataError,
    Tokenizer,
    TokenSequences,
    bag_of_words,
    load_corpus_lines,
    load_text,
    token_sequences,
)

TEXT = "the cat sat on the mat . the dog sat on the log ."


@pytest.mark.parametrize("level", ["char", "word"])
def test_round_trip(level):
    tok = Tokenizer.from_text(TEXT, level=level)
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int64
    assert tok.decode(ids) == TEXT
    assert ids.min() >= 1  # every training token is known, none maps to <unk> (id 0)
    assert ids.max() < tok.vocab_size == len(tok)


def test_vocabulary_order_and_min_count():
    tok = Tokenizer.from_text(TEXT, level="word", min_count=2)
    # counts: the 4, sat 2, on 2, . 2; the rest once
    assert tok.vocab == ["<unk>", "the", ".", "on", "sat"]
    assert tok.encode("the cat sat").tolist() == [1, 0, 4]
    assert tok.decode([1, 0, 4]) == "the <unk> sat"


def test_bos_eos():
    tok = Tokenizer.from_text("ab", level="char", bos=True, eos=True)
    assert tok.vocab == ["<unk>", "<bos>", "<eos>", "a", "b"]
    assert tok.encode("ba").tolist() == [1, 4, 3, 2]
    assert tok.encode("ba", add_special=False).tolist() == [4, 3]
    assert tok.decode([1, 4, 3, 2]) == "ba"
    assert tok.decode([1, 4, 3, 2], skip_special=False) == "<bos>ba<eos>"


def test_unk_error_names_token_and_position():
    tok = Tokenizer.from_text(TEXT, level="word", unk="error")
    with pytest.raises(ValueError, match=r"'zebra' at position 2 \(character 8\)"):
        tok.encode("the cat zebra sat")
    tok = Tokenizer.from_text("abc", level="char", unk="error")
    with pytest.raises(ValueError, match=r"'z' at position 1 .*2 unknown tokens"):
        tok.encode("azbz")


def test_bad_options_list_valid_ones():
    with pytest.raises(ValueError, match=r"`level` must be one of \['char', 'word'\]"):
        Tokenizer.from_text("abc", level="byte")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`unk` must be one of \['map', 'error'\]"):
        Tokenizer([], unk="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`min_count`"):
        Tokenizer.from_text("abc", min_count=0)


def test_decode_rejects_out_of_vocabulary_ids():
    tok = Tokenizer.from_text("abc")
    with pytest.raises(
        ValueError, match=r"`ids` position 1 holds 7, outside the vocabulary of size 4"
    ):
        tok.decode([1, 7])
    with pytest.raises(TypeError, match="`ids` must be integers"):
        tok.decode([1.5])


def test_save_load_json(tmp_path):
    tok = Tokenizer.from_text(TEXT, level="word", min_count=2, unk="error", eos=True)
    path = tmp_path / "tok.json"
    tok.save(path)
    state = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert state["vocab"] == tok.vocab
    loaded = Tokenizer.load(path)
    assert loaded.vocab == tok.vocab and loaded.unk == "error" and loaded.eos and not loaded.bos
    np.testing.assert_array_equal(loaded.encode("the sat ."), tok.encode("the sat ."))
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a tokenizer"):
        Tokenizer.load(tmp_path / "other.json")


def test_token_sequences_validate_ok():
    seqs = TokenSequences([np.array([0.0, 2.0]), [1]], vocab_size=3).validate()
    assert all(s.dtype == np.int64 for s in seqs.sequences)
    assert seqs.lengths.tolist() == [2, 1]


@pytest.mark.parametrize(
    ("sequences", "pattern"),
    [
        (
            [[0, 1], [2, -1]],
            r"`tokens`: document 1, position 1 holds token id -1, outside the vocabulary "
            r"of size 3 \(valid ids are 0..2\)\. Encode with the tokenizer",
        ),
        ([[0, 1, 2, 3]], r"`tokens`: document 0, position 3 holds token id 3, .* size 3"),
        ([[0, 1.5]], r"`tokens`: document 0, position 1 holds 1\.5 .* must be integers"),
        ([["a", "b"]], r"`tokens`: document 0, position 0 .* must be integers"),
        ([[1], [], [2], []], r"`tokens`: documents \[1, 3\] are empty"),
        ([np.zeros((2, 2), int)], r"`tokens`: document 0 has shape \(2, 2\)"),
    ],
)
def test_token_sequences_bad_inputs(sequences, pattern):
    with pytest.raises(DataError, match=pattern):
        TokenSequences(sequences, vocab_size=3).validate(site="tokens")


def test_bag_of_words_counts_and_validate():
    docs = ["the cat sat", "the the dog", "cat on the mat"]
    tok = Tokenizer.from_text(docs, level="word")
    bow = bag_of_words(docs, tok).validate(site="w")
    assert bow.shape == (3, tok.vocab_size) and bow.vocab == tok.vocab
    assert bow.counts.dtype == np.int64
    for d, doc in enumerate(docs):
        expected = Counter(tok.encode(doc).tolist())
        row = bow.counts[[d]].toarray().ravel()
        assert {i: int(row[i]) for i in np.flatnonzero(row)} == dict(expected)


@pytest.mark.parametrize(
    ("counts", "pattern"),
    [
        ([[1, -2, 0], [0, 1, 0]], r"`w`: document 0, word id 1 has a negative count -2"),
        ([[1, 0.5, 0], [0, 1, 0]], r"`w`: document 0, word id 1 has count 0\.5.* whole numbers"),
        (
            [[1, 0, 0, 0], [0, 1, 0, 4]],
            r"`w`: document 1 has counts for word id 3, outside the "
            r"vocabulary of size 3",
        ),
        ([[1, 0, 0, 0], [0, 1, 0, 0]], r"`w`: the matrix has 4 columns, outside the vocabulary"),
        ([[1, 0, 0], [0, 0, 0], [0, 0, 0], [2, 0, 0]], r"`w`: documents \[1, 2\] are empty"),
    ],
)
def test_bag_of_words_bad_inputs(counts, pattern):
    with pytest.raises(DataError, match=pattern):
        BagOfWords(sp.csr_array(np.array(counts)), vocab=["a", "b", "c"]).validate(site="w")


def test_explicit_zero_rows_are_empty():
    m = sp.csr_array((np.array([0, 3]), np.array([1, 2]), np.array([0, 1, 2])), shape=(2, 3))
    with pytest.raises(DataError, match=r"documents \[0\] are empty"):
        BagOfWords(m, ["a", "b", "c"]).validate()


def test_loaders(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first doc\n\nsecond  doc\n   \nthird\n", encoding="utf-8")
    assert load_text(path).startswith("first doc\n")
    docs = load_corpus_lines(path)
    assert docs == ["first doc", "second  doc", "third"]
    assert len(load_corpus_lines(path, skip_empty=False)) == 5
    tok = Tokenizer.from_text(docs, level="word")
    seqs = token_sequences(docs, tok).validate()
    assert [tok.decode(s) for s in seqs.sequences] == ["first doc", "second doc", "third"]
    with pytest.raises(FileNotFoundError, match="`path`"):
        load_text(tmp_path / "missing.txt")
