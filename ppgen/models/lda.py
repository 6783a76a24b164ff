"""Latent Dirichlet allocation: classic (assignments summed out) and amortised (ProdLDA-style)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.errors import DataError
from ppgen.models._base import Model, array, current_backend

__all__ = ["LDA", "AmortizedLDA", "as_counts", "simulate_lda", "heldout_perplexity"]


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


def _check_counts(counts: Any, vocab_size: int) -> None:
    """Named errors for bad counts when they are concrete (skipped under jit tracing)."""
    try:
        c = np.asarray(counts.detach().cpu() if hasattr(counts, "detach") else counts)
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


def _multinomial(probs: Any, counts: Any) -> Any:
    total = counts.sum(-1)
    if current_backend() == "pyro":
        # torch needs one total_count; log_prob uses each row's own sum, so the max is exact
        return dist.Multinomial(int(total.max()), probs=probs)
    return dist.Multinomial(total, probs=probs)


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

    def __init__(self, num_topics: int, vocab_size: int, alpha: float = 0.5, beta: float = 0.1):
        for name, v in (("num_topics", num_topics), ("vocab_size", vocab_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
        self.num_topics, self.vocab_size = num_topics, vocab_size
        self.alpha, self.beta = alpha, beta

    def model(self, counts: Any) -> Any:
        _check_counts(counts, self.vocab_size)
        K, V = self.num_topics, self.vocab_size
        with pyro.plate("topic", K):
            topics = pyro.sample("topics", dist.Dirichlet(array([self.beta] * V, counts)))
        with pyro.plate("document", counts.shape[0]):
            theta = pyro.sample("doc_topics", dist.Dirichlet(array([self.alpha] * K, counts)))
            pyro.sample("counts", _multinomial(theta @ topics, counts), obs=counts)

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


def fold_in(
    topic_word: np.ndarray, counts: np.ndarray, alpha: float, iters: int = 100
) -> np.ndarray:
    r"""MAP document-topic proportions for fixed topics (EM over the summed-out assignments).

    .. math:: \theta_{dk} \propto \alpha - 1 + \sum_v c_{dv}\,
              \frac{\theta_{dk}\phi_{kv}}{\sum_j \theta_{dj}\phi_{jv}}
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
    topic_word: np.ndarray, counts: np.ndarray, doc_topics_fn: Any, seed: int = 0
) -> float:
    r"""Document-completion perplexity: infer :math:`\theta_d` from half of each held-out
    document's tokens, score the other half, :math:`\exp(-\sum \log p(w) / T_{\text{half}})`.

    References:
        Wallach et al. (2009), Evaluation methods for topic models, ICML.
    """
    from ppgen.analysis.metrics import perplexity

    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, np.int64)
    first = rng.binomial(counts, 0.5)
    second = counts - first
    keep = (first.sum(1) > 0) & (second.sum(1) > 0)
    theta = doc_topics_fn(first[keep])
    probs = theta @ np.asarray(topic_word)
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


try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - torch is a core dependency
    nn = None  # type: ignore[assignment]


