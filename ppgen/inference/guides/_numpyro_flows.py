"""Conditional inverse-autoregressive flows with ``numpyro.param`` weights (NumPyro guides)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.flows import InverseAutoregressiveTransform
from numpyro.distributions.transforms import PermuteTransform

from ppgen.errors import ProgramError
from ppgen.nn_jax import _uniform

__all__ = ["ConditionalIAF", "check_flow_args", "conditional_iaf", "flow_mean", "made_masks"]

FLOW_KINDS = ("iaf",)
DEFAULT_TRANSFORMS = 5  # as ``ppgen.flows.build_flow`` for the autoregressive flows


def check_flow_args(
    flow: Any, flow_hidden_features: Any, num_transforms: Any
) -> tuple[str, int, int]:
    """Validated ``(flow, flow_hidden_features, num_transforms)``; a named error otherwise."""
    if flow not in FLOW_KINDS:
        raise ProgramError(
            f"`flow` for a NumPyro `Amortized` guide must be one of {FLOW_KINDS}; got {flow!r}. "
            "(The Pyro `Amortized` offers the other kinds of `ppgen.flows.build_flow`.)"
        )
    for arg, v in (
        ("flow_hidden_features", flow_hidden_features),
        ("num_transforms", num_transforms),
    ):
        if v is None and arg == "num_transforms":
            continue
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ProgramError(f"`{arg}` must be a positive int; got {v!r}.")
    n = DEFAULT_TRANSFORMS if num_transforms is None else int(num_transforms)
    return flow, int(flow_hidden_features), n


def made_masks(d: int, hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""MADE masks (Germain et al., 2015) for ``d`` inputs, two hidden layers of ``hidden``.

    Input :math:`i` has degree :math:`i` (1-based), hidden units degrees cycling over
    :math:`1..d-1`; a unit sees the inputs of degree :math:`\le` its own, and output
    :math:`k` (both its ``mean`` and ``log_scale`` columns) sees hidden units of degree
    :math:`< k`, so output :math:`k` depends on :math:`z_{<k}` only.

    Example:
        >>> m_in, m_hid, m_out = made_masks(3, 4)
        >>> m_in.shape, m_hid.shape, m_out.shape
        ((3, 4), (4, 4), (4, 6))
    """
    deg_in = np.arange(1, d + 1)
    deg_h = np.arange(hidden) % max(1, d - 1) + min(1, d - 1)
    m_in = (deg_in[:, None] <= deg_h[None, :]).astype(np.float32)
    m_hid = (deg_h[:, None] <= deg_h[None, :]).astype(np.float32)
    m_out = (deg_h[:, None] < deg_in[None, :]).astype(np.float32)
    return m_in, m_hid, np.concatenate([m_out, m_out], 1)


def _made(
    z: jax.Array, ctx: jax.Array, w: tuple[jax.Array, ...], m: tuple[jax.Array, ...]
) -> tuple[jax.Array, jax.Array]:
    """``(mean, log_scale)`` of one IAF layer: a masked MLP over ``z``, context in layer one.

    The log-scales are clipped to ``[-5, 3]`` with straight-through gradients (as NumPyro's
    ``InverseAutoregressiveTransform``)."""
    w_in, w_ctx, b_in, w_hid, b_hid, w_out, b_out = w
    h = jax.nn.relu(z @ (w_in * m[0]) + ctx @ w_ctx + b_in)
    h = jax.nn.relu(h @ (w_hid * m[1]) + b_hid)
    out = h @ (w_out * m[2]) + b_out
    d = z.shape[-1]
    ls = out[..., d:]
    return out[..., :d], ls + jax.lax.stop_gradient(jnp.clip(ls, -5.0, 3.0) - ls)


