"""Small networks with ``numpyro.param`` weights: the pure pieces of NumPyro ``Amortized``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

__all__ = ["mlp"]


# The pure pieces are jitted: NumPyro runs a guide eagerly once (``SVI.init``), where every
# primitive would otherwise be compiled on its own; under ``jit`` they are inlined.
@jax.jit
def _affine(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return x @ w + b


@jax.jit
def _relu_affine(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return jax.nn.relu(x @ w + b)


def _uniform(bound: float, shape: tuple[int, ...], dtype: Any) -> Callable[[jax.Array], jax.Array]:
    """``torch.nn.Linear``'s initialiser: uniform in ``[-bound, bound]``."""
    return lambda key: jax.random.uniform(key, shape, dtype, -bound, bound)


def _linear(name: str, x: jax.Array, out_features: int, relu: bool = False) -> jax.Array:
    fan_in = x.shape[-1]
    bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
    w = numpyro.param(f"{name}.weight", _uniform(bound, (fan_in, out_features), x.dtype))
    b = numpyro.param(f"{name}.bias", _uniform(bound, (out_features,), x.dtype))
    return (_relu_affine if relu else _affine)(x, w, b)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _split(out: jax.Array, family: str, d: int, rank: int) -> tuple[jax.Array, ...]:
    """Head outputs to (loc, scale) / (loc, factor, diag) / (loc, scale_tril)."""
    loc = out[..., :d]
    if family == "normal":
        return loc, jax.nn.softplus(out[..., d:]) + 1e-4
    if family == "lowrank":
        diag = jax.nn.softplus(out[..., d : 2 * d]) + 1e-4
        return loc, out[..., 2 * d :].reshape(out.shape[:-1] + (d, rank)), diag
    rows, cols = np.tril_indices(d)
    tril = jnp.zeros(out.shape[:-1] + (d, d), out.dtype).at[..., rows, cols].set(out[..., d:])
    diag = jax.nn.softplus(jnp.diagonal(tril, axis1=-2, axis2=-1)) + 1e-4
    return loc, jnp.tril(tril, -1) + diag[..., None] * jnp.eye(d, dtype=out.dtype)


def _float(x: jax.Array) -> jax.Array:
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def mlp(
    name: str,
    x: jax.Array,
    hidden_features: Sequence[int] = (256, 256),
    out_features: int | None = None,
) -> jax.Array:
    """``Linear -> ReLU`` layers (then one ``Linear`` to ``out_features``) over the last axis.

    The weights are ``numpyro.param`` sites ``{name}.{i}.weight`` / ``{name}.{i}.bias``,
    initialised like ``torch.nn.Linear`` (uniform in :math:`\\pm 1/\\sqrt{\\text{fan-in}}`), so a
    NumPyro program can own a network without a neural-network library.

    Example:
        >>> from numpyro import handlers
        >>> f = handlers.seed(lambda x: mlp("net", x, (8,), 3), rng_seed=0)
        >>> f(jnp.ones((5, 4))).shape
        (5, 3)
    """
    for i, h in enumerate(hidden_features):
        x = _linear(f"{name}.{i}", x, int(h), relu=True)
    if out_features is not None:
        x = _linear(f"{name}.{len(hidden_features)}", x, int(out_features))
    return x