class AmortizedLDA(Model, nn.Module):  # type: ignore[misc]
    r"""LDA with an encoder network for the document-topic posterior (ProdLDA-style guide).

    .. math:: \phi_k \sim \mathrm{Dir}(\beta 1_V),\; \theta_d \sim \mathrm{Dir}(\alpha 1_K)
              \text{ or } \theta_d = \mathrm{softmax}(\eta_d),\ \eta_d \sim N(\mu_\alpha,
              \mathrm{diag}\,\sigma^2_\alpha),\; c_d \sim \mathrm{Mult}(n_d, \theta_d^\top\Phi)

    The logistic-normal prior is the Laplace approximation of :math:`\mathrm{Dir}(\alpha)` in
    the softmax basis. The guide is :math:`q(\theta_d \mid c_d)` from an MLP over the
    normalised bag of words (amortised, so minibatches of documents suffice:
    ``SVI(batch_size=...)``) and a mean-field Dirichlet :math:`q(\phi_k)`. The decoder is the
    LDA mixture :math:`\theta^\top\Phi` (not ProdLDA's product of experts), so topics are
    comparable with the true ones of an LDA corpus.

    References:
        Srivastava & Sutton (2017), Autoencoding variational inference for topic models,
        arXiv:1703.01488.

    Arguments:
        vocab_size, num_topics, hidden: encoder width; dropout; alpha, beta: priors;
        theta: ``"logistic_normal"`` or ``"dirichlet"``.

    Example:
        >>> import ppgen
        >>> counts, _ = simulate_lda(40, 3, 12, doc_length=30, seed=0)
        >>> fit = ppgen.fit(AmortizedLDA(12, 3, hidden=16), {"counts": counts},
        ...                 ppgen.inference.SVI(steps=5, batch_size=20, num_draws=4))
        >>> fit.draws["topics"].shape
        (1, 4, 3, 12)
    """

    backend = "pyro"

    def __init__(
        self,
        vocab_size: int,
        num_topics: int,
        hidden: int = 100,
        dropout: float = 0.2,
        alpha: float = 0.5,
        beta: float = 0.1,
        theta: Literal["logistic_normal", "dirichlet"] = "logistic_normal",
    ):
        nn.Module.__init__(self)
        if theta not in ("logistic_normal", "dirichlet"):
            raise ValueError(f"`theta` must be 'logistic_normal' or 'dirichlet'; got {theta!r}.")
        self.vocab_size, self.num_topics = vocab_size, num_topics
        self.alpha, self.beta, self.theta = alpha, beta, theta
        out = 2 * num_topics if theta == "logistic_normal" else num_topics
        self.encoder = nn.Sequential(
            nn.Linear(vocab_size, hidden),
            nn.Softplus(),
            nn.Linear(hidden, hidden),
            nn.Softplus(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out),
        )
        a = torch.full((num_topics,), float(alpha))
        self.register_buffer("prior_loc", a.log() - a.log().mean())
        self.register_buffer(
            "prior_scale",
            ((1 / a) * (1 - 2 / num_topics) + (1 / a).sum() / num_topics**2).sqrt(),
        )

    def model(self, counts: Any) -> Any:
        import pyro as tpyro
        import pyro.distributions as tdist

        _check_counts(counts, self.vocab_size)
        tpyro.module("amortized_lda", self)
        K, V = self.num_topics, self.vocab_size
        with tpyro.plate("topic", K):
            topics = tpyro.sample("topics", tdist.Dirichlet(torch.full((V,), float(self.beta))))
        with tpyro.plate("document", counts.shape[0]):
            theta = self._prior_theta(tpyro, tdist, counts)
            tpyro.sample("counts", _multinomial(theta @ topics, counts), obs=counts)

    def _prior_theta(self, tpyro: Any, tdist: Any, counts: Any) -> Any:
        if self.theta == "dirichlet":
            conc = torch.full((self.num_topics,), float(self.alpha))
            return tpyro.sample("doc_topics", tdist.Dirichlet(conc))
        eta = tpyro.sample("eta", tdist.Normal(self.prior_loc, self.prior_scale).to_event(1))
        return eta.softmax(-1)

    def encode(self, counts: Any) -> tuple[Any, Any]:
        """Encoder outputs for counts (D, V): (loc, scale) or (concentration, None)."""
        x = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
        h = self.encoder(x)
        if self.theta == "dirichlet":
            return nn.functional.softplus(h).clamp(1e-3, 1e3) + 1e-3, None
        loc, s = h.chunk(2, -1)
        return loc, nn.functional.softplus(s) + 1e-3

    def guide(self, counts: Any) -> Any:
        import pyro as tpyro
        import pyro.distributions as tdist

        tpyro.module("amortized_lda", self)
        K, V = self.num_topics, self.vocab_size
        logits = tpyro.param("topic_logits", lambda: 0.5 * torch.randn(K, V))
        log_prec = tpyro.param("topic_log_precision", lambda: torch.full((K,), float(np.log(V))))
        conc = log_prec.exp()[:, None] * logits.softmax(-1) + 1e-4
        with tpyro.plate("topic", K):
            tpyro.sample("topics", tdist.Dirichlet(conc))
        with tpyro.plate("document", counts.shape[0]):
            a, b = self.encode(counts)
            if self.theta == "dirichlet":
                tpyro.sample("doc_topics", tdist.Dirichlet(a))
            else:
                tpyro.sample("eta", tdist.Normal(a, b).to_event(1))

    # -- summaries -----------------------------------------------------------------------------
    def topic_word(self, fit: Any) -> np.ndarray:
        """Posterior mean topics from the fitted Dirichlet guide, ``(K, V)``."""
        lg = np.asarray(fit.params["topic_logits"], float)
        p = np.exp(lg - lg.max(-1, keepdims=True))
        return p / p.sum(-1, keepdims=True)

    def doc_topics(self, fit: Any, counts: Any = None) -> np.ndarray:
        """Encoder mean of :math:`\\theta_d` for ``counts`` (default: the training data)."""
        c = as_counts(fit.data["counts"] if counts is None else counts, self.vocab_size)
        if fit.param_state is not None:
            from ppgen.inference._pyro import activate_params

            activate_params(fit.param_state)
        was = self.training
        self.eval()
        with torch.no_grad():
            a, _ = self.encode(torch.as_tensor(c, dtype=torch.get_default_dtype()))
            out = a / a.sum(-1, keepdim=True) if self.theta == "dirichlet" else a.softmax(-1)
        self.train(was)
        return out.numpy()

    def perplexity(self, fit: Any, counts: Any = None, seed: int = 0) -> float:
        """Training perplexity (``counts=None``) or held-out document-completion perplexity."""
        phi = self.topic_word(fit)
        if counts is None:
            c = np.asarray(fit.data["counts"])
            probs = self.doc_topics(fit) @ phi
            return float(np.exp(-(c * np.log(probs + 1e-30)).sum() / c.sum()))
        return heldout_perplexity(
            phi, as_counts(counts, self.vocab_size), lambda c: self.doc_topics(fit, c), seed
        )

    def __repr__(self) -> str:
        return (
            f"AmortizedLDA(vocab_size={self.vocab_size}, num_topics={self.num_topics}, "
            f"theta={self.theta!r})"
        )
