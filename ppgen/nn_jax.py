"""Networks for NumPyro programs with no neural-network library, shared by the zoo
(:mod:`ppgen.models`) and the estimators: ``numpyro.param`` layers (:func:`mlp`,
:func:`linear`, :func:`conv2d`, :func:`conv_transpose2d`, :func:`group_norm`) and critics as
``(init, apply)`` pairs (:func:`mlp_critic`, :func:`conv_critic`).

Images are ``NCHW`` and conv weights are laid out and initialised as torch's (``Conv2d``:
``(out, in, kh, kw)``; ``ConvTranspose2d``: ``(in, out, kh, kw)``), so a layer here computes
what the torch layer with the same weights computes."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro

__all__ = [
    "conv2d",
    "conv_critic",
    "conv_transpose2d",
    "dense",
    "group_norm",
    "linear",
    "mlp",
    "mlp_critic",
    "pair_critic",
]


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


def linear(name: str, x: jax.Array, out_features: int) -> jax.Array:
    """``x @ W + b`` over the last axis, from ``numpyro.param`` sites ``{name}.weight`` (shape
    ``(in, out)``: torch's transposed) and ``{name}.bias``, initialised like
    ``torch.nn.Linear`` (uniform in :math:`\\pm 1/\\sqrt{\\text{fan-in}}`).

    Example:
        >>> from numpyro import handlers
        >>> f = handlers.seed(lambda x: linear("out", x, 3), rng_seed=0)
        >>> f(jnp.ones((5, 4))).shape
        (5, 3)
    """
    return _linear(name, x, int(out_features))


# ---------------------------------------------------------------------- convolutions (NCHW)
_CONV_DIMS = ("NCHW", "OIHW", "NCHW")


@functools.partial(jax.jit, static_argnames=("stride", "padding"))
def _conv(x: jax.Array, w: jax.Array, b: jax.Array, stride: int, padding: int) -> jax.Array:
    """torch's ``Conv2d``: ``x`` ``(N, C, H, W)``, ``w`` ``(out, in, kh, kw)``."""
    pad = [(padding, padding), (padding, padding)]
    out = jax.lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=_CONV_DIMS)
    return out + b[:, None, None]


@functools.partial(jax.jit, static_argnames=("stride", "padding"))
def _conv_t(x: jax.Array, w: jax.Array, b: jax.Array, stride: int, padding: int) -> jax.Array:
    """torch's ``ConvTranspose2d``: ``x`` ``(N, C, H, W)``, ``w`` ``(in, out, kh, kw)``.

    The transpose (gradient) of the stride-``stride`` convolution whose kernel is ``w`` read
    as ``(out=in, in=out)``: the input dilated by ``stride``, padded by ``k - 1 - padding`` on
    each side, convolved with ``w`` flipped in space and with its channel axes swapped.
    """
    kh, kw = w.shape[-2:]
    pad = [(kh - 1 - padding, kh - 1 - padding), (kw - 1 - padding, kw - 1 - padding)]
    out = jax.lax.conv_transpose(
        x, w, (stride, stride), pad, dimension_numbers=_CONV_DIMS, transpose_kernel=True
    )
    return out + b[:, None, None]


def _images(x: jax.Array) -> tuple[tuple[int, ...], jax.Array]:
    """The leading (batch) axes of ``(..., C, H, W)`` and ``x`` as ``(N, C, H, W)``."""
    if x.ndim < 3:
        raise ValueError(f"expected images shaped (..., C, H, W); got shape {x.shape}.")
    lead = x.shape[:-3]
    return lead, x.reshape(-1, *x.shape[-3:])


