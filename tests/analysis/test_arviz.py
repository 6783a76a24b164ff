"""ArviZ hand-off: groups, dims from plates, and az.loo / waic / compare / plot_trace on fits."""

from __future__ import annotations

import json

import arviz as az
import matplotlib
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest
from scipy import stats

import ppgen
from ppgen import Program
from ppgen.distributions import Implicit, Unnormalized
from ppgen.errors import CapabilityError, EnergySamplingError, ImplicitDensityError
from ppgen.inference import NUTS, SVI
from ppgen.models import EightSchools, GaussianMixture, NormalNormal
from ppgen.result import Fit

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
        EightSchools(centered=True),
        SCHOOLS,
        NUTS(num_samples=100, num_warmup=100),
        backend="numpyro",  # compared across backends too: the fits share the program
    )
    noncentered = ppgen.fit(EightSchools(), SCHOOLS, SVI(steps=300, num_draws=200))
    table = az.compare({"centered_nuts": centered.to_arviz(), "svi": noncentered.to_arviz()})
    assert set(table.index) == {"centered_nuts", "svi"}
    # same data, similar models: predictive accuracy agrees within a few standard errors
    assert abs(table["elpd_loo"].iloc[0] - table["elpd_loo"].iloc[1]) < 3 * max(
        table["se"].max(), 1.0
    )


N, S = 5, 4000
XN = np.linspace(-1.0, 1.0, N)


def pyro_gan(x=None):
    with pyro.plate("data", N):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", Implicit(2.0 * z + 1.0), obs=x)


def numpyro_gan(x=None):
    with numpyro.plate("data", N):
        z = numpyro.sample("z", nd.Normal(0.0, 1.0))
        numpyro.sample("x", Implicit(2.0 * z + 1.0), obs=x)


def pyro_ebm(x=None):
    w = pyro.sample("w", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", N):
        pyro.sample("x", Unnormalized(lambda v: 0.5 * w * v**2), obs=x)


def numpyro_ebm(x=None):
    w = numpyro.sample("w", nd.LogNormal(0.0, 1.0))
    with numpyro.plate("data", N):
        numpyro.sample("x", Unnormalized(lambda v: 0.5 * w * v**2), obs=x)


MODELS = {
    ("pyro", "implicit"): (pyro_gan, "z"),
    ("numpyro", "implicit"): (numpyro_gan, "z"),
    ("pyro", "energy"): (pyro_ebm, "w"),
    ("numpyro", "energy"): (numpyro_ebm, "w"),
}


def hand_fit(backend: str, kind: str) -> Fit:
    """A Fit built by hand (no estimator fits these kinds yet): N(0, 1) posterior draws."""
    model, latent = MODELS[backend, kind]
    prog = Program(model)
    _, info = prog.validate({"x": XN})
    rng = np.random.default_rng(1)
    draws = rng.normal(size=(1, S, N)) if latent == "z" else np.exp(rng.normal(size=(1, S)))
    return Fit(
        program=prog,
        estimator=SVI(),
        info=info,
        data=prog.check_values({"x": XN}),
        draws={latent: draws.astype(np.float32)},
    )


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_implicit_fit_builds_the_groups_it_can_and_says_why_not_the_others(backend):
    fit = hand_fit(backend, "implicit")
    idata = fit.to_arviz()
    assert set(idata.groups()) == {"posterior", "posterior_predictive", "observed_data"}
    assert idata.posterior_predictive["x"].shape == (1, S, N)
    omitted = json.loads(idata.attrs["ppgen_omitted_groups"])
    assert set(omitted) == {"log_likelihood", "sample_stats"}
    assert "`x`" in omitted["log_likelihood"] and "Implicit" in omitted["log_likelihood"]
    with pytest.raises(CapabilityError, match="log_likelihood.*`x` is Implicit"):
        fit.to_arviz(log_likelihood=True)
    with pytest.raises(ImplicitDensityError, match="`x`"):
        fit.log_likelihood()
    assert fit.capabilities == {
        "has_likelihood": False,
        "has_posterior": True,
        "has_sample_stats": False,
        "can_sample": True,
    }


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_implicit_fit_sample_is_posterior_averaged_forward_simulation(backend):
    fit = hand_fit(backend, "implicit")
    n = 4000
    x = fit.sample(n, seed=3)["x"]
    assert x.shape == (n, N)
    # x = 2 z + 1 with z ~ N(0, 1): mean 1, sd 2; the error of the mean has two parts, the
    # S posterior draws and the n resampled data sets (5 standard errors)
    se = 2.0 * np.sqrt(1.0 / (n * N) + 1.0 / (S * N))
    assert abs(x.mean() - 1.0) < 5 * se
    assert abs(x.std() - 2.0) < 5 * 2.0 / np.sqrt(2 * min(n, S) * N)
    # every data set is the program run forward from one posterior draw
    z = fit.draws["z"][0]
    rows = (x[:20] - 1.0) / 2.0
    assert all(np.isclose(z, r, atol=1e-5).all(-1).any() for r in rows)
    np.testing.assert_array_equal(fit.sample(7, seed=3)["x"], fit.sample(7, seed=3)["x"])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_energy_fit_has_no_likelihood_nor_forward_simulation(backend):
    fit = hand_fit(backend, "energy")
    idata = fit.to_arviz(prior=True, num_prior_samples=20)
    assert set(idata.groups()) == {"posterior", "prior", "observed_data"}
    omitted = json.loads(idata.attrs["ppgen_omitted_groups"])
    assert "log Z" in omitted["log_likelihood"]
    assert "forward simulation" in omitted["posterior_predictive"]
    assert "prior_predictive" in omitted
    with pytest.raises(CapabilityError, match="posterior_predictive.*Unnormalized"):
        fit.to_arviz(posterior_predictive=True)
    with pytest.raises(CapabilityError, match="log Z"):
        fit.log_likelihood()
    assert not fit.capabilities["can_sample"]
    with pytest.raises(EnergySamplingError, match="`x`.*Langevin"):
        fit.sample(3)
    calls = []

    def sampler(n, *, seed, data):
        calls.append((n, seed, data))
        return {"x": np.zeros((n, N))}

    fit.data_sampler = sampler
    assert fit.capabilities["can_sample"]
    assert fit.sample(3, seed=7)["x"].shape == (3, N)
    assert calls == [(3, 7, None)]


def test_explicit_fit_keeps_every_group_and_omits_nothing():
    x = np.random.default_rng(0).normal(size=(10, 2))
    fit = ppgen.fit(NormalNormal(), {"x": x}, SVI(steps=20, num_draws=30))
    assert all(fit.capabilities.values())
    idata = fit.to_arviz()
    assert {"log_likelihood", "posterior_predictive", "sample_stats"} <= set(idata.groups())
    assert json.loads(idata.attrs["ppgen_omitted_groups"]) == {}
    assert "log_likelihood" not in fit.to_arviz(log_likelihood=False).groups()
    assert fit.sample(4)["x"].shape == (4, 10, 2)
