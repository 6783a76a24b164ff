"""Sparse n-gram count tables behind :class:`~ppgen.models.ngram.NGramLM` (private)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import gammaln

__all__ = ["NGramCounts", "positions"]

_SMALL_COUNT = 8


def positions(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All tokens concatenated, and each token's position in its document."""
    lengths = np.array([d.size for d in docs], dtype=np.int64)
    x = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return x, np.arange(x.size, dtype=np.int64) - starts


def _find(keys: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each `key` in the sorted `keys`, and whether it is there."""
    if not keys.size:
        return np.zeros(key.shape, np.int64), np.zeros(key.shape, bool)
    j = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    return j, keys[j] == key


class NGramCounts:
    r"""The n-gram counts of a corpus, stored per order as sorted ``int64`` keys (a trie).

    Order :math:`k` holds its distinct contexts (a context's key is its parent's id times
    :math:`V` plus its oldest token, so ``ctx_key[k] // V`` is the parent's id), the distinct
    (context, next token) events (key ``context id * V + token``) with their counts, and each
    context's total count. Memory grows with the distinct contexts and n-grams, never with
    :math:`V^n`. ``<bos>`` (``bos_id``) is context only, never a counted next token.

    Example:
        >>> t = NGramCounts.from_docs([np.array([0, 1, 0, 1])], order=2, vocab_size=2)
        >>> t.num_contexts, t.num_ngrams, t.dense(1).tolist()
        ([1, 2], [2, 2], [[0, 2], [1, 0]])
    """

    def __init__(
        self,
        vocab_size: int,
        ctx_key: list[np.ndarray],
        ev_key: list[np.ndarray],
        ev_count: list[np.ndarray],
        total: list[np.ndarray],
    ) -> None:
        self.vocab_size = int(vocab_size)
        self.ctx_key, self.ev_key, self.ev_count, self.total = ctx_key, ev_key, ev_count, total

    @property
    def order(self) -> int:
        return len(self.ctx_key)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def from_docs(
        cls, docs: list[np.ndarray], order: int, vocab_size: int, bos_id: int | None = None
    ) -> NGramCounts:
        """Count every order ``0 .. order - 1`` of validated ``int64`` documents."""
        V = int(vocab_size)
        x, pos = positions(docs)
        scored = np.ones(x.size, bool) if bos_id is None else x != bos_id
        table = cls(V, [np.zeros(1, np.int64)], [], [], [np.array([scored.sum()], np.int64)])
        table._add_events(np.zeros(int(scored.sum()), np.int64), x[scored])
        ctx = np.zeros(x.size, np.int64)
        for k in range(1, order):
            idx = np.flatnonzero(pos >= k)
            keys, ctx_k = np.unique(ctx[idx] * V + x[idx - k], return_inverse=True)
            keep = scored[idx]
            table.ctx_key.append(keys)
            table.total.append(np.bincount(ctx_k[keep], minlength=keys.size).astype(np.int64))
            table._add_events(ctx_k[keep], x[idx[keep]])
            ctx = np.full(x.size, -1, np.int64)
            ctx[idx] = ctx_k
        return table

    def _add_events(self, ctx: np.ndarray, w: np.ndarray) -> None:
        keys, counts = np.unique(ctx * self.vocab_size + w, return_counts=True)
        self.ev_key.append(keys)
        self.ev_count.append(counts.astype(np.int64))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The tables as a flat dict of arrays (``ctx_key_k``, ``ev_key_k``, ...)."""
        out = {"vocab_size": np.array(self.vocab_size, np.int64)}
        for name in ("ctx_key", "ev_key", "ev_count", "total"):
            out.update({f"{name}_{k}": a for k, a in enumerate(getattr(self, name))})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> NGramCounts:
        """Inverse of :meth:`to_arrays` (keys optionally prefixed)."""
        order = sum(1 for k in arrays if k.startswith(f"{prefix}ctx_key_"))
        get = [
            [np.asarray(arrays[f"{prefix}{n}_{k}"], np.int64) for k in range(order)]
            for n in ("ctx_key", "ev_key", "ev_count", "total")
        ]
        return cls(int(arrays[f"{prefix}vocab_size"]), *get)

    # -- sizes --------------------------------------------------------------------------------
    @property
    def num_contexts(self) -> list[int]:
        return [k.size for k in self.ctx_key]

    @property
    def num_ngrams(self) -> list[int]:
        return [k.size for k in self.ev_key]

    @property
    def nbytes(self) -> int:
        arrays = self.ctx_key + self.ev_key + self.ev_count + self.total
        return int(sum(a.nbytes for a in arrays))

    def parents(self, k: int) -> np.ndarray:
        """Each order-``k`` context's parent id at order ``k - 1`` (zeros at order 0)."""
        return self.ctx_key[k] // self.vocab_size if k else np.zeros(1, np.int64)

    def dense(self, k: int, max_entries: int | None = None) -> np.ndarray:
        """Order-``k`` counts as a dense ``(num_contexts_k, V)`` matrix."""
        V, n = self.vocab_size, self.ctx_key[k].size
        if max_entries is not None and n * V > max_entries:
            raise ValueError(
                f"order {k} has {n} contexts x {V} tokens, over `max_entries={max_entries}`; "
                "the Pyro program (and `ppgen.fit` on NGramLM) is meant for small models: use "
                "`NGramLM.fit(tokens)` (sparse, same closed form) for large corpora."
            )
        out = np.zeros(n * V, np.int64)
        out[self.ev_key[k]] = self.ev_count[k]
        return out.reshape(n, V)

    # -- prediction ---------------------------------------------------------------------------
    def count(self, k: int, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """c(u, w) at order k for context ids `u` (all seen) and tokens `w`."""
        j, found = _find(self.ev_key[k], u * self.vocab_size + w)
        return np.where(found, self.ev_count[k][j] if j.size else 0, 0)

    def mix(self, ctx: list[np.ndarray], w: np.ndarray, alpha: np.ndarray, upto: int) -> np.ndarray:
        """p(w | u) for context ids ``ctx[k]`` per order (-1: unseen), orders 0..upto."""
        V, a0 = self.vocab_size, alpha[0]
        p = (self.count(0, np.zeros_like(w), w) + a0 / V) / (self.total[0][0] + a0)
        for k in range(1, upto + 1):
            seen = np.flatnonzero(ctx[k] >= 0)
            u = ctx[k][seen]
            c = self.count(k, u, w[seen])
            p[seen] = (c + alpha[k] * p[seen]) / (self.total[k][u] + alpha[k])
        return p

    def lookup(self, x: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
        """Context id of every position per order (-1 where unseen or too close to the start)."""
        ctx = [np.zeros(x.size, np.int64)]
        for k in range(1, self.order):
            out = np.full(x.size, -1, np.int64)
            idx = np.flatnonzero((pos >= k) & (ctx[-1] >= 0))
            j, found = _find(self.ctx_key[k], ctx[-1][idx] * self.vocab_size + x[idx - k])
            out[idx[found]] = j[found]
            ctx.append(out)
        return ctx

    def predictive(self, ids: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Next-token distribution after context ``ids`` (its last ``order - 1`` tokens)."""
        V = self.vocab_size
        p = np.zeros(V)
        lo, hi = np.searchsorted(self.ev_key[0], [0, V])
        p[self.ev_key[0][lo:hi]] = self.ev_count[0][lo:hi]
        p = (p + alpha[0] / V) / (self.total[0][0] + alpha[0])
        u = 0
        for k in range(1, min(ids.size, self.order - 1) + 1):
            keys, key = self.ctx_key[k], u * V + ids[-k]
            u = int(np.searchsorted(keys, key))
            if u == keys.size or keys[u] != key:
                break
            lo, hi = np.searchsorted(self.ev_key[k], [u * V, (u + 1) * V])
            c = np.zeros(V)
            c[self.ev_key[k][lo:hi] - u * V] = self.ev_count[k][lo:hi]
            p = (c + alpha[k] * p) / (self.total[k][u] + alpha[k])
        return p

    # -- evidence -----------------------------------------------------------------------------
    def evidence_terms(self, k: int, alpha: np.ndarray) -> tuple:
        """Sufficient statistics of the order-k evidence given the lower levels' `alpha`."""
        V = self.vocab_size
        u, w = np.divmod(self.ev_key[k], V)
        ctx = [u]
        for j in range(k, 0, -1):
            ctx.insert(0, self.ctx_key[j][ctx[0]] // V)
        m = self.mix(ctx, w, alpha, k - 1) if k else np.full(w.size, 1.0 / V)
        c = self.ev_count[k]
        small = [m[c == j] for j in range(1, _SMALL_COUNT + 1)]
        big = c > _SMALL_COUNT
        totals, mult = np.unique(self.total[k], return_counts=True)
        return small, c[big], m[big], totals, mult

    @staticmethod
    def dirmult(a: float, small: list, c: np.ndarray, m: np.ndarray, totals, mult) -> float:
        """Dirichlet-multinomial log evidence (without the multinomial coefficient)."""
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

    def log_evidence(self, alpha: np.ndarray) -> np.ndarray:
        """Per-order Dirichlet-multinomial log evidence under concentrations ``alpha``."""
        return np.array(
            [self.dirmult(alpha[k], *self.evidence_terms(k, alpha)) for k in range(self.order)]
        )