# Jitted whole: NumPyro runs the guide eagerly (``SVI.init``, ppgen's program check), where
# every primitive would otherwise be compiled on its own.
@jax.jit
def _iaf_forward(x: jax.Array, ctx: jax.Array, w: tuple, m: tuple) -> tuple[jax.Array, jax.Array]:
    mean, ls = _made(x, ctx, w, m)
    return jnp.exp(ls) * x + mean, ls


@jax.jit
def _iaf_inverse(y: jax.Array, ctx: jax.Array, w: tuple, m: tuple) -> jax.Array:
    def step(_: int, x: jax.Array) -> jax.Array:  # after step i, x_{<=i} is exact
        mean, ls = _made(x, ctx, w, m)
        return (y - mean) * jnp.exp(-ls)

    return jax.lax.fori_loop(0, y.shape[-1], step, jnp.zeros_like(y))


class _ConditionalIAFTransform(InverseAutoregressiveTransform):
    """NumPyro's IAF transform, ``y = exp(s(x, h)) x + mu(x, h)``, with a context ``h``."""

    def __init__(self, ctx: jax.Array, w: tuple, masks: tuple) -> None:
        self.ctx, self.w, self.masks = ctx, w, masks
        self.log_scale_min_clip, self.log_scale_max_clip = -5.0, 3.0  # as in ``_made``

    @property
    def arn(self) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
        return partial(_made, ctx=self.ctx, w=self.w, m=self.masks)

    def tree_flatten(self) -> tuple[tuple, tuple]:
        names = ("ctx", "w", "masks", "log_scale_min_clip", "log_scale_max_clip")
        return tuple(getattr(self, k) for k in names), (names, {})

    def call_with_intermediates(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _iaf_forward(x, self.ctx, self.w, self.masks)

    def _inverse(self, y: jax.Array) -> jax.Array:
        return _iaf_inverse(y, self.ctx, self.w, self.masks)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates: Any = None) -> Any:
        ls = intermediates if intermediates is not None else self.call_with_intermediates(x)[1]
        return ls.sum(-1)


class ConditionalIAF(dist.TransformedDistribution):
    r"""A diagonal Normal pushed through conditional IAF layers: :math:`q(z \mid h)`.

    ``log_prob`` of the distribution's own samples reads the cached log-scales (one pass per
    layer); of any other value it inverts each layer (``d`` passes), broadcasting the value
    against the batch first. ``sample_mean`` estimates :math:`\mathbb E_q[z]` (no closed form).

    Example:
        >>> from numpyro import handlers
        >>> f = lambda: conditional_iaf("f", jnp.zeros((4, 2)), jnp.ones((4, 2)), jnp.ones((4, 3)))
        >>> q = handlers.seed(f, rng_seed=0)()
        >>> z = q.sample(jax.random.key(1), (5,))
        >>> z.shape, q.log_prob(z).shape
        ((5, 4, 2), (5, 4))
    """

    def log_prob(self, value: jax.Array, intermediates: Any = None) -> jax.Array:
        if intermediates is None:
            lead = jnp.broadcast_shapes(jnp.shape(value)[:-1], self.batch_shape)
            value = jnp.broadcast_to(value, lead + self.event_shape)
        return super().log_prob(value, intermediates)

    def sample_mean(self, key: jax.Array, num_samples: int) -> jax.Array:
        """Monte Carlo mean of ``num_samples`` draws, accumulated (memory of one draw)."""

        def add(total: jax.Array, k: jax.Array) -> tuple[jax.Array, None]:
            return total + self.sample(k), None

        zero = jnp.zeros(self.batch_shape + self.event_shape, self.base_dist.mean.dtype)
        total, _ = jax.lax.scan(add, zero, jax.random.split(key, num_samples))
        return total / num_samples


