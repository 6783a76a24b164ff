"""Bayesian n-gram language model with a hierarchical Dirichlet backoff prior."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import gammaln

from ppgen.data.text import BOS, EOS, UNK, Tokenizer, TokenSequences

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["NGramLM"]

TokensLike = str | Sequence[str] | np.ndarray | Sequence[np.ndarray] | TokenSequences
_LOG_ALPHA_BOUNDS = (np.log(1e-4), np.log(1e8))
_SMALL_COUNT = 8


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
    """

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

    # -- data ---------------------------------------------------------------------------------

    def _sequences(
        self, tokens: TokensLike, site: str, vocab_size: int | None = None
    ) -> TokenSequences:
        """`tokens` as validated :class:`TokenSequences`, encoding text with the tokenizer."""
        if isinstance(tokens, str) or (
            isinstance(tokens, list | tuple) and tokens and all(isinstance(t, str) for t in tokens)
        ):
            docs = [tokens] if isinstance(tokens, str) else list(tokens)
            if self.tokenizer is None:
                self.tokenizer = Tokenizer.from_text(docs, self.level, self.min_count)
            seqs = TokenSequences([self.tokenizer.encode(d) for d in docs], len(self.tokenizer))
        elif isinstance(tokens, TokenSequences):
            seqs = tokens
        else:
            if isinstance(tokens, np.ndarray):
                docs = [tokens] if tokens.ndim <= 1 else list(tokens)
            else:
                docs = list(tokens)
                docs = [np.asarray(docs)] if all(np.ndim(t) == 0 for t in docs) else docs
            sizes = [np.max(d) for d in docs if np.size(d)]
            size = vocab_size or self.vocab_size or (int(max(sizes)) + 1 if sizes else 1)
            seqs = TokenSequences(docs, size)
        if self.vocab_size and seqs.vocab_size != self.vocab_size:
            raise ValueError(
                f"`{site}` has a vocabulary of {seqs.vocab_size} ids but the model was fitted "
                f"with {self.vocab_size}; encode it with the model's tokenizer."
            )
        return seqs.validate(site)

    def _check_fitted(self) -> None:
        if not self.vocab_size:
            raise RuntimeError("the model is not fitted; call `fit(tokens)` first.")

    @staticmethod
    def _positions(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All tokens concatenated, and each token's position in its document."""
        lengths = np.array([d.size for d in docs], dtype=np.int64)
        x = np.concatenate(docs) if docs else np.zeros(0, np.int64)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        return x, np.arange(x.size, dtype=np.int64) - starts

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
        self.vocab_size = 0
        seqs = self._sequences(tokens, "tokens", vocab_size)
        if not len(seqs):
            raise ValueError("`tokens` is empty; the model needs at least one document.")
        self.vocab_size = V = seqs.vocab_size
        x, pos = self._positions(seqs.sequences)
        scored = self._scored(x)  # <bos> is context only, never a predicted token
        self._ctx_key = [np.zeros(1, np.int64)]
        self._ev_key, self._ev_count = [], []
        self._total = [np.array([scored.sum()], np.int64)]
        self._add_events(np.zeros(int(scored.sum()), np.int64), x[scored])
        ctx = np.zeros(x.size, np.int64)
        for k in range(1, self.order):
            idx = np.flatnonzero(pos >= k)
            keys, ctx_k = np.unique(ctx[idx] * V + x[idx - k], return_inverse=True)
            keep = scored[idx]
            self._ctx_key.append(keys)
            self._total.append(np.bincount(ctx_k[keep], minlength=keys.size).astype(np.int64))
            self._add_events(ctx_k[keep], x[idx[keep]])
            ctx = np.full(x.size, -1, np.int64)
            ctx[idx] = ctx_k
        if self.learn_concentration:
            for k in range(self.order):
                self.concentration[k] = self._maximise(k)
        return self

    def _scored(self, x: np.ndarray) -> np.ndarray:
        if (
            self.tokenizer is None
            or not self.tokenizer.bos
            or self.vocab_size != len(self.tokenizer)
        ):
            return np.ones(x.size, bool)
        return x != self.tokenizer.vocab.index(BOS)

    def _add_events(self, ctx: np.ndarray, w: np.ndarray) -> None:
        keys, counts = np.unique(ctx * self.vocab_size + w, return_counts=True)
        self._ev_key.append(keys)
        self._ev_count.append(counts.astype(np.int64))

    @property
    def num_contexts(self) -> list[int]:
        """Number of distinct stored contexts per order (``[1, ...]``, order 0 first)."""
        self._check_fitted()
        return [k.size for k in self._ctx_key]

    @property
    def num_ngrams(self) -> list[int]:
        """Number of distinct stored (context, next token) pairs per order."""
        self._check_fitted()
        return [k.size for k in self._ev_key]

    @property
    def nbytes(self) -> int:
        """Memory held by the count tables, in bytes."""
        self._check_fitted()
        arrays = self._ctx_key + self._ev_key + self._ev_count + self._total
        return int(sum(a.nbytes for a in arrays))

    # -- prediction ---------------------------------------------------------------------------

    @staticmethod
    def _find(keys: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of each `key` in the sorted `keys`, and whether it is there."""
        if not keys.size:
            return np.zeros(key.shape, np.int64), np.zeros(key.shape, bool)
        j = np.minimum(np.searchsorted(keys, key), keys.size - 1)
        return j, keys[j] == key

    def _count(self, k: int, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """c(u, w) at order k for context ids `u` (all seen) and tokens `w`."""
        j, found = self._find(self._ev_key[k], u * self.vocab_size + w)
        return np.where(found, self._ev_count[k][j] if j.size else 0, 0)

    def _mix(
        self, ctx: list[np.ndarray], w: np.ndarray, alpha: np.ndarray, upto: int
    ) -> np.ndarray:
        """p(w | u) for context ids ``ctx[k]`` per order (-1: unseen), orders 0..upto."""
        V, a0 = self.vocab_size, alpha[0]
        p = (self._count(0, np.zeros_like(w), w) + a0 / V) / (self._total[0][0] + a0)
        for k in range(1, upto + 1):
            seen = np.flatnonzero(ctx[k] >= 0)
            u = ctx[k][seen]
            c = self._count(k, u, w[seen])
            p[seen] = (c + alpha[k] * p[seen]) / (self._total[k][u] + alpha[k])
        return p

    def _lookup(self, x: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
        """Context id of every position per order (-1 where unseen or too close to the start)."""
        ctx = [np.zeros(x.size, np.int64)]
        for k in range(1, self.order):
            out = np.full(x.size, -1, np.int64)
            idx = np.flatnonzero((pos >= k) & (ctx[-1] >= 0))
            j, found = self._find(self._ctx_key[k], ctx[-1][idx] * self.vocab_size + x[idx - k])
            out[idx[found]] = j[found]
            ctx.append(out)
        return ctx

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
        self._check_fitted()
        x, pos = self._positions(self._sequences(tokens, "tokens").sequences)
        p = self._mix(self._lookup(x, pos), x, self.concentration, self.order - 1)
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
        self._check_fitted()
        ids = self._ids(context)
        V, alpha = self.vocab_size, self.concentration
        p = np.zeros(V)
        lo, hi = np.searchsorted(self._ev_key[0], [0, V])
        p[self._ev_key[0][lo:hi]] = self._ev_count[0][lo:hi]
        p = (p + alpha[0] / V) / (self._total[0][0] + alpha[0])
        u = 0
        for k in range(1, min(ids.size, self.order - 1) + 1):
            keys, key = self._ctx_key[k], u * V + ids[-k]
            u = int(np.searchsorted(keys, key))
            if u == keys.size or keys[u] != key:
                break
            lo, hi = np.searchsorted(self._ev_key[k], [u * V, (u + 1) * V])
            c = np.zeros(V)
            c[self._ev_key[k][lo:hi] - u * V] = self._ev_count[k][lo:hi]
            p = (c + alpha[k] * p) / (self._total[k][u] + alpha[k])
        return p

    def _ids(self, context: str | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(context, str):
            if self.tokenizer is None:
                raise ValueError("a text `prompt`/`context` needs a model fitted on text.")
            return self.tokenizer.encode(context, add_special=False)
        ids = np.asarray(context).ravel()
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"`context` must be text or integer ids, got dtype {ids.dtype}.")
        ids = ids.astype(np.int64)
        if np.any((ids < 0) | (ids >= self.vocab_size)):
            raise ValueError(f"`context` ids must lie in 0..{self.vocab_size - 1}, got {ids}.")
        return ids

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
        tok, history = self.tokenizer, list(self._ids(prompt))
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

    def _evidence_terms(self, k: int, alpha: np.ndarray) -> tuple:
        """Sufficient statistics of the order-k evidence given the lower levels' `alpha`."""
        V = self.vocab_size
        u, w = np.divmod(self._ev_key[k], V)
        ctx = [u]
        for j in range(k, 0, -1):
            ctx.insert(0, self._ctx_key[j][ctx[0]] // V)
        m = self._mix(ctx, w, alpha, k - 1) if k else np.full(w.size, 1.0 / V)
        c = self._ev_count[k]
        small = [m[c == j] for j in range(1, _SMALL_COUNT + 1)]
        big = c > _SMALL_COUNT
        totals, mult = np.unique(self._total[k], return_counts=True)
        return small, c[big], m[big], totals, mult

    @staticmethod
    def _dirmult(a: float, small: list, c: np.ndarray, m: np.ndarray, totals, mult) -> float:
        # log Γ(j + x) - log Γ(x) = log x(x+1)...(x+j-1): one log instead of two gammaln for
        # the small counts that dominate a Zipfian corpus.
        out = float(mult @ (gammaln(a) - gammaln(a + totals)))
        for j, mj in enumerate(small, start=1):
            x = a * mj
            prod = x.copy()
            for i in range(1, j):
                prod *= x + i
            out += float(np.log(prod).sum())
        am = a * m
        return out + float(np.sum(gammaln(c + am) - gammaln(am)))

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
        self._check_fitted()
        alpha = self.concentration if concentration is None else np.asarray(concentration, float)
        return np.array(
            [self._dirmult(alpha[k], *self._evidence_terms(k, alpha)) for k in range(self.order)]
        )

    def _maximise(self, k: int) -> float:
        if not self._ev_key[k].size:  # no n-gram of this order: nothing to learn from
            return float(self.concentration[k])
        stats = self._evidence_terms(k, self.concentration)
        shape, rate = self.prior if self.prior is not None else (1.0, 0.0)

        def loss(log_a: float) -> float:
            a = float(np.exp(log_a))
            return -self._dirmult(a, *stats) - (shape - 1.0) * log_a + rate * a

        res = minimize_scalar(
            loss, bounds=_LOG_ALPHA_BOUNDS, method="bounded", options={"xatol": 1e-6}
        )
        return float(np.exp(res.x))

    # -- Pyro program -------------------------------------------------------------------------

    def dense_counts(self, max_entries: int = 10_000_000) -> dict[str, np.ndarray]:
        """Counts as dense ``(num_contexts_k, V)`` matrices keyed ``counts_k`` (small models)."""
        self._check_fitted()
        V, out = self.vocab_size, {}
        for k in range(self.order):
            if self._ctx_key[k].size * V > max_entries:
                raise ValueError(
                    f"order {k} has {self._ctx_key[k].size} contexts x {V} tokens, over "
                    f"`max_entries={max_entries}`; the Pyro program is meant for small models."
                )
            dense = np.zeros(self._ctx_key[k].size * V, np.int64)
            dense[self._ev_key[k]] = self._ev_count[k]
            out[f"counts_{k}"] = dense.reshape(-1, V)
        return out

    def model(self, **counts: Tensor) -> None:
        r"""Pyro program over the concentrations, for small models.

        :math:`\alpha_k \sim \mathrm{Gamma}(a, b)` (``prior``, default ``(1, 1e-3)``) and the
        counts of each order-:math:`k` context ``counts_k[u] ~
        DirichletMultinomial(alpha_k * p(. | parent(u)))``, with the parent's posterior
        mean plugged in as in :meth:`log_evidence`. Data: ``model(**{k: torch.as_tensor(v)
        for k, v in lm.dense_counts().items()})``.

        Example:
            >>> import torch
            >>> from pyro import poutine
            >>> lm = NGramLM(order=2).fit("abab")
            >>> data = {k: torch.as_tensor(v) for k, v in lm.dense_counts().items()}
            >>> trace = poutine.trace(lm.model).get_trace(**data)
            >>> trace.observation_nodes, [n for n in trace.nodes if n.startswith("alpha")]
            (['counts_0', 'counts_1'], ['alpha_0', 'alpha_1'])
        """
        import pyro
        import pyro.distributions as dist
        import torch

        self._check_fitted()
        shape, rate = self.prior if self.prior is not None else (1.0, 1e-3)
        p = torch.full((1, self.vocab_size), 1.0 / self.vocab_size, dtype=torch.float64)
        for k in range(self.order):
            c = torch.as_tensor(counts[f"counts_{k}"], dtype=torch.float64)
            parent = torch.as_tensor(self._ctx_key[k] // self.vocab_size)
            alpha = pyro.sample(
                f"alpha_{k}",
                dist.Gamma(
                    torch.tensor(shape, dtype=torch.float64),
                    torch.tensor(rate, dtype=torch.float64),
                ),
            )
            base = p[parent]
            total = c.sum(-1)
            with pyro.plate(f"contexts_{k}", c.shape[0]):
                pyro.sample(f"counts_{k}", dist.DirichletMultinomial(alpha * base, total), obs=c)
            p = (c + alpha * base) / (total[:, None] + alpha)

    def __repr__(self) -> str:
        alpha = np.array2string(self.concentration, precision=3)
        return f"NGramLM(order={self.order}, vocab_size={self.vocab_size}, concentration={alpha})"
