"""Validated text-data containers: ragged :class:`TokenSequences` and a CSR :class:`BagOfWords`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

try:
    from ppgen.errors import DataError
except ImportError:  # the core's error hierarchy is optional for this module
    DataError = ValueError  # type: ignore[misc,assignment]

__all__ = ["BagOfWords", "DataError", "TokenSequences"]


def _integral(arr: np.ndarray) -> np.ndarray:
    """Mask of the entries that are not whole numbers (all False for integer dtypes)."""
    if np.issubdtype(arr.dtype, np.integer):
        return np.zeros(arr.shape, bool)
    if not np.issubdtype(arr.dtype, np.floating):
        return np.ones(arr.shape, bool)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(arr) | (arr != np.round(arr))


def _listing(items: np.ndarray | Sequence[int], limit: int = 10) -> str:
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(str(int(i)) for i in items[:limit]) + more


@dataclass
class TokenSequences:
    """A ragged collection of token-id documents over a vocabulary of `vocab_size` ids.

    Arguments:
        sequences: One 1-D array of token ids per document.
        vocab_size: Number of ids; valid ids are ``0 .. vocab_size - 1``.

    Example:
        >>> seqs = TokenSequences([np.array([1, 2]), np.array([0])], vocab_size=3)
        >>> seqs.validate().lengths.tolist()
        [2, 1]
    """

    sequences: list[np.ndarray]
    vocab_size: int

    def __post_init__(self) -> None:
        self.sequences = [np.asarray(s) for s in self.sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.sequences[i]

    @property
    def lengths(self) -> np.ndarray:
        """Number of tokens per document."""
        return np.array([s.size for s in self.sequences], dtype=np.int64)

    def validate(self, site: str = "x") -> TokenSequences:
        """Check the documents and return them as ``int64`` arrays.

        Arguments:
            site: The model site (or argument) the data is meant for, named in errors.

        Returns:
            A copy whose sequences are ``int64``.

        Raises:
            DataError: For non-1-D or non-integer documents, ids outside the
                vocabulary, or empty documents.
        """
        if int(self.vocab_size) < 1:
            raise DataError(f"`{site}`: `vocab_size` must be >= 1, got {self.vocab_size}.")
        out = []
        for d, seq in enumerate(self.sequences):
            if seq.ndim != 1:
                raise DataError(f"`{site}`: document {d} has shape {seq.shape}; expected 1-D ids.")
            bad = np.flatnonzero(_integral(seq))
            if bad.size:
                raise DataError(
                    f"`{site}`: document {d}, position {bad[0]} holds {seq[bad[0]].item()!r} "
                    f"(dtype {seq.dtype}); token ids must be integers. Encode text with a "
                    "`Tokenizer`, or cast whole-number ids with `.astype(np.int64)`."
                )
            ids = seq.astype(np.int64)
            bad = np.flatnonzero((ids < 0) | (ids >= self.vocab_size))
            if bad.size:
                raise DataError(
                    f"`{site}`: document {d}, position {bad[0]} holds token id {ids[bad[0]]}, "
                    f"outside the vocabulary of size {self.vocab_size} (valid ids are "
                    f"0..{self.vocab_size - 1}). Encode with the tokenizer that defines the "
                    "vocabulary (`unk='map'` sends unseen tokens to '<unk>'), or raise "
                    "`vocab_size`."
                )
            out.append(ids)
        empty = np.flatnonzero(self.lengths == 0)
        if empty.size:
            raise DataError(
                f"`{site}`: documents [{_listing(empty)}] are empty (0 tokens). "
                "Drop them before fitting, e.g. `[d for d in docs if len(d)]`."
            )
        return TokenSequences(out, int(self.vocab_size))


@dataclass
class BagOfWords:
    """A document-by-vocabulary count matrix in CSR format.

    Arguments:
        counts: ``counts[d, w]`` is how often word ``w`` occurs in document ``d``;
            anything ``scipy.sparse.csr_array`` accepts.
        vocab: The word of each column.

    Example:
        >>> bow = BagOfWords(np.array([[2, 0, 1], [0, 1, 0]]), vocab=["a", "b", "c"])
        >>> bow.validate().counts.sum()
        np.int64(4)
    """

    counts: sp.csr_array
    vocab: list[str]

    def __post_init__(self) -> None:
        self.counts = sp.csr_array(self.counts)
        self.vocab = list(self.vocab)

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_documents, num_columns)``."""
        return self.counts.shape  # type: ignore[return-value]

    def validate(self, site: str = "x") -> BagOfWords:
        """Check the counts and return them with ``int64`` values.

        Arguments:
            site: The model site (or argument) the data is meant for, named in errors.

        Returns:
            A copy with ``int64`` counts and explicit zeros removed.

        Raises:
            DataError: For negative or non-integer counts, columns outside the
                vocabulary, or empty documents.
        """
        m = self.counts.copy()
        m.sum_duplicates()
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        vsize = len(self.vocab)
        bad = np.flatnonzero(m.indices >= vsize)
        if bad.size or m.shape[1] > vsize:
            where = (
                f"document {rows[bad[0]]} has counts for word id {m.indices[bad[0]]}"
                if bad.size
                else f"the matrix has {m.shape[1]} columns"
            )
            raise DataError(
                f"`{site}`: {where}, outside the vocabulary of size {vsize} (valid ids are "
                f"0..{vsize - 1}). Build the matrix with `bag_of_words(docs, tokenizer)` "
                "or pass the full vocabulary."
            )
        bad = np.flatnonzero(_integral(m.data))
        if bad.size:
            raise DataError(
                f"`{site}`: document {rows[bad[0]]}, word id {m.indices[bad[0]]} has count "
                f"{m.data[bad[0]].item()!r}; counts must be whole numbers. Round or cast with "
                "`.astype(np.int64)` if they are integral."
            )
        bad = np.flatnonzero(m.data < 0)
        if bad.size:
            raise DataError(
                f"`{site}`: document {rows[bad[0]]}, word id {m.indices[bad[0]]} has a negative "
                f"count {m.data[bad[0]].item()!r} ({bad.size} negative entries in all); "
                "counts must be >= 0."
            )
        m = sp.csr_array(m, dtype=np.int64)
        m.eliminate_zeros()
        empty = np.flatnonzero(np.diff(m.indptr) == 0)
        if empty.size:
            raise DataError(
                f"`{site}`: documents [{_listing(empty)}] are empty (no words). "
                "Drop those rows, e.g. `bow.counts[bow.counts.sum(axis=1) > 0]`."
            )
        return BagOfWords(m, list(self.vocab))
