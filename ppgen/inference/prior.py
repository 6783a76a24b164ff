"""Prior (and prior-predictive) sampling: the program run forward, as an estimator."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError
from ppgen.inference._base import Estimator, FitContext, register
from ppgen.result import Fit

__all__ = ["Prior"]


@register("prior")
class Prior(Estimator):
    r"""Independent draws of every latent site from the program run forward: :math:`z \sim p(z)`.

    Each draw runs the program once with nothing conditioned: every latent site is sampled
    from its distribution given the sites before it and the covariates,
    :math:`z_k \sim p(z_k \mid z_{<k}, t)`, so the draws are exact and independent (no Markov
    chain, no warm-up). The backend's own predictive sampler does it, vectorised over draws
    (Pyro's / NumPyro's ``Predictive``).

    Programs it takes: those with **no observed site** (kind ``"unobserved"``: the draws are
    the program's joint density, e.g. Neal's funnel) and those **with** observed sites
    (explicit or implicit): then the observations are ignored — the draws are still the
    prior, not the posterior — and the observed sites are redrawn given each prior draw, so
    ``fit.predict()``, ``fit.sample(n)`` and the ``posterior_predictive`` group of
    ``fit.to_arviz()`` are the **prior predictive**. Covariates in ``data`` (inputs that feed
    no ``obs=``) are used as given; observed values only fix the shapes. The draws sit in
    ``fit.draws`` and the ``posterior`` group as every estimator's do (the posterior given no
    data is the prior). Energy programs (``Unnormalized``) cannot be run forward and are
    refused.

    Arguments:
        num_samples: draws per chain.
        num_chains: chains of independent draws (more than one lets ArviZ report R-hat).
        backend: for backend-neutral (``pyroapi``) programs, run on this backend.

    Example:
        >>> import torch, pyro, pyro.distributions as dist, ppgen
        >>> def funnel():
        ...     y = pyro.sample("y", dist.Normal(0.0, 3.0))
        ...     pyro.sample("x", dist.Normal(0.0, torch.exp(y / 2)))
        >>> fit = ppgen.fit(funnel, {}, Prior(num_samples=4000))
        >>> fit.draws["y"].shape, fit.kind
        ((1, 4000), 'unobserved')
        >>> round(float(fit.draws["y"].std()))  # y ~ N(0, 3)
        3
    """

    name = "prior"
    kinds = ("explicit", "implicit", "unobserved")
    conditions_on_data = False

    def __init__(
        self, num_samples: int = 1000, num_chains: int = 1, *, backend: str | None = None
    ) -> None:
        for arg, v in (("num_samples", num_samples), ("num_chains", num_chains)):
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise EstimatorError(f"`{arg}` must be a positive int; got {v!r}.")
        if backend is not None and backend not in ("pyro", "numpyro"):
            raise EstimatorError(f"`backend` must be 'pyro', 'numpyro' or None; got {backend!r}.")
        self.num_samples = int(num_samples)
        self.num_chains = int(num_chains)
        self.backend = backend

    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        if not info.latent:
            raise EstimatorError(
                "Prior: the program has no latent sites to draw. Its prior predictive is the "
                "program run forward: `fit.predict()` / `fit.sample(n)` of any fit of it (e.g. "
                "method='mle' for its parameters)."
            )

    def run(self, ctx: FitContext) -> Fit:
        t0 = time.perf_counter()
        c, d = self.num_chains, self.num_samples
        latent = list(ctx.info.latent)
        flat = ctx.program.ops.predictive(
            ctx.program.model,
            ctx.data,
            num_samples=c * d,
            return_sites=latent,
            uncondition=True,  # observed sites are redrawn, not conditioned on
            seed=ctx.seed,
            max_plate_nesting=ctx.info.max_plate_nesting,
        )
        missing = [s for s in latent if s not in flat]
        if missing:  # pragma: no cover - the backends return every requested sample site
            raise EstimatorError(f"Prior: running the program forward gave no draws of {missing}.")
        draws = {}
        for s in latent:
            v = np.asarray(flat[s])
            draws[s] = v.reshape((c, d) + v.shape[1:])
        draws = ctx.with_deterministic(draws)
        return Fit(
            program=ctx.program,
            estimator=self,
            info=ctx.info,
            data=ctx.data_np,
            draws=draws,
            seed=ctx.seed,
            device=ctx.device,
            diagnostics={
                "runtime_s": time.perf_counter() - t0,
                "num_chains": c,
                "independent": True,
                "prior_predictive": bool(ctx.info.observed),
            },
        )
