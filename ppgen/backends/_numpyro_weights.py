"""Per-datum log importance weights of a local guide on NumPyro (``local_log_weights``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers

from ppgen.backends._weights import PARTICLE_PLATE, WeightSite, check_local, chunk_size
from ppgen.errors import PPGenError

__all__ = ["local_log_weights"]

_ERRORS = (RuntimeError, ValueError, IndexError, NotImplementedError, TypeError, AssertionError)


class _NotVectorized(Exception):
    """The particle plate did not broadcast through the program as a plate should."""


def _sample_sites(tr: Mapping[str, dict]) -> list[tuple[str, dict]]:
    return [(name, s) for name, s in tr.items() if s["type"] == "sample"]


def _frames(site: dict) -> list[Any]:
    return [f for f in site["cond_indep_stack"] if f.dim is not None]


def _is_delta(fn: Any) -> bool:
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, numpyro.distributions.Delta)


def _views(tr: Mapping[str, dict], role: str) -> list[WeightSite]:
    out = []
    for name, s in _sample_sites(tr):
        plates = tuple(f.name for f in _frames(s))
        observed = bool(s["is_observed"]) and role == "model"
        how = (s.get("infer") or {}).get("enumerate")
        out.append(WeightSite(name, role, observed, plates, _is_delta(s["fn"]), how is not None))
    return out


def _depth(*traces: Mapping[str, dict]) -> int:
    depth = 0
    for tr in traces:
        for _, s in _sample_sites(tr):
            depth = max(depth, len(s["fn"].batch_shape), *(-f.dim for f in _frames(s)), 0)
    return depth


def _plate_frame(tr: Mapping[str, dict], plate: str) -> tuple[int, int]:
    for _, s in _sample_sites(tr):
        for f in _frames(s):
            if f.name == plate:
                return int(f.dim), int(f.size)
    raise _NotVectorized(plate)


def _log_prob(s: dict) -> jax.Array:
    if s.get("intermediates"):
        return s["fn"].log_prob(s["value"], s["intermediates"])
    return s["fn"].log_prob(s["value"])


def _per_datum(lp: jax.Array, dim: int, depth: int, k: int, n: int) -> jax.Array:
    """``lp`` (particles at dim ``-depth - 1``, the data plate at ``dim``) summed over every
    other batch dim: ``(k, n)``."""
    lp = jnp.asarray(lp)
    if lp.ndim > depth + 1:
        raise _NotVectorized("an extra batch dim")
    lp = lp.reshape((1,) * (depth + 1 - lp.ndim) + tuple(lp.shape))
    at = depth + 1 + dim
    other = tuple(i for i in range(1, depth + 1) if i != at)
    if other:
        lp = lp.sum(axis=other, keepdims=True)
    if lp.shape[0] not in (1, k) or lp.shape[at] not in (1, n):
        raise _NotVectorized("a particle or data dim of the wrong size")
    return jnp.broadcast_to(lp.reshape(lp.shape[0], lp.shape[at]), (k, n))


def _run(
    model: Callable,
    guide: Callable,
    kwargs: Mapping[str, Any],
    key: jax.Array,
    k: int,
    depth: int | None,
) -> tuple[Any, Any]:
    """The guide's and the replayed model's traces; ``depth`` given: ``k`` particles in an
    outer plate at dim ``-depth - 1``; ``None``: one particle, the program as written."""
    kg, km = jax.random.split(key)
    vec = (
        numpyro.plate(PARTICLE_PLATE, k, dim=-depth - 1)
        if depth is not None
        else contextlib.nullcontext()
    )
    with vec:
        gtr = handlers.trace(handlers.seed(guide, kg)).get_trace(**kwargs)
        m = handlers.replay(handlers.seed(model, km), trace=gtr)
        mtr = handlers.trace(m).get_trace(**kwargs)
    return gtr, mtr


def _weights(gtr: Any, mtr: Any, plate: str, depth: int, k: int) -> jax.Array:
    dim, n = _plate_frame(mtr, plate)
    total = jnp.zeros((k, n))
    for _, s in _sample_sites(mtr):
        total = total + _per_datum(_log_prob(s), dim, depth, k, n)
    for _, s in _sample_sites(gtr):
        total = total - _per_datum(_log_prob(s), dim, depth, k, n)
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
    """See :meth:`ppgen.backends.BackendOps.local_log_weights`.

    Chunks of particles run jitted in an outer plate; a program that does not broadcast over
    it runs under ``jax.vmap`` over the particles' keys, and one that vmap cannot run either,
    particle by particle.
    """
    key = jax.random.PRNGKey(seed)
    gref, mref = _run(model, guide, kwargs, jax.random.fold_in(key, 0), 1, None)
    check_local(_views(mref, "model") + _views(gref, "guide"), plate)
    depth = _depth(gref, mref)
    per = sum(int(np.size(s["value"])) for tr in (gref, mref) for _, s in _sample_sites(tr))
    size = chunk_size(num_particles, 4 * per, max_values)

    def plated(key: jax.Array, k: int) -> jax.Array:
        return _weights(*_run(model, guide, kwargs, key, k, depth), plate, depth, k)

    def single(key: jax.Array) -> jax.Array:
        return _weights(*_run(model, guide, kwargs, key, 1, None), plate, depth, 1)[0]

    ways = {
        "plate": jax.jit(plated, static_argnums=1),
        "vmap": jax.jit(jax.vmap(single)),
        "loop": None,
    }
    order = list(ways)
    parts = [np.asarray(_weights(gref, mref, plate, depth, 1))]  # the reference: particle 1
    way, done, j = "plate", 1, 0
    while done < num_particles:
        k = min(size, num_particles - done)
        j += 1
        keys = jax.random.split(jax.random.fold_in(key, j), k)
        for attempt in order[order.index(way) :]:
            try:
                if attempt == "plate":
                    w = ways["plate"](keys[0], k)
                elif attempt == "vmap":
                    w = ways["vmap"](keys)
                else:
                    w = jnp.stack([single(keys[i]) for i in range(k)])
                break
            except PPGenError:
                raise
            except (*_ERRORS, _NotVectorized):
                if attempt == "loop":
                    raise
                way = order[order.index(attempt) + 1]  # this way fails: the next from now on
        parts.append(np.asarray(w))
        done += k
    return np.concatenate(parts).astype(np.float64)
