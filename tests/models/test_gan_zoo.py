"""The zoo GANs on both backends: truth on a 2-D Gaussian, class control on digits, patterns
for the convolutional DCGAN, every loss."""

from __future__ import annotations

import numpy as np
import pytest

import ppgen
from ppgen.analysis.sample_quality import DigitsFeatures
from ppgen.inference import Adversarial
from ppgen.models.gan import DCGAN, GAN, ConditionalGAN, jax_critic

BACKENDS = ["pyro", "numpyro"]
LOSSES = ["minimax", "ns", "wgan-gp", "hinge", "lsgan"]
MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.6], [0.6, 0.5]])


def _gaussian(n: int = 2048) -> np.ndarray:
    return np.random.default_rng(0).multivariate_normal(MEAN, COV, n).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gan_learns_a_gaussian(backend):
    """Mean and covariance of a correlated 2-D Gaussian, within a tenth of its scale or so."""
    gan = GAN(2, z_dim=2, hidden_features=(32, 32), backend=backend)
    est = Adversarial(loss="ns", steps=3000, lr=1e-3, batch_size=256, hidden=(32, 32), ema=0.99)
    fit = ppgen.fit(gan, {"x": _gaussian()}, est, seed=0)
    assert fit.program.backend == backend
    g = np.asarray(fit.sample(2)["x"], dtype=float).reshape(-1, 2)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.mean(0), MEAN, atol=0.2)
    np.testing.assert_allclose(np.cov(g.T), COV, atol=0.25)


def test_gan_untrained_is_far_from_the_gaussian():
    """The tolerances above reject a generator that has not learned (the test can fail)."""
    gan = GAN(2, z_dim=2, hidden_features=(32, 32), backend="numpyro")
    fit = ppgen.fit(gan, {"x": _gaussian()}, Adversarial(steps=1, hidden=(32, 32)), seed=0)
    g = np.asarray(fit.sample(2)["x"], dtype=float).reshape(-1, 2)
    assert np.abs(g.mean(0) - MEAN).max() > 0.2 or np.abs(np.cov(g.T) - COV).max() > 0.25


def test_conditional_gan_draws_the_requested_digit():
    """A NumPyro ConditionalGAN on the 599 held-out digits; a classifier trained on the other
    1198 reads the requested class on >= 80% of its images (chance: 10%)."""
    net = DigitsFeatures.default()
    x = (net.test_images / 8.0 - 1.0).astype(np.float32)  # [-1, 1]
    gan = ConditionalGAN(
        64, num_classes=10, z_dim=16, hidden_features=(128, 128), output="tanh", backend="numpyro"
    )
    est = Adversarial(loss="ns", steps=1500, lr=1e-3, batch_size=64, hidden=(128, 128))
    fit = ppgen.fit(gan, {"x": x, "y": net.test_labels}, est, seed=0)
    asked = np.repeat(np.arange(10), 50)
    images = (np.asarray(fit.sample(1, data={"y": asked})["x"])[0] + 1.0) * 8.0
    assert images.shape == (500, 64)
    said = net.predict(images)
    shuffled = np.random.default_rng(0).permutation(asked)
    assert (said == shuffled).mean() < 0.2  # the labels carry the information
    assert (said == asked).mean() >= 0.8
    # every class is drawn, not one easy digit for all
    per_class = [(said[asked == c] == c).mean() for c in range(10)]
    assert min(per_class) >= 0.4, per_class


def test_conditional_gan_untrained_is_at_chance():
    net = DigitsFeatures.default()
    gan = ConditionalGAN(
        64, num_classes=10, hidden_features=(32,), output="tanh", backend="numpyro"
    )
    x = (net.test_images / 8.0 - 1.0).astype(np.float32)
    fit = ppgen.fit(gan, {"x": x, "y": net.test_labels}, Adversarial(steps=1, hidden=(32,)))
    asked = np.repeat(np.arange(10), 20)
    images = (np.asarray(fit.sample(1, data={"y": asked})["x"])[0] + 1.0) * 8.0
    assert (net.predict(images) == asked).mean() < 0.4


