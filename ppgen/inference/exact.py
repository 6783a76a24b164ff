"""Exact (conjugate) posteriors: for models that know their own closed-form posterior."""

from __future__ import annotations

from typing import Any

import numpy as np

from ppgen.capabilities import ExactPosterior, declares
from ppgen.errors import EstimatorError
from ppgen.inference._base import Estimator, FitContext, register
from ppgen.result import Fit

__all__ = ["Exact", "ExactPosterior"]


@register("exact", "conjugate")
class Exact(Estimator):
    r"""Independent draws from a model's closed-form (conjugate) posterior; no approximation.

    Works for any program object with a method ``exact_posterior(**data) ->``
    :class:`ExactPosterior` taking the same data as its ``model``: the conjugate zoo models
    (:class:`~ppgen.models.NormalNormal`, :class:`~ppgen.models.BetaBernoulli`,
    :class:`~ppgen.models.GammaPoisson`) and :class:`~ppgen.models.ngram.NGramLM`. The result is
    an ordinary :class:`~ppgen.result.Fit` (draws, ``to_arviz``, ``log_likelihood``,
    ``predict``), so exact answers sit next to NUTS or SVI fits of the same program.

    Arguments:
        num_draws: posterior draws per chain.
        num_chains: chains of independent draws (more than one lets ArviZ report R-hat).

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.models import BetaBernoulli
        >>> x = np.array([1, 1, 0, 1, 1, 1, 0, 1])
        >>> fit = ppgen.fit(BetaBernoulli(), {"x": x}, method="exact")
        >>> fit.params["p_concentration1"], fit.params["p_concentration0"]  # Beta(1 + 6, 1 + 2)
        (array(7.), array(3.))
        >>> round(float(fit.draws["p"].mean()), 1)  # 7 / 10
        0.7
    """

    name = "exact"

    def __init__(self, num_draws: int = 1000, num_chains: int = 1) -> None:
        for arg, v in (("num_draws", num_draws), ("num_chains", num_chains)):
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise EstimatorError(f"`{arg}` must be a positive int; got {v!r}.")
        self.num_draws = int(num_draws)
        self.num_chains = int(num_chains)

    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        if not declares(program.obj, "exact_posterior"):
            raise EstimatorError(
                f"method='exact' needs a model that knows its closed-form posterior (a method "
                f"`exact_posterior(**data)`, as NormalNormal, BetaBernoulli, GammaPoisson and "
                f"NGramLM have); {_describe(program.obj)} has none. Use method='nuts' or 'svi'."
            )

    def run(self, ctx: FitContext) -> Fit:
        post = ctx.program.obj.exact_posterior(**ctx.data_np)
        if not isinstance(post, ExactPosterior):
            raise EstimatorError(
                f"`{type(ctx.program.obj).__name__}.exact_posterior` returned "
                f"{type(post).__name__}; it must return a ppgen.inference.ExactPosterior."
            )
        n = self.num_chains * self.num_draws
        flat = self._checked(post.sample(n, np.random.default_rng(ctx.seed)), ctx, n)
        draws = {
            k: v.reshape((self.num_chains, self.num_draws) + v.shape[1:]) for k, v in flat.items()
        }
        draws = ctx.with_deterministic(draws)

        def sampler(num: int, seed: int) -> dict[str, np.ndarray]:
            return self._checked(post.sample(num, np.random.default_rng(seed)), ctx, num)

        return Fit(
            program=ctx.program,
            estimator=self,
            info=ctx.info,
            data=ctx.data_np,
            draws=draws,
            params={k: np.asarray(v) for k, v in post.params.items()},
            seed=ctx.seed,
            device=ctx.device,
            posterior_sampler=sampler,
            diagnostics={"exact": True, "point_mass": list(post.point_mass)},
        )

    @staticmethod
    def _checked(draws: dict[str, Any], ctx: FitContext, n: int) -> dict[str, np.ndarray]:
        """The draws as numpy arrays, each latent site present with shape ``(n, *shape)``."""
        name = type(ctx.program.obj).__name__
        latent = ctx.info.latent
        missing = [s for s in latent if s not in draws]
        extra = [s for s in draws if s not in latent]
        if missing or extra:
            raise EstimatorError(
                f"`{name}.exact_posterior` must sample exactly the latent sites {latent}; "
                f"missing {missing}, unknown {extra}."
            )
        out = {}
        for s in latent:
            v = np.asarray(draws[s])
            want = (n,) + tuple(ctx.info.sites[s].shape)
            if v.shape != want:
                raise EstimatorError(
                    f"`{name}.exact_posterior` gave draws of `{s}` with shape {v.shape}; "
                    f"expected {want} ({n} draws of the site's shape)."
                )
            out[s] = v
        return out


def _describe(obj: Any) -> str:
    if callable(obj) and hasattr(obj, "__name__"):
        return f"the function `{obj.__name__}`"
    return f"`{type(obj).__name__}`"
