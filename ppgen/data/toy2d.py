"""Two-dimensional toy densities for flows: two moons, 8 Gaussians, checkerboard, rings.

Every sampler draws ``n`` i.i.d. points from a fixed density with a seeded NumPy generator and
returns a ``float32`` array of shape ``(n, 2)``. The densities follow the usual conventions of
the flow literature (scikit-learn's ``make_moons``; FFJORD's ``8gaussians``, ``checkerboard``
and ``rings``), with the points drawn at random along the curves rather than on a grid, so a
held-out sample is a fair test set. Each sampler has a ``*_log_prob`` twin, the true log
density (in nats): its mean over a test sample is the best test log-likelihood a model can
reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "TOY2D",
    "TOY2D_LOG_PROB",
    "checkerboard",
    "checkerboard_log_prob",
    "eight_gaussians",
    "eight_gaussians_log_prob",
    "moons",
    "moons_log_prob",
    "rings",
    "rings_log_prob",
    "two_gaussians",
    "two_gaussians_score",
]

#: FFJORD's 8 Gaussians: centres on a circle of radius 4 / sqrt(2), scale 0.5 / sqrt(2)
EIGHT_RADIUS = 4.0 / math.sqrt(2.0)
EIGHT_SCALE = 0.5 / math.sqrt(2.0)
#: FFJORD's rings: four circles of radii 0.75, 1.5, 2.25, 3, radial noise 0.08
RING_RADII = (0.75, 1.5, 2.25, 3.0)
RING_NOISE = 0.08


def _check(n: int, **positive: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be a positive int (the number of points), got {n!r}.")
    for name, v in positive.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0, got {v!r}.")


def moons(n: int = 1000, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    r"""Two interleaving half circles plus isotropic Gaussian noise (scikit-learn's moons).

    .. math:: t \sim \mathcal{U}[0, \pi], \quad x = \begin{cases}
        (\cos t, \sin t) & \text{upper moon} \\ (1 - \cos t, \tfrac12 - \sin t) &
        \text{lower moon} \end{cases} + \sigma \varepsilon

    Each moon has probability 1/2. With ``noise=0.05`` the density's negative entropy (the
    best achievable test log-likelihood) is about -0.28 nats (-1.00 with ``noise=0.1``).

    Arguments:
        n: The number of points.
        noise: The standard deviation :math:`\sigma` of the noise.
        seed: The seed of the NumPy generator.

    Returns:
        A ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> x = moons(500, seed=1)
        >>> x.shape, x.dtype
        ((500, 2), dtype('float32'))
    """
    _check(n, noise=noise)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, math.pi, n)
    lower = rng.random(n) < 0.5
    x = np.where(lower, 1.0 - np.cos(t), np.cos(t))
    y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
    out = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    return out.astype(np.float32)


def eight_gaussians(
    n: int = 1000, radius: float = EIGHT_RADIUS, scale: float = EIGHT_SCALE, seed: int = 0
) -> np.ndarray:
    r"""An equal mixture of 8 isotropic Gaussians with centres evenly spaced on a circle.

    .. math:: p(x) = \frac18 \sum_{k=0}^{7} \mathcal{N}\left(x \mid r (\cos \tfrac{k\pi}{4},
        \sin \tfrac{k\pi}{4}), s^2 I\right)

    With the defaults (FFJORD's) the modes barely overlap and the negative entropy is
    :math:`-\log 8 - \log(2\pi e s^2) \approx -2.84` nats.

    Arguments:
        n: The number of points.
        radius: The radius :math:`r` of the circle of centres.
        scale: The standard deviation :math:`s` of each Gaussian.
        seed: The seed of the NumPy generator.

    Returns:
        A ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> eight_gaussians(3).shape
        (3, 2)
    """
    _check(n, radius=radius, scale=scale)
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 8, n)
    angle = k * (math.pi / 4)
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centres + scale * rng.standard_normal((n, 2))).astype(np.float32)


def two_gaussians(n: int = 1000, weight: float = 0.8, seed: int = 0) -> np.ndarray:
    r"""Song & Ermon's (2019) two-mode mixture :math:`w\,\mathcal N((5, 5), I) + (1 - w)\,
    \mathcal N((-5, -5), I)`, whose far-apart modes plain Langevin dynamics weighs wrongly.

    Example:
        >>> x = two_gaussians(1000)
        >>> x.shape, round(float((x.sum(1) > 0).mean()), 1)
        ((1000, 2), 0.8)
    """
    _check(n, weight=weight)
    rng = np.random.default_rng(seed)
    heavy = rng.random(n) < weight
    return (np.where(heavy[:, None], 5.0, -5.0) + rng.standard_normal((n, 2))).astype(np.float32)


def two_gaussians_score(x: np.ndarray, weight: float = 0.8, sigma: float = 0.0) -> np.ndarray:
    r"""The true score :math:`\nabla_x \log p(x)` of :func:`two_gaussians`, blurred by
    :math:`\mathcal N(0, \sigma^2 I)` (each component's covariance becomes
    :math:`(1 + \sigma^2) I`).

    Example: at a mode's centre the other mode's pull is negligible.

        >>> float(np.abs(two_gaussians_score(np.array([[5.0, 5.0]]))).max()) < 1e-6
        True
    """
    u = _as_points(np.asarray(x, dtype=np.float64))
    var = 1.0 + sigma**2
    centres = np.array([[5.0, 5.0], [-5.0, -5.0]])
    logp = np.log([weight, 1.0 - weight]) - 0.5 * ((u[:, None, :] - centres) ** 2).sum(-1) / var
    r = np.exp(logp - logp.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    return (r[:, :, None] * (centres - u[:, None, :])).sum(1) / var


def checkerboard(n: int = 1000, seed: int = 0) -> np.ndarray:
    r"""Uniform on the 8 "black" squares of a 4x4 board of side-2 squares on :math:`[-4, 4]^2`.

    A point lies on a black square when :math:`\lfloor x/2 \rfloor + \lfloor y/2 \rfloor` is
    even. The density is :math:`1/32` there and 0 elsewhere, so the best test
    log-likelihood is :math:`-\log 32 \approx -3.47` nats.

    Arguments:
        n: The number of points.
        seed: The seed of the NumPy generator.

    Returns:
        A ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> x = checkerboard(1000)
        >>> bool(((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0).all())
        True
    """
    _check(n)
    rng = np.random.default_rng(seed)
    col = rng.integers(-2, 2, n)  # floor(x / 2) in -2..1
    row = 2 * rng.integers(-1, 1, n) + (col % 2)  # same parity as col: a black square
    xy = np.stack([col, row], axis=1) + rng.random((n, 2))
    out = (2.0 * xy).astype(np.float32)
    # float32 rounding can carry a point onto the next square's edge: keep it inside its own
    upper = np.nextafter((2.0 * (np.stack([col, row], axis=1) + 1)).astype(np.float32), -np.inf)
    return np.minimum(out, upper)


def rings(
    n: int = 1000,
    radii: tuple[float, ...] = RING_RADII,
    noise: float = RING_NOISE,
    seed: int = 0,
) -> np.ndarray:
    r"""Concentric circles with radial Gaussian noise, each circle with equal probability.

    .. math:: k \sim \mathcal{U}\{1..K\}, \quad \theta \sim \mathcal{U}[0, 2\pi), \quad
        x = (r_k + \sigma \varepsilon)(\cos\theta, \sin\theta)

    Arguments:
        n: The number of points.
        radii: The radii :math:`r_k` (FFJORD's 0.75, 1.5, 2.25, 3 by default).
        noise: The radial standard deviation :math:`\sigma`.
        seed: The seed of the NumPy generator.

    Returns:
        A ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> r = np.linalg.norm(rings(2000, noise=0.0), axis=1)
        >>> sorted(np.unique(r.round(2)).tolist())
        [0.75, 1.5, 2.25, 3.0]
    """
    _check(n, noise=noise)
    if len(radii) == 0 or any(not (isinstance(r, int | float) and r > 0) for r in radii):
        raise ValueError(f"`radii` must be a non-empty sequence of positive numbers, got {radii}.")
    rng = np.random.default_rng(seed)
    r = np.asarray(radii, dtype=np.float64)[rng.integers(0, len(radii), n)]
    theta = rng.uniform(0.0, 2 * math.pi, n)
    r = r + noise * rng.standard_normal(n)
    return (r[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)).astype(np.float32)


def _as_points(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"`x` must be an array of shape (n, 2), got shape {x.shape}.")
    return x


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def moons_log_prob(x: np.ndarray, noise: float = 0.05, grid: int = 1024) -> np.ndarray:
    r"""The log density of :func:`moons`, by quadrature over the position along each moon.

    .. math:: p(x) = \frac{1}{2\pi} \sum_{\text{moon}} \int_0^\pi
        \mathcal{N}(x \mid c_{\text{moon}}(t), \sigma^2 I) \, dt

    Arguments:
        x: Points of shape ``(n, 2)``.
        noise: The ``noise`` of the sampler (must be positive).
        grid: The number of midpoints of the quadrature in :math:`t` (spacing ``pi / grid``,
            much finer than ``noise``).

    Returns:
        ``float64`` log densities of shape ``(n,)``.

    Example:
        >>> x = moons(5000, seed=1)
        >>> round(float(moons_log_prob(x).mean()), 1)  # minus the entropy of the density
        -0.3
    """
    x = _as_points(x)
    if not noise > 0:
        raise ValueError(f"`noise` must be positive for a density, got {noise!r}.")
    t = (np.arange(grid) + 0.5) * (math.pi / grid)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    centres = np.concatenate([upper, np.array([1.0, 0.5]) - upper])
    out = np.empty(len(x))
    for i in range(0, len(x), 2048):  # (chunk, 2 * grid) distances at a time
        d2 = ((x[i : i + 2048, None, :] - centres[None]) ** 2).sum(-1)
        out[i : i + 2048] = _logsumexp(-0.5 * d2 / noise**2, axis=1)
    return out - math.log(2 * grid) - math.log(2 * math.pi * noise**2)


def eight_gaussians_log_prob(
    x: np.ndarray, radius: float = EIGHT_RADIUS, scale: float = EIGHT_SCALE
) -> np.ndarray:
    r"""The log density of :func:`eight_gaussians` (an exact mixture density).

    Example:
        >>> x = eight_gaussians(20_000, seed=1)
        >>> round(float(eight_gaussians_log_prob(x).mean()), 1)  # -log 8 - log(2 pi e s^2)
        -2.8
    """
    x = _as_points(x)
    angle = np.arange(8) * (math.pi / 4)
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    return _logsumexp(-0.5 * d2 / scale**2, axis=1) - math.log(8 * 2 * math.pi * scale**2)


def checkerboard_log_prob(x: np.ndarray) -> np.ndarray:
    r"""The log density of :func:`checkerboard`: :math:`-\log 32` on black squares, else -inf.

    Example:
        >>> checkerboard_log_prob(np.array([[0.5, 0.5], [0.5, -0.5]])).round(3).tolist()
        [-3.466, -inf]
    """
    x = _as_points(x)
    cell = np.floor(x / 2)
    inside = (np.abs(x) <= 4).all(1) & ((cell.sum(1) % 2) == 0)
    return np.where(inside, -math.log(32.0), -np.inf)


def rings_log_prob(
    x: np.ndarray, radii: tuple[float, ...] = RING_RADII, noise: float = RING_NOISE
) -> np.ndarray:
    r"""The log density of :func:`rings` (exact; a radius below 0 flips the angle by pi).

    .. math:: p(x) = \frac{1}{2\pi \|x\|} \frac{1}{K} \sum_k \left[
        \mathcal{N}(\|x\| \mid r_k, \sigma^2) + \mathcal{N}(-\|x\| \mid r_k, \sigma^2)\right]

    Example:
        >>> float(rings_log_prob(np.array([[3.0, 0.0]]))[0]) > float(
        ...     rings_log_prob(np.array([[2.6, 0.0]]))[0])
        True
    """
    x = _as_points(x)
    if not noise > 0:
        raise ValueError(f"`noise` must be positive for a density, got {noise!r}.")
    r = np.maximum(np.linalg.norm(x, axis=1), 1e-300)
    rk = np.asarray(radii, dtype=np.float64)
    z = np.concatenate([(r[:, None] - rk) / noise, (r[:, None] + rk) / noise], axis=1)
    log_radial = _logsumexp(-0.5 * z**2, axis=1) - math.log(
        len(rk) * math.sqrt(2 * math.pi) * noise
    )
    return log_radial - np.log(2 * math.pi * r)


#: The toy densities by name (the names ``ppgen.data.load`` accepts).
TOY2D: dict[str, Callable[..., np.ndarray]] = {
    "moons": moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "rings": rings,
}

#: The true log density of each toy density, by name.
TOY2D_LOG_PROB: dict[str, Callable[..., np.ndarray]] = {
    "moons": moons_log_prob,
    "eight_gaussians": eight_gaussians_log_prob,
    "checkerboard": checkerboard_log_prob,
    "rings": rings_log_prob,
}
