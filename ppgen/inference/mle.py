"""Maximum likelihood (and MAP) for programs with tractable densities: flows, AR models, ..."""

from __future__ import annotations

import math
from typing import Any

from ppgen.inference._base import FitContext, register
from ppgen.inference.svi import SVI
from ppgen.result import Fit

__all__ = ["MLE"]


def _no_latents(*args: Any, **kwargs: Any) -> None:
    """The empty guide: with no latent sites the negative ELBO is exactly -log p(x)."""


@register("mle", "map")
class MLE(SVI):
    r"""Fit parameters by maximum likelihood, :math:`\max_\theta \sum_i \log p_\theta(x_i)`.

    For a program with no latent sites (a flow, an autoregressive model, a GLM with
    ``param`` sites) the loss is the exact negative log-likelihood. Latent sites with priors are
    fitted by MAP (point estimates, an ``AutoDelta`` guide). History records ``loss`` (total
    NLL of the step's data, full-data scale), ``nll`` (nats per datum) and ``bits_per_dim``.

    Arguments: as :class:`~ppgen.inference.SVI` (``lr``, ``optim``, ``steps`` / ``epochs``,
    ``batch_size``...). A program without latent sites runs on SVI's engine with the empty
    guide: one model pass and one fused optimiser over all parameters, or, when the model
    declares ``log_density`` (the zoo's flows and autoregressive models do; so can yours, see
    :mod:`ppgen.capabilities`), ``-log_density(x).sum()`` with no tracing at all. Both give
    the loss of Pyro's own step to float precision.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> from pyro.distributions import constraints
        >>> def model(x=None):
        ...     loc = pyro.param("loc", np.float32(0.0) + __import__("torch").zeros(()))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(loc, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(3.0, 1.0, 100)
        >>> fit = ppgen.fit(model, data={"x": x}, method=MLE(steps=300, lr=0.1))
        >>> bool(abs(float(fit.params["loc"]) - x.mean()) < 0.01)
        True
    """

    name = "mle"

    def __init__(self, *, lr: float = 1e-3, steps: int | None = 1000, **kwargs: Any) -> None:
        kwargs.setdefault("num_draws", 1)
        super().__init__(guide=None, elbo="trace", lr=lr, steps=steps, **kwargs)

    def _guide_spec(self, ctx: FitContext) -> Any:
        return "delta" if ctx.info.latent else _no_latents

    def _resolve_guide(self, ctx: FitContext, model: Any, backend: str) -> Any:
        spec = self._guide_spec(ctx)
        if spec is _no_latents:
            return _no_latents
        return super()._resolve_guide(ctx, model, backend)

    def metrics(self, loss: float, state: Any) -> dict[str, float]:
        n, dims = _sizes(state.ctx.info)
        nll = loss / n
        return {"loss": loss, "nll": nll, "bits_per_dim": nll / (dims * math.log(2))}

    def finalize(self, ctx: FitContext, state: Any, history: dict[str, list[float]]) -> Fit:
        fit = state.finalize(history)
        if "nll" in history:
            fit.diagnostics["train_nll"] = history["nll"][-1]
        return fit


def _sizes(info: Any) -> tuple[int, int]:
    """Data points and dimensions per point of the first observed site (nats -> bits/dim)."""
    if not info.observed:
        return 1, 1
    site = info.sites[info.observed[0]]
    return max(1, math.prod(site.batch_shape)), max(1, math.prod(site.event_shape))