def conv2d(
    name: str,
    x: jax.Array,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
) -> jax.Array:
    """``torch.nn.Conv2d(C, out_channels, kernel_size, stride, padding)`` on ``(..., C, H, W)``.

    ``numpyro.param`` sites ``{name}.weight`` (torch's layout ``(out, in, k, k)``) and
    ``{name}.bias``, initialised like torch: uniform in :math:`\\pm 1/\\sqrt{C k^2}`.
    Leading axes are batch axes; the output is ``(..., out_channels, H', W')`` with
    ``H' = (H + 2 padding - k) // stride + 1``.

    Example:
        >>> from numpyro import handlers
        >>> f = handlers.seed(lambda x: conv2d("conv", x, 4, 4, stride=2, padding=1), 0)
        >>> f(jnp.ones((2, 5, 1, 8, 8))).shape
        (2, 5, 4, 4, 4)
    """
    lead, x4 = _images(x)
    k, cin, cout = int(kernel_size), x4.shape[1], int(out_channels)
    bound = 1.0 / math.sqrt(cin * k * k)
    w = numpyro.param(f"{name}.weight", _uniform(bound, (cout, cin, k, k), x.dtype))
    b = numpyro.param(f"{name}.bias", _uniform(bound, (cout,), x.dtype))
    out = _conv(x4, w, b, int(stride), int(padding))
    return out.reshape(*lead, *out.shape[1:])


def conv_transpose2d(
    name: str,
    x: jax.Array,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
) -> jax.Array:
    """``torch.nn.ConvTranspose2d(C, out_channels, kernel_size, stride, padding)``.

    On ``(..., C, H, W)``, to ``(..., out_channels, H', W')`` with
    ``H' = (H - 1) stride - 2 padding + k`` (``k=4, stride=2, padding=1`` doubles ``H``).
    ``numpyro.param`` sites ``{name}.weight`` (torch's layout ``(in, out, k, k)``) and
    ``{name}.bias``, initialised like torch, which counts the fan-in of a transposed
    convolution as ``out_channels * k * k``: uniform in
    :math:`\\pm 1/\\sqrt{\\text{out} \\cdot k^2}`.

    Example:
        >>> from numpyro import handlers
        >>> f = handlers.seed(lambda x: conv_transpose2d("up", x, 3, 4, 2, 1), rng_seed=0)
        >>> f(jnp.ones((5, 8, 2, 2))).shape
        (5, 3, 4, 4)
    """
    lead, x4 = _images(x)
    k, cin, cout = int(kernel_size), x4.shape[1], int(out_channels)
    bound = 1.0 / math.sqrt(cout * k * k)
    w = numpyro.param(f"{name}.weight", _uniform(bound, (cin, cout, k, k), x.dtype))
    b = numpyro.param(f"{name}.bias", _uniform(bound, (cout,), x.dtype))
    out = _conv_t(x4, w, b, int(stride), int(padding))
    return out.reshape(*lead, *out.shape[1:])


@functools.partial(jax.jit, static_argnames=("groups", "eps"))
def _group_norm(x: jax.Array, w: jax.Array, b: jax.Array, groups: int, eps: float) -> jax.Array:
    n, c, h, wd = x.shape
    g = x.reshape(n, groups, -1)
    mean = g.mean(-1, keepdims=True)
    var = ((g - mean) ** 2).mean(-1, keepdims=True)  # biased, as torch's
    g = (g - mean) * jax.lax.rsqrt(var + eps)
    return g.reshape(n, c, h, wd) * w[:, None, None] + b[:, None, None]


