"""Latent Dirichlet allocation: classic (assignments summed out) and amortised (ProdLDA-style)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.models._amortized_lda import AmortizedLDA
from ppgen.models._base import Model, array
from ppgen.models._cli import CLISpec
from ppgen.models._lda_utils import (
    as_counts,
    check_counts,
    fold_in,
    heldout_perplexity,
    multinomial,
    simulate_lda,
)

__all__ = [
    "LDA",
    "AmortizedLDA",
    "as_counts",
    "fold_in",
    "simulate_lda",
    "heldout_perplexity",
]


class LDA(Model):
    r"""Latent Dirichlet allocation with the token-topic assignments summed out.

    .. math:: \phi_k \sim \mathrm{Dir}(\beta 1_V),\; \theta_d \sim \mathrm{Dir}(\alpha 1_K),\;
              z_{dn} \sim \mathrm{Cat}(\theta_d),\; w_{dn} \sim \mathrm{Cat}(\phi_{z_{dn}})

    Summing out :math:`z_{dn}` (what enumeration would do, but without a per-token
    enumeration dim) gives :math:`p(w_{dn} = v) = \sum_k \theta_{dk}\phi_{kv}`, so each
    document's counts are :math:`c_d \sim \mathrm{Mult}(n_d, \theta_d^\top\Phi)`. Only the
    continuous :math:`\theta, \Phi` remain: fit by NUTS (tiny corpora) or mean-field SVI.

    References:
        Blei, Ng & Jordan (2003), Latent Dirichlet allocation, JMLR 3.

    Arguments:
        num_topics: K; vocab_size: V; alpha, beta: symmetric Dirichlet concentrations.

    Data: ``counts`` (D, V) integer word counts (:func:`as_counts` turns a ``BagOfWords`` or
    ``TokenSequences`` into it). Sites: ``topics`` (K, V), ``doc_topics`` (D, K), ``counts``.

    Example:
        >>> import ppgen
        >>> counts, truth = simulate_lda(20, 3, 10, doc_length=30, seed=0)
        >>> fit = ppgen.fit(LDA(3, 10), {"counts": counts},
        ...                 ppgen.inference.SVI(steps=20, num_draws=10))
        >>> fit.draws["topics"].shape
        (1, 10, 3, 10)
    """

    cli = (
        CLISpec(
            "lda",
            "topic",
            "four_topics",
            "svi",
            {"num_topics": int, "alpha": float, "beta": float},
            fixed={"num_topics": 4},
            sizes={"vocab_size": ("counts", 1)},
            description="LDA (assignments summed out) on word counts",
        ),
    )

    def __init__(self, num_topics: int, vocab_size: int, alpha: float = 0.5, beta: float = 0.1):
        for name, v in (("num_topics", num_topics), ("vocab_size", vocab_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
        self.num_topics, self.vocab_size = num_topics, vocab_size
        self.alpha, self.beta = alpha, beta

    def model(self, counts: Any) -> Any:
        check_counts(counts, self.vocab_size)
        K, V = self.num_topics, self.vocab_size
        with pyro.plate("topic", K):
            topics = pyro.sample("topics", dist.Dirichlet(array([self.beta] * V, counts)))
        with pyro.plate("document", counts.shape[0]):
            theta = pyro.sample("doc_topics", dist.Dirichlet(array([self.alpha] * K, counts)))
            pyro.sample("counts", multinomial(counts, probs=theta @ topics), obs=counts)

    # -- summaries -----------------------------------------------------------------------------
    def topic_word(self, fit: Any) -> np.ndarray:
        """Posterior mean topic-word matrix, ``(K, V)`` (one chain's labels; see relabel)."""
        return (
            np.asarray(fit.draws["topics"]).reshape((-1, self.num_topics, self.vocab_size)).mean(0)
        )

    def doc_topics(self, fit: Any, counts: Any = None, iters: int = 100) -> np.ndarray:
        """Document-topic proportions ``(D, K)``: posterior mean, or folded in for new counts."""
        if counts is None:
            return (
                np.asarray(fit.draws["doc_topics"])
                .reshape((-1,) + fit.draws["doc_topics"].shape[2:])
                .mean(0)
            )
        return fold_in(self.topic_word(fit), as_counts(counts, self.vocab_size), self.alpha, iters)

    def perplexity(self, fit: Any, counts: Any = None, seed: int = 0) -> float:
        """Training perplexity (``counts=None``) or held-out document-completion perplexity."""
        if counts is None:
            c = np.asarray(fit.data["counts"])
            probs = self.doc_topics(fit) @ self.topic_word(fit)
            return float(np.exp(-(c * np.log(probs + 1e-30)).sum() / c.sum()))
        return heldout_perplexity(
            self.topic_word(fit),
            as_counts(counts, self.vocab_size),
            lambda c: fold_in(self.topic_word(fit), c, self.alpha),
            seed,
        )

    def evaluate_metrics(self, fit: Any, data: Any = None) -> dict[str, float]:
        """``perplexity`` per word: on the training counts (``data=None``), or held-out
        document completion on ``data["counts"]`` (:meth:`perplexity`): the capability
        :func:`ppgen.evaluate` reads."""
        return {"perplexity": self.perplexity(fit, None if data is None else data["counts"])}

    def to_arviz(self, fit: Any, **kw: Any) -> Any:
        """``fit.to_arviz`` with ``topic``, ``vocab`` and ``document`` dims."""
        import xarray as xr

        idata = fit.to_arviz(**kw)
        names = {"topics_dim_1": "vocab", "doc_topics_dim_1": "topic", "counts_dim_1": "vocab"}
        for g in idata.groups():
            ds = idata[g]
            vs = {
                v: ds[v].rename({k: n for k, n in names.items() if k in ds[v].dims})
                for v in ds.data_vars
            }
            idata[g] = xr.Dataset(vs, attrs=ds.attrs)
        return idata
