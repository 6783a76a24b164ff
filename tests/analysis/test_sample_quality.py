"""Sample-quality metrics against truth: PacGAN's mode coverage, unbiased MMD, Fréchet distance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist

from ppgen.analysis import metrics
from ppgen.analysis.sample_quality import (
    DigitsFeatures,
    digits_input,
    frechet_classifier_distance,
    frechet_distance,
    gaussian_frechet_distance,
    median_bandwidth,
    mmd,
    mode_coverage,
)
from ppgen.data.modes2d import grid25, mode_spec, ring8

# P(chi^2_2 < 9) = 1 - exp(-9/2): the chance a true 2-D sample lies within 3 sigma of its mode
HQ_2D = 1.0 - math.exp(-4.5)


@pytest.mark.parametrize("name, sampler", [("ring8", ring8), ("grid25", grid25)])
def test_true_samples_cover_every_mode_at_the_chi2_rate(name, sampler):
    centres, sigma = mode_spec(name)
    r = mode_coverage(sampler(20_000, seed=1), centres, sigma)
    assert r.modes_covered == r.n_modes == len(centres)
    # binomial sd of the rate at n = 20,000 is 0.00074; a per-axis 3-sigma box (0.9946) or
    # a 3-sigma radius on the variance instead of the sd would land outside
    assert r.high_quality_rate == pytest.approx(HQ_2D, abs=0.003)
    assert r.counts.sum() == round(r.high_quality_rate * 20_000)
    # the histogram is near uniform: reverse KL ~ (K - 1) / (2 N) for multinomial noise
    assert 0 <= r.reverse_kl < 0.005


def test_six_of_eight_modes_give_six_and_reverse_kl_log_8_over_6():
    centres, sigma = mode_spec("ring8")
    rng = np.random.default_rng(2)
    k = rng.integers(0, 6, 6000)  # modes 6 and 7 are dropped
    x = centres[k] + sigma * rng.standard_normal((6000, 2))
    r = mode_coverage(x, centres, sigma)
    assert r.modes_covered == 6 and (r.counts[6:] == 0).all()
    # KL(uniform on 6 || uniform on 8) = log(8/6) = 0.288; multinomial noise adds ~5e-4
    assert r.reverse_kl == pytest.approx(math.log(8 / 6), abs=0.01)
    # exactly balanced counts give exactly log(8/6): empty modes contribute 0 (PacGAN's KLD)
    exact = mode_coverage(np.repeat(centres[:6], 3, axis=0), centres, sigma)
    assert exact.counts.tolist() == [3] * 6 + [0, 0]
    assert exact.reverse_kl == pytest.approx(math.log(8 / 6), rel=1e-12)
    assert exact.high_quality_rate == 1.0


def test_collapse_to_one_mode_gives_log_k():
    centres, sigma = mode_spec("grid25")
    r = mode_coverage(np.tile(centres[7], (100, 1)), centres, sigma)
    assert r.modes_covered == 1 and r.reverse_kl == pytest.approx(math.log(25))


def test_samples_far_from_every_mode_are_not_high_quality():
    centres, sigma = mode_spec("ring8")
    far = np.random.default_rng(0).uniform(5, 6, (500, 2))
    r = mode_coverage(far, centres, sigma)
    assert r.high_quality_rate == 0.0 and r.modes_covered == 0 and r.counts.sum() == 0
    assert math.isnan(r.reverse_kl)
    bad = mode_coverage(np.array([[np.nan, 0.0], [np.inf, 1.0], [1.0, 0.0]]), centres, sigma)
    assert bad.high_quality_rate == pytest.approx(1 / 3) and bad.counts[0] == 1


def test_pacgan_rule_one_sample_within_three_sigma_covers_a_mode():
    centres, sigma = mode_spec("ring8")
    direction = np.array([0.6, 0.8])  # a unit vector
    x = np.concatenate([centres[:7], centres[7:] + 2.9 * sigma * direction])
    assert mode_coverage(x, centres, sigma).modes_covered == 8  # one sample is enough
    outside = np.concatenate([centres[:7], centres[7:] + 3.1 * sigma * direction])
    r = mode_coverage(outside, centres, sigma)
    assert r.modes_covered == 7 and r.high_quality_rate == pytest.approx(7 / 8)
    assert mode_coverage(x, centres, sigma, min_count=2).modes_covered == 0
    assert mode_coverage(outside, centres, sigma, threshold=3.2).modes_covered == 8


def test_assignment_uses_the_sigma_scaled_distance():
    # (2.5, 0) is 0.5 from the tight mode (5 of its sd) but 2.5 sd from the wide one
    centres = np.array([[0.0, 0.0], [3.0, 0.0]])
    r = mode_coverage(np.array([[2.5, 0.0]]), centres, sigma=[1.0, 0.1])
    assert r.counts.tolist() == [1, 0]


def test_mode_coverage_result_and_errors():
    centres, sigma = mode_spec("ring8")
    out = mode_coverage(ring8(100), centres, sigma).as_dict()
    assert json.loads(json.dumps(out))["n_modes"] == 8
    assert metrics.mode_coverage is mode_coverage  # re-exported
    with pytest.raises(ValueError, match="dims"):
        mode_coverage(np.zeros((3, 3)), centres, sigma)
    with pytest.raises(ValueError, match="`sigma`"):
        mode_coverage(ring8(5), centres, 0.0)
    with pytest.raises(ValueError, match="`min_count`"):
        mode_coverage(ring8(5), centres, sigma, min_count=0)


def _mmd_by_definition(x, y, h):
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * h**2))  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * k(x, y).mean()
    )


def test_mmd_equals_the_unbiased_statistic_and_the_median_heuristic():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    assert mmd(x, y, bandwidth=0.7) == pytest.approx(_mmd_by_definition(x, y, 0.7), rel=1e-10)
    h = float(np.median(pdist(np.concatenate([x, y]))))
    assert median_bandwidth(x, y) == pytest.approx(h, rel=1e-12)
    assert mmd(x, y) == pytest.approx(_mmd_by_definition(x, y, h), rel=1e-10)
    # images are flattened
    assert mmd(x.reshape(40, 3, 1), y.reshape(30, 1, 3), 0.7) == pytest.approx(mmd(x, y, 0.7))


def test_mmd_is_unbiased_under_the_null():
    # mean over 400 pairs of samples of 20: sd of the mean ~0.0017; the biased (V-statistic)
    # estimate would average ~2/20 * (1 - E k) = 0.067 here
    vals = []
    for seed in range(400):
        rng = np.random.default_rng(seed)
        vals.append(mmd(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)), bandwidth=1.0))
    assert abs(np.mean(vals)) < 0.01
    rng = np.random.default_rng(1)
    same = mmd(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)))
    assert abs(same) < 0.002  # null sd at n = 1000 is ~5e-4


def test_mmd_of_shifted_gaussians_matches_the_closed_form():
    # X ~ N(0, I_2), Y ~ N(delta, I_2), k = exp(-|a - b|^2 / 2h^2) with h = 1:
    # MMD^2 = 2 (1 + 2/h^2)^(-d/2) (1 - exp(-|delta|^2 / (2 (2 + h^2))))
    rng = np.random.default_rng(3)
    delta = np.array([1.0, 0.0])
    exact = 2 / 3 * (1 - math.exp(-1 / 6))  # 0.1023
    est = mmd(rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2)) + delta, bandwidth=1.0)
    assert est == pytest.approx(exact, abs=0.02)  # sd ~0.0047 at n = 2000
    assert est > 0.05  # far above the null sd


def test_mmd_errors():
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd(np.zeros((1, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="rows hold 2 values"):
        mmd(np.zeros((3, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="`bandwidth`"):
        mmd(np.ones((3, 2)), np.zeros((5, 2)), bandwidth=-1.0)
    with pytest.raises(ValueError, match="median distance"):
        mmd(np.zeros((3, 2)), np.zeros((5, 2)))


def _closed_form_frechet(m1, s1, m2, s2):
    """||m1 - m2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), by symmetric eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(w)) @ v.T
    ev = np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)
    return float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum())


