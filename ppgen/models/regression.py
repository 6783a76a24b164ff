"""Bayesian linear and logistic regression, written once for Pyro and NumPyro (pyroapi)."""

from __future__ import annotations

from typing import Any

from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.models._base import Model
from ppgen.models._cli import CLISpec

__all__ = ["LinearRegression", "LogisticRegression"]


class LinearRegression(Model):
    r"""Bayesian linear regression with Normal weights and a half-Normal noise scale.

    .. math:: w \sim N(0, s_w^2 I),\; b \sim N(0, s_b^2),\; \sigma \sim N^+(0, s_\sigma),\;
              y_i \sim N(b + x_i^\top w, \sigma^2)

    Arguments:
        weight_scale, bias_scale, noise_scale: prior scales.

    Data: ``X`` (N, D) covariates, ``y`` (N,) responses (``None`` to predict).

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.data import load
        >>> data = load("regression")
        >>> fit = ppgen.fit(LinearRegression(), data, ppgen.inference.SVI(steps=300, lr=0.05))
        >>> fit.draws["w"].shape[-1] == data["X"].shape[1]
        True
    """

    cli = (
        CLISpec(
            "linear_regression", "regression", "regression", "nuts", description="LinearRegression"
        ),
    )

    def __init__(
        self, weight_scale: float = 1.0, bias_scale: float = 10.0, noise_scale: float = 1.0
    ):
        self.weight_scale = weight_scale
        self.bias_scale = bias_scale
        self.noise_scale = noise_scale

    def model(self, X: Any, y: Any = None) -> Any:
        n, d = X.shape
        w = pyro.sample("w", dist.Normal(0.0, self.weight_scale).expand([d]).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, self.bias_scale))
        sigma = pyro.sample("sigma", dist.HalfNormal(self.noise_scale))
        with pyro.plate("data", n):
            # a matrix-vector product that broadcasts when w carries extra sample dims
            return pyro.sample("y", dist.Normal(b + _xw(X, w), sigma), obs=y)


class LogisticRegression(Model):
    r"""Bayesian logistic regression.

    .. math:: w \sim N(0, s_w^2 I),\; b \sim N(0, s_b^2),\; y_i \sim
              \mathrm{Bernoulli}(\mathrm{sigmoid}(b + x_i^\top w))

    Data: ``X`` (N, D) covariates, ``y`` (N,) 0/1 labels (``None`` to predict).

    Example:
        >>> import ppgen
        >>> from ppgen.data import load
        >>> data = load("logistic", n=200, d=3)
        >>> fit = ppgen.fit(LogisticRegression(), data, ppgen.inference.SVI(steps=200, lr=0.05))
        >>> fit.draws["w"].shape
        (1, 1000, 3)
    """

    cli = (
        CLISpec(
            "logistic_regression",
            "regression",
            "logistic",
            "nuts",
            description="LogisticRegression",
        ),
    )

    def __init__(self, weight_scale: float = 1.0, bias_scale: float = 10.0):
        self.weight_scale = weight_scale
        self.bias_scale = bias_scale

    def model(self, X: Any, y: Any = None) -> Any:
        n, d = X.shape
        w = pyro.sample("w", dist.Normal(0.0, self.weight_scale).expand([d]).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, self.bias_scale))
        with pyro.plate("data", n):
            return pyro.sample("y", dist.Bernoulli(logits=b + _xw(X, w)), obs=y)


def _xw(X: Any, w: Any) -> Any:
    """``X @ w`` for ``w`` of shape ``(..., D)``: ``(..., N)``, one GEMV per sample."""
    return (X @ w[..., None])[..., 0]
