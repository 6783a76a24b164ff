"""The pure pieces of NumPyro ``Amortized`` heads (the networks are in :mod:`ppgen.nn_jax`)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__: list[str] = []


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
