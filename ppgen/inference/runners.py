"""Runners: what drives an estimator on a prepared fit context (locally, or data-parallel)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ppgen.errors import EstimatorError

if TYPE_CHECKING:
    from ppgen.inference._base import Estimator, FitContext
    from ppgen.result import Fit

__all__ = ["Runner", "Local", "JaxDevices"]


class Runner(ABC):
    """Drives one estimator on one validated :class:`~ppgen.inference.FitContext`.

    ``ppgen.fit(..., runner=...)`` validates the program and data, builds the context, then
    hands both to :meth:`run`. A data-parallel runner plugs in here without touching
    estimators: it launches or joins its workers (``torchrun`` ranks, JAX devices), shards
    ``ctx.data`` and reduces gradients and metrics around ``estimator.run``; the estimator does
    not know which runner drives it.

    Example: a runner that records what it ran, then runs it here.

        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> class Recording(Runner):
        ...     def __init__(self):
        ...         self.calls = []
        ...     def run(self, estimator, ctx):
        ...         self.calls.append((estimator.name, sorted(ctx.data)))
        ...         return estimator.run(ctx)
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> runner = Recording()
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=5), runner=runner)
        >>> runner.calls
        [('svi', ['x'])]
    """

    @abstractmethod
    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        """Fit ``ctx`` with ``estimator`` and return the :class:`~ppgen.result.Fit`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Local(Runner):
    """The default runner: the estimator runs in this process, on ``ctx.device``.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     p = pyro.sample("p", dist.Beta(1.0, 1.0))
        ...     with pyro.plate("obs", 4):
        ...         pyro.sample("x", dist.Bernoulli(p), obs=x)
        >>> x = np.array([1.0, 0.0, 1.0, 1.0])
        >>> a = ppgen.fit(model, {"x": x}, ppgen.inference.SVI(steps=5), runner=Local())
        >>> b = ppgen.fit(model, {"x": x}, ppgen.inference.SVI(steps=5))
        >>> bool(np.array_equal(a.draws["p"], b.draws["p"]))
        True
    """

    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        return estimator.run(ctx)


class JaxDevices(Runner):
    """Shard every minibatch of a NumPyro SVI/MLE fit across ``devices`` JAX devices.

    Each minibatch is split along the axis its plate indexes (``jax.sharding``), one part per
    device; XLA runs each part where it lies and reduces the gradients, and the parameters
    stay replicated, so the fit is the one-device fit (the same losses up to float rounding)
    spread over the devices. Needs ``batch_size=`` a multiple of the device count. On CPU,
    make host devices before JAX starts
    (``XLA_FLAGS=--xla_force_host_platform_device_count=2``); on GPUs, ``devices`` of them.

    Arguments:
        devices: how many of JAX's local devices to use (default: all).

    Example (one device here, so one shard; the same call spreads over several):
        >>> import numpy as np, numpyro, numpyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with numpyro.plate("d", len(x)):
        ...         numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> est = ppgen.inference.SVI(steps=5, batch_size=4)
        >>> fit = ppgen.fit(model, {"x": np.zeros(8)}, est, runner=JaxDevices(1))
        >>> fit.diagnostics["devices"]
        'cpu:0'
    """

    def __init__(self, devices: int | None = None) -> None:
        if devices is not None and (not isinstance(devices, int) or devices < 1):
            raise EstimatorError(f"`devices` must be a positive int or None; got {devices!r}.")
        self.n = devices

    def run(self, estimator: Estimator, ctx: FitContext) -> Fit:
        import jax

        name, batch = type(estimator).__name__, getattr(estimator, "batch_size", None)
        if ctx.program.backend != "numpyro" or batch is None:
            raise EstimatorError(
                f"JaxDevices shards the minibatches of a NumPyro SVI or MLE fit; got {name} on "
                f"the {ctx.program.backend} backend with batch_size={batch}. Give the estimator "
                "batch_size= (a multiple of the device count) on a NumPyro program; for NUTS "
                "chains on several devices use NUTS(chain_method='parallel')."
            )
        local = jax.local_devices()
        n = self.n or len(local)
        if n > len(local):
            raise EstimatorError(
                f"JaxDevices({n}) but JAX sees {len(local)} device(s). On CPU, make host "
                f"devices before JAX starts: XLA_FLAGS=--xla_force_host_platform_device_count={n}."
            )
        ctx.extra["shard_devices"] = local[:n]
        return estimator.run(ctx)

    def __repr__(self) -> str:
        return f"JaxDevices({self.n})"
