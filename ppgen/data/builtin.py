"""Built-in datasets: shipped with ppgen or generated, never downloaded."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.data.modes2d import MODES2D
from ppgen.data.toy2d import TOY2D

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
        return {"x": TOY2D[name](**kwargs)}

    load_toy.__doc__ = f"The 2-D toy density ``{name}`` (see :mod:`ppgen.data.toy2d`) as ``x``."
    load_toy.__signature__ = inspect.signature(TOY2D[name])  # its options, for `NAME:key=value`
    return load_toy


# 2-D toy densities for flows: ``load("moons", n=2000, seed=1)["x"]`` is float32 (n, 2)
DATASETS.update(
    {name: _toy2d(name) for name in ("moons", "eight_gaussians", "checkerboard", "rings")}
)


def _modes2d(name: str) -> Callable[..., dict[str, Any]]:
    def load_modes(**kwargs: Any) -> dict[str, Any]:
        return {"x": MODES2D[name](**kwargs)}

    load_modes.__doc__ = (
        f"PacGAN's mode-collapse benchmark ``{name}`` (see :mod:`ppgen.data.modes2d`) as ``x``."
    )
    load_modes.__signature__ = inspect.signature(MODES2D[name])  # for `NAME:key=value`
    return load_modes


# PacGAN's ring of 8 and grid of 25 Gaussians: ``load("ring8", n=2500, seed=1)["x"]``
DATASETS.update({name: _modes2d(name) for name in ("ring8", "grid25")})


DIGITS_TRAIN = 1500
"""Rows of scikit-learn's 1,797 8x8 digits in the ``train`` split (a fixed permutation)."""


def digits(
    split: str = "train", binarize: bool = False, labels: bool = False, image: bool = False
) -> dict[str, Any]:
    """scikit-learn's 8x8 digits as ``x`` (N, 64) float32 in [0, 1] (and, with ``labels``,
    the digit ``y``).

    ``split``: ``"train"`` (1,500 rows), ``"test"`` (the other 297) or ``"all"``, from one
    fixed permutation (seed 0); ``binarize``: pixels above 0.5 become 1, the rest 0;
    ``image``: ``x`` is (N, 1, 8, 8), channels first, for convolutional models.

    Example:
        >>> d = digits("test", binarize=True)
        >>> d["x"].shape, sorted(set(d["x"].ravel().tolist()))
        ((297, 64), [0.0, 1.0])
        >>> digits(image=True)["x"].shape
        (1500, 1, 8, 8)
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
    out = {"x": x[idx].reshape(-1, 1, 8, 8) if image else x[idx]}
    if labels:
        out["y"] = raw.target[idx].astype(np.int64)
    return out


def _digits_variant(doc: str, **fixed: Any) -> Callable[..., dict[str, Any]]:
    def variant(split: str = "train") -> dict[str, Any]:
        return digits(split, **fixed)

    variant.__doc__ = f"scikit-learn's 8x8 digits {doc} (see :func:`digits`)."
    return variant


digits_binary = _digits_variant("binarised at 0.5: ``x`` (N, 64)", binarize=True)
DATASETS.update(
    {
        "digits": digits,
        "digits_binary": digits_binary,
        "digits_images": _digits_variant("as images: ``x`` (N, 1, 8, 8) in [0, 1]", image=True),
        "digits_binary_images": _digits_variant(
            "binarised, as images: ``x`` (N, 1, 8, 8) in {0, 1}", binarize=True, image=True
        ),
        "digits_binary_labelled": _digits_variant(
            "binarised, with labels: ``x`` (N, 64) and the digit ``y``", binarize=True, labels=True
        ),
    }
)

CORPUS = Path(__file__).resolve().parent / "corpora" / "four_topics.txt"
"""A small corpus written for ppgen (public domain): 24 paragraphs, 6 on each of the sea,
gardens, the night sky and cooking, in that order."""

STOP_WORDS = frozenset(
    "a an and the of to in on at by for from with into over under through than then each "
    "is are was were be been it its his her their they she he we our one some every all "
    "as that this there when while before after how far until not no or but few more "
    "most rest same other up out off down across along around behind beyond between".split()
)


def four_topics_paragraphs() -> list[str]:
    """The paragraphs of :data:`CORPUS`, in order."""
    text = CORPUS.read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def four_topics(min_count: int = 2, with_vocab: bool = False) -> dict[str, Any]:
    """The bag of words of :data:`CORPUS` for topic models: ``counts`` (D, V) int64, one row
    per paragraph, lower-cased words of letters, :data:`STOP_WORDS` removed, words seen fewer
    than ``min_count`` times dropped (and any paragraph left empty). ``with_vocab`` adds the
    ``vocab`` list (column order) under ``truth``.

    Example:
        >>> d = four_topics(with_vocab=True)
        >>> d["counts"].shape[1] == len(d["truth"]["vocab"]), d["counts"].dtype
        (True, dtype('int64'))
    """
    import re

    from ppgen.data.text import Tokenizer, bag_of_words

    docs = [
        " ".join(w for w in re.findall(r"[a-z]+", p.lower()) if w not in STOP_WORDS)
        for p in four_topics_paragraphs()
    ]
    tok = Tokenizer.from_text(docs, level="word", min_count=min_count)
    bow = bag_of_words(docs, tok)
    counts = bow.counts.toarray()
    keep = counts.sum(0) > 0
    keep[0] = False  # <unk>
    counts = counts[:, keep].astype(np.int64)
    counts = counts[counts.sum(1) > 0]
    out: dict[str, Any] = {"counts": counts}
    if with_vocab:
        out["truth"] = {"vocab": [w for w, k in zip(tok.vocab, keep) if k]}
    return out


def four_topics_text() -> dict[str, Any]:
    """:data:`CORPUS` as one lower-cased text, paragraphs joined by newlines: ``tokens`` (a
    ``str``), for character- and word-level language models."""
    return {"tokens": "\n".join(p.lower() for p in four_topics_paragraphs())}


DATASETS.update({"four_topics": four_topics, "four_topics_text": four_topics_text})


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
