"""MNIST from a local path: LeCun's IDX files (plain or gzipped) or a Keras ``mnist.npz``.

ppgen never downloads data; give the path of a copy you have.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.errors import DataError

__all__ = ["IDX_FILES", "load_mnist", "read_idx"]

#: the standard file names of each split (``.gz`` accepted too): (images, labels)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_BINARIZE = (False, True, "stochastic")


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (LeCun's format: magic ``0 0 0x08 ndim``, big-endian int32 sizes, then
    unsigned bytes), plain or gzipped, as a ``uint8`` array. Raises :class:`DataError` on any
    other content, naming the file and what was found.

    Example: write a 2 x 3 x 3 IDX file and read it back.

        >>> import tempfile, numpy as np
        >>> a = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
        >>> head = bytes([0, 0, 8, 3]) + np.array(a.shape, ">i4").tobytes()
        >>> p = Path(tempfile.mkdtemp()) / "x-idx3-ubyte"
        >>> _ = p.write_bytes(head + a.tobytes())
        >>> bool((read_idx(p) == a).all())
        True
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"MNIST file {str(path)!r} cannot be read: {type(e).__name__}: {e}") from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(
            f"{str(path)!r} is not an IDX file of unsigned bytes (it should start with the magic "
            f"bytes 00 00 08; it starts with {raw[:4].hex(' ') or 'nothing'})."
        )
    ndim = raw[3]
    end = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:end], ">i4"))
    size = int(np.prod(shape)) if shape else 0
    if len(shape) != ndim or len(raw) - end != size:
        raise DataError(
            f"{str(path)!r} declares shape {shape} ({size} bytes) but holds {len(raw) - end} "
            "bytes after its header: the file is truncated or not MNIST's."
        )
    return np.frombuffer(raw, np.uint8, size, end).reshape(shape)


def _idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    found = []
    for stem in IDX_FILES[split]:
        hits = [folder / name for name in (stem, stem + ".gz") if (folder / name).is_file()]
        if not hits:
            raise DataError(
                f"MNIST folder {str(folder)!r} has no {stem!r} (or {stem}.gz), the {split} "
                f"split's {'images' if 'images' in stem else 'labels'}. Give the folder holding "
                f"LeCun's four IDX files, or a Keras mnist.npz."
            )
        found.append(read_idx(hits[0]))
    return found[0], found[1]


def _npz_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    keys = (f"x_{split}", f"y_{split}")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(
                    f"{str(path)!r} has no {missing} (it holds {sorted(f.files)}): a Keras "
                    "mnist.npz holds x_train, y_train, x_test, y_test."
                )
            return f[keys[0]], f[keys[1]]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(
            f"{str(path)!r} is not a readable .npz of arrays ({type(e).__name__}: {e})."
        ) from e


def load_mnist(
    path: str | Path,
    split: str = "train",
    binarize: bool | str = False,
    labels: bool = False,
    image: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """MNIST as a ``data`` dict: ``x`` (N, 784) float32 in [0, 1] (and, with ``labels``, the
    digit ``y``), the twin of :func:`ppgen.data.builtin.digits` for a local copy.

    ``path``: a folder with LeCun's IDX files (``train-images-idx3-ubyte`` ... , plain or
    ``.gz``) or a Keras ``mnist.npz``; ``split``: ``"train"`` (60,000) or ``"test"``
    (10,000); ``binarize``: ``True`` sets pixels above 0.5 to 1, ``"stochastic"`` draws each
    pixel as Bernoulli(intensity) from ``seed`` (the binarisation of Salakhutdinov & Murray's
    RBM likelihoods); ``image``: ``x`` is (N, 1, 28, 28). Everything is checked before any
    array is built: the files' presence, IDX headers and sizes, images and labels agreeing.

    Example: a two-image stand-in written as IDX files.

        >>> import tempfile, numpy as np
        >>> d = Path(tempfile.mkdtemp())
        >>> img = np.zeros((2, 28, 28), np.uint8); img[1] = 255
        >>> for name, a in (("train-images-idx3-ubyte", img),
        ...                 ("train-labels-idx1-ubyte", np.array([3, 7], np.uint8))):
        ...     head = bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">i4").tobytes()
        ...     _ = (d / name).write_bytes(head + a.tobytes())
        >>> m = load_mnist(d, binarize=True, labels=True)
        >>> m["x"].shape, m["x"].sum(1).tolist(), m["y"].tolist()
        ((2, 784), [0.0, 784.0], [3, 7])
    """
    path = Path(path)
    if split not in IDX_FILES:
        raise DataError(f"`split` must be 'train' or 'test'; got {split!r}.")
    if binarize not in _BINARIZE:
        raise DataError(f"`binarize` must be False, True or 'stochastic'; got {binarize!r}.")
    if path.is_dir():
        images, digits = _idx_split(path, split)
    elif path.is_file() and path.suffix.lower() == ".npz":
        images, digits = _npz_split(path, split)
    else:
        raise DataError(
            f"MNIST path {str(path)!r} is neither a folder of IDX files nor an .npz file"
            f"{'' if path.exists() else ' (it does not exist)'}. ppgen does not download data."
        )
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"MNIST images must be (N, 28, 28); {str(path)!r} holds {images.shape}.")
    if digits.shape != (len(images),):
        raise DataError(
            f"MNIST labels must be one per image, ({len(images)},); {str(path)!r} holds "
            f"{digits.shape}."
        )
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if binarize == "stochastic":
        x = (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)
    elif binarize:
        x = (x > 0.5).astype(np.float32)
    out: dict[str, Any] = {"x": x.reshape(-1, 1, 28, 28) if image else x}
    if labels:
        out["y"] = digits.astype(np.int64)
    return out
