"""``load_mnist`` reads a local MNIST (IDX files, plain or gzipped, or a Keras .npz) exactly,
and refuses anything else before building an array, naming the file and what was found."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from ppgen.data.mnist import load_mnist, read_idx
from ppgen.errors import DataError


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + np.array(a.shape, ">i4").tobytes() + a.tobytes()


def fake(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n).astype(
        np.uint8
    )


def write_idx(folder, split: str, images, labels, gz: bool) -> None:
    stem = {"train": "train", "test": "t10k"}[split]
    for kind, a in (("images-idx3", images), ("labels-idx1", labels)):
        raw = idx_bytes(a)
        name = f"{stem}-{kind}-ubyte" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    images, labels = fake(7, 0)
    t_images, t_labels = fake(3, 1)
    write_idx(tmp_path, "train", images, labels, gz)
    write_idx(tmp_path, "test", t_images, t_labels, gz)
    d = load_mnist(tmp_path, labels=True)
    np.testing.assert_array_equal(d["x"], images.reshape(7, 784).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(d["y"], labels)
    assert d["x"].dtype == np.float32 and d["y"].dtype == np.int64
    t = load_mnist(tmp_path, "test", image=True)
    assert t["x"].shape == (3, 1, 28, 28) and "y" not in t
    np.testing.assert_array_equal(t["x"][:, 0] * 255.0, t_images.astype(np.float32))


def test_keras_npz_and_binarisations(tmp_path):
    images, labels = fake(500, 2)
    p = tmp_path / "mnist.npz"
    np.savez(p, x_train=images, y_train=labels, x_test=images[:5], y_test=labels[:5])
    hard = load_mnist(p, binarize=True)["x"]
    np.testing.assert_array_equal(hard, (images.reshape(500, -1) / 255.0 > 0.5).astype(np.float32))
    soft = load_mnist(p, binarize="stochastic", seed=3)["x"]
    assert set(np.unique(soft).tolist()) <= {0.0, 1.0}
    # Bernoulli(intensity) per pixel: the mean of the draws is the mean intensity (392,000
    # pixels, sd of the difference ~0.0007), and the seed fixes them
    assert abs(soft.mean() - images.mean() / 255.0) < 0.005
    np.testing.assert_array_equal(soft, load_mnist(p, binarize="stochastic", seed=3)["x"])
    assert not np.array_equal(soft, load_mnist(p, binarize="stochastic", seed=4)["x"])
    assert load_mnist(p, "test")["x"].shape == (5, 784)


def test_read_idx_refuses_other_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x0d\x01" + np.array([2], ">i4").tobytes() + bytes(8))  # floats
    with pytest.raises(DataError, match=r"not an IDX file of unsigned bytes.*00 00 0d 01"):
        read_idx(p)
    p.write_bytes(idx_bytes(np.zeros((4, 3), np.uint8))[:-2])
    with pytest.raises(DataError, match=r"declares shape \(4, 3\) \(12 bytes\) but holds 10"):
        read_idx(p)
    g = tmp_path / "broken.gz"
    g.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot be read"):
        read_idx(g)


def test_load_mnist_refuses_before_work(tmp_path):
    with pytest.raises(DataError, match="does not exist.*does not download"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no 'train-images-idx3-ubyte'.*the train split's images"):
        load_mnist(tmp_path)
    images, labels = fake(4, 0)
    write_idx(tmp_path, "train", images, labels[:3], gz=False)
    with pytest.raises(DataError, match=r"one per image, \(4,\).*\(3,\)"):
        load_mnist(tmp_path)
    with pytest.raises(DataError, match="`split` must be 'train' or 'test'; got 'valid'"):
        load_mnist(tmp_path, "valid")
    with pytest.raises(DataError, match="`binarize` must be False, True or 'stochastic'"):
        load_mnist(tmp_path, binarize="otsu")
    p = tmp_path / "other.npz"
    np.savez(p, x=images)
    with pytest.raises(DataError, match=r"no \['x_train', 'y_train'\].*holds \['x'\]"):
        load_mnist(p)
    q = tmp_path / "small.npz"
    np.savez(q, x_train=images[:, :14], y_train=labels)
    with pytest.raises(DataError, match=r"must be \(N, 28, 28\).*\(4, 14, 28\)"):
        load_mnist(q)
