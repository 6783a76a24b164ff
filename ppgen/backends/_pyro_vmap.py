"""Many posterior draws through a Pyro program at once with ``torch.func.vmap``.

The plate-vectorised path puts the draws on an extra batch dimension left of the program's
plates, which only works for programs written to broadcast (``X @ w`` with ``w`` of shape
``(S, 1, D)`` does not). Under ``vmap`` each draw sees exactly the shapes the program was
written for, so such programs run once for all draws instead of once per draw. A program
that ``vmap`` cannot run (Python control flow on tensor values, ``.item()``, in-place updates
of module state, subsampled plates, enumerated sites) raises, and the caller falls back to
the per-draw loop.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from torch.overrides import TorchFunctionMode

__all__ = ["vmap_log_likelihood", "vmap_predictive"]


def _to_shape(lp: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """One draw's log-density, broadcast to the site's batch shape."""
    lead = (1,) * max(0, lp.dim() - len(shape))
    return torch.broadcast_to(lp, lead + tuple(shape)).reshape(tuple(shape))


def vmap_log_likelihood(
    fn: Callable,
    kwargs: Mapping[str, Any],
    post: Mapping[str, torch.Tensor],
    shapes: Mapping[str, tuple[int, ...]],
) -> dict[str, np.ndarray]:
    """Pointwise log-density of ``shapes``' sites for every draw of ``post`` (leading axis S).

    Equal to running the program once per draw (up to float rounding of batched kernels).
    Elements masked out with ``poutine.mask`` are 0.
    Raises for a program ``vmap`` cannot run, or one that samples a site not in ``post``
    (``randomness="error"``) or enumerates one; the caller then loops over draws.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model(X, y=None):
        ...     w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...     with pyro.plate("data", X.shape[0]):
        ...         pyro.sample("y", dist.Normal(X @ w, 1.0), obs=y)
        >>> X, y, w = torch.ones(3, 2), torch.zeros(3), torch.zeros(4, 2)
        >>> vmap_log_likelihood(model, {"X": X, "y": y}, {"w": w}, {"y": (3,)})["y"].shape
        (4, 3)
    """

    def one(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tr = poutine.trace(poutine.condition(fn, sample)).get_trace(**kwargs)
        for site in tr.nodes.values():
            if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel":
                raise NotImplementedError("enumerated sites are summed out on the plate path")
        return {n: _to_shape(_log_prob(tr.nodes[n]), s) for n, s in shapes.items()}

    # distribution validation branches on tensor values, which vmap cannot do
    with torch.no_grad(), pyro.validation_enabled(False), _slow_ops_allowed():
        out = torch.func.vmap(one, randomness="error")(dict(post))
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def _log_prob(site: dict) -> torch.Tensor:
    return _masked(site["fn"].log_prob(site["value"]), site["mask"])


def _masked(lp: torch.Tensor, mask: Any) -> torch.Tensor:
    """``lp`` with masked-out elements 0 (``poutine.mask``), as Pyro's log-density has them."""
    if mask is None or mask is True:
        return lp
    if mask is False:
        return torch.zeros_like(lp)
    return torch.where(mask, lp, lp.new_zeros(()))


def vmap_predictive(
    fn: Callable,
    kwargs: Mapping[str, Any],
    post: Mapping[str, torch.Tensor],
    return_sites: list[str] | None,
) -> dict[str, np.ndarray]:
    """Sample ``fn``'s sites (observed ones re-drawn when ``fn`` is unconditioned) once per
    draw of ``post``: ``{site: array (S, *shape)}``, the sites of ``return_sites`` or, when
    ``None``, every sample site not in ``post``.

    Each draw gets its own random numbers (``randomness="different"``), from torch's global
    generator: the same distribution as the per-draw loop, not the same numbers.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model(X):
        ...     w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ...     with pyro.plate("data", X.shape[0]):
        ...         return pyro.sample("y", dist.Normal(X @ w, 1.0))
        >>> out = vmap_predictive(model, {"X": torch.ones(3, 2)}, {"w": torch.zeros(4, 2)}, None)
        >>> out["y"].shape
        (4, 3)
    """

    def one(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tr = poutine.trace(poutine.condition(fn, sample)).get_trace(**kwargs)
        out = {}
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or name.startswith("_"):
                continue
            if return_sites is not None and name not in return_sites:
                continue
            if return_sites is None and name in sample:
                continue
            if not hasattr(site["fn"], "batch_shape") or not torch.is_tensor(site["value"]):
                continue  # plate subsample sites
            out[name] = site["value"]
        return out

    with torch.no_grad(), pyro.validation_enabled(False), _FunctionalRandom(), _slow_ops_allowed():
        out = torch.func.vmap(one, randomness="different")(dict(post))
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


@contextlib.contextmanager
def _slow_ops_allowed() -> Iterator[None]:
    """An op without a batching rule (``clamp_`` in torch's StudentT sampler) still runs under
    ``vmap``, one draw at a time; torch warns about that on every call. Still faster than the
    per-draw loop for the rest of the program, so the notice is not passed on to users."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="There is a performance drop because we have not yet implemented"
        )
        yield


def _fill(t: torch.Tensor, draw: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    u = torch.rand(t.shape, dtype=t.dtype, device=t.device)
    value = draw(u)
    if t.is_floating_point():
        t.fill_(math.nan)  # a caller that ignores the returned tensor sees NaN, not noise
    return value


def _normal(t: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    z = torch.randn(t.shape, dtype=t.dtype, device=t.device)
    if t.is_floating_point():
        t.fill_(math.nan)
    return z * std + mean


def _log_normal(t: torch.Tensor, mean: float = 1.0, std: float = 2.0) -> torch.Tensor:
    return torch.exp(_normal(t, mean, std))


def _uniform(t: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return _fill(t, lambda u: u * (high - low) + low)


def _exponential(t: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    return _fill(t, lambda u: -torch.log1p(-u) / lambd)


def _cauchy(t: torch.Tensor, median: float = 0.0, sigma: float = 1.0) -> torch.Tensor:
    return _fill(t, lambda u: median + sigma * torch.tan(math.pi * (u - 0.5)))


def _geometric(t: torch.Tensor, p: float) -> torch.Tensor:
    return _fill(t, lambda u: torch.floor(torch.log1p(-u) / math.log1p(-p)) + 1)


_FILLS: dict[str, Callable[..., torch.Tensor]] = {
    "normal_": _normal,
    "log_normal_": _log_normal,
    "uniform_": _uniform,
    "exponential_": _exponential,
    "cauchy_": _cauchy,
    "geometric_": _geometric,
}


class _FunctionalRandom(TorchFunctionMode):
    """In-place random fills (``torch.empty(shape).normal_()``, as torch's and Pyro's samplers
    write them) as out-of-place draws, which ``vmap`` can make different per draw.

    The fill's returned tensor holds the draws (every sampler in torch and Pyro uses it); an
    unknown in-place random op, or one given a ``generator``, is left as is and makes ``vmap``
    raise, so the caller falls back to the per-draw loop.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        fill = _FILLS.get(getattr(func, "__name__", ""))
        if fill is not None and args and torch.is_tensor(args[0]) and "generator" not in kwargs:
            return fill(*args, **kwargs)
        return func(*args, **kwargs)