def _zoo(name: str, backend: str):
    if name == "GAN":
        return GAN((2, 2), z_dim=3, hidden_features=(8,), backend=backend), {}
    if name == "ConditionalGAN":
        return ConditionalGAN((2, 2), 3, z_dim=3, hidden_features=(8,), backend=backend), {
            "y": np.arange(32) % 3
        }
    dcgan = DCGAN((1, 8, 8), z_dim=4, channels=2, num_classes=3, backend=backend)
    return dcgan, {"y": np.arange(32) % 3}


CASES = [(name, backend) for name in ["GAN", "ConditionalGAN", "DCGAN"] for backend in BACKENDS]
# each zoo class on each backend once, the losses rotated over them (every loss meets a zoo
# class; the losses themselves are checked against their formulas and a known optimum in
# tests/inference/test_adversarial.py): 6 fits, not 30 (each NumPyro fit is a JAX compile).
# The sixth, the NumPyro DCGAN, takes wgan-gp rather than the rotation's second minimax: its
# gradient penalty differentiates the JAX conv critic twice.
CASE_LOSSES = [LOSSES[i % len(LOSSES)] for i in range(len(CASES) - 1)] + ["wgan-gp"]


@pytest.mark.parametrize(
    ("name", "backend", "loss"), [(*c, loss) for c, loss in zip(CASES, CASE_LOSSES, strict=True)]
)
def test_every_zoo_gan_trains_with_a_loss(name, backend, loss):
    gan, extra = _zoo(name, backend)
    shape = gan.x_shape
    x = np.random.default_rng(0).uniform(-1, 1, (32, *shape)).astype(np.float32)
    fit = ppgen.fit(gan, {"x": x, **extra}, Adversarial(loss=loss, steps=3, hidden=(8,)), seed=0)
    assert fit.program.backend == backend
    for key in ("loss_d", "loss_g"):
        assert len(fit.history[key]) == 3 and np.all(np.isfinite(fit.history[key])), key
    data = {"y": np.zeros(5, np.int64)} if extra else {"x": x[:5]}
    out = np.asarray(fit.sample(2, data=data)["x"])
    assert out.shape == (2, 5, *shape) and np.all(np.isfinite(out))


def test_backend_is_checked():
    with pytest.raises(ValueError, match="backend"):
        GAN(2, backend="jax")
    with pytest.raises(ValueError, match="backend"):
        DCGAN((1, 8, 8), backend="jax")
    assert DCGAN((1, 8, 8), backend="numpyro").backend == "numpyro"
    assert DCGAN((1, 8, 8)).backend == "pyro"


def test_default_critics():
    import jax
    import jax.numpy as jnp

    gan = ConditionalGAN(4, 3, hidden_features=(8,), backend="numpyro")
    init, apply = gan.discriminator("numpyro")
    x, y = jnp.ones((6, 4)), jnp.arange(6) % 3
    params = init(jax.random.PRNGKey(0), x, y)
    assert [w.shape for w, _ in params] == [(7, 8), (8, 1)]
    assert apply(params, x, y).shape == (6,)
    # the label changes the critic's output: it is conditional
    assert not np.allclose(apply(params, x, y), apply(params, x, (y + 1) % 3))
    init2, apply2 = jax_critic(4, (8,))
    assert apply2(init2(jax.random.PRNGKey(0)), x).shape == (6,)
    # the DCGAN's: the JAX conv critic, conditional on the one-hot labels
    dcgan = DCGAN((1, 8, 8), channels=4, num_classes=3, backend="numpyro")
    init, apply = dcgan.discriminator("numpyro")
    x = jnp.ones((6, 1, 8, 8))
    params = init(jax.random.PRNGKey(0), x, y)
    assert [w.shape for w, _ in params] == [(4, 1, 4, 4), (8, 4, 4, 4), (8 * 2 * 2 + 3, 1)]
    assert apply(params, x, y).shape == (6,)
    assert not np.allclose(apply(params, x, y), apply(params, x, (y + 1) % 3))
    assert dcgan.discriminator("other") is None


def test_conditional_gan_needs_labels():
    from ppgen.errors import DataError

    gan = ConditionalGAN(2, 3, hidden_features=(8,), backend="numpyro")
    with pytest.raises(DataError, match="labels"):
        ppgen.fit(gan, {"x": np.zeros((8, 2), np.float32)}, Adversarial(steps=1))


