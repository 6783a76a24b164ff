r"""The mode-collapse benchmarks of PacGAN: a ring of 8 and a grid of 25 tight 2-D Gaussians.

Both are equal-weight mixtures of isotropic Gaussians whose modes are far apart compared with
their scale, so a generator's samples can be assigned to modes without ambiguity and scored
with :func:`ppgen.analysis.sample_quality.mode_coverage`:

* ``ring8``: 8 modes evenly on the unit circle, :math:`\mu_k = (\cos \frac{2\pi k}{8},
  \sin \frac{2\pi k}{8})`, standard deviation :math:`\sigma = 0.01`;
* ``grid25``: 25 modes with means :math:`\{-4, -2, 0, 2, 4\}^2`, :math:`\sigma = 0.05`.

The centres, their order and the scales are those of PacGAN's code (``MEANS`` and
``VARIANCES`` in ``synthetic_data_experiments/2DRing_GAN&PacGAN/config.py`` and
``2DGrid_GAN&PacGAN/config.py`` of github.com/fjxmlzn/PacGAN), which follow VEEGAN's
benchmarks. PacGAN trains on 100,000 points and scores 2,500 generated samples.

References:
    Lin, Khetan, Fanti & Oh (2018), PacGAN: The power of two samples in generative
    adversarial networks, NeurIPS. arXiv:1712.04086
    Srivastava et al. (2017), VEEGAN: Reducing mode collapse in GANs using implicit
    variational learning, NeurIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ppgen.data.toy2d import _check

__all__ = [
    "GRID25_SIGMA",
    "MODES2D",
    "PACGAN_EVAL_SAMPLES",
    "RING8_RADIUS",
    "RING8_SIGMA",
    "grid25",
    "grid25_centres",
    "mode_spec",
    "ring8",
    "ring8_centres",
]

#: PacGAN's ring: radius 1, standard deviation 0.01 per coordinate
RING8_RADIUS = 1.0
RING8_SIGMA = 0.01
#: PacGAN's grid: means {-4, -2, 0, 2, 4}^2, standard deviation 0.05 per coordinate
GRID25_SIGMA = 0.05
#: the number of generated samples PacGAN scores (``num_log_figure_sample``)
PACGAN_EVAL_SAMPLES = 2500


def ring8_centres() -> np.ndarray:
    r"""The 8 mode centres of :func:`ring8`, :math:`(\cos \frac{2\pi k}{8}, \sin \frac{2\pi k}{8})`.

    Returns:
        A ``float64`` array of shape ``(8, 2)``, mode ``k`` at angle :math:`2\pi k / 8`.

    Example:
        >>> ring8_centres()[:3].round(3).tolist()
        [[1.0, 0.0], [0.707, 0.707], [0.0, 1.0]]
    """
    angle = np.arange(8) * (2 * math.pi / 8)
    return RING8_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def grid25_centres() -> np.ndarray:
    r"""The 25 mode centres of :func:`grid25`, :math:`\{-4, -2, 0, 2, 4\}^2` in row-major order.

    Returns:
        A ``float64`` array of shape ``(25, 2)``; mode ``5 i + j`` is at ``(2 i - 4, 2 j - 4)``.

    Example:
        >>> grid25_centres()[[0, 1, 24]].tolist()
        [[-4.0, -4.0], [-4.0, -2.0], [4.0, 4.0]]
    """
    axis = np.arange(-4.0, 5.0, 2.0)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(25, 2)


def _mixture(n: int, centres: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    _check(n)
    rng = np.random.default_rng(seed)
    k = rng.integers(0, len(centres), n)
    return (centres[k] + sigma * rng.standard_normal((n, 2))).astype(np.float32)


def ring8(n: int = PACGAN_EVAL_SAMPLES, seed: int = 0) -> np.ndarray:
    r"""PacGAN's ring: an equal mixture of 8 Gaussians on the unit circle, :math:`\sigma = 0.01`.

    .. math:: p(x) = \frac18 \sum_{k=0}^{7} \mathcal{N}\left(x \mid (\cos \tfrac{2\pi k}{8},
        \sin \tfrac{2\pi k}{8}), 0.01^2 I\right)

    Arguments:
        n: The number of points.
        seed: The seed of the NumPy generator.

    Returns:
        A ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> x = ring8(1000, seed=1)
        >>> x.shape, x.dtype
        ((1000, 2), dtype('float32'))
        >>> bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=0.06))
        True
    """
    return _mixture(n, ring8_centres(), RING8_SIGMA, seed)


def grid25(n: int = PACGAN_EVAL_SAMPLES, seed: int = 0) -> np.ndarray:
    r"""PacGAN's grid: an equal mixture of 25 Gaussians on :math:`\{-4,-2,0,2,4\}^2`, sd 0.05.

    .. math:: p(x) = \frac{1}{25} \sum_{i, j \in \{-4, -2, 0, 2, 4\}}
        \mathcal{N}\left(x \mid (i, j), 0.05^2 I\right)

    Arguments:
        n: The number of points.
        seed: The seed of the NumPy generator.

    Returns:
        A ``float32`` array of shape ``(n, 2)``.

    Example:
        >>> x = grid25(1000, seed=1)
        >>> bool((np.abs(x - 2 * np.round(x / 2)) < 0.3).all())  # every point near a mode
        True
    """
    return _mixture(n, grid25_centres(), GRID25_SIGMA, seed)


#: The samplers by name (the names ``ppgen.data.load`` accepts).
MODES2D: dict[str, Callable[..., np.ndarray]] = {"ring8": ring8, "grid25": grid25}

_SPECS: dict[str, tuple[Callable[[], np.ndarray], float]] = {
    "ring8": (ring8_centres, RING8_SIGMA),
    "grid25": (grid25_centres, GRID25_SIGMA),
}


def mode_spec(name: str) -> tuple[np.ndarray, float]:
    """The mode centres and the standard deviation of a benchmark, by name.

    The pair is what :func:`ppgen.analysis.sample_quality.mode_coverage` takes after the
    samples: ``mode_coverage(samples, *mode_spec("ring8"))``.

    Arguments:
        name: ``"ring8"`` or ``"grid25"``.

    Returns:
        ``(centres, sigma)``: a ``float64`` ``(K, 2)`` array and a float.

    Example:
        >>> centres, sigma = mode_spec("grid25")
        >>> centres.shape, sigma
        ((25, 2), 0.05)
    """
    if name not in _SPECS:
        raise ValueError(f"Unknown mode benchmark {name!r}; choose from {sorted(_SPECS)}.")
    centres, sigma = _SPECS[name]
    return centres(), sigma