def _layer_params(name: str, d: int, c: int, hidden: int, dtype: Any) -> tuple[jax.Array, ...]:
    def p(suffix: str, shape: tuple[int, ...], fan_in: int) -> jax.Array:
        bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
        return numpyro.param(f"{name}.{suffix}", _uniform(bound, shape, dtype))

    def zeros(shape: tuple[int, ...]) -> Callable[[jax.Array], jax.Array]:
        return lambda key: jnp.zeros(shape, dtype)

    return (
        p("in.weight", (d, hidden), d + c),
        p("context.weight", (c, hidden), d + c),
        p("in.bias", (hidden,), d + c),
        p("hidden.weight", (hidden, hidden), hidden),
        p("hidden.bias", (hidden,), hidden),
        # zero output layer: every layer starts as the identity, q as the diagonal Normal
        numpyro.param(f"{name}.out.weight", zeros((hidden, 2 * d))),
        numpyro.param(f"{name}.out.bias", zeros((2 * d,))),
    )


def conditional_iaf(
    name: str,
    loc: jax.Array,
    scale: jax.Array,
    context: jax.Array,
    *,
    num_transforms: int = DEFAULT_TRANSFORMS,
    hidden_features: int = 64,
) -> ConditionalIAF:
    r"""A conditional IAF posterior :math:`q(z \mid h)` with ``numpyro.param`` weights.

    .. math:: z = T_K \circ P \circ \dots \circ P \circ T_1(\mu + \sigma \odot \epsilon),
        \qquad T_k(u) = \mu_k(u_{<}, h) + e^{s_k(u_{<}, h)} \odot u

    .. math:: \log q(z \mid h) = \log \mathcal N(\epsilon) - \textstyle\sum_i \log \sigma_i
        - \sum_k \sum_i s_{k,i}

    Each :math:`(\mu_k, s_k)` is a two-hidden-layer MADE over :math:`u` whose first layer also
    reads the context :math:`h` (unmasked); :math:`P` reverses the features; the log-scales
    are clipped to ``[-5, 3]`` (NumPyro's ``InverseAutoregressiveTransform``). Weights are
    ``numpyro.param`` sites ``{name}.{k}.{in,context,hidden,out}.{weight,bias}``; the output
    layers start at zero, so the flow starts as the identity.

    References:
        Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow,
        arXiv:1606.04934.
        Germain et al., MADE: Masked Autoencoder for Distribution Estimation, arXiv:1502.03509.

    Arguments:
        name: prefix of the parameter names.
        loc, scale: ``(B, d)`` base Normal parameters.
        context: ``(B, C)`` features :math:`h`.
        num_transforms: number of IAF layers ``K``.
        hidden_features: width of each MADE's hidden layers.

    Returns:
        A :class:`ConditionalIAF` with batch shape ``(B,)`` and event shape ``(d,)``.

    Example:
        >>> from numpyro import handlers
        >>> f = lambda: conditional_iaf("f", jnp.zeros((4, 2)), jnp.ones((4, 2)), jnp.ones((4, 3)))
        >>> q = handlers.seed(f, rng_seed=0)()
        >>> q.batch_shape, q.event_shape
        ((4,), (2,))
    """
    d, c = loc.shape[-1], context.shape[-1]
    masks = tuple(jnp.asarray(m, loc.dtype) for m in made_masks(d, hidden_features))
    transforms: list[Any] = []
    for k in range(num_transforms):
        if k:
            transforms.append(PermuteTransform(jnp.arange(d)[::-1]))
        w = _layer_params(f"{name}.{k}", d, c, hidden_features, loc.dtype)
        transforms.append(_ConditionalIAFTransform(context, w, masks))
    return ConditionalIAF(dist.Normal(loc, scale).to_event(1), transforms)


def flow_mean(q: dist.Distribution, key: jax.Array, num_samples: int) -> jax.Array:
    """``q.mean`` where it has one, else the Monte Carlo mean of a :class:`ConditionalIAF`.

    Example:
        >>> flow_mean(dist.Normal(jnp.zeros(3), 1.0), jax.random.key(0), 10).shape
        (3,)
    """
    if isinstance(q, ConditionalIAF):
        return q.sample_mean(key, num_samples)
    return q.mean
