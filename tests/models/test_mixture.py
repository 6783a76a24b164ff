"""Mixtures against truth: parameters, responsibilities, DP occupancy, relabelling, bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ppgen
from ppgen.analysis.metrics import hungarian_match, relabel
from ppgen.data.builtin import blobs
from ppgen.errors import DataError
from ppgen.models.mixture import (
    BernoulliMixture,
    DPMixture,
    GaussianMixture,
    PoissonMixture,
    StudentTMixture,
    posterior_assignments,
    stick_breaking,
)


def _map(model, x, steps=150, kind="delta", backend="pyro", lr=0.05):
    est = ppgen.inference.SVI(
        guide=model.guide_for(x, kind, backend=backend),
        elbo="enum",
        steps=steps,
        lr=lr,
        num_draws=20,
    )
    return ppgen.fit(model, {"x": x}, est, backend=backend)


@pytest.fixture(scope="module")
def blob_fit():
    d = blobs(n=90, seed=1)
    gmm = GaussianMixture(3)
    return gmm, d, _map(gmm, d["x"])


def test_gmm_map_recovers_locs_and_assignments(blob_fit):
    gmm, d, fit = blob_fit
    _, dist = hungarian_match(fit.draws["locs"].mean((0, 1)), d["truth"]["locs"])
    assert dist.max() < 0.5  # unit-scale blobs, 30 points each: se ~ 0.2
    resp = posterior_assignments(fit)
    assert resp.shape == (90, 3) and np.allclose(resp.sum(1), 1.0)
    perm, _ = hungarian_match(fit.draws["locs"].mean((0, 1)), d["truth"]["locs"])
    acc = (resp.argmax(1) == perm[d["truth"]["z"]]).mean()
    assert acc > 0.95


def test_pointwise_log_likelihood_is_marginal(blob_fit):
    from scipy.stats import norm

    gmm, d, fit = blob_fit
    ll = gmm.pointwise_log_likelihood(fit)
    assert ll.shape == (1, 20, 90)
    w, mu, s = (fit.draws[k][0, 0] for k in ("weights", "locs", "scales"))
    x = d["x"]
    direct = np.log((w * norm.pdf(x[:, None], mu, s).prod(-1)).sum(1))
    assert np.allclose(ll[0, 0], direct, atol=1e-4)


def test_to_arviz_has_loo(blob_fit):
    import arviz as az

    gmm, _, fit = blob_fit
    idata = gmm.to_arviz(fit, posterior_predictive=False)
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "data")
    assert "component" in idata.posterior["locs"].dims
    with warnings.catch_warnings():  # MAP draws are a point mass: Pareto k is meaningless
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(az.loo(idata).elpd_loo)


@pytest.mark.slow
def test_full_covariance_recovers_correlation():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    x = np.concatenate(
        [rng.multivariate_normal([-5, 0], cov, 80), rng.multivariate_normal([5, 0], cov, 80)]
    )
    gmm = GaussianMixture(2, covariance="full")
    fit = _map(gmm, x, steps=150)
    covs = gmm.covariances(fit)
    assert np.abs(covs - cov).max() < 0.3


@pytest.mark.parametrize(
    "cls, truth_key, make",
    [
        (PoissonMixture, "rates", lambda r: r.poisson([[2.0, 10.0], [15.0, 3.0]] * 60)),
        (
            BernoulliMixture,
            "probs",
            lambda r: (
                (r.random((120, 8)) < [[0.85] * 4 + [0.1] * 4, [0.1] * 4 + [0.85] * 4] * 60) * 1
            ),
        ),
        (StudentTMixture, "locs", lambda r: r.standard_t(3, (120, 1)) + [[-6.0], [6.0]] * 60),
    ],
)
def test_other_families_recover_parameters(cls, truth_key, make):
    x = make(np.random.default_rng(0))
    truth = {
        "rates": np.array([[2.0, 10.0], [15.0, 3.0]]),
        "probs": np.array([[0.85] * 4 + [0.1] * 4, [0.1] * 4 + [0.85] * 4]),
        "locs": np.array([[-6.0], [6.0]]),
    }[truth_key]
    model = cls(2)
    fit = _map(model, x, steps=150)
    est = fit.draws[truth_key].mean((0, 1))
    _, dist = hungarian_match(est, truth)
    tol = {"rates": 1.0, "probs": 0.25, "locs": 0.5}[truth_key]
    assert dist.max() < tol, (est, truth)


@pytest.mark.slow
def test_dp_mixture_finds_three_components():
    x = blobs(n=120, seed=2)["x"]
    dp = DPMixture(6, alpha=0.5)
    fit = _map(dp, x, steps=300, kind="normal")
    assert dp.num_occupied(fit, min_size=3) == 3
    assert fit.draws["weights"].shape[-1] == 6


def test_stick_breaking_sums_to_one():
    v = np.random.default_rng(0).random((4, 5))
    w = stick_breaking(v)
    assert w.shape == (4, 6) and np.allclose(w.sum(-1), 1.0)


def test_relabel_undoes_label_switching():
    rng = np.random.default_rng(0)
    locs = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    weights = np.array([0.2, 0.3, 0.5])
    perms = np.stack([rng.permutation(3) for _ in range(50)])
    noisy = locs[perms] + 0.1 * rng.normal(size=(50, 3, 2))
    draws = {"locs": noisy[None], "weights": weights[perms][None]}
    out, _ = relabel(draws, ["locs", "weights"], key="locs")
    ref = out["locs"][0, 0]
    assert np.abs(out["locs"][0] - ref).max() < 1.0
    assert np.allclose(out["weights"][0], out["weights"][0, 0])


@pytest.mark.slow
def test_gmm_nuts_recovers_locs():
    d = blobs(n=90, seed=1)
    gmm = GaussianMixture(3)
    est = ppgen.inference.NUTS(num_samples=60, num_warmup=60, init_strategy=gmm.init_values(d["x"]))
    fit = ppgen.fit(gmm, {"x": d["x"]}, est, backend="numpyro")
    _, dist = hungarian_match(fit.draws["locs"].mean((0, 1)), d["truth"]["locs"])
    assert dist.max() < 0.5


@pytest.mark.parametrize(
    "model, x",
    [
        (PoissonMixture(2), np.array([[1, 2], [-1, 3]])),
        (PoissonMixture(2), np.array([[1.5, 2.0], [1.0, 3.0]])),
        (BernoulliMixture(2), np.array([[0, 1], [2, 1]])),
    ],
)
def test_bad_inputs_raise_named_errors(model, x):
    with pytest.raises(DataError, match="`x`"):
        ppgen.fit(model, {"x": x}, ppgen.inference.SVI(guide="delta", elbo="enum", steps=1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`K`"):
        GaussianMixture(0)
    with pytest.raises(ValueError, match="`covariance`"):
        GaussianMixture(2, covariance="tied")
    with pytest.raises(ValueError, match="`family`"):
        DPMixture(5, family="gamma")
