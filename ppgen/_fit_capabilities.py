"""What a :class:`~ppgen.result.Fit` can answer, from its program's kind and its contents."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ppgen.program import ProgramInfo

__all__ = ["FitCapabilities"]


def _sites_are(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names)
    return f"the observed site {shown} is" if len(names) == 1 else f"the observed sites {shown} are"


class FitCapabilities:
    """The capability half of :class:`~ppgen.result.Fit`: flags read by ArviZ and by users.

    ``has_likelihood``, ``has_posterior``, ``has_sample_stats`` and ``can_sample`` (all in
    :attr:`capabilities`), the program's :attr:`kind` and, per ArviZ group the fit cannot build,
    the reason (:meth:`unavailable_groups`).

    Example: a GAN-like program (no estimator needed to see what its fits can answer).

        >>> import numpy as np, pyro, pyro.distributions as dist
        >>> from ppgen import Fit, Program
        >>> from ppgen.distributions import Implicit
        >>> def gan(x=None):
        ...     with pyro.plate("data", 3):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", Implicit(2.0 * z + 1.0), obs=x)
        >>> prog = Program(gan)
        >>> _, info = prog.validate({"x": np.zeros(3)})
        >>> fit = Fit(program=prog, estimator=None, info=info, data={"x": np.zeros(3)},
        ...           draws={"z": np.zeros((1, 10, 3))})
        >>> fit.kind, fit.has_likelihood, fit.can_sample
        ('implicit', False, True)
        >>> fit.unavailable_groups()["log_likelihood"]
        'the observed site `x` is Implicit (no density)'
    """

    info: ProgramInfo
    draws: dict[str, np.ndarray]
    local_draws: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    posterior_sampler: Callable[[int, int], dict[str, np.ndarray]] | None
    data_sampler: Callable[..., Any] | None
    history: dict[str, list[float]]
    diagnostics: dict[str, Any]

    @property
    def kind(self) -> str:
        """The program's kind: ``"explicit"``, ``"implicit"``, ``"energy"`` or ``"unobserved"``
        (no observed site: a target density for NUTS/HMC, or a prior for ``Prior``)."""
        return self.info.kind

    @property
    def log_partition(self) -> dict[str, Any] | None:
        """An energy fit's estimate of log Z once one was asked for
        (:func:`ppgen.analysis.log_partition`): ``{"value", "stderr", "method", "note"}``,
        kept in ``diagnostics`` (so a saved run has it); ``None`` otherwise."""
        lz = self.diagnostics.get("log_partition")
        return dict(lz) if isinstance(lz, dict) else None

    @property
    def has_likelihood(self) -> bool:
        """Pointwise log-likelihoods exist: the program is explicit and has observed sites, or
        it is an energy program whose :attr:`log_partition` was estimated."""
        if self.info.kind == "energy":
            return self.log_partition is not None
        return self.info.kind == "explicit" and bool(self.info.observed)

    @property
    def has_posterior(self) -> bool:
        """The fit holds posterior draws or can draw them (``posterior_sampler``)."""
        return bool(self.draws) or self.posterior_sampler is not None

    @property
    def has_sample_stats(self) -> bool:
        """MCMC statistics are stored, each draw has a log joint (explicit programs), or an
        optimisation-only fit has training curves (``history``, one value per step)."""
        if self.sample_stats or ((self.draws or self.local_draws) and self.has_likelihood):
            return True
        return not self.has_posterior and bool(self.history)

    @property
    def can_sample(self) -> bool:
        """:meth:`sample` draws new data sets: a ``data_sampler`` is set, or the program has
        observed sites and is not an energy program (those cannot be forward-simulated)."""
        if self.data_sampler is not None:
            return True
        return bool(self.info.observed) and self.info.kind != "energy"

    @property
    def capabilities(self) -> dict[str, bool]:
        """``has_likelihood``, ``has_posterior``, ``has_sample_stats``, ``can_sample``."""
        return {
            "has_likelihood": self.has_likelihood,
            "has_posterior": self.has_posterior,
            "has_sample_stats": self.has_sample_stats,
            "can_sample": self.can_sample,
        }

    def unavailable_groups(self) -> dict[str, str]:
        """The ArviZ groups this fit cannot build, each with the reason: ``{group: why}``."""
        info, out = self.info, {}
        if not info.observed:
            why = "the program has no observed sites"
            return {"log_likelihood": why, "posterior_predictive": why}
        implicit, energy = info.sites_of_kind("implicit"), info.sites_of_kind("energy")
        lp_missing = not self.sample_stats and bool(self.draws or self.local_draws)
        if implicit:
            out["log_likelihood"] = f"{_sites_are(implicit)} Implicit (no density)"
            if lp_missing:
                out["sample_stats"] = (
                    f"lp = log p(x, z) needs a density, and {out['log_likelihood']}"
                )
        if energy:
            if self.log_partition is None:
                out["log_likelihood"] = (
                    f"{_sites_are(energy)} Unnormalized: log p(x) = -energy(x) - log Z with the "
                    "normaliser log Z unknown (estimate it with ppgen.analysis.log_partition)"
                )
            why = f"{_sites_are(energy)} Unnormalized (an energy model): no forward simulation"
            out["prior_predictive"] = why
            if self.data_sampler is None:
                out["posterior_predictive"] = why
            if lp_missing and "log_likelihood" in out:
                out["sample_stats"] = f"lp = log p(x, z) needs log Z, and {out['log_likelihood']}"
        return out
