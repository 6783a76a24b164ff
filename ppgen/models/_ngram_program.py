"""NGramLM as a ppgen program: the Pyro model, its exact posterior, and back (private)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.capabilities import ExactPosterior
from ppgen.errors import DataError
from ppgen.models._ngram_counts import NGramCounts

if TYPE_CHECKING:
    from ppgen.models.ngram import NGramLM
    from ppgen.result import Fit

__all__ = ["ngram_model", "exact_posterior", "from_fit"]

MAX_DENSE = 10_000_000  # entries of one order's dense count matrix in the program
_COUNTS_KEY = re.compile(r"counts_(\d+)$")


def _check_keys(lm: NGramLM, counts: Mapping[str, Any], need: bool) -> None:
    unknown = [k for k in counts if not _COUNTS_KEY.match(k) or int(k[7:]) >= lm.order]
    if unknown:
        raise DataError(
            f"NGramLM's program takes `tokens` (text, ids or TokenSequences, with `vocab_size` "
            f"for ids) or `counts_0`..`counts_{lm.order - 1}`; got unknown key(s) {unknown}."
        )
    missing = [f"counts_{k}" for k in range(lm.order) if f"counts_{k}" not in counts]
    if need and missing:
        raise DataError(
            f"NGramLM's program needs `tokens`, or every one of `counts_0`..`counts_"
            f"{lm.order - 1}` (missing {missing}); pass data={{'tokens': text_or_ids}}."
        )


def _table_for(lm: NGramLM, tokens: Any, vocab_size: int | None) -> tuple[NGramCounts, dict]:
    """Count ``tokens`` without touching the fitted state; cached for repeated calls."""
    cache = lm._program_cache
    if cache is not None and cache[0] is tokens and cache[1] == vocab_size:
        return cache[2], cache[3]
    seqs = lm._sequences(tokens, "tokens", vocab_size)
    V = seqs.vocab_size
    table = NGramCounts.from_docs(seqs.sequences, lm.order, V, lm._bos_id(V))
    dense = {f"counts_{k}": table.dense(k, MAX_DENSE) for k in range(lm.order)}
    lm._program_cache = (tokens, vocab_size, table, dense)  # holds `tokens`: its id stays valid
    return table, dense


def _dirichlet_multinomial(concentration: Any, total: Any) -> Any:
    """Pyro's DirichletMultinomial, able to sample rows with different total counts."""
    import pyro.distributions as dist
    import torch

    class _DirMult(dist.DirichletMultinomial):
        def sample(self, sample_shape: Any = ()) -> Any:
            with torch.no_grad():
                theta = dist.Dirichlet(self.concentration).sample(sample_shape)
                rem = self.total_count.expand(theta.shape[:-1]).clone()
                out, rest = torch.zeros_like(theta), torch.ones_like(rem)
                for v in range(theta.shape[-1] - 1):  # multinomial as a chain of binomials
                    p = (theta[..., v] / rest.clamp_min(1e-30)).clamp(0.0, 1.0)
                    out[..., v] = torch.distributions.Binomial(rem, p).sample()
                    rem, rest = rem - out[..., v], rest - theta[..., v]
                out[..., -1] = rem
            return out

    return _DirMult(concentration, total)


def ngram_model(lm: NGramLM, tokens: Any, vocab_size: int | None, counts: dict) -> None:
    """The body of :meth:`NGramLM.model` (see there)."""
    import pyro
    import pyro.distributions as dist
    import torch

    _check_keys(lm, counts, need=tokens is None)
    if tokens is not None:
        table, counts = _table_for(lm, tokens, vocab_size)
    else:
        table = lm._check_fitted()
    V = table.vocab_size
    shape, rate = lm.prior if lm.prior is not None else (1.0, 1e-3)
    f64 = torch.float64
    p = torch.full((1, V), 1.0 / V, dtype=f64)
    for k in range(lm.order):
        c = torch.as_tensor(counts[f"counts_{k}"], dtype=f64)
        expected = (table.num_contexts[k], V)
        if tuple(c.shape) != expected:
            raise DataError(
                f"`counts_{k}` must have shape {expected} (contexts of order {k} x vocabulary), "
                f"got {tuple(c.shape)}; build it with `lm.dense_counts()`."
            )
        alpha = pyro.sample(
            f"alpha_{k}", dist.Gamma(torch.tensor(shape, dtype=f64), torch.tensor(rate, dtype=f64))
        )
        a = alpha.unsqueeze(-1).to(f64)  # () -> (1,); a vectorised (n, 1) -> (n, 1, 1)
        base = p[..., torch.as_tensor(table.parents(k)), :]
        total = c.sum(-1)
        with pyro.plate(f"contexts_{k}", c.shape[0]):
            pyro.sample(f"counts_{k}", _dirichlet_multinomial(a * base, total), obs=c)
        p = (c + a * base) / (total[:, None] + a)


def exact_posterior(
    lm: NGramLM, tokens: Any, vocab_size: int | None, counts: dict
) -> ExactPosterior:
    """The body of :meth:`NGramLM.exact_posterior` (see there)."""

    _check_keys(lm, counts, need=tokens is None)
    if tokens is not None:
        lm.fit(tokens, vocab_size)
    else:
        table = lm._check_fitted()
        for k in range(lm.order):
            given = np.asarray(counts[f"counts_{k}"])
            if given.shape != (table.num_contexts[k], lm.vocab_size) or not np.array_equal(
                given, table.dense(k)
            ):
                raise DataError(
                    f"`counts_{k}` differs from the counts the model was fitted on; the exact "
                    "posterior needs the corpus: pass data={'tokens': ...} instead."
                )
    alpha = lm.concentration.copy()
    table = lm._check_fitted()

    def sample(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {f"alpha_{k}": np.full(n, alpha[k]) for k in range(lm.order)}

    params = {"concentration": alpha}
    params.update({f"ngram_{k}": v for k, v in table.to_arrays().items()})
    return ExactPosterior(
        sample=sample, params=params, point_mass=tuple(f"alpha_{k}" for k in range(lm.order))
    )


def from_fit(cls: type[NGramLM], fit: Fit) -> NGramLM:
    """The body of :meth:`NGramLM.from_fit` (see there)."""
    src = fit.program.obj
    if not isinstance(src, cls):
        raise DataError(
            f"`fit` is a fit of {type(src).__name__}, not of an NGramLM; pass the result of "
            "ppgen.fit(NGramLM(...), {'tokens': ...}, method=...)."
        )
    missing = [f"alpha_{k}" for k in range(src.order) if f"alpha_{k}" not in fit.draws]
    if missing:
        raise DataError(f"`fit` has no draws of {missing}; it is not a fit of this model.")
    alpha = np.array([float(np.mean(fit.draws[f"alpha_{k}"])) for k in range(src.order)])
    lm = cls(
        src.order,
        src.level,
        concentration=alpha,
        learn_concentration=False,
        prior=src.prior,
        min_count=src.min_count,
        tokenizer=src.tokenizer,
    )
    if "ngram_vocab_size" in fit.params:
        lm._table = NGramCounts.from_arrays(fit.params, "ngram_")
        lm.vocab_size = lm._table.vocab_size
    elif fit.data.get("tokens") is not None:
        lm.fit(fit.data["tokens"], fit.data.get("vocab_size"))
    else:  # fitted on `counts_k` of a fitted model: those are its tables
        lm._table, lm.vocab_size = src._check_fitted(), src.vocab_size
    return lm