M1, M2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.5])
A = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.5, 1.2]])
B = np.array([[0.5, 0.0, 0.0], [-0.4, 1.0, 0.0], [0.3, 0.0, 0.4]])
S1, S2 = A @ A.T, B @ B.T  # they do not commute


def test_gaussian_frechet_distance_matches_the_closed_form():
    exact = _closed_form_frechet(M1, S1, M2, S2)  # 3.155
    assert gaussian_frechet_distance(M1, S1, M2, S2) == pytest.approx(exact, rel=1e-9)
    # diagonal covariances: the trace term is sum (s1_i - s2_i)^2 of the standard deviations
    d1, d2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    fd = gaussian_frechet_distance(np.zeros(3), np.diag(d1), np.ones(3), np.diag(d2))
    assert fd == pytest.approx(3 + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum(), rel=1e-12)
    # a singular product (a zero-variance direction) takes the eps path and stays accurate
    z1, z2 = np.diag([1.0, 0.0]), np.diag([4.0, 0.0])
    assert gaussian_frechet_distance([0, 0], z1, [0, 0], z2) == pytest.approx(1.0, abs=1e-5)


def test_frechet_distance_of_gaussian_samples_matches_the_closed_form():
    rng = np.random.default_rng(0)
    n = 100_000
    x = M1 + rng.standard_normal((n, 3)) @ A.T
    y = M2 + rng.standard_normal((n, 3)) @ B.T
    exact = _closed_form_frechet(M1, S1, M2, S2)
    # sd over seeds ~0.011 at n = 100,000; tr(S1^1/2 S2^1/2) in place of the root of the
    # product would give 3.219, a mean-only distance 1.5
    assert frechet_distance(x, y) == pytest.approx(exact, abs=0.05)
    assert abs(frechet_distance(x, x)) < 1e-8
    assert metrics.frechet_distance is frechet_distance
    with pytest.raises(ValueError, match="`feats_y` 2"):
        frechet_distance(x, y[:, :2])