def test_numpyro_gan_saves_and_loads(tmp_path):
    def make():
        return ConditionalGAN(2, 3, z_dim=2, hidden_features=(8,), backend="numpyro")

    x, y = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32), np.arange(32) % 3
    fit = ppgen.fit(make(), {"x": x, "y": y}, Adversarial(steps=2, hidden=(8,)))
    fit.save(tmp_path / "gan")
    loaded = ppgen.load(tmp_path / "gan", make())
    assert sorted(loaded.params) == sorted(fit.params)
    data = {"y": np.zeros(4, np.int64)}
    a = np.asarray(fit.sample(2, data=data, seed=1)["x"])
    b = np.asarray(loaded.sample(2, data=data, seed=1)["x"])
    np.testing.assert_allclose(a, b)


def _patterns() -> np.ndarray:
    """Two 8×8 images in ±0.8: a checkerboard of 2×2 squares and a diamond; (2, 1, 8, 8)."""
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    checker = np.where((i // 2 + j // 2) % 2 == 0, 0.8, -0.8)
    diamond = np.where(np.abs(i - 3.5) + np.abs(j - 3.5) < 4, 0.8, -0.8)
    return np.stack([checker, diamond]).astype(np.float32)[:, None]


PATTERNS = _patterns()


def _nearest(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's RMS distance to the nearest pattern, and that pattern's index."""
    diff = images.reshape(-1, 1, 64) - PATTERNS.reshape(1, 2, 64)
    d = np.sqrt((diff**2).mean(-1))
    return d.min(1), d.argmin(1)


def _pattern_dcgan() -> DCGAN:
    return DCGAN((1, 8, 8), z_dim=8, channels=4, backend="numpyro")


@pytest.fixture(scope="module")
def pattern_fit():
    """A NumPyro DCGAN fitted to the two patterns plus noise of sd 0.05 (one JAX compile, shared
    by the tests below)."""
    rng = np.random.default_rng(0)
    x = PATTERNS[rng.integers(0, 2, 512)] + 0.05 * rng.normal(size=(512, 1, 8, 8))
    est = Adversarial(loss="ns", steps=300, lr=2e-3, batch_size=64)
    return ppgen.fit(_pattern_dcgan(), {"x": x.astype(np.float32)}, est, seed=0)


def test_numpyro_dcgan_draws_the_patterns(pattern_fit):
    """After 300 steps the draws lie near a pattern (median RMS distance < 0.35, measured
    0.19-0.28 over seeds 0-3) and both patterns are drawn (>= 20% each; measured 29-53%);
    the untrained generator is far from both (measured median 0.94) and fails the threshold."""
    prog = ppgen.Program(_pattern_dcgan())
    untrained = np.asarray(prog.ops.simulate(prog.model, {"n": 200}, sites=["x"], seed=0)["x"])
    assert untrained.shape == (200, 1, 8, 8)
    assert np.median(_nearest(untrained)[0]) > 0.6
    x = np.zeros((200, 1, 8, 8), np.float32)  # only its size matters: x is re-drawn
    images = np.asarray(pattern_fit.sample(1, data={"x": x}, seed=1)["x"])[0]
    assert images.shape == (200, 1, 8, 8) and np.all(np.abs(images) < 1)
    dist, which = _nearest(images)
    assert np.median(dist) < 0.35, np.median(dist)
    assert np.bincount(which, minlength=2).min() >= 40, np.bincount(which)  # no mode dropped


def test_numpyro_dcgan_saves_and_loads(pattern_fit, tmp_path):
    pattern_fit.save(tmp_path / "dcgan")
    loaded = ppgen.load(tmp_path / "dcgan", _pattern_dcgan())
    assert sorted(loaded.params) == sorted(pattern_fit.params)
    assert any(k.startswith("generator.3.") for k in loaded.params)  # the group norm's affine
    data = {"x": np.zeros((6, 1, 8, 8), np.float32)}
    a = np.asarray(pattern_fit.sample(2, data=data, seed=1)["x"])
    b = np.asarray(loaded.sample(2, data=data, seed=1)["x"])
    assert a.shape == (2, 6, 1, 8, 8)
    np.testing.assert_allclose(a, b)
