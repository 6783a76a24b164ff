"""Programs shaped as users write them (issue 17): enumerated sites without naming the ELBO,
a Pyro autoguide object as the guide, a Bernoulli on grey levels with validation off."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDiagonalNormal

import ppgen
from ppgen.errors import DataError, EstimatorError
from ppgen.inference import MLE, SVI

RNG = np.random.default_rng(0)
X_MIX = np.concatenate([RNG.normal(-3.0, 0.5, 40), RNG.normal(3.0, 0.5, 40)]).astype(np.float32)


def pyro_mixture(x=None):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(2)))
    locs = pyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with pyro.plate("d", 80):
        z = pyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(locs[z], 0.5), obs=x)


def numpyro_mixture(x=None):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    w = numpyro.sample("w", nd.Dirichlet(jnp.ones(2)))
    locs = numpyro.sample("locs", nd.Normal(0.0, 5.0).expand([2]).to_event(1))
    with numpyro.plate("d", 80):
        z = numpyro.sample("z", nd.Categorical(w), infer={"enumerate": "parallel"})
        numpyro.sample("x", nd.Normal(locs[z], 0.5), obs=x)


@pytest.mark.parametrize("program", [pyro_mixture, numpyro_mixture], ids=["pyro", "numpyro"])
@pytest.mark.parametrize("method", ["svi", "map"])
def test_enumerated_sites_pick_the_enumerating_elbo_and_find_the_clusters(program, method):
    est = SVI(steps=250, lr=0.1, num_draws=50) if method == "svi" else MLE(steps=250, lr=0.1)
    backend = "numpyro" if program is numpyro_mixture else "pyro"  # this file imports both
    fit = ppgen.fit(program, {"x": X_MIX}, est, seed=0, backend=backend)
    assert fit.diagnostics["elbo"] == "enum"
    locs = np.sort(np.asarray(fit.draws["locs"]).reshape(-1, 2).mean(0))
    np.testing.assert_allclose(locs, [-3.0, 3.0], atol=0.3)


def test_an_elbo_that_cannot_sum_out_is_refused_with_the_remedy():
    with pytest.raises(EstimatorError, match="leave `elbo` out"):
        ppgen.fit(pyro_mixture, {"x": X_MIX}, SVI(elbo="trace", steps=2))
    fit = ppgen.fit(pyro_mixture, {"x": X_MIX}, MLE(elbo="enum", steps=2, check_convergence=False))
    assert fit.diagnostics["elbo"] == "enum"  # MLE takes `elbo` like SVI


def test_a_pyro_autoguide_object_is_a_guide():
    """guide=AutoDiagonalNormal(model): its joint auxiliary site is the guide's own; the
    posterior matches the conjugate one (mu ~ N(0, 5^2), x_i ~ N(mu, 1))."""

    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        with pyro.plate("d", 20):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    x = RNG.normal(1.0, 1.0, 20)
    est = SVI(steps=1000, lr=0.05, lr_decay=0.01, num_draws=2000)  # annealed: no iterate noise
    fit = ppgen.fit(model, {"x": x}, est, guide=AutoDiagonalNormal(model), seed=0)
    prec = 20 + 1 / 25
    mu = np.asarray(fit.draws["mu"]).ravel()
    assert abs(mu.mean() - x.sum() / prec) < 0.04  # measured 0.011
    assert abs(mu.std() - prec**-0.5) < 0.03  # measured 0.001


def test_a_bernoulli_on_grey_levels_with_validation_off_warns_and_fits():
    def vae_style(x=None, validate=False):
        p = pyro.sample("p", dist.Beta(1.0, 1.0))
        with pyro.plate("d", 30):
            bern = dist.Bernoulli(p, validate_args=False) if not validate else dist.Bernoulli(p)
            pyro.sample("x", bern, obs=x)

    grey = RNG.random(30).astype(np.float32)
    with pytest.warns(UserWarning, match=r"`x`.*validate_args=False.*ContinuousBernoulli"):
        fit = ppgen.fit(vae_style, {"x": grey}, SVI(steps=300, lr=0.05, num_draws=200))
    # the Bernoulli "likelihood" of grey x is maximised at p = mean(x)
    assert abs(np.asarray(fit.draws["p"]).mean() - grey.mean()) < 0.1
    with pytest.raises(DataError, match="support"):  # validation on: refused as before
        ppgen.fit(vae_style, {"x": grey, "validate": True}, SVI(steps=2))
