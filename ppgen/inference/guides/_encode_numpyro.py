"""Posterior means of a fitted NumPyro ``Amortized`` guide, batch by batch (``Fit.encode``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ppgen.errors import DataError
from ppgen.inference._svi_jax import unflatten_params
from ppgen.inference.guides._numpyro_flows import flow_mean

__all__ = ["means_fn", "posterior_means"]


def means_fn(guide: Any, num_samples: int, rest: Mapping[str, Any]) -> Callable:
    """Jitted ``(params, batch, key) -> {site: E_q[z]}`` of ``guide``, kept per setting on the
    guide: one compilation."""

    def means(params: dict[str, Any], b: dict[str, Any], key: jax.Array) -> dict[str, Any]:
        qs = guide.encode(params, **b, **rest)
        return {
            s: flow_mean(q, jax.random.fold_in(key, j), num_samples)
            for j, (s, q) in enumerate(qs.items())
        }

    setting = (num_samples, tuple(sorted(rest.items())))
    try:
        hash(setting)
    except TypeError:  # unhashable non-array data: compile for this call only
        return jax.jit(means)
    cache = guide.__dict__.setdefault("_means_cache", {})
    return cache.setdefault(setting, jax.jit(means))


def posterior_means(
    guide: Any,
    fit: Any,
    data: Mapping[str, Any],
    *,
    batch_size: int,
    num_samples: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """``{site: array (N, *shape)}``: the means of the fitted ``guide``'s local posteriors for
    ``data``, ``batch_size`` data at a time (see
    :func:`~ppgen.inference.guides._amortized_numpyro.encode`)."""
    fit.program.check_keys(data)
    native = fit.program.ops.native(fit.program.check_values(data), fit.device)
    missing = [k for k in guide.inputs if k not in native]
    if missing:
        raise DataError(f"`data` lacks the encoder input(s) {missing}; pass them to encode.")
    n = int(jnp.shape(native[guide.inputs[0]])[0])
    rest = {k: v for k, v in native.items() if not isinstance(v, jax.Array)}
    arrays = {k: v for k, v in native.items() if k not in rest}

    def batch(i: int) -> dict[str, Any]:
        return {
            k: v[i : i + batch_size] if v.ndim and len(v) == n else v for k, v in arrays.items()
        }

    def trace_params(b: dict[str, Any]) -> dict[str, Any]:
        fn = handlers.trace(handlers.seed(guide.posterior, rng_seed=0))
        return {k: s["value"] for k, s in fn.get_trace(**b, **rest).items() if s["type"] == "param"}

    means = means_fn(guide, num_samples, rest)
    with fit.program.ops.device_context(fit.device):
        like = jax.eval_shape(trace_params, batch(0))  # the params' tree structure, no compute
        try:
            params = unflatten_params(fit.params, like)
        except KeyError as e:
            raise DataError(
                f"The fit has no parameter {e} of the encoder; was it fitted with this guide?"
            ) from e
        out: dict[str, list[np.ndarray]] = {}
        for i in range(0, n, batch_size):
            key = jax.random.fold_in(jax.random.key(seed), i)
            for site, m in means(params, batch(i), key).items():
                out.setdefault(site, []).append(np.asarray(m))
    return {k: np.concatenate(v) for k, v in out.items()}
