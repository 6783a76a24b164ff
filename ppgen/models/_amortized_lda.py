"""Amortised LDA: an encoder for the document-topic posterior; mixture or ProdLDA decoder."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ppgen.models._base import Model
from ppgen.models._lda_utils import as_counts, check_counts, heldout_perplexity, multinomial

__all__ = ["AmortizedLDA"]


def _bn(bn: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
    """Batch norm over every leading dim (documents, and samples when vectorised)."""
    return bn(h.reshape(-1, h.shape[-1])).reshape(h.shape)


def _seed_topics(counts: torch.Tensor, K: int, V: int, max_docs: int = 2000) -> torch.Tensor:
    """Initial topic logits: K documents chosen k-means++-style (far apart), smoothed."""
    x = counts.detach().to(torch.get_default_dtype())
    x = x[torch.randperm(x.shape[0])[:max_docs]]
    x = x / x.sum(-1, keepdim=True).clamp_min(1.0)
    idx = [int(torch.randint(x.shape[0], ()))]
    d2 = ((x - x[idx[0]]) ** 2).sum(-1)
    for _ in range(1, K):
        idx.append(int(torch.multinomial(d2 + 1e-12, 1)))
        d2 = torch.minimum(d2, ((x - x[idx[-1]]) ** 2).sum(-1))
    return (0.5 * x[idx] + 0.5 / V).log()


class AmortizedLDA(Model, nn.Module):
    r"""LDA with an encoder network for the document-topic posterior (ProdLDA-style).

    .. math:: \theta_d \sim \mathrm{Dir}(\alpha 1_K)
              \text{ or } \theta_d = \mathrm{softmax}(\eta_d),\ \eta_d \sim N(\mu_\alpha,
              \mathrm{diag}\,\sigma^2_\alpha),\qquad c_d \sim \mathrm{Mult}(n_d, p_d)

    The logistic-normal prior is the Laplace approximation of :math:`\mathrm{Dir}(\alpha)` in
    the softmax basis. The guide is :math:`q(\theta_d \mid c_d)` from an MLP over the
    normalised bag of words (amortised, so minibatches of documents suffice:
    ``SVI(batch_size=...)``). Two decoders give the word distribution :math:`p_d`:

    * ``decoder="mixture"`` (default): LDA's :math:`p_d = \theta_d^\top\Phi` with Bayesian
      topics :math:`\phi_k \sim \mathrm{Dir}(\beta 1_V)` and a mean-field Dirichlet
      :math:`q(\phi_k)` (Srivastava & Sutton's NVLDA). Topics are comparable with the true
      ones of an LDA corpus. ``topic_init="documents"`` starts :math:`q(\phi)` at
      :math:`K` documents picked k-means++-style (far apart), which avoids the merged topics
      a random start often ends in; ``"random"`` is a small random perturbation.
    * ``decoder="prodlda"``: a product of experts, :math:`p_d =
      \mathrm{softmax}(\mathrm{BN}(\beta^\top \mathrm{dropout}(\theta_d)))` with topic
      weights :math:`\beta \in \mathbb{R}^{K \times V}` learnt as parameters (not latents)
      and, with ``batchnorm=True`` (its default), batch normalisation of the word logits
      and of the encoder outputs, as in ProdLDA. Sharper topics, better perplexity; the
      topics are not LDA's, so :meth:`topic_word` reports each expert's own word
      distribution :math:`\mathrm{softmax}(\mathrm{BN}(\beta_k))`.

    Sites: ``topics`` (mixture only), ``doc_topics`` (Dirichlet) or ``eta`` (logistic
    normal), ``counts``. Summaries put the module in eval mode (no dropout, batch-norm
    running statistics); call ``model.eval()`` before ``fit.log_likelihood`` or
    ``fit.to_arviz`` of a ProdLDA fit for deterministic values.

    References:
        Srivastava & Sutton (2017), Autoencoding variational inference for topic models,
        arXiv:1703.01488.

    Arguments:
        vocab_size, num_topics, hidden: encoder width; dropout; alpha, beta: priors;
        theta: ``"logistic_normal"`` or ``"dirichlet"``; decoder: ``"mixture"`` or
        ``"prodlda"``; batchnorm: ProdLDA's batch norms (default: on for ``"prodlda"``,
        unavailable for ``"mixture"``); topic_init: ``"documents"`` or ``"random"``.

    Example:
        >>> import ppgen
        >>> from ppgen.models.lda import simulate_lda
        >>> counts, _ = simulate_lda(40, 3, 12, doc_length=30, seed=0)
        >>> fit = ppgen.fit(AmortizedLDA(12, 3, hidden=16), {"counts": counts},
        ...                 ppgen.inference.SVI(steps=5, batch_size=20, num_draws=4))
        >>> fit.draws["topics"].shape
        (1, 4, 3, 12)
        >>> prod = AmortizedLDA(12, 3, hidden=16, decoder="prodlda")
        >>> fit = ppgen.fit(prod, {"counts": counts}, ppgen.inference.SVI(steps=5, num_draws=4))
        >>> prod.topic_word(fit).shape, sorted(fit.draws)
        ((3, 12), ['eta'])
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
        decoder: Literal["mixture", "prodlda"] = "mixture",
        batchnorm: bool | None = None,
        topic_init: Literal["documents", "random"] = "documents",
    ):
        nn.Module.__init__(self)
        for name, v in (("vocab_size", vocab_size), ("num_topics", num_topics)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
        for name, v, valid in (
            ("theta", theta, ("logistic_normal", "dirichlet")),
            ("decoder", decoder, ("mixture", "prodlda")),
            ("topic_init", topic_init, ("documents", "random")),
        ):
            if v not in valid:
                raise ValueError(f"`{name}` must be one of {list(valid)}; got {v!r}.")
        if batchnorm is None:
            batchnorm = decoder == "prodlda"
        if batchnorm and decoder == "mixture":
            raise ValueError(
                "`batchnorm=True` needs `decoder='prodlda'`: the mixture decoder's word "
                "probabilities are theta @ topics, with no logits to normalise."
            )
        self.vocab_size, self.num_topics = vocab_size, num_topics
        self.alpha, self.beta, self.theta = alpha, beta, theta
        self.decoder, self.batchnorm, self.topic_init = decoder, bool(batchnorm), topic_init
        out = 2 * num_topics if theta == "logistic_normal" else num_topics
        self.encoder = nn.Sequential(
            nn.Linear(vocab_size, hidden),
            nn.Softplus(),
            nn.Linear(hidden, hidden),
            nn.Softplus(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out),
        )
        self.encoder_bn = nn.BatchNorm1d(out, affine=False) if self.batchnorm else None
        if decoder == "prodlda":
            self.topic_weights = nn.Linear(num_topics, vocab_size, bias=False)
            self.decoder_dropout = nn.Dropout(dropout)
            self.decoder_bn = nn.BatchNorm1d(vocab_size) if self.batchnorm else None
        a = torch.full((num_topics,), float(alpha))
        self.register_buffer("prior_loc", a.log() - a.log().mean())
        self.register_buffer(
            "prior_scale",
            ((1 / a) * (1 - 2 / num_topics) + (1 / a).sum() / num_topics**2).sqrt(),
        )

    # -- program -------------------------------------------------------------------------------
    def model(self, counts: Any) -> Any:
        import pyro
        import pyro.distributions as dist

        check_counts(counts, self.vocab_size)
        pyro.module("amortized_lda", self)
        K, V = self.num_topics, self.vocab_size
        if self.decoder == "prodlda":
            with pyro.plate("document", counts.shape[0]):
                logits = self.decode(self._prior_theta(pyro, dist))
                return pyro.sample("counts", multinomial(counts, logits=logits), obs=counts)
        with pyro.plate("topic", K):
            topics = pyro.sample("topics", dist.Dirichlet(torch.full((V,), float(self.beta))))
        with pyro.plate("document", counts.shape[0]):
            theta = self._prior_theta(pyro, dist)
            return pyro.sample("counts", multinomial(counts, probs=theta @ topics), obs=counts)

    def _prior_theta(self, pyro: Any, dist: Any) -> Any:
        if self.theta == "dirichlet":
            conc = torch.full((self.num_topics,), float(self.alpha))
            return pyro.sample("doc_topics", dist.Dirichlet(conc))
        eta = pyro.sample("eta", dist.Normal(self.prior_loc, self.prior_scale).to_event(1))
        return eta.softmax(-1)

    def decode(self, theta: torch.Tensor) -> torch.Tensor:
        """ProdLDA's word logits for document-topic proportions ``theta`` (..., K)."""
        h = self.topic_weights(self.decoder_dropout(theta))
        return _bn(self.decoder_bn, h) if self.decoder_bn is not None else h

    def encode(self, counts: Any) -> tuple[Any, Any]:
        """Encoder outputs for counts (D, V): (loc, scale) or (concentration, None)."""
        x = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
        h = self.encoder(x)
        if self.encoder_bn is not None:
            h = _bn(self.encoder_bn, h)
        if self.theta == "dirichlet":
            return nn.functional.softplus(h).clamp(1e-3, 1e3) + 1e-3, None
        loc, s = h.chunk(2, -1)
        return loc, nn.functional.softplus(s) + 1e-3

    def guide(self, counts: Any) -> Any:
        import pyro
        import pyro.distributions as dist

        pyro.module("amortized_lda", self)
        K, V = self.num_topics, self.vocab_size
        if self.decoder == "mixture":
            seeded = self.topic_init == "documents"
            logits = pyro.param(
                "topic_logits",
                lambda: _seed_topics(counts, K, V) if seeded else 0.5 * torch.randn(K, V),
            )
            prec0 = float(np.log(100.0 * V if seeded else V))
            log_prec = pyro.param("topic_log_precision", lambda: torch.full((K,), prec0))
            conc = log_prec.exp()[:, None] * logits.softmax(-1) + 1e-4
            with pyro.plate("topic", K):
                pyro.sample("topics", dist.Dirichlet(conc))
        with pyro.plate("document", counts.shape[0]):
            a, b = self.encode(counts)
            if self.theta == "dirichlet":
                pyro.sample("doc_topics", dist.Dirichlet(a))
            else:
                pyro.sample("eta", dist.Normal(a, b).to_event(1))

    # -- summaries -----------------------------------------------------------------------------
    def _evaluating(self, fit: Any) -> Any:
        """Context: the fit's parameters in place, eval mode, no grad (restored after)."""
        import contextlib

        @contextlib.contextmanager
        def ctx() -> Any:
            fit.model_callable()  # the fit's parameters into Pyro's param store
            was = self.training
            self.eval()
            try:
                with torch.no_grad():
                    yield
            finally:
                self.train(was)

        return ctx()

    def topic_word(self, fit: Any) -> np.ndarray:
        """Topic-word matrix ``(K, V)``: the posterior mean topics (mixture decoder) or each
        expert's word distribution, the decoder at a one-topic document (ProdLDA)."""
        if self.decoder == "prodlda":
            with self._evaluating(fit):
                return self.decode(torch.eye(self.num_topics)).softmax(-1).numpy()
        lg = np.asarray(fit.params["topic_logits"], float)
        p = np.exp(lg - lg.max(-1, keepdims=True))
        return p / p.sum(-1, keepdims=True)

    def word_probs(self, fit: Any, doc_topics: np.ndarray) -> np.ndarray:
        """Each document's word distribution ``(D, V)`` given its topic proportions."""
        if self.decoder == "mixture":
            return np.asarray(doc_topics) @ self.topic_word(fit)
        with self._evaluating(fit):
            t = torch.as_tensor(np.asarray(doc_topics), dtype=torch.get_default_dtype())
            return self.decode(t).softmax(-1).numpy()

    def doc_topics(self, fit: Any, counts: Any = None) -> np.ndarray:
        """Encoder mean of :math:`\\theta_d` for ``counts`` (default: the training data)."""
        c = as_counts(fit.data["counts"] if counts is None else counts, self.vocab_size)
        with self._evaluating(fit):
            a, _ = self.encode(torch.as_tensor(c, dtype=torch.get_default_dtype()))
            out = a / a.sum(-1, keepdim=True) if self.theta == "dirichlet" else a.softmax(-1)
        return out.numpy()

    def perplexity(self, fit: Any, counts: Any = None, seed: int = 0) -> float:
        """Training perplexity (``counts=None``) or held-out document-completion perplexity."""
        if counts is None:
            c = np.asarray(fit.data["counts"])
            probs = self.word_probs(fit, self.doc_topics(fit))
            return float(np.exp(-(c * np.log(probs + 1e-30)).sum() / c.sum()))
        return heldout_perplexity(
            lambda theta: self.word_probs(fit, theta),
            as_counts(counts, self.vocab_size),
            lambda c: self.doc_topics(fit, c),
            seed,
        )

    def __repr__(self) -> str:
        return (
            f"AmortizedLDA(vocab_size={self.vocab_size}, num_topics={self.num_topics}, "
            f"theta={self.theta!r}, decoder={self.decoder!r})"
        )