@pytest.fixture(scope="module")
def digits_net():
    return DigitsFeatures.default()


def test_digits_classifier_is_accurate_on_held_out_digits(digits_net):
    assert digits_net.accuracy >= 0.9
    pred = digits_net.predict(digits_net.test_images)
    assert pred.dtype == np.int64 and np.mean(pred == digits_net.test_labels) >= 0.9
    assert digits_net.features(digits_net.test_images[:5]).shape == (5, digits_net.feature_dim)


def test_digits_inputs_in_every_layout_agree(digits_net):
    x = digits_net.test_images[:10]
    ref = digits_net.features(x)
    for layout in (x.reshape(10, 8, 8), x.reshape(10, 1, 8, 8), torch.from_numpy(x)):
        assert np.array_equal(digits_net.features(layout), ref)
    assert np.allclose(digits_input(x), x / 16)
    with pytest.raises(ValueError, match=r"\(n, 64\), \(n, 8, 8\) or \(n, 1, 8, 8\)"):
        digits_input(np.zeros((10, 28, 28)))


def test_digits_training_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = DigitsFeatures(seed=3, epochs=2), DigitsFeatures(seed=3, epochs=2)
    assert torch.equal(state, torch.get_rng_state())
    x = a.test_images[:20]
    assert np.array_equal(a.features(x), b.features(x))


def test_frechet_classifier_distance_separates_digits_from_noise(digits_net):
    test = digits_net.test_images
    same = frechet_classifier_distance(test[::2], test[1::2])  # two halves of held-out digits
    noise = np.random.default_rng(0).uniform(0, 16, (300, 64))  # same scale, no digit
    far = frechet_classifier_distance(test, noise)
    assert same < 0.1 * far  # observed ~3.6 against ~150
    assert abs(frechet_classifier_distance(test, test)) < 1e-6  # no -2 d eps offset bias
    # a classifier-labelled class subset is far from the full set of digits
    ones = test[digits_net.test_labels == 1]
    assert frechet_classifier_distance(ones, test) > 3 * same
