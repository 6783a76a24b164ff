"""Built-in datasets: shipped with ppgen or generated, never downloaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["load", "DATASETS", "eight_schools", "regression", "logistic", "blobs", "iris"]


def eight_schools() -> dict[str, np.ndarray]:
    """Rubin's eight schools: estimated coaching effects ``y`` and their standard errors."""
    return {
        "sigma": np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]),
        "y": np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]),
    }


def regression(n: int = 200, d: int = 5, noise: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Simulated linear regression; the true ``w``, ``b``, ``sigma`` are in ``truth``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    b = 1.0
    y = b + X @ w + noise * rng.normal(size=n)
    return {"X": X, "y": y, "truth": {"w": w, "b": b, "sigma": noise}}


def logistic(n: int = 5000, d: int = 20, seed: int = 0) -> dict[str, Any]:
    """Simulated logistic regression (the 5000 x 20 benchmark set); truth in ``truth``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) * 0.5
    b = -0.5
    p = 1.0 / (1.0 + np.exp(-(b + X @ w)))
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return {"X": X, "y": y, "truth": {"w": w, "b": b}}


def blobs(n: int = 300, K: int = 3, d: int = 2, sep: float = 8.0, seed: int = 0) -> dict[str, Any]:
    """Well-separated Gaussian blobs (unit scale) for mixture models; truth in ``truth``."""
    rng = np.random.default_rng(seed)
    locs = np.stack([sep * np.array([np.cos(a), np.sin(a)]) for a in 2 * np.pi * np.arange(K) / K])
    if d > 2:
        locs = np.concatenate([locs, np.zeros((K, d - 2))], axis=1)
    z = rng.integers(K, size=n)
    x = locs[z] + rng.normal(size=(n, d))
    return {"x": x, "truth": {"locs": locs, "z": z}}


def iris() -> dict[str, Any]:
    """Fisher's iris (scikit-learn's copy): standardised ``X`` (150, 4) and species ``y``."""
    from sklearn.datasets import load_iris

    raw = load_iris()
    X = (raw.data - raw.data.mean(0)) / raw.data.std(0)
    return {"X": X, "y": raw.target.astype(np.int64)}


DATASETS: dict[str, Callable[..., dict[str, Any]]] = {
    "eight_schools": eight_schools,
    "regression": regression,
    "logistic": logistic,
    "blobs": blobs,
    "iris": iris,
}


def _toy2d(name: str) -> Callable[..., dict[str, Any]]:
    def load_toy(**kwargs: Any) -> dict[str, Any]:
        from ppgen.data.toy2d import TOY2D

        return {"x": TOY2D[name](**kwargs)}

    load_toy.__doc__ = f"The 2-D toy density ``{name}`` (see :mod:`ppgen.data.toy2d`) as ``x``."
    return load_toy


# 2-D toy densities for flows: ``load("moons", n=2000, seed=1)["x"]`` is float32 (n, 2)
DATASETS.update(
    {name: _toy2d(name) for name in ("moons", "eight_gaussians", "checkerboard", "rings")}
)


def _modes2d(name: str) -> Callable[..., dict[str, Any]]:
    def load_modes(**kwargs: Any) -> dict[str, Any]:
        from ppgen.data.modes2d import MODES2D

        return {"x": MODES2D[name](**kwargs)}

    load_modes.__doc__ = (
        f"PacGAN's mode-collapse benchmark ``{name}`` (see :mod:`ppgen.data.modes2d`) as ``x``."
    )
    return load_modes


# PacGAN's ring of 8 and grid of 25 Gaussians: ``load("ring8", n=2500, seed=1)["x"]``
DATASETS.update({name: _modes2d(name) for name in ("ring8", "grid25")})


DIGITS_TRAIN = 1500
"""Rows of scikit-learn's 1,797 8x8 digits in the ``train`` split (a fixed permutation)."""


def digits(split: str = "train", binarize: bool = False, labels: bool = False) -> dict[str, Any]:
    """scikit-learn's 8x8 digits as ``x`` (N, 64) float32 in [0, 1] (and, with ``labels``,
    the digit ``y``).

    ``split``: ``"train"`` (1,500 rows), ``"test"`` (the other 297) or ``"all"``, from one
    fixed permutation (seed 0); ``binarize``: pixels above 0.5 become 1, the rest 0.

    Example:
        >>> d = digits("test", binarize=True)
        >>> d["x"].shape, sorted(set(d["x"].ravel().tolist()))
        ((297, 64), [0.0, 1.0])
    """
    from sklearn.datasets import load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"`split` must be 'train', 'test' or 'all'; got {split!r}.")
    raw = load_digits()
    x = (raw.data / 16.0).astype(np.float32)
    if binarize:
        x = (x > 0.5).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    rows = {"train": perm[:DIGITS_TRAIN], "test": perm[DIGITS_TRAIN:], "all": np.arange(len(x))}
    idx = rows[split]
    out = {"x": x[idx]}
    if labels:
        out["y"] = raw.target[idx].astype(np.int64)
    return out


def digits_binary(split: str = "train") -> dict[str, Any]:
    """scikit-learn's 8x8 digits binarised at 0.5 (see :func:`digits`): ``x`` (N, 64)."""
    return digits(split, binarize=True)


DATASETS.update({"digits": digits, "digits_binary": digits_binary})


def load(name: str, **kwargs: Any) -> dict[str, Any]:
    """A built-in dataset as a ``data`` dict ready for ``ppgen.fit`` (``truth`` removed).

    Example:
        >>> sorted(load("eight_schools"))
        ['sigma', 'y']
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Built-in datasets: {sorted(DATASETS)}.")
    data = DATASETS[name](**kwargs)
    data.pop("truth", None)
    return data
