"""Runners: what drives an estimator on a prepared fit context (locally, or data-parallel)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ppgen.inference._base import Estimator, FitContext
    from ppgen.result import Fit

__all__ = ["Runner", "Local"]


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
