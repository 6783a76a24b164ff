"""Conjugate models with closed-form posteriors: ground truth for testing any estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.capabilities import ExactPosterior
from ppgen.models._base import Model, array

__all__ = ["NormalNormal", "BetaBernoulli", "GammaPoisson"]


class NormalNormal(Model):
    r"""Unknown mean of a Normal with known scale, Normal prior, ``dim`` independent coordinates.

    .. math:: \mu \sim N(m_0, s_0^2 I),\; x_i \sim N(\mu, \sigma^2 I)
              \;\Rightarrow\; \mu \mid x \sim N\!\left(\frac{m_0/s_0^2 + \sum_i x_i/\sigma^2}
              {1/s_0^2 + n/\sigma^2}, \frac{1}{1/s_0^2 + n/\sigma^2}\right)

    Data: ``x`` (N, dim).

    Example:
        >>> import numpy as np
        >>> m = NormalNormal(dim=1)
        >>> mean, sd = m.posterior(np.zeros((3, 1)))
        >>> float(sd[0]) == 0.5  # 1 / sqrt(1 + 3)
        True
    """

    def __init__(
        self, dim: int = 2, prior_loc: float = 0.0, prior_scale: float = 1.0, scale: float = 1.0
    ):
        self.dim, self.prior_loc, self.prior_scale, self.scale = dim, prior_loc, prior_scale, scale

    def model(self, x: Any = None) -> Any:
        mu = pyro.sample(
            "mu", dist.Normal(self.prior_loc, self.prior_scale).expand([self.dim]).to_event(1)
        )
        n = 1 if x is None else x.shape[0]
        with pyro.plate("data", n):
            return pyro.sample("x", dist.Normal(mu, self.scale).to_event(1), obs=x)

    def posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of ``mu`` (each shape ``(dim,)``)."""
        x = np.asarray(x, dtype=float)
        prec = 1.0 / self.prior_scale**2 + x.shape[0] / self.scale**2
        mean = (self.prior_loc / self.prior_scale**2 + x.sum(0) / self.scale**2) / prec
        return mean, np.full(self.dim, prec**-0.5)

    def exact_posterior(self, x: np.ndarray) -> ExactPosterior:
        """Closed-form posterior for ``ppgen.fit(..., method="exact")``: draws of ``mu``."""

        mean, sd = self.posterior(x)
        return ExactPosterior(
            sample=lambda n, rng: {"mu": rng.normal(mean, sd, size=(n, self.dim))},
            params={"mu_loc": mean, "mu_scale": sd},
        )


class BetaBernoulli(Model):
    r"""Coin bias with a Beta prior: :math:`p \mid x \sim \mathrm{Beta}(a + k, b + n - k)`.

    Data: ``x`` (N,) of 0/1.

    Example:
        >>> BetaBernoulli().posterior(np.array([1, 1, 0]))
        (3.0, 2.0)
    """

    def __init__(self, a: float = 1.0, b: float = 1.0):
        self.a, self.b = a, b

    def model(self, x: Any = None) -> Any:
        p = pyro.sample("p", dist.Beta(array(self.a, like=x), array(self.b, like=x)))
        n = 1 if x is None else x.shape[0]
        with pyro.plate("data", n):
            return pyro.sample("x", dist.Bernoulli(p), obs=x)

    def posterior(self, x: np.ndarray) -> tuple[float, float]:
        """The posterior Beta's parameters ``(a + k, b + n - k)``."""
        x = np.asarray(x)
        k = float(x.sum())
        return self.a + k, self.b + len(x) - k

    def exact_posterior(self, x: np.ndarray) -> ExactPosterior:
        """Closed-form posterior for ``ppgen.fit(..., method="exact")``: draws of ``p``."""

        a, b = self.posterior(x)
        return ExactPosterior(
            sample=lambda n, rng: {"p": rng.beta(a, b, size=n)},
            params={"p_concentration1": np.asarray(a), "p_concentration0": np.asarray(b)},
        )


class GammaPoisson(Model):
    r"""Poisson rate with a Gamma prior: :math:`\lambda \mid x \sim \Gamma(a + \sum x, b + n)`.

    Data: ``x`` (N,) of counts.

    Example:
        >>> GammaPoisson().posterior(np.array([1, 3]))
        (6.0, 3.0)
    """

    def __init__(self, a: float = 2.0, b: float = 1.0):
        self.a, self.b = a, b

    def model(self, x: Any = None) -> Any:
        lam = pyro.sample("rate", dist.Gamma(array(self.a, like=x), array(self.b, like=x)))
        n = 1 if x is None else x.shape[0]
        with pyro.plate("data", n):
            return pyro.sample("x", dist.Poisson(lam), obs=x)

    def posterior(self, x: np.ndarray) -> tuple[float, float]:
        """The posterior Gamma's shape and rate."""
        x = np.asarray(x)
        return self.a + float(x.sum()), self.b + len(x)

    def exact_posterior(self, x: np.ndarray) -> ExactPosterior:
        """Closed-form posterior for ``ppgen.fit(..., method="exact")``: draws of ``rate``."""

        shape, rate = self.posterior(x)
        return ExactPosterior(
            sample=lambda n, rng: {"rate": rng.gamma(shape, 1.0 / rate, size=n)},
            params={"rate_concentration": np.asarray(shape), "rate_rate": np.asarray(rate)},
        )
