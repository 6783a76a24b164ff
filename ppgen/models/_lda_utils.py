"""Shared pieces of the LDA models: count validation, simulation, fold-in, perplexity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pyroapi import distributions as dist

from ppgen.errors import DataError
from ppgen.models._base import current_backend

__all__ = ["as_counts", "fold_in", "heldout_perplexity", "simulate_lda"]


def as_counts(data: Any, vocab_size: int | None = None, site: str = "counts") -> np.ndarray:
    """Validated dense ``(D, V)`` int64 counts from a BagOfWords, TokenSequences or array.

    Raises :class:`~ppgen.errors.DataError` naming ``site`` for negative or non-integer counts,
    non-integer token ids, ids outside the vocabulary and empty documents.

    Example:
        >>> from ppgen.data.text import TokenSequences
        >>> as_counts(TokenSequences([np.array([0, 2, 2])], vocab_size=3)).tolist()
        [[1, 0, 2]]
    """
    from ppgen.data.text import BagOfWords, TokenSequences

    if isinstance(data, TokenSequences):
        seqs = data.validate(site)
        if vocab_size is not None and seqs.vocab_size > vocab_size:
            raise DataError(
                f"`{site}`: the sequences' vocabulary has {seqs.vocab_size} ids but the model "
                f"has `vocab_size={vocab_size}`."
            )
        v = vocab_size or seqs.vocab_size
        return np.stack([np.bincount(s, minlength=v) for s in seqs.sequences]).astype(np.int64)
    if not isinstance(data, BagOfWords):
        arr = data if hasattr(data, "tocsr") else np.asarray(data)
        if getattr(arr, "ndim", 2) != 2:
            raise DataError(f"`{site}` must be a (documents, vocabulary) matrix; got {arr.shape}.")
        v = vocab_size if vocab_size is not None else arr.shape[1]
        if arr.shape[1] > v:
            raise DataError(
                f"`{site}`: the matrix has {arr.shape[1]} columns, outside the vocabulary of "
                f"size {v} (valid ids are 0..{v - 1})."
            )
        data = BagOfWords(arr, [str(i) for i in range(v)])
    elif vocab_size is not None and len(data.vocab) != vocab_size:
        raise DataError(
            f"`{site}`: the bag of words has {len(data.vocab)} words but the model has "
            f"`vocab_size={vocab_size}`."
        )
    bow = data.validate(site)
    return np.asarray(bow.counts.toarray(), dtype=np.int64)


def check_counts(counts: Any, vocab_size: int) -> None:
    """Named errors for bad counts when they are concrete (skipped under jit tracing)."""
    if hasattr(counts, "detach"):  # torch: one fused pass when the counts are fine
        c = counts.detach()
        if c.ndim == 2 and c.shape[1] == vocab_size and c.numel():
            if c.is_floating_point():
                ok = bool(((c >= 0) & (c == c.round())).all())
            else:  # integer counts: two reductions, no temporaries (this runs every step)
                ok = int(c.min()) >= 0
            if ok and int(c.sum(1).min()) > 0:
                return
        counts = c.cpu()
    try:
        c = np.asarray(counts)
    except Exception:  # a jax tracer: validation already ran on concrete data
        return
    if c.ndim != 2 or c.shape[1] != vocab_size:
        raise DataError(
            f"`counts` must have shape (documents, {vocab_size}) (vocabulary ids "
            f"0..{vocab_size - 1}); got {c.shape}. Build it with `as_counts`."
        )
    if (c < 0).any() or (c != np.round(c)).any():
        bad = np.argwhere((c < 0) | (c != np.round(c)))[0]
        raise DataError(
            f"`counts`: document {bad[0]}, word id {bad[1]} has count {c[tuple(bad)]}; counts "
            "must be non-negative whole numbers."
        )
    empty = np.flatnonzero(c.sum(1) == 0)
    if empty.size:
        raise DataError(f"`counts`: documents {empty[:10].tolist()} are empty (no words).")


def multinomial(counts: Any, probs: Any = None, logits: Any = None) -> Any:
    """Each document's counts given its word distribution (``probs`` or ``logits``)."""
    total = counts.sum(-1)
    if current_backend() == "pyro":
        # torch needs one total_count; log_prob uses each row's own sum, so the max is exact
        return dist.Multinomial(int(total.max()), probs=probs, logits=logits)
    return dist.Multinomial(total, probs=probs, logits=logits)


