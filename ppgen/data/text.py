"""Text tokenization, validated token-sequence and bag-of-words containers, local-file loaders."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ppgen.data._text_containers import BagOfWords, DataError, TokenSequences

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "BagOfWords",
    "DataError",
    "TokenSequences",
    "Tokenizer",
    "bag_of_words",
    "load_corpus_lines",
    "load_text",
    "token_sequences",
]

UNK, BOS, EOS = "<unk>", "<bos>", "<eos>"
_LEVELS = ("char", "word")
_UNK_POLICIES = ("map", "error")
_FORMAT = "ppgen.Tokenizer"


def _check_choice(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"`{name}` must be one of {list(valid)}, got {value!r}.")


def _split(text: str, level: str) -> tuple[list[str], list[int]]:
    """Tokens of `text` and the character offset of each one."""
    if level == "char":
        return list(text), list(range(len(text)))
    matches = list(re.finditer(r"\S+", text))
    return [m.group() for m in matches], [m.start() for m in matches]


class Tokenizer:
    r"""Character- or whitespace-word-level tokenizer with a fixed vocabulary.

    The vocabulary is ``[<unk>, (<bos>), (<eos>), t_1, t_2, ...]`` where the
    learnt tokens are those with count ``c(t) >= min_count`` in the training text,
    sorted by decreasing count, ties broken alphabetically, so ids are deterministic.

    References:
        Jurafsky & Martin, *Speech and Language Processing* (3rd ed. draft), ch. 2-3.

    Arguments:
        vocab: The learnt tokens (without the reserved ones), in id order.
        level: ``"char"`` (every character is a token) or ``"word"`` (maximal runs of
            non-whitespace).
        unk: ``"map"`` encodes unseen tokens as ``<unk>``; ``"error"`` raises.
        bos: Whether to reserve ``<bos>`` and prepend it in :meth:`encode`.
        eos: Whether to reserve ``<eos>`` and append it in :meth:`encode`.

    Example:
        >>> tok = Tokenizer.from_text("abracadabra", level="char")
        >>> tok.vocab
        ['<unk>', 'a', 'b', 'r', 'c', 'd']
        >>> tok.encode("bad!").tolist()
        [2, 1, 5, 0]
        >>> tok.decode(tok.encode("cab"))
        'cab'
    """

    def __init__(
        self,
        vocab: Sequence[str],
        level: Literal["char", "word"] = "char",
        unk: Literal["map", "error"] = "map",
        bos: bool = False,
        eos: bool = False,
    ) -> None:
        _check_choice("level", level, _LEVELS)
        _check_choice("unk", unk, _UNK_POLICIES)
        special = [UNK] + [BOS] * bos + [EOS] * eos
        learnt = [t for t in vocab if t not in special]
        if len(set(learnt)) != len(learnt):
            raise ValueError("`vocab` contains duplicate tokens; each token needs a single id.")
        if level == "char" and any(len(t) != 1 for t in learnt):
            raise ValueError("`vocab` of a `level='char'` tokenizer must hold single characters.")
        self.level, self.unk, self.bos, self.eos = level, unk, bos, eos
        self.vocab: list[str] = special + learnt
        self._ids = {t: i for i, t in enumerate(self.vocab)}

    @classmethod
    def from_text(
        cls,
        text: str | Iterable[str],
        level: Literal["char", "word"] = "char",
        min_count: int = 1,
        unk: Literal["map", "error"] = "map",
        bos: bool = False,
        eos: bool = False,
    ) -> Tokenizer:
        """Learn the vocabulary of `text` (a string or an iterable of documents).

        Arguments:
            text: Training text, or documents.
            level: ``"char"`` or ``"word"``.
            min_count: Tokens seen fewer times are left out (and encode as ``<unk>``).
            unk, bos, eos: See :class:`Tokenizer`.

        Returns:
            The fitted tokenizer.
        """
        _check_choice("level", level, _LEVELS)
        if min_count < 1:
            raise ValueError(f"`min_count` must be >= 1, got {min_count}.")
        docs = [text] if isinstance(text, str) else list(text)
        counts: Counter[str] = Counter()
        for doc in docs:
            counts.update(_split(doc, level)[0])
        kept = [t for t, c in counts.items() if c >= min_count]
        kept.sort(key=lambda t: (-counts[t], t))
        return cls(kept, level=level, unk=unk, bos=bos, eos=eos)

    @property
    def vocab_size(self) -> int:
        """Number of ids, reserved tokens included."""
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def token_id(self, token: str) -> int:
        """The id of `token` (``<unk>``'s id, 0, when unknown and ``unk="map"``)."""
        if token in self._ids:
            return self._ids[token]
        if self.unk == "error":
            raise ValueError(f"token {token!r} is not in the vocabulary of {self.vocab_size}.")
        return 0

    def encode(self, text: str, add_special: bool = True) -> np.ndarray:
        """Encode `text` to an ``int64`` array of ids.

        Arguments:
            text: The text.
            add_special: Whether to add ``<bos>``/``<eos>`` when the tokenizer reserves them.

        Returns:
            The ids, shape ``(num_tokens,)``.
        """
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a str, got {type(text).__name__}.")
        tokens, offsets = _split(text, self.level)
        ids = np.fromiter((self._ids.get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))
        unseen = np.flatnonzero(ids < 0)
        if unseen.size and self.unk == "error":
            i = int(unseen[0])
            raise ValueError(
                f"token {tokens[i]!r} at position {i} (character {offsets[i]}) is not in the "
                f"vocabulary ({unseen.size} unknown tokens in all). Build the tokenizer with "
                "`unk='map'` to encode them as '<unk>', or add them to the training text."
            )
        ids[unseen] = 0
        if add_special:
            head = [self._ids[BOS]] if self.bos else []
            tail = [self._ids[EOS]] if self.eos else []
            ids = np.concatenate([np.array(head, np.int64), ids, np.array(tail, np.int64)])
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = True) -> str:
        """Decode ids to text (``<bos>``/``<eos>`` dropped unless `skip_special` is False).

        Arguments:
            ids: Token ids.
            skip_special: Whether to drop ``<bos>`` and ``<eos>``.

        Returns:
            The text; words are joined by single spaces.
        """
        arr = np.asarray(ids)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"`ids` must be integers, got dtype {arr.dtype}.")
        bad = np.flatnonzero((arr < 0) | (arr >= self.vocab_size))
        if bad.size:
            raise ValueError(
                f"`ids` position {bad[0]} holds {arr.flat[bad[0]].item()}, outside the "
                f"vocabulary of size {self.vocab_size} (valid ids are 0..{self.vocab_size - 1})."
            )
        drop = {BOS, EOS} if skip_special else set()
        tokens = [self.vocab[i] for i in arr.ravel().tolist() if self.vocab[i] not in drop]
        return ("" if self.level == "char" else " ").join(tokens)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to `path` as JSON."""
        state = {"format": _FORMAT, "version": 1, "level": self.level, "unk": self.unk}
        state |= {"bos": self.bos, "eos": self.eos, "vocab": self.vocab}
        Path(path).write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`."""
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not a tokenizer written by `Tokenizer.save`.")
        return cls(state["vocab"], state["level"], state["unk"], state["bos"], state["eos"])

    def __repr__(self) -> str:
        return f"Tokenizer(level={self.level!r}, vocab_size={self.vocab_size}, unk={self.unk!r})"


