"""Hierarchical models: eight schools, centred and non-centred (backend-neutral)."""

from __future__ import annotations

from typing import Any

from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.models._base import Model, deterministic
from ppgen.models._cli import CLISpec

__all__ = ["EightSchools"]


class EightSchools(Model):
    r"""The eight-schools hierarchical model (Rubin 1981; Gelman et al., BDA ch. 5).

    .. math:: \mu \sim N(0, 5^2),\; \tau \sim \mathrm{HalfCauchy}(5),\;
              \theta_j \sim N(\mu, \tau^2),\; y_j \sim N(\theta_j, \sigma_j^2)

    The non-centred form samples :math:`\eta_j \sim N(0,1)` and sets
    :math:`\theta_j = \mu + \tau\eta_j` (a deterministic site), which removes the funnel that
    gives the centred form divergences under NUTS.

    Arguments:
        centered: use the centred parameterisation.

    Data: ``sigma`` (J,) known standard errors, ``y`` (J,) estimated effects.

    Example:
        >>> import ppgen
        >>> from ppgen.data import load
        >>> fit = ppgen.fit(EightSchools(), load("eight_schools"),
        ...                 ppgen.inference.NUTS(num_samples=100, num_warmup=100, jit=False))
        >>> fit.draws["theta"].shape
        (1, 100, 8)
    """

    cli = (
        CLISpec(
            "eight_schools",
            "hierarchical",
            "eight_schools",
            "nuts",
            fixed={"centered": False},
            description="EightSchools, non-centred",
        ),
        CLISpec(
            "eight_schools_centered",
            "hierarchical",
            "eight_schools",
            "nuts",
            fixed={"centered": True},
            description="EightSchools, centred",
        ),
    )

    def __init__(self, centered: bool = False):
        self.centered = centered

    def model(self, sigma: Any, y: Any = None) -> Any:
        j = sigma.shape[0]
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("school", j):
            if self.centered:
                theta = pyro.sample("theta", dist.Normal(mu, tau))
            else:
                eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
                theta = deterministic("theta", mu + tau * eta)
            return pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    def log_joint_terms(self, values: dict[str, Any], sigma: Any, y: Any = None) -> Any:
        r""":math:`(\log p(\mu, \tau, \theta \text{ or } \eta), \log p(y \mid \theta))` at
        ``K`` draws of the latents at once (a capability, :mod:`ppgen.capabilities`: AVB's
        particles in one call).

        Example: the terms of one draw, as the program's trace gives them.

            >>> import torch
            >>> m = EightSchools()
            >>> v = {"mu": torch.zeros(1), "tau": torch.ones(1), "eta": torch.zeros(1, 2)}
            >>> lp, ll = m.log_joint_terms(v, torch.ones(2), torch.zeros(2))
            >>> round(float(ll[0]), 4)  # two N(0, 1) densities at 0
            -1.8379
        """
        mu, tau = values["mu"], values["tau"]
        quiet = {"validate_args": False}  # the values come from the checked program's supports
        # the fixed priors, built once per backend and device (a third of the call's time)
        fixed = self.__dict__.setdefault("_fixed_priors", {})
        key = (dist.Normal, str(getattr(mu, "device", "")))
        if key not in fixed:
            fixed[key] = (
                dist.Normal(0.0, 5.0, **quiet),
                dist.HalfCauchy(5.0, **quiet),
                dist.Normal(0.0, 1.0, **quiet),
            )
        p_mu, p_tau, p_eta = fixed[key]
        prior = p_mu.log_prob(mu) + p_tau.log_prob(tau)
        if self.centered:
            theta = values["theta"]
            p_theta = dist.Normal(mu[..., None], tau[..., None], **quiet)
            prior = prior + p_theta.log_prob(theta).sum(-1)
        else:
            eta = values["eta"]
            prior = prior + p_eta.log_prob(eta).sum(-1)
            theta = mu[..., None] + tau[..., None] * eta
        if y is None:
            return prior, 0.0 * prior
        return prior, dist.Normal(theta, sigma, **quiet).log_prob(y).sum(-1)
