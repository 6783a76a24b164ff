"""Networks for NumPyro programs with no neural-network library: ``numpyro.param`` MLPs and
an MLP critic, shared by the zoo (:mod:`ppgen.models`) and the estimators."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro

__all__ = ["mlp", "mlp_critic"]


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


def mlp_critic(
    in_features: int, hidden: tuple[int, ...], num_classes: list[int | None]
) -> tuple[Callable, Callable]:
    """An MLP critic: ``(init(key) -> params, apply(params, x, *context))``.

    The twin of :class:`ppgen.nn.Critic` (LeakyReLU 0.2, ``torch.nn.Linear`` initialisation):
    ``apply`` flattens each datum and appends each covariate of ``context`` (one-hot when its
    entry of ``num_classes`` is a class count, else flattened); ``in_features`` counts both.
    The default critic of the adversarial estimator on NumPyro.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> init, apply = mlp_critic(3, (8,), [])
        >>> apply(init(jax.random.PRNGKey(0)), jnp.zeros((5, 3))).shape
        (5,)
    """
    sizes = [in_features, *hidden, 1]

    def init(key: Any) -> list[tuple[Any, Any]]:
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            key, kw, kb = jax.random.split(key, 3)
            bound = 1.0 / math.sqrt(fan_in)
            w = jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound)
            b = jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)
            params.append((w, b))
        return params

    def apply(params: Any, x: Any, *context: Any) -> Any:
        n = x.shape[0]
        parts = [x.reshape(n, -1)]
        for c, k in zip(context, num_classes, strict=False):
            parts.append(jax.nn.one_hot(c.reshape(n), k, dtype=x.dtype) if k else c.reshape(n, -1))
        h = jnp.concatenate(parts, -1) if len(parts) > 1 else parts[0]
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.leaky_relu(h, 0.2)
        return h[:, 0]

    return init, apply