def fold_in(
    topic_word: np.ndarray, counts: np.ndarray, alpha: float, iters: int = 100
) -> np.ndarray:
    r"""MAP document-topic proportions for fixed topics (EM over the summed-out assignments).

    .. math:: \theta_{dk} \propto \alpha - 1 + \sum_v c_{dv}\,
              \frac{\theta_{dk}\phi_{kv}}{\sum_j \theta_{dj}\phi_{jv}}

    Example:
        >>> phi = np.array([[0.9, 0.1], [0.1, 0.9]])
        >>> fold_in(phi, np.array([[10, 0]]), alpha=1.0).round(2)
        array([[1., 0.]])
    """
    phi = np.asarray(topic_word, float) + 1e-12
    c = np.asarray(counts, float)
    theta = np.full((len(c), len(phi)), 1.0 / len(phi))
    for _ in range(iters):
        mix = theta @ phi
        r = theta * ((c / mix) @ phi.T)
        theta = np.maximum(r + max(alpha - 1.0, 0.0), 1e-12)
        theta /= theta.sum(1, keepdims=True)
    return theta


def heldout_perplexity(
    topic_word: np.ndarray | Callable[[np.ndarray], np.ndarray],
    counts: np.ndarray,
    doc_topics_fn: Callable[[np.ndarray], np.ndarray],
    seed: int = 0,
) -> float:
    r"""Document-completion perplexity: infer :math:`\theta_d` from half of each held-out
    document's tokens, score the other half, :math:`\exp(-\sum \log p(w) / T_{\text{half}})`.

    ``topic_word`` is the ``(K, V)`` topic matrix of a mixture decoder (word probabilities
    :math:`\theta^\top\Phi`) or a function from :math:`\theta` ``(D, K)`` to word
    probabilities ``(D, V)`` (e.g. ProdLDA's product of experts).

    References:
        Wallach et al. (2009), Evaluation methods for topic models, ICML.

    Example:
        >>> phi = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
        >>> c = np.array([[4, 4, 0], [0, 4, 4]])
        >>> round(heldout_perplexity(phi, c, lambda h: fold_in(phi, h, 1.0)), 2)
        2.0
    """
    from ppgen.analysis.metrics import perplexity

    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, np.int64)
    first = rng.binomial(counts, 0.5)
    second = counts - first
    keep = (first.sum(1) > 0) & (second.sum(1) > 0)
    theta = doc_topics_fn(first[keep])
    probs = topic_word(theta) if callable(topic_word) else theta @ np.asarray(topic_word)
    return perplexity((second[keep] * np.log(probs + 1e-30)).sum(), second[keep].sum())


def simulate_lda(
    num_docs: int,
    num_topics: int,
    vocab_size: int,
    doc_length: int = 50,
    alpha: float = 0.5,
    beta: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A corpus from the LDA generative process: counts (D, V) and the true topics/proportions.

    Example:
        >>> counts, truth = simulate_lda(5, 2, 8, doc_length=10)
        >>> counts.shape, truth["topics"].shape, int(counts.sum())
        ((5, 8), (2, 8), 50)
    """
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(vocab_size, beta), size=num_topics)
    theta = rng.dirichlet(np.full(num_topics, alpha), size=num_docs)
    counts = np.stack([rng.multinomial(doc_length, t @ topics) for t in theta]).astype(np.int64)
    return counts, {"topics": topics, "doc_topics": theta}