def group_norm(name: str, x: jax.Array, groups: int = 1, eps: float = 1e-5) -> jax.Array:
    """``torch.nn.GroupNorm(groups, C)`` on ``(..., C, H, W)``: per-sample, no running state.

    Each datum's channels, in ``groups`` groups, are normalised to mean 0 and variance 1
    over the group's channels and pixels, then scaled and shifted per channel by
    ``numpyro.param`` sites ``{name}.weight`` (init 1) and ``{name}.bias`` (init 0). One
    group is a layer norm over ``(C, H, W)`` with a per-channel affine. It uses no batch
    statistics, so it computes the same at training and sampling time for any batch size.

    Example:
        >>> from numpyro import handlers
        >>> x = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 2, 2)) * 5.0 + 2.0
        >>> y = handlers.seed(lambda x: group_norm("norm", x), rng_seed=0)(x)
        >>> [round(float(v), 3) for v in (y[0].mean(), y[0].std())]
        [0.0, 1.0]
    """
    lead, x4 = _images(x)
    c = x4.shape[1]
    if c % int(groups):
        raise ValueError(f"`groups={groups}` must divide the {c} channels.")
    w = numpyro.param(f"{name}.weight", lambda _: jnp.ones((c,), x.dtype))
    b = numpyro.param(f"{name}.bias", lambda _: jnp.zeros((c,), x.dtype))
    out = _group_norm(x4, w, b, int(groups), float(eps))
    return out.reshape(*lead, *out.shape[1:])


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


def dense(
    sizes: Sequence[int], activation: Callable[[jax.Array], jax.Array] = jax.nn.relu
) -> tuple[Callable, Callable]:
    """Fully connected layers through ``sizes``: ``(init(key) -> params, apply(params, x))``.

    ``activation`` between layers, none after the last; ``params`` is a list of ``(w, b)``
    initialised like ``torch.nn.Linear`` (uniform in plus or minus 1 / sqrt(fan-in)).

    Example:
        >>> init, apply = dense([4, 8, 3])
        >>> apply(init(jax.random.PRNGKey(0)), jnp.ones((5, 4))).shape
        (5, 3)
    """
    sizes = [int(s) for s in sizes]

    def init(key: Any) -> list[tuple[Any, Any]]:
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            key, kw, kb = jax.random.split(key, 3)
            bound = 1.0 / math.sqrt(fan_in)
            w = jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound)
            b = jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)
            params.append((w, b))
        return params

    def apply(params: Any, h: Any) -> Any:
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = activation(h)
        return h

    return init, apply


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
    init, net = dense([in_features, *hidden, 1], lambda h: jax.nn.leaky_relu(h, 0.2))

    def apply(params: Any, x: Any, *context: Any) -> Any:
        n = x.shape[0]
        parts = [x.reshape(n, -1)]
        for c, k in zip(context, num_classes, strict=False):
            parts.append(jax.nn.one_hot(c.reshape(n), k, dtype=x.dtype) if k else c.reshape(n, -1))
        h = jnp.concatenate(parts, -1) if len(parts) > 1 else parts[0]
        return net(params, h)[:, 0]

    return init, apply


def pair_critic(
    x_features: int,
    z_features: int,
    hidden: tuple[int, ...],
    num_latents: int = 1,
    context_features: int = 0,
    num_classes: Sequence[int | None] = (),
) -> tuple[Callable, Callable]:
    """The twin of :class:`ppgen.nn.PairCritic`: ``apply(params, x, *zs, *context)`` returns
    ``(batch, 3)``, the scores :math:`s_x(x)`, :math:`s_z(z)`, :math:`s_{xz}(x, z)` of three
    :func:`mlp_critic` MLPs (BigBiGAN's unary terms beside the joint one), each also given
    the covariates ``context`` (``context_features`` numbers, labels one-hot by
    ``num_classes``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> init, apply = pair_critic(4, 2, (8,))
        >>> apply(init(jax.random.PRNGKey(0)), jnp.zeros((5, 4)), jnp.zeros((5, 2))).shape
        (5, 3)
    """
    c, k, m = context_features, list(num_classes), num_latents
    nets = [
        mlp_critic(x_features + c, hidden, k),
        mlp_critic(z_features + c, hidden, [None] * (m - 1) + k),
        mlp_critic(x_features + z_features + c, hidden, [None] * m + k),
    ]

    def init(key: Any) -> list:
        return [net[0](kk) for net, kk in zip(nets, jax.random.split(key, 3), strict=True)]

    def apply(params: list, x: Any, *rest: Any) -> Any:
        (_, fx), (_, fz), (_, fxz) = nets
        zs, context = rest[:m], rest[m:]
        scores = [fx(params[0], x, *context), fz(params[1], *zs, *context)]
        return jnp.stack([*scores, fxz(params[2], x, *rest)], -1)

    return init, apply


