"""Posterior predictive checks: how often data replicated from the fit look more extreme.

For a test statistic :math:`T` of the observed values, the posterior predictive p-value is

.. math:: p_T = \\Pr\\big(T(y^{\\mathrm{rep}}) \\ge T(y) \\mid y\\big)
          \\approx \\frac1S \\sum_s \\big[T(y^{\\mathrm{rep}}_s) \\ge T(y)\\big],

with :math:`y^{\\mathrm{rep}}_s` drawn from the fitted program with the ``s``-th posterior
draw (Gelman, Meng & Stern 1996; Gelman et al., *Bayesian Data Analysis*, ch. 6). Values near
0 or 1 say the model does not reproduce that feature of the data; a fit without posterior
draws (a point estimate) gives the plug-in check. :func:`ppgen.evaluate` reports them as
``ppc_p_mean``, ``ppc_p_sd``, ``ppc_p_min`` and ``ppc_p_max``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.analysis.arviz import predictive_draws

if TYPE_CHECKING:
    from ppgen.result import Fit

__all__ = ["STATISTICS", "PPC_DRAWS", "predictive_pvalues"]

STATISTICS: dict[str, Callable[[np.ndarray], float]] = {
    "mean": lambda y: float(np.mean(y)),
    "sd": lambda y: float(np.std(y)),
    "min": lambda y: float(np.min(y)),
    "max": lambda y: float(np.max(y)),
}
"""The test statistics, each a function of all of the observed site's values."""

PPC_DRAWS = 500
"""Replicated data sets per check (fewer where :func:`~ppgen.analysis.arviz.predictive_draws`
bounds them: large observed sites, or a program declaring a costly sampler)."""


def predictive_pvalues(
    fit: Fit, data: Mapping[str, Any] | None = None, *, seed: int = 0
) -> dict[str, float]:
    """Posterior predictive p-values ``{"mean": p, "sd": p, "min": p, "max": p}`` of the
    single observed site of ``fit`` on ``data`` (default: its training data; covariates in a
    held-out ``data`` are used for the replicates), from :data:`PPC_DRAWS` replicates.

    Example:
        >>> import ppgen
        >>> from ppgen.models import NormalNormal
        >>> x = np.random.default_rng(0).normal(0.0, 3.0, (200, 1))  # sd 3; the model says 1
        >>> fit = ppgen.fit(NormalNormal(dim=1), {"x": x}, method="exact")
        >>> p = predictive_pvalues(fit)
        >>> p["sd"] == 0.0, 0.05 < p["mean"] < 0.95
        (True, True)
    """
    (site,) = fit.info.observed
    key = next((k for k, s in fit.info.obs_keys.items() if s == site), site)
    values = fit.data if data is None else data
    y = np.asarray(values[key], dtype=np.float64)
    n = min(PPC_DRAWS, predictive_draws(fit))
    reps = fit.predict(
        data if data is not None else None, num_samples=n, seed=seed, sites=[site], max_draws=n
    )[site]
    reps = np.asarray(reps, dtype=np.float64).reshape((-1,) + y.shape)
    return {name: float(np.mean([t(r) >= t(y) for r in reps])) for name, t in STATISTICS.items()}
