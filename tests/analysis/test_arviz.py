"""ArviZ hand-off: groups, dims from plates, and az.loo / waic / compare / plot_trace on fits."""

from __future__ import annotations

import arviz as az
import matplotlib
import numpy as np
import pytest
from scipy import stats

import ppgen
from ppgen.inference import NUTS, SVI
from ppgen.models import EightSchools, GaussianMixture, NormalNormal

matplotlib.use("Agg")
SCHOOLS = ppgen.data.load("eight_schools")


PARETO = "ignore:Estimated shape parameter of Pareto:UserWarning"  # tiny fits: high k is real


@pytest.mark.filterwarnings(PARETO)
@pytest.mark.filterwarnings("ignore:For one or more samples the posterior variance:UserWarning")
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("method", ["svi", "nuts"])
def test_groups_and_dims(backend, method):
    est = (
        SVI(steps=100, num_draws=100)
        if method == "svi"
        else NUTS(num_samples=60, num_warmup=60, num_chains=2, jit=False)
    )
    fit = ppgen.fit(EightSchools(), SCHOOLS, est, backend=backend)
    idata = fit.to_arviz(prior=True, num_prior_samples=50)
    expected = {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "posterior_predictive",
        "observed_data",
        "constant_data",
        "prior",
        "prior_predictive",
    }
    assert expected <= set(idata.groups())
    chains = 2 if method == "nuts" else 1
    assert idata.posterior["eta"].dims == ("chain", "draw", "school")
    assert idata.posterior["theta"].shape == (chains, fit.num_draws, 8)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "school")
    assert idata.posterior_predictive["y"].shape == (chains, fit.num_draws, 8)
    np.testing.assert_array_equal(idata.observed_data["y"].values, SCHOOLS["y"])
    np.testing.assert_array_equal(idata.constant_data["sigma"].values, SCHOOLS["sigma"])
    assert idata.prior["tau"].shape == (1, 50)
    # the arviz functions users call on every fit
    assert az.summary(idata, var_names=["mu", "tau"]).shape[0] == 2
    loo = az.loo(idata)
    waic = az.waic(idata)
    assert np.isfinite(loo.elpd_loo) and np.isfinite(waic.elpd_waic)
    az.plot_trace(idata, var_names=["mu", "tau"])
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_log_likelihood_is_exact_pointwise(backend):
    fit = ppgen.fit(
        EightSchools(), SCHOOLS, NUTS(num_samples=30, num_warmup=30, jit=False), backend=backend
    )
    ll = fit.log_likelihood()["y"]
    expected = stats.norm(fit.draws["theta"], SCHOOLS["sigma"]).logpdf(SCHOOLS["y"])
    np.testing.assert_allclose(ll, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_mixture_log_likelihood_sums_out_assignments(backend):
    data = ppgen.data.load("blobs", n=40)
    fit = ppgen.fit(
        GaussianMixture(3),
        data,
        SVI(guide="delta", elbo="enum", steps=5, num_draws=3),
        backend=backend,
    )
    ll = fit.log_likelihood()["x"]
    w, m, s = (fit.draws[k][0] for k in ("weights", "locs", "scales"))
    x = data["x"]
    dens = sum(
        w[:, k, None] * stats.norm(m[:, None, k], s[:, None, k]).pdf(x).prod(-1) for k in range(3)
    )
    np.testing.assert_allclose(ll[0], np.log(dens), rtol=1e-4)


def test_svi_sample_stats_lp_is_the_log_joint():
    x = np.random.default_rng(0).normal(size=(10, 2))
    fit = ppgen.fit(NormalNormal(), {"x": x}, SVI(steps=50, num_draws=20))
    mu = fit.draws["mu"][0]
    lp = stats.norm(0, 1).logpdf(mu).sum(-1) + stats.norm(mu[:, None], 1).logpdf(x).sum((-1, -2))
    np.testing.assert_allclose(fit.to_arviz().sample_stats["lp"].values[0], lp, rtol=1e-5)


@pytest.mark.filterwarnings(PARETO)
def test_compare_svi_and_nuts_fits():
    centered = ppgen.fit(
        EightSchools(centered=True), SCHOOLS, NUTS(num_samples=100, num_warmup=100, jit=False)
    )
    noncentered = ppgen.fit(EightSchools(), SCHOOLS, SVI(steps=300, num_draws=200))
    table = az.compare({"centered_nuts": centered.to_arviz(), "svi": noncentered.to_arviz()})
    assert set(table.index) == {"centered_nuts", "svi"}
    # same data, similar models: predictive accuracy agrees within a few standard errors
    assert abs(table["elpd_loo"].iloc[0] - table["elpd_loo"].iloc[1]) < 3 * max(
        table["se"].max(), 1.0
    )