def _conv_out(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def conv_critic(
    x_shape: Sequence[int],
    channels: Sequence[int] = (32, 64),
    num_classes: int = 0,
    kernel_size: int = 4,
    stride: int = 2,
    padding: int = 1,
) -> tuple[Callable, Callable]:
    """A convolutional critic for ``(C, H, W)`` images: ``(init(key, ...), apply(params, x, *c))``.

    ``Conv2d(kernel_size, stride, padding) -> LeakyReLU(0.2)`` for each width of
    ``channels`` (no normalisation, so a gradient penalty stays per sample), flatten, append
    the one-hot ``c[0]`` when ``num_classes``, ``Linear`` to one number per datum. Weights are
    laid out and initialised as torch's (``Conv2d`` ``(out, in, k, k)``), the twin of the
    Pyro DCGAN's critic; ``params`` is a list of ``(weight, bias)``. ``init`` ignores any
    arguments after the key, so the pair is a discriminator for
    :class:`~ppgen.inference.Adversarial` on NumPyro as it is.

    Example:
        >>> init, apply = conv_critic((1, 8, 8), (4, 8), num_classes=3)
        >>> params = init(jax.random.PRNGKey(0))
        >>> [w.shape for w, _ in params]
        [(4, 1, 4, 4), (8, 4, 4, 4), (35, 1)]
        >>> apply(params, jnp.zeros((5, 1, 8, 8)), jnp.arange(5) % 3).shape
        (5,)
    """
    shape = tuple(int(v) for v in x_shape)
    c, h, w = shape
    k, s, p = int(kernel_size), int(stride), int(padding)
    widths = [c, *(int(v) for v in channels)]
    for _ in channels:
        h, w = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
    if h < 1 or w < 1:
        raise ValueError(
            f"images of shape {tuple(x_shape)} are too small for {len(channels)} convs."
        )
    features = widths[-1] * h * w + int(num_classes)

    def init(key: Any, *_: Any) -> list[tuple[Any, Any]]:
        params = []
        shapes = [(o, i, k, k) for i, o in zip(widths[:-1], widths[1:], strict=True)]
        shapes.append((features, 1))
        for dims in shapes:  # torch's Conv2d / Linear initialisation: ±1/sqrt(fan-in)
            key, kw, kb = jax.random.split(key, 3)
            fan_in = math.prod(dims[1:]) if len(dims) == 4 else dims[0]
            bound = 1.0 / math.sqrt(fan_in)
            out = dims[0] if len(dims) == 4 else dims[1]
            wt = jax.random.uniform(kw, dims, minval=-bound, maxval=bound)
            params.append((wt, jax.random.uniform(kb, (out,), minval=-bound, maxval=bound)))
        return params

    def apply(params: Any, x: Any, *context: Any) -> Any:
        n = x.shape[0]
        if math.prod(x.shape[1:]) != math.prod(shape):
            raise ValueError(
                f"this conv critic was built for images of shape {shape}; got inputs of shape "
                f"{tuple(x.shape)} (PacGAN's packed inputs need a critic built for them)."
            )
        out = x.reshape(n, *shape)
        for wt, b in params[:-1]:
            out = jax.nn.leaky_relu(_conv(out, wt, b, s, p), 0.2)
        out = out.reshape(n, -1)
        if num_classes and context:
            onehot = jax.nn.one_hot(context[0].reshape(n), int(num_classes), dtype=out.dtype)
            out = jnp.concatenate([out, onehot], -1)
        wt, b = params[-1]
        return (out @ wt + b)[:, 0]

    return init, apply
