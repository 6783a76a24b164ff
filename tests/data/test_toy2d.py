"""The 2-D toy densities and PacGAN's ring/grid: shapes, seeding, the geometry of each density."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ppgen
from ppgen.data.modes2d import (
    GRID25_SIGMA,
    MODES2D,
    RING8_SIGMA,
    grid25,
    grid25_centres,
    mode_spec,
    ring8,
    ring8_centres,
)
from ppgen.data.toy2d import (
    EIGHT_RADIUS,
    EIGHT_SCALE,
    RING_NOISE,
    RING_RADII,
    TOY2D,
    TOY2D_LOG_PROB,
    checkerboard,
    eight_gaussians,
    moons,
    rings,
)

N = 20_000


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_shape_dtype_and_seeding(name):
    sampler = TOY2D[name]
    x = sampler(777, seed=3)
    assert x.shape == (777, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.array_equal(x, sampler(777, seed=3))
    assert not np.allclose(x, sampler(777, seed=4))


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_load_returns_a_data_dict(name):
    data = ppgen.data.load(name, n=50, seed=2)
    assert list(data) == ["x"]
    assert np.array_equal(data["x"], TOY2D[name](50, seed=2))


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10"])
def test_bad_n_is_a_named_error(n):
    with pytest.raises(ValueError, match="`n` must be a positive int"):
        moons(n)


def test_bad_parameters_are_named_errors():
    with pytest.raises(ValueError, match="`noise`"):
        rings(10, noise=-1.0)
    with pytest.raises(ValueError, match="`radii`"):
        rings(10, radii=())
    with pytest.raises(ValueError, match="`scale`"):
        eight_gaussians(10, scale=float("nan"))


def test_checkerboard_only_black_squares_and_uniform_over_them():
    x = checkerboard(N, seed=1).astype(np.float64)
    assert (x >= -4).all() and (x < 4).all()
    col, row = np.floor(x[:, 0] / 2).astype(int), np.floor(x[:, 1] / 2).astype(int)
    assert ((col + row) % 2 == 0).all()  # never on a white square
    # all 8 black squares, each with 1/8 of the mass (binomial sd ~0.0023)
    counts = np.zeros((4, 4))
    np.add.at(counts, (col + 2, row + 2), 1)
    black = counts[(np.add.outer(np.arange(4), np.arange(4)) % 2) == 0]
    assert np.allclose(black / N, 1 / 8, atol=0.012)
    # uniform inside a square: the offset within the square has mean 1 and variance 4/12
    offset = x - 2 * np.floor(x / 2)
    assert np.allclose(offset.mean(0), 1.0, atol=0.03)
    assert np.allclose(offset.var(0), 1 / 3, atol=0.02)


def test_rings_radii_and_mass_per_ring():
    x = rings(N, seed=1).astype(np.float64)
    r = np.linalg.norm(x, axis=1)
    radii = np.array(RING_RADII)
    k = np.abs(r[:, None] - radii[None]).argmin(1)
    resid = r - radii[k]
    # the radial noise is N(0, 0.08^2): sd and mean of the residual match it
    assert abs(resid.std() - RING_NOISE) < 0.005 and abs(resid.mean()) < 0.004
    assert np.abs(resid).max() < 6 * RING_NOISE
    assert np.allclose(np.bincount(k, minlength=4) / N, 0.25, atol=0.015)
    # the angle is uniform: the mean direction vanishes
    assert np.linalg.norm((x / r[:, None]).mean(0)) < 0.03


def test_eight_gaussians_modes_and_scale():
    x = eight_gaussians(N, seed=1).astype(np.float64)
    angles = np.arange(8) * math.pi / 4
    centres = EIGHT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], 1)
    k = np.linalg.norm(x[:, None] - centres[None], axis=2).argmin(1)
    assert np.allclose(np.bincount(k, minlength=8) / N, 1 / 8, atol=0.012)
    for j in range(8):
        pts = x[k == j]
        assert np.allclose(pts.mean(0), centres[j], atol=0.03)
        assert np.allclose(pts.std(0), EIGHT_SCALE, rtol=0.08)


def test_moons_lie_on_two_half_circles():
    noise = 0.1
    x = moons(N, noise=noise, seed=1).astype(np.float64)
    # distance to the upper arc (centre (0, 0), y >= 0) and the lower arc (centre (1, 0.5))
    d_up = np.abs(np.linalg.norm(x, axis=1) - 1.0)
    d_low = np.abs(np.linalg.norm(x - [1.0, 0.5], axis=1) - 1.0)
    d = np.minimum(d_up, d_low)
    # the nearest-circle distance of N(0, 0.1^2 I) noise is about |N(0, 0.01)|: mean 0.08
    assert abs(d.mean() - noise * math.sqrt(2 / math.pi)) < 0.01
    assert np.quantile(d, 0.99) < 3 * noise
    # one half above y = 0.25 at the centre of the picture, balanced between the moons
    upper = d_up < d_low
    assert abs(upper.mean() - 0.5) < 0.015
    assert np.allclose(x.mean(0), [0.5, 0.25], atol=0.02)
    # without noise the points are exactly on the arcs
    clean = moons(1000, noise=0.0).astype(np.float64)
    dist = np.minimum(
        np.abs(np.linalg.norm(clean, axis=1) - 1),
        np.abs(np.linalg.norm(clean - [1, 0.5], axis=1) - 1),
    )
    assert dist.max() < 1e-5


# boxes that hold every density's support with a margin of > 6 noise sd
BOXES = {
    "moons": ((-1.5, 2.5), (-1.0, 1.5)),
    "eight_gaussians": ((-4.5, 4.5), (-4.5, 4.5)),
    "checkerboard": ((-4.5, 4.5), (-4.5, 4.5)),
    "rings": ((-3.8, 3.8), (-3.8, 3.8)),
}


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_true_log_density_integrates_to_one(name):
    h = 0.02
    (x0, x1), (y0, y1) = BOXES[name]
    xx, yy = np.meshgrid(np.arange(x0, x1, h) + h / 2, np.arange(y0, y1, h) + h / 2)
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    kw = {"grid": 256} if name == "moons" else {}  # t spacing 0.012, well below the noise
    mass = np.exp(TOY2D_LOG_PROB[name](pts, **kw)).sum() * h * h
    assert mass == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_true_log_density_prefers_the_samples(name):
    """The density is that of the sampler: samples score higher than the same points moved."""
    x = TOY2D[name](1000, seed=5)
    log_p = TOY2D_LOG_PROB[name](x)
    assert np.isfinite(log_p).all()
    moved = TOY2D_LOG_PROB[name](x + np.array([0.6, -0.4], dtype=np.float32))
    assert log_p.mean() > np.mean(np.maximum(moved, -50.0)) + 0.5


def test_true_log_density_matches_the_known_entropies():
    # -log 32 exactly; -(log(2 pi) + 0.5 log(2 pi e 0.05^2)) for thin moons; see the docstrings
    assert TOY2D_LOG_PROB["checkerboard"](checkerboard(100)).mean() == pytest.approx(-math.log(32))
    entropy = math.log(2 * math.pi) + 0.5 * math.log(2 * math.pi * math.e * 0.05**2)
    log_p = TOY2D_LOG_PROB["moons"](moons(8000, seed=2), grid=256)
    assert log_p.mean() == pytest.approx(-entropy, abs=0.04)  # MC sd ~0.012


def test_log_density_rejects_bad_points():
    with pytest.raises(ValueError, match=r"`x` must be an array of shape \(n, 2\)"):
        TOY2D_LOG_PROB["rings"](np.zeros((3, 3)))


# PacGAN's mode-collapse benchmarks (ppgen.data.modes2d)


@pytest.mark.parametrize("name", sorted(MODES2D))
def test_modes2d_shape_dtype_seeding_and_load(name):
    sampler = MODES2D[name]
    x = sampler(777, seed=3)
    assert x.shape == (777, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.array_equal(x, sampler(777, seed=3))
    assert not np.allclose(x, sampler(777, seed=4))
    assert sampler().shape == (2500, 2)  # PacGAN scores 2,500 samples
    data = ppgen.data.load(name, n=50, seed=2)
    assert list(data) == ["x"] and np.array_equal(data["x"], sampler(50, seed=2))
    with pytest.raises(ValueError, match="`n` must be a positive int"):
        sampler(0)


def test_modes2d_centres_are_pacgans():
    angles = 2 * math.pi * np.arange(8) / 8
    assert np.allclose(ring8_centres(), np.stack([np.cos(angles), np.sin(angles)], 1))
    assert np.allclose(np.linalg.norm(ring8_centres(), axis=1), 1.0)
    axis = [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert grid25_centres().tolist() == [[i, j] for i in axis for j in axis]
    assert (RING8_SIGMA, GRID25_SIGMA) == (0.01, 0.05)
    for name in MODES2D:
        centres, sigma = mode_spec(name)
        assert sigma == {"ring8": RING8_SIGMA, "grid25": GRID25_SIGMA}[name]
        assert len(centres) == {"ring8": 8, "grid25": 25}[name]
    with pytest.raises(ValueError, match="Unknown mode benchmark"):
        mode_spec("ring")


@pytest.mark.parametrize(
    "sampler, centres, sigma, mass_tol",
    [
        # binomial sd of a mode's share at n = 40,000: 0.0017 (ring), 0.0010 (grid)
        (ring8, ring8_centres(), RING8_SIGMA, 0.008),
        (grid25, grid25_centres(), GRID25_SIGMA, 0.005),
    ],
)
def test_modes2d_equal_weights_means_and_sigma(sampler, centres, sigma, mass_tol):
    n = 40_000
    x = sampler(n, seed=1).astype(np.float64)
    k = np.linalg.norm(x[:, None] - centres[None], axis=2).argmin(1)
    K = len(centres)
    assert np.allclose(np.bincount(k, minlength=K) / n, 1 / K, atol=mass_tol)
    resid = x - centres[k]
    for j in range(K):
        r = resid[k == j]
        # sd of a mode's mean is sigma / sqrt(n / K) <= 0.0011; of its sd, ~1.6 % of sigma
        assert np.allclose(r.mean(0), 0.0, atol=5 * sigma / math.sqrt(n / K))
        assert np.allclose(r.std(0), sigma, rtol=0.08)
    # pooled over modes: the sd per coordinate is sigma to 1 % (sd of the estimate 0.35 %)
    assert np.allclose(resid.std(0), sigma, rtol=0.01)
    # the modes never overlap: every point is within 6 sigma of its own centre
    assert np.linalg.norm(resid, axis=1).max() < 6 * sigma
