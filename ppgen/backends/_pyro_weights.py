"""Per-datum log importance weights of a local guide on Pyro (``PyroOps.local_log_weights``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample

from ppgen.backends._pyro_ops import seeded
from ppgen.backends._pyro_vmap import _masked
from ppgen.backends._weights import PARTICLE_PLATE, WeightSite, check_local, chunk_size
from ppgen.errors import PPGenError

__all__ = ["local_log_weights"]

_ERRORS = (RuntimeError, ValueError, IndexError, NotImplementedError, TypeError)


class _NotVectorized(Exception):
    """The particle plate did not broadcast through the program as a plate should."""


def _sample_sites(tr: Any) -> list[tuple[str, dict]]:
    return [
        (name, site)
        for name, site in tr.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def _is_delta(fn: Any) -> bool:
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, pyro.distributions.Delta)


def _views(tr: Any, role: str) -> list[WeightSite]:
    out = []
    for name, site in _sample_sites(tr):
        plates = tuple(f.name for f in site["cond_indep_stack"] if f.vectorized)
        observed = bool(site["is_observed"]) and role == "model"
        how = (site.get("infer") or {}).get("enumerate")
        out.append(WeightSite(name, role, observed, plates, _is_delta(site["fn"]), how is not None))
    return out


def _depth(*traces: Any) -> int:
    depth = 0
    for tr in traces:
        for _, site in _sample_sites(tr):
            depth = max(depth, len(getattr(site["fn"], "batch_shape", ())))
            frames = [
                -f.dim for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None
            ]
            depth = max(depth, *frames, 0)
    return depth


def _plate_frame(tr: Any, plate: str) -> tuple[int, int]:
    for _, site in _sample_sites(tr):
        for f in site["cond_indep_stack"]:
            if f.name == plate and f.dim is not None:
                return int(f.dim), int(f.full_size or f.size)
    raise _NotVectorized(plate)


def _per_datum(lp: torch.Tensor, dim: int, depth: int, k: int, n: int) -> torch.Tensor:
    """``lp`` (particles at dim ``-depth - 1``, the data plate at ``dim``) summed over every
    other batch dim: ``(k, n)``."""
    if lp.dim() > depth + 1:
        raise _NotVectorized("an extra batch dim")
    lp = lp.reshape((1,) * (depth + 1 - lp.dim()) + tuple(lp.shape))
    at = depth + 1 + dim
    other = [i for i in range(1, depth + 1) if i != at]
    if other:
        lp = lp.sum(dim=other, keepdim=True)
    if lp.shape[0] not in (1, k) or lp.shape[at] not in (1, n):
        raise _NotVectorized("a particle or data dim of the wrong size")
    return torch.broadcast_to(lp.reshape(lp.shape[0], lp.shape[at]), (k, n))


def _run(
    model: Callable, guide: Callable, kwargs: Mapping[str, Any], k: int, depth: int | None
) -> tuple[Any, Any]:
    """The guide's and the replayed model's traces; ``depth`` given: ``k`` particles in an
    outer plate at dim ``-depth - 1``; ``None``: one particle, the program as written."""
    vec = (
        pyro.plate(PARTICLE_PLATE, k, dim=-depth - 1)
        if depth is not None
        else contextlib.nullcontext()
    )
    with vec:
        gtr = poutine.trace(guide).get_trace(**kwargs)
        mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(**kwargs)
    return gtr, mtr


def _weights(gtr: Any, mtr: Any, plate: str, depth: int, k: int) -> torch.Tensor:
    dim, n = _plate_frame(mtr, plate)
    total = None
    for tr, sign in ((mtr, 1.0), (gtr, -1.0)):
        for _, site in _sample_sites(tr):
            lp = _masked(site["fn"].log_prob(site["value"]), site["mask"])
            term = sign * _per_datum(lp, dim, depth, k, n)
            total = term if total is None else total + term
    return total


def local_log_weights(
    model: Callable,
    guide: Callable,
    kwargs: Mapping[str, Any],
    plate: str,
    num_particles: int,
    seed: int,
    max_values: int,
) -> np.ndarray:
    """See :meth:`ppgen.backends.BackendOps.local_log_weights`."""
    with torch.no_grad(), seeded(seed):
        gref, mref = _run(model, guide, kwargs, 1, None)
        check_local(_views(mref, "model") + _views(gref, "guide"), plate)
        depth = _depth(gref, mref)
        per = sum(int(s["value"].numel()) for tr in (gref, mref) for _, s in _sample_sites(tr))
        size = chunk_size(num_particles, 4 * per, max_values)
        parts = [_weights(gref, mref, plate, depth, 1)]  # the reference run is particle 1
        left, vectorized = num_particles - 1, size > 1
        while left > 0:
            k = min(size, left)
            if vectorized and k > 1:
                try:
                    parts.append(_weights(*_run(model, guide, kwargs, k, depth), plate, depth, k))
                    left -= k
                    continue
                except PPGenError:
                    raise
                except (*_ERRORS, _NotVectorized):
                    vectorized = False  # the program does not broadcast: particle by particle
            parts.append(_weights(*_run(model, guide, kwargs, 1, None), plate, depth, 1))
            left -= 1
    return torch.cat(parts).detach().cpu().numpy().astype(np.float64)
