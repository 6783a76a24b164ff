"""Bayesian n-gram language model with a hierarchical Dirichlet backoff prior."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from scipy.optimize import minimize_scalar

from ppgen.data.text import BOS, EOS, UNK, Tokenizer, TokenSequences
from ppgen.models._cli import CLISpec
from ppgen.models._ngram_counts import NGramCounts, positions
from ppgen.models._ngram_data import TokensLike, context_ids, to_sequences

if TYPE_CHECKING:
    from ppgen.capabilities import ExactPosterior
    from ppgen.result import Fit

__all__ = ["NGramLM"]

_LOG_ALPHA_BOUNDS = (np.log(1e-4), np.log(1e8))


class NGramLM:
    r"""Bayesian n-gram language model with a hierarchical Dirichlet backoff prior.

    The next-token distribution of a context :math:`u` of length :math:`n-1` is drawn
    around that of its parent :math:`\pi(u)`, the context without its oldest token:

    .. math:: \theta_\emptyset \sim \mathrm{Dir}(\alpha_0 / V \cdot \mathbf{1}), \quad
        \theta_u \sim \mathrm{Dir}(\alpha_{|u|}\, \theta_{\pi(u)}), \quad
        x_t \mid x_{t-n+1:t-1} = u \sim \mathrm{Cat}(\theta_u).

    Given counts :math:`c(u, w)` the posterior predictive is computed recursively,

    .. math:: p(w \mid u) = \frac{c(u, w) + \alpha_{|u|}\, p(w \mid \pi(u))}
        {c(u, \cdot) + \alpha_{|u|}}, \qquad
        p(w \mid \emptyset) = \frac{c(w) + \alpha_0 / V}{N + \alpha_0},

    which is exact for the unigram and, above it, plugs the parent's posterior mean in as
    the child's base measure instead of integrating over the parent (MacKay & Peto's
    approximation). An unseen context predicts with its parent. Each context of order
    :math:`k` is counted at every position with :math:`k` preceding tokens in its document;
    a position with fewer uses its longest available context.

    The concentrations are learnt level by level, bottom up: :math:`\alpha_k` maximises the
    Dirichlet-multinomial evidence of the order-:math:`k` counts given the fitted levels
    below (type-II maximum likelihood, or MAP under ``prior``),

    .. math:: \log p(c_k \mid \alpha_k) = \sum_u \Big[\log\Gamma(\alpha_k)
        - \log\Gamma(\alpha_k + c(u,\cdot)) + \sum_w \log\Gamma(c(u,w) + \alpha_k m_{uw})
        - \log\Gamma(\alpha_k m_{uw})\Big], \quad m_{uw} = p(w \mid \pi(u)).

    Counts are stored per order as sorted ``int64`` keys (a trie: a context's key is its
    parent's id times :math:`V` plus its oldest token), so memory grows with the number of
    distinct contexts and n-grams, never with :math:`V^n`.

    Through :func:`ppgen.fit` the model is the program :meth:`model` over the concentrations
    (:math:`\theta_u` integrated out), with data ``{"tokens": ...}``: ``method="exact"``
    (alias ``"conjugate"``) counts and learns :math:`\alpha` as :meth:`fit` does and returns
    the closed-form posterior (:meth:`exact_posterior`); ``"map"`` and ``"svi"`` fit
    :math:`\alpha_k` under a Gamma prior. :meth:`from_fit` turns any such fit back into a
    language model (its posterior predictive). The program builds dense count matrices, so it
    is meant for small models; :meth:`fit` is sparse and scales to millions of tokens.

    References:
        D. J. C. MacKay & L. C. Bauman Peto, "A hierarchical Dirichlet language model",
        Natural Language Engineering 1(3), 1995.
        Y. W. Teh, "A hierarchical Bayesian language model based on Pitman-Yor
        processes", ACL 2006.

    Arguments:
        order: :math:`n`, the context has :math:`n - 1` tokens (1 is a unigram model).
        level: Tokenizer level used when :meth:`fit` receives text.
        concentration: :math:`\alpha_k`, one value or one per order; the starting point
            of learning, or the fixed values when ``learn_concentration=False``.
        learn_concentration: Whether :meth:`fit` maximises the evidence over
            :math:`\alpha`.
        prior: ``(shape, rate)`` of a Gamma prior on each :math:`\alpha_k` (MAP in
            :math:`\alpha`); ``None`` for type-II maximum likelihood.
        min_count: Passed to :meth:`Tokenizer.from_text` when a tokenizer is built.
        tokenizer: A tokenizer to use for text instead of building one in :meth:`fit`.

    Example:
        >>> lm = NGramLM(order=3, level="char").fit("abracadabra " * 20)
        >>> lm.num_contexts
        [1, 6, 9]
        >>> bool(lm.perplexity("abracadabra") < 2.0)
        True
        >>> len(lm.sample(5, prompt="abra", rng=np.random.default_rng(0)))
        5
        >>> import ppgen
        >>> fit = ppgen.fit(NGramLM(order=2), {"tokens": "abracadabra " * 5}, method="exact")
        >>> lm2 = NGramLM.from_fit(fit)
        >>> bool(np.allclose(lm2.predictive("a"), fit.program.obj.predictive("a")))
        True
    """

    cli = (
        CLISpec(
            "ngram",
            "n-gram",
            "four_topics_text",
            "exact",
            {"order": int, "level": str},
            description="Bayesian n-gram language model (Dirichlet backoff) on text",
        ),
    )

    backend: ClassVar[str] = "pyro"

    def __init__(
        self,
        order: int = 3,
        level: Literal["char", "word"] = "char",
        *,
        concentration: float | Sequence[float] = 1.0,
        learn_concentration: bool = True,
        prior: tuple[float, float] | None = None,
        min_count: int = 1,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"`order` must be an int >= 1, got {order!r}.")
        alpha = np.broadcast_to(np.asarray(concentration, dtype=np.float64), (order,)).copy()
        if not np.all(np.isfinite(alpha) & (alpha > 0)):
            raise ValueError(f"`concentration` must be finite and > 0, got {concentration!r}.")
        if prior is not None and not (len(prior) == 2 and min(prior) > 0):
            raise ValueError(f"`prior` must be (shape > 0, rate > 0) or None, got {prior!r}.")
        self.order, self.level, self.prior, self.min_count = order, level, prior, min_count
        self.concentration = alpha
        self.learn_concentration = learn_concentration
        self.tokenizer = tokenizer
        self.vocab_size = 0
        self._table: NGramCounts | None = None
        self._program_cache: tuple | None = None

    # -- data ---------------------------------------------------------------------------------

    def _sequences(
        self, tokens: TokensLike, site: str, vocab_size: int | None = None
    ) -> TokenSequences:
        """`tokens` as validated :class:`TokenSequences`, encoding text with the tokenizer."""
        return to_sequences(self, tokens, site, vocab_size)

    def _check_fitted(self) -> NGramCounts:
        if not self.vocab_size or self._table is None:
            raise RuntimeError("the model is not fitted; call `fit(tokens)` first.")
        return self._table

    def _bos_id(self, vocab_size: int) -> int | None:
        """The id of ``<bos>`` when the tokenizer defines this vocabulary and has one."""
        tok = self.tokenizer
        if tok is None or not tok.bos or vocab_size != len(tok):
            return None
        return tok.vocab.index(BOS)

    def _scored(self, x: np.ndarray) -> np.ndarray:
        bos = self._bos_id(self.vocab_size)
        return np.ones(x.size, bool) if bos is None else x != bos

    # -- counting -----------------------------------------------------------------------------

    def fit(self, tokens: TokensLike, vocab_size: int | None = None) -> NGramLM:
        """Count the n-grams of `tokens` and learn the concentrations.

        Arguments:
            tokens: Text, documents, an id array, a list of id arrays or
                :class:`~ppgen.data.text.TokenSequences`.
            vocab_size: Number of ids, when `tokens` are ids (default: max id + 1).

        Returns:
            The fitted model (``self``).
        """
        self.vocab_size, self._table = 0, None
        seqs = self._sequences(tokens, "tokens", vocab_size)
        if not len(seqs):
            raise ValueError("`tokens` is empty; the model needs at least one document.")
        self.vocab_size = seqs.vocab_size
        self._table = NGramCounts.from_docs(
            seqs.sequences, self.order, self.vocab_size, self._bos_id(self.vocab_size)
        )
        if self.learn_concentration:
            for k in range(self.order):
                self.concentration[k] = self._maximise(k)
        return self

    @property
    def num_contexts(self) -> list[int]:
        """Number of distinct stored contexts per order (``[1, ...]``, order 0 first)."""
        return self._check_fitted().num_contexts

    @property
    def num_ngrams(self) -> list[int]:
        """Number of distinct stored (context, next token) pairs per order."""
        return self._check_fitted().num_ngrams

    @property
    def nbytes(self) -> int:
        """Memory held by the count tables, in bytes."""
        return self._check_fitted().nbytes

    # -- prediction ---------------------------------------------------------------------------

    def pointwise_log_prob(self, tokens: TokensLike) -> np.ndarray:
        r"""Posterior predictive log-probability of each token given its preceding ones.

        Arguments:
            tokens: Text (encoded with the model's tokenizer), ids or documents.

        Returns:
            :math:`\log p(x_t \mid x_{t-n+1:t-1})` per token (``<bos>`` excepted),
            documents concatenated.

        Example:
            >>> lm = NGramLM(order=2, concentration=1.0, learn_concentration=False)
            >>> lm.fit(np.array([0, 1, 0, 1]), vocab_size=2).pointwise_log_prob([0, 1]).round(3)
            array([-0.693, -0.182])
        """
        table = self._check_fitted()
        x, pos = positions(self._sequences(tokens, "tokens").sequences)
        p = table.mix(table.lookup(x, pos), x, self.concentration, self.order - 1)
        return np.log(p[self._scored(x)])

    def log_prob(self, tokens: TokensLike) -> float:
        """Total log-probability of `tokens`, the sum of :meth:`pointwise_log_prob`."""
        return float(self.pointwise_log_prob(tokens).sum())

    def perplexity(self, tokens: TokensLike) -> float:
        """Perplexity :math:`\\exp(-\\frac{1}{T}\\sum_t \\log p(x_t \\mid \\cdot))` of `tokens`."""
        return float(np.exp(-self.pointwise_log_prob(tokens).mean()))

    def predictive(self, context: str | Sequence[int] | np.ndarray = ()) -> np.ndarray:
        """Next-token distribution :math:`p(\\cdot \\mid u)` after `context`, shape ``(V,)``.

        Only the last ``order - 1`` tokens of `context` matter; text is encoded without
        ``<bos>``/``<eos>``.
        """
        table = self._check_fitted()
        return table.predictive(context_ids(self, context), self.concentration)

    def sample(
        self,
        n_tokens: int,
        prompt: str | Sequence[int] | np.ndarray = (),
        temperature: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> str | np.ndarray:
        r"""Generate a continuation of `prompt` from the posterior predictive.

        Each token is drawn from :math:`p(w \mid u)^{1/T}` renormalised (``T = 0`` is
        greedy). ``<unk>`` and ``<bos>`` are never drawn; ``<eos>`` ends the text early.

        Arguments:
            n_tokens: Number of tokens to generate.
            prompt: Text or ids to continue (a model with ``<bos>`` starts from it).
            temperature: :math:`T \ge 0`.
            rng: Source of randomness.

        Returns:
            The continuation, as text for a model fitted on text, else as ids.
        """
        self._check_fitted()
        if temperature < 0:
            raise ValueError(f"`temperature` must be >= 0, got {temperature}.")
        rng = np.random.default_rng() if rng is None else rng
        tok, history = self.tokenizer, list(context_ids(self, prompt))
        banned, stop = [], -1
        if tok is not None:
            banned = [tok.vocab.index(s) for s in (UNK, BOS) if s in tok.vocab]
            stop = tok.vocab.index(EOS) if tok.eos else -1
            if tok.bos:
                history.insert(0, tok.vocab.index(BOS))
        out: list[int] = []
        for _ in range(n_tokens):
            logp = np.log(self.predictive(history[max(0, len(history) - self.order + 1) :]))
            logp[banned] = -np.inf
            if temperature == 0:
                w = int(np.argmax(logp))
            else:
                q = np.exp((logp - logp.max()) / temperature)
                w = int(np.searchsorted(np.cumsum(q), rng.random() * q.sum(), side="right"))
                w = min(w, self.vocab_size - 1)
            if w == stop:
                break
            out.append(w)
            history.append(w)
        ids = np.array(out, dtype=np.int64)
        return tok.decode(ids) if tok is not None else ids

    # -- concentrations -----------------------------------------------------------------------

    def log_evidence(self, concentration: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        r"""Dirichlet-multinomial log evidence of each order's counts, shape ``(order,)``.

        Entry :math:`k` is :math:`\log p(c_k \mid \alpha_k)` with base measure
        :math:`p(w \mid \pi(u))` computed from :math:`\alpha_{<k}`; :meth:`fit` maximises
        entry :math:`k` over :math:`\alpha_k` (plus the log prior) with :math:`\alpha_{<k}`
        fixed at their fitted values.

        Arguments:
            concentration: :math:`\alpha` (default: the fitted values).

        Returns:
            The log evidence per order, in nats.

        Example:
            >>> lm = NGramLM(order=2).fit("abracadabra " * 5)
            >>> best, moved = lm.log_evidence(), lm.log_evidence(lm.concentration * [1, 2])
            >>> bool(best[1] > moved[1])
            True
        """
        table = self._check_fitted()
        alpha = self.concentration if concentration is None else np.asarray(concentration, float)
        return table.log_evidence(alpha)

    def _maximise(self, k: int) -> float:
        table = self._check_fitted()
        if not table.ev_key[k].size:  # no n-gram of this order: nothing to learn from
            return float(self.concentration[k])
        stats = table.evidence_terms(k, self.concentration)
        shape, rate = self.prior if self.prior is not None else (1.0, 0.0)

        def loss(log_a: float) -> float:
            a = float(np.exp(log_a))
            return -table.dirmult(a, *stats) - (shape - 1.0) * log_a + rate * a

        res = minimize_scalar(
            loss, bounds=_LOG_ALPHA_BOUNDS, method="bounded", options={"xatol": 1e-6}
        )
        return float(np.exp(res.x))

    # -- Pyro program and ppgen.fit -----------------------------------------------------------

    def dense_counts(self, max_entries: int = 10_000_000) -> dict[str, np.ndarray]:
        """Counts as dense ``(num_contexts_k, V)`` matrices keyed ``counts_k`` (small models)."""
        table = self._check_fitted()
        return {f"counts_{k}": table.dense(k, max_entries) for k in range(self.order)}

    def model(self, tokens: Any = None, vocab_size: int | None = None, **counts: Any) -> None:
        r"""Pyro program over the concentrations, for small models.

        :math:`\alpha_k \sim \mathrm{Gamma}(a, b)` (``prior``, default ``(1, 1e-3)``) and the
        counts of each order-:math:`k` context ``counts_k[u] ~
        DirichletMultinomial(alpha_k * p(. | parent(u)))``, with the parent's posterior
        mean plugged in as in :meth:`log_evidence`. Data: ``tokens`` (one text, an id array
        whose rows are documents, or :class:`~ppgen.data.text.TokenSequences` for several
        documents, e.g. ``token_sequences(docs, tokenizer)``; ``vocab_size`` for ids), counted
        here, or a fitted model's ``**lm.dense_counts()``.

        Example:
            >>> import torch
            >>> from pyro import poutine
            >>> lm = NGramLM(order=2).fit("abab")
            >>> data = {k: torch.as_tensor(v) for k, v in lm.dense_counts().items()}
            >>> trace = poutine.trace(lm.model).get_trace(**data)
            >>> trace.observation_nodes, [n for n in trace.nodes if n.startswith("alpha")]
            (['counts_0', 'counts_1'], ['alpha_0', 'alpha_1'])
        """
        from ppgen.models._ngram_program import ngram_model

        ngram_model(self, tokens, vocab_size, counts)

    def exact_posterior(
        self, tokens: Any = None, vocab_size: int | None = None, **counts: Any
    ) -> ExactPosterior:
        r"""The closed-form posterior that ``ppgen.fit(..., method="exact")`` returns.

        Counts ``tokens`` and learns :math:`\alpha` as :meth:`fit` does (type-II maximum
        likelihood, or MAP under ``prior``; fixed when ``learn_concentration=False``). Given
        :math:`\alpha` the posterior of every context's next-token distribution is the
        conjugate :math:`\mathrm{Dir}(c(u, \cdot) + \alpha_{|u|}\, p(\cdot \mid \pi(u)))`,
        whose mean is :meth:`predictive`; the draws of the program's ``alpha_k`` are a point
        mass at the learnt values (empirical Bayes: their posterior has no closed form). The
        fit's ``params`` hold ``concentration`` and the count tables (``ngram_*``), all that
        :meth:`from_fit` needs.
        """
        from ppgen.models._ngram_program import exact_posterior

        return exact_posterior(self, tokens, vocab_size, counts)

    @classmethod
    def from_fit(cls, fit: Fit) -> NGramLM:
        r"""The language model (posterior predictive) of a ``ppgen.fit`` of an NGramLM.

        :math:`\alpha_k` is the posterior mean of the fit's ``alpha_k`` draws (the learnt
        value for ``"exact"``, the MAP for ``"map"``); the counts are the fit's (stored in an
        exact fit's ``params``, else counted again from its data). The result's
        :meth:`predictive` is the closed-form smoothed counts under that :math:`\alpha`.
        """
        from ppgen.models._ngram_program import from_fit

        return from_fit(cls, fit)

    def evaluate_metrics(self, fit: Fit, data: Mapping[str, Any] | None) -> dict[str, float]:
        """``perplexity`` and ``bits_per_token`` of the fit's language model (:meth:`from_fit`)
        on ``data["tokens"]`` (held out) or, with ``data=None``, on its training tokens: the
        capability :func:`ppgen.evaluate` reads (``ppgen evaluate RUN --data FILE``).

        Example:
            >>> import ppgen
            >>> fit = ppgen.fit(NGramLM(2), {"tokens": "abracadabra " * 5}, "exact")
            >>> m = NGramLM(2).evaluate_metrics(fit, {"tokens": "abracadabra"})
            >>> round(m["perplexity"], 3) == round(2 ** m["bits_per_token"], 3)
            True
        """
        tokens = (fit.data if data is None else data)["tokens"]
        tokens = tokens.item() if isinstance(tokens, np.ndarray) and tokens.ndim == 0 else tokens
        logp = type(self).from_fit(fit).pointwise_log_prob(tokens)
        nats = float(-np.mean(logp))
        return {"perplexity": float(np.exp(nats)), "bits_per_token": nats / float(np.log(2))}

    def sample_text(self, fit: Fit, n: int, seed: int = 0, length: int = 200) -> list[str]:
        """``n`` texts of up to ``length`` tokens from the language model of ``fit``
        (:meth:`from_fit`), seeded: what ``ppgen sample RUN --out FILE.txt`` writes. Ids of a
        model fitted on ids are written as space-separated numbers.

        Example:
            >>> import ppgen
            >>> fit = ppgen.fit(NGramLM(2), {"tokens": "abracadabra " * 5}, "exact")
            >>> texts = NGramLM(2).sample_text(fit, 2, seed=0, length=12)
            >>> len(texts), all(set(t) <= set("abcdr ") for t in texts)
            (2, True)
        """
        lm = type(self).from_fit(fit)
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(int(n)):
            text = lm.sample(int(length), rng=rng)
            out.append(text if isinstance(text, str) else " ".join(map(str, text.tolist())))
        return out

    def __repr__(self) -> str:
        alpha = np.array2string(self.concentration, precision=3)
        return f"NGramLM(order={self.order}, vocab_size={self.vocab_size}, concentration={alpha})"
