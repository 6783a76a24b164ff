"""Local latents keep a bounded number of draws; passes over all draws remake them exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

import ppgen
import ppgen.analysis.arviz as ppaz
import ppgen.inference._guide_fit as guide_fit
from ppgen.inference import SVI

N = 12


def pyro_model(x=None):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("data", N):
        z = pyro.sample("z", dist.Normal(mu, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def numpyro_model(x=None):
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", N):
        z = numpyro.sample("z", dist.Normal(mu, 1.0))
        numpyro.sample("x", dist.Normal(z, 0.5), obs=x)


DATA = {"x": np.random.default_rng(0).normal(2.0, 1.2, N).astype(np.float32)}
MODELS = {"pyro": pyro_model, "numpyro": numpyro_model}


def _fit(backend: str, **kw) -> ppgen.Fit:
    torch.manual_seed(0)
    est = SVI(steps=10, lr=0.05, **{"num_draws": 20, **kw})
    return ppgen.fit(MODELS[backend], DATA, est, seed=3, progress=False, backend=backend)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_local_latents_keep_k_draws_and_globals_keep_all(backend):
    fit = _fit(backend, local_draws=5)
    assert fit.draws["mu"].shape == (1, 20)
    assert "z" not in fit.draws
    assert fit.local_draws["z"].shape == (1, 5, N)
    assert fit.diagnostics["local_draws"] == 5
    # remade chunks are the fit's own draws: the globals equal the kept ones chunk by chunk,
    # and the first chunk's locals equal the kept local draws
    chunks = list(fit.latent_chunks())
    assert [len(c["mu"]) for c in chunks] == [5, 5, 5, 5]
    np.testing.assert_allclose(np.concatenate([c["mu"] for c in chunks]), fit.draws["mu"][0])
    np.testing.assert_allclose(chunks[0]["z"], fit.local_draws["z"][0])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_loglik_over_remade_chunks_is_exact(backend):
    fit = _fit(backend, local_draws=5)
    ll = fit.log_likelihood()["x"]
    assert ll.shape == (1, 20, N)
    z = np.concatenate([c["z"] for c in fit.latent_chunks()])
    exact = stats.norm(z, 0.5).logpdf(DATA["x"][None])
    np.testing.assert_allclose(ll[0], exact, rtol=1e-5, atol=1e-5)
    # the first five rows use exactly the kept local draws
    kept = stats.norm(fit.local_draws["z"][0], 0.5).logpdf(DATA["x"][None])
    np.testing.assert_allclose(ll[0, :5], kept, rtol=1e-5, atol=1e-5)


def test_default_budget_bounds_local_draws(monkeypatch):
    monkeypatch.setattr(guide_fit, "LOCAL_DRAW_VALUES", 4 * N)  # room for 4 draws of z
    fit = _fit("pyro")
    assert fit.local_draws["z"].shape == (1, 4, N)
    assert fit.draws["mu"].shape == (1, 20)
    idata = fit.to_arviz()
    assert idata.posterior["mu"].shape == (1, 20)
    assert idata.posterior_local["z"].shape == (1, 4, N)
    assert idata.log_likelihood["x"].shape == (1, 20, N)
    note = json.loads(idata.attrs["ppgen_local_draws"])
    assert note["sites"] == ["z"] and note["draws"] == 4 and note["of"] == 20
    assert "local_draws" in note["why"]
    # lp = log p(x, z) of every draw counts the local latent: equal to the exact joint
    mu = idata.posterior["mu"].values[0]
    z = np.concatenate([c["z"] for c in fit.latent_chunks()])
    exact = (
        stats.norm(0.0, 5.0).logpdf(mu)
        + stats.norm(mu[:, None], 1.0).logpdf(z).sum(-1)
        + stats.norm(z, 0.5).logpdf(DATA["x"][None]).sum(-1)
    )
    np.testing.assert_allclose(idata.sample_stats["lp"].values[0], exact, rtol=1e-4)


def test_small_local_latents_are_kept_whole():
    fit = _fit("pyro")  # 20 draws x 12 values: far under the budget
    assert fit.draws["z"].shape == (1, 20, N)
    assert not fit.local_draws and "local_draws" not in fit.diagnostics
    assert "posterior_local" not in fit.to_arviz().groups()


def test_posterior_predictive_is_bounded(monkeypatch):
    monkeypatch.setattr(ppaz, "PREDICTIVE_VALUES", 3 * N)
    fit = _fit("pyro", local_draws=5)
    idata = fit.to_arviz()
    assert idata.posterior_predictive["x"].shape == (1, 3, N)
    pred = fit.predict(sites=["x"])
    assert pred["x"].shape == (1, 20, N)
    # the predictive of a draw follows that draw's z: the first rows sit around the kept z
    z = fit.local_draws["z"][0, :3]
    resid = idata.posterior_predictive["x"].values[0] - z
    assert abs(resid.mean()) < 4 * 0.5 / np.sqrt(resid.size)


def test_save_load_round_trip(tmp_path):
    fit = _fit("pyro", local_draws=5)
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", pyro_model)
    np.testing.assert_array_equal(again.local_draws["z"], fit.local_draws["z"])
    np.testing.assert_allclose(again.log_likelihood()["x"], fit.log_likelihood()["x"], rtol=1e-6)


def test_local_draws_argument_is_checked():
    with pytest.raises(ppgen.errors.EstimatorError, match="local_draws"):
        SVI(local_draws=0)


def test_fit_with_only_local_latents():
    import pyro
    import pyro.distributions as dist

    def model(x=None):
        with pyro.plate("data", N):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    fit = ppgen.fit(model, DATA, SVI(steps=5, num_draws=10, local_draws=4), progress=False)
    assert fit.draws == {} and fit.local_draws["z"].shape == (1, 4, N)
    assert (fit.num_chains, fit.num_draws) == (1, 10)
    assert fit.log_likelihood()["x"].shape == (1, 10, N)
    table = fit.summary()
    assert len(table) == N
    np.testing.assert_allclose(table["mean"].values, fit.local_draws["z"][0].mean(0), atol=1e-3)