def load_text(path: str | Path, encoding: str = "utf-8") -> str:
    """Read a local text file.

    Arguments:
        path: The file.
        encoding: Its encoding.

    Returns:
        The file's contents.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path` {str(path)!r} is not a file.")
    return path.read_text(encoding=encoding)


def load_corpus_lines(
    path: str | Path, encoding: str = "utf-8", skip_empty: bool = True
) -> list[str]:
    """Read a local file holding one document per line.

    Arguments:
        path: The file.
        encoding: Its encoding.
        skip_empty: Whether to drop blank lines (which would be empty documents).

    Returns:
        The documents, without their line endings.
    """
    lines = load_text(path, encoding).splitlines()
    return [line for line in lines if line.strip()] if skip_empty else lines


def token_sequences(docs: Iterable[str], tokenizer: Tokenizer) -> TokenSequences:
    """Encode documents with `tokenizer` into :class:`TokenSequences`.

    Example:
        >>> tok = Tokenizer.from_text(["a b", "b c"], level="word")
        >>> [s.tolist() for s in token_sequences(["a b", "c"], tok)]
        [[2, 1], [3]]
    """
    return TokenSequences([tokenizer.encode(d) for d in docs], tokenizer.vocab_size)


def bag_of_words(docs: Iterable[str], tokenizer: Tokenizer) -> BagOfWords:
    r"""Count the tokens of each document: ``counts[d, w] = #{i : tokens(doc_d)_i = w}``.

    ``<bos>``/``<eos>`` are not counted.

    Arguments:
        docs: The documents.
        tokenizer: Defines the tokens and the columns.

    Returns:
        The document-by-vocabulary counts.

    Example:
        >>> tok = Tokenizer.from_text(["a b b", "c"], level="word")
        >>> bag_of_words(["a b b", "c c a"], tok).counts.toarray().tolist()
        [[0, 2, 1, 0], [0, 0, 1, 2]]
    """
    ids = [tokenizer.encode(d, add_special=False) for d in docs]
    rows = np.repeat(np.arange(len(ids)), [a.size for a in ids])
    cols = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    data = np.ones(cols.size, np.int64)
    counts = sp.coo_array((data, (rows, cols)), shape=(len(ids), tokenizer.vocab_size)).tocsr()
    counts.sum_duplicates()
    return BagOfWords(counts, list(tokenizer.vocab))
