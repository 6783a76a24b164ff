"""Model-agnostic metrics: perplexity, NPMI topic coherence, Hungarian matching, relabelling,
and (from :mod:`ppgen.analysis.sample_quality`) the sample quality of implicit models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

# sample quality of implicit models (mode coverage, MMD, Fréchet distances) lives in its own
# module and is re-exported here
from ppgen.analysis.sample_quality import (
    DigitsFeatures,
    ModeCoverage,
    c2st,
    frechet_classifier_distance,
    frechet_distance,
    gaussian_frechet_distance,
    median_bandwidth,
    mmd,
    mode_coverage,
)

__all__ = [
    "perplexity",
    "npmi_coherence",
    "top_words",
    "hungarian_match",
    "align_labels",
    "relabel",
    "c2st",
    "DigitsFeatures",
    "ModeCoverage",
    "frechet_classifier_distance",
    "frechet_distance",
    "gaussian_frechet_distance",
    "median_bandwidth",
    "mmd",
    "mode_coverage",
]

Metric = Literal["euclidean", "l1", "tv", "hellinger"]


def perplexity(log_likelihood: float | np.ndarray, num_tokens: int | np.ndarray) -> float:
    r"""Perplexity :math:`\exp(-\sum \log p / T)` of ``num_tokens`` tokens.

    Arguments:
        log_likelihood: total log-likelihood in nats (or an array that is summed).
        num_tokens: number of tokens it covers (or an array that is summed).

    Example:
        >>> perplexity(-10 * np.log(4.0), 10)
        4.0
    """
    total = float(np.sum(log_likelihood))
    n = float(np.sum(num_tokens))
    if n <= 0:
        raise ValueError(f"`num_tokens` must be positive; got {n}.")
    return float(np.round(np.exp(-total / n), 10))


def top_words(topic_word: np.ndarray, vocab: Sequence[str], n: int = 10) -> list[list[str]]:
    """The ``n`` most probable words of each topic (rows of ``topic_word``).

    Example:
        >>> top_words(np.array([[0.1, 0.9], [0.7, 0.3]]), ["a", "b"], n=1)
        [['b'], ['a']]
    """
    topic_word = np.asarray(topic_word)
    if topic_word.shape[-1] != len(vocab):
        raise ValueError(
            f"`topic_word` has {topic_word.shape[-1]} columns but `vocab` {len(vocab)} words."
        )
    order = np.argsort(-topic_word, axis=-1)[:, :n]
    return [[vocab[i] for i in row] for row in order]


def npmi_coherence(
    topic_word: np.ndarray, counts: Any, top_n: int = 10, eps: float = 1e-12
) -> np.ndarray:
    r"""NPMI coherence of each topic's ``top_n`` words over document co-occurrence.

    .. math:: \mathrm{NPMI}(w_i, w_j) = \frac{\log \frac{p(w_i, w_j)}{p(w_i)p(w_j)}}
              {-\log p(w_i, w_j)}, \qquad
              C_k = \mathrm{mean}_{i<j}\,\mathrm{NPMI}(w_i, w_j)

    with :math:`p` the fraction of documents (rows of ``counts``) containing the words; a
    pair that never co-occurs scores -1. Values lie in [-1, 1]; higher is more coherent.

    References:
        Bouma (2009), Normalized (pointwise) mutual information in collocation extraction.
        Lau, Newman & Baldwin (2014), Machine reading tea leaves, EACL.

    Arguments:
        topic_word: (K, V) topic-word weights.
        counts: (D, V) document-word counts (dense or scipy sparse; a reference corpus,
            ideally held out).
        top_n: words per topic.
        eps: added to the product of the marginals in the PMI (guards against 0).

    Returns:
        (K,) coherence per topic.

    Example:
        >>> counts = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
        >>> npmi_coherence(np.array([[.5, .5, 0, 0], [.5, 0, .5, 0]]), counts, top_n=2).round(2)
        array([ 1., -1.])
    """
    import scipy.sparse as sp

    occ = sp.csc_array(counts) if sp.issparse(counts) else sp.csc_array(np.asarray(counts))
    occ = (occ > 0).astype(np.float64)
    n_docs = occ.shape[0]
    out = []
    for row in np.asarray(topic_word):
        words = np.argsort(-row)[:top_n]
        sub = occ[:, words].toarray()
        p = sub.mean(0)
        pj = (sub.T @ sub) / n_docs
        scores = []
        for i in range(len(words)):
            for j in range(i + 1, len(words)):
                if pj[i, j] <= 0:
                    scores.append(-1.0)
                elif pj[i, j] >= 1.0:
                    scores.append(1.0)
                else:
                    pmi = np.log(pj[i, j] / (p[i] * p[j] + eps))
                    scores.append(float(pmi / -np.log(pj[i, j])))
        out.append(np.mean(scores) if scores else np.nan)
    return np.asarray(out)


def _cost(a: np.ndarray, b: np.ndarray, metric: Metric) -> np.ndarray:
    a = a.reshape(len(a), -1)[:, None]
    b = b.reshape(len(b), -1)[None]
    if metric == "euclidean":
        return np.sqrt(((a - b) ** 2).sum(-1))
    if metric == "l1":
        return np.abs(a - b).sum(-1)
    if metric == "tv":
        return 0.5 * np.abs(a - b).sum(-1)
    if metric == "hellinger":
        return np.sqrt(
            0.5 * ((np.sqrt(np.clip(a, 0, None)) - np.sqrt(np.clip(b, 0, None))) ** 2).sum(-1)
        )
    raise ValueError(f"`metric` must be one of euclidean, l1, tv, hellinger; got {metric!r}.")


def hungarian_match(
    estimated: np.ndarray, truth: np.ndarray, metric: Metric = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Match estimated components (or topics) to true ones, minimising the total distance.

    Arguments:
        estimated: (K_est, ...) estimated components; truth: (K, ...) true ones, K <= K_est.
        metric: ``"euclidean"``, ``"l1"``, ``"tv"`` (total variation, for topics) or
            ``"hellinger"``.

    Returns:
        ``perm`` (K,), with ``estimated[perm[k]]`` matched to ``truth[k]``, and the distance of
        each matched pair (K,).

    Example:
        >>> perm, dist = hungarian_match(np.array([[5.0], [0.0]]), np.array([[0.1], [4.9]]))
        >>> perm.tolist(), dist.round(2).tolist()
        ([1, 0], [0.1, 0.1])
    """
    from scipy.optimize import linear_sum_assignment

    estimated, truth = np.asarray(estimated, float), np.asarray(truth, float)
    if len(estimated) < len(truth):
        raise ValueError(f"{len(estimated)} estimated components for {len(truth)} true ones.")
    cost = _cost(truth, estimated, metric)
    rows, cols = linear_sum_assignment(cost)
    perm = cols[np.argsort(rows)]
    return perm, cost[np.arange(len(truth)), perm]


def align_labels(
    samples: np.ndarray, reference: np.ndarray | None = None, max_iter: int = 10
) -> np.ndarray:
    r"""Permutations that undo label switching in posterior draws of K components.

    Each draw's components are matched to a reference by Hungarian matching on squared
    Euclidean distance; the reference is then replaced by the mean of the aligned draws and
    the matching repeated until no permutation changes (a pivot/ECR-style relabelling).

    References:
        Stephens (2000), Dealing with label switching in mixture models, JRSS-B.
        Papastamoulis (2016), label.switching: an R package, JSS.

    Arguments:
        samples: (S, K, ...) per-draw component features.
        reference: (K, ...) starting reference (default: the first draw).
        max_iter: the most rounds of matching and re-averaging.

    Returns:
        (S, K) integer permutations: ``samples[s, perm[s]]`` is aligned.

    Example:
        >>> s = np.array([[[0.0], [5.0]], [[5.1], [0.1]]])
        >>> align_labels(s).tolist()
        [[0, 1], [1, 0]]
    """
    from scipy.optimize import linear_sum_assignment

    x = np.asarray(samples, float).reshape(len(samples), samples.shape[1], -1)
    ref = x[0] if reference is None else np.asarray(reference, float).reshape(x.shape[1], -1)
    perms = np.tile(np.arange(x.shape[1]), (len(x), 1))
    for _ in range(max_iter):
        cost = ((ref[None, :, None] - x[:, None]) ** 2).sum(-1)  # (S, K_ref, K_sample)
        new = np.stack([linear_sum_assignment(c)[1] for c in cost])
        ref = np.take_along_axis(x, new[..., None], 1).mean(0)
        if np.array_equal(new, perms):
            break
        perms = new
    return perms


def relabel(
    draws: Mapping[str, np.ndarray],
    sites: Sequence[str],
    key: str,
    reference: np.ndarray | None = None,
    transform: Any = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Relabel mixture draws ``(chain, draw, K, ...)`` so component k means the same everywhere.

    Arguments:
        draws: site -> (chain, draw, K, ...) array (``Fit.draws``).
        sites: the component-indexed sites to permute together (weights, locs, scales...).
        key: the site whose values define the matching (e.g. ``"locs"``).
        reference: (K, ...) reference for ``key`` (default: first draw, then iterated).
        transform: optional function applied to ``key`` values before matching (e.g. log).

    Returns:
        The relabelled draws (other sites unchanged) and the (chain, draw, K) permutations.

    Example:
        >>> locs = np.array([[[[0.0], [5.0]], [[5.0], [0.0]]]])
        >>> d = {"locs": locs, "w": np.array([[[0.3, 0.7], [0.7, 0.3]]])}
        >>> out, _ = relabel(d, ["locs", "w"], key="locs")
        >>> out["w"][0].tolist()
        [[0.3, 0.7], [0.3, 0.7]]
    """
    v = np.asarray(draws[key])
    c, d = v.shape[:2]
    feats = v.reshape((c * d,) + v.shape[2:])
    if transform is not None:
        feats = transform(feats)
    perms = align_labels(feats, reference)
    out = dict(draws)
    for s in sites:
        a = np.asarray(draws[s])
        flat = a.reshape((c * d,) + a.shape[2:])
        idx = perms.reshape(perms.shape + (1,) * (flat.ndim - 2))
        out[s] = np.take_along_axis(flat, idx, 1).reshape(a.shape)
    return out, perms.reshape(c, d, -1)
