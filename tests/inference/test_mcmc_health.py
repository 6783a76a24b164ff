"""MCMC health checks: divergences, tree-depth hits, R-hat and ESS in fit.diagnostics, and one
SamplerWarning per fit that names the problems (pyproject ignores SamplerWarning elsewhere)."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as pd
import pytest

import ppgen
from ppgen.errors import SamplerWarning
from ppgen.inference import HMC, NUTS
from ppgen.inference._mcmc_stats import health_message, mcmc_health

Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
X = np.random.default_rng(0).normal(0.5, 1.0, 20)
KEYS = (
    "divergences",
    "divergences_per_chain",
    "max_tree_depth_hits",
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "stuck_chains",
    "health_warnings",
)


def centred_eight_schools(sigma, y=None):
    """The centred eight schools: a funnel in (tau, theta) that NUTS diverges in."""
    mu = numpyro.sample("mu", nd.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", nd.HalfCauchy(5.0))
    with numpyro.plate("school", 8):
        theta = numpyro.sample("theta", nd.Normal(mu, tau))
        numpyro.sample("y", nd.Normal(theta, sigma), obs=y)


def normal_mean(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def normal_mean_pyro(x=None):
    mu = pyro.sample("mu", pd.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", pd.Normal(mu, 1.0), obs=x)


@pytest.fixture(scope="module")
def funnel(tmp_path_factory):
    """One bad NumPyro fit (low target_accept, max_tree_depth=3) through the checkpointed path,
    and the SamplerWarnings it raised."""
    est = NUTS(200, 100, target_accept=0.6, max_tree_depth=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = ppgen.fit(
            centred_eight_schools,
            {"sigma": SIGMA8, "y": Y8},
            est,
            seed=0,
            progress=False,
            checkpoint_dir=tmp_path_factory.mktemp("ckpt"),
            checkpoint_every=200,
        )
    return fit, [w for w in caught if issubclass(w.category, SamplerWarning)]


def test_uniform_init_is_the_default_as_in_pyro_and_numpyro():
    assert NUTS().init_strategy == "uniform" and HMC().init_strategy == "uniform"


def test_divergences_warn_once_with_the_count_and_what_to_do(funnel):
    fit, caught = funnel
    n = int(fit.sample_stats["diverging"].sum())
    assert n > 0
    assert fit.diagnostics["divergences"] == n
    assert fit.diagnostics["divergences_per_chain"] == [n]
    assert fit.diagnostics["checkpoint_chunk"] == 200  # the checkpointed path ran
    assert len(caught) == 1  # one warning for every problem of the fit
    msg = str(caught[0].message)
    assert f"{n} of 200 transitions diverged (chain 0: {n})" in msg
    assert "target_accept (now 0.6" in msg and "non-centred" in msg
    assert caught[0].filename == __file__  # points at the ppgen.fit call, not into ppgen
    assert fit.diagnostics["health_warnings"] and all(
        p in msg for p in fit.diagnostics["health_warnings"]
    )
    assert fit.diagnostics["rhat_max"] is None  # one chain: R-hat is undefined


def test_max_tree_depth_hits_are_counted_and_named(funnel):
    fit, caught = funnel
    depth = fit.sample_stats["tree_depth"]
    # NumPyro's tree of depth d takes 2**(d-1)..2**d - 1 leapfrog steps: depth never exceeds
    # the cap and ceil(log2(n_steps + 1)) recovers it
    assert depth.max() <= 3
    hits = int((depth >= 3).sum())
    assert 0 < hits == fit.diagnostics["max_tree_depth_hits"]
    assert f"{hits} of 200 transitions hit max_tree_depth=3" in str(caught[0].message)
    assert "raise max_tree_depth (e.g. 5)" in str(caught[0].message).lower()
    ess = fit.diagnostics["ess_bulk_min"]
    assert ess < 100 and f"bulk ESS {ess:.0f} < 100 per chain" in str(caught[0].message)


def test_a_healthy_fit_raises_no_sampler_warning():
    est = NUTS(500, 300, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerWarning)
        fit = ppgen.fit(normal_mean, {"x": X}, est, seed=0, progress=False)
    d = fit.diagnostics
    assert all(k in d for k in KEYS)
    assert d["health_warnings"] == [] and d["divergences"] == 0 and d["stuck_chains"] == []
    assert d["max_tree_depth_hits"] == 0 and d["rhat_max"] < 1.01
    assert d["ess_bulk_min"] >= 200 and d["ess_tail_min"] >= 200
    want = az.rhat(az.convert_to_dataset({"mu": fit.draws["mu"]}))["mu"].item()
    assert d["rhat_max"] == pytest.approx(want, rel=1e-12)


def test_rhat_and_ess_are_arviz_over_every_component_and_name_the_site():
    rng = np.random.default_rng(1)
    draws = {
        "a": rng.normal(size=(2, 400)),
        "b": rng.normal(size=(2, 400, 2, 3)),
    }
    draws["b"][1, :, 1, 2] += 2.0  # chain 1 sits elsewhere for one component
    stats = {"diverging": np.zeros((2, 400), bool)}
    h = mcmc_health(draws, stats)
    ds = az.convert_to_dataset(draws)
    rhat = az.rhat(ds)
    assert h["rhat_max"] == pytest.approx(float(rhat["b"].values[1, 2]), rel=1e-12)
    assert h["rhat_max_site"] == "b[1, 2]" and h["rhat_max"] > 1.3
    for kind in ("bulk", "tail"):
        ess = az.ess(ds, method=kind)
        want = min(float(ess["a"].min()), float(ess["b"].min()))
        assert h[f"ess_{kind}_min"] == pytest.approx(want, rel=1e-12)
    rhat_msgs = [m for m in h["health_warnings"] if m.startswith("R-hat")]
    assert rhat_msgs == [
        f"R-hat {h['rhat_max']:.2f} > 1.01 for site 'b[1, 2]': the chains disagree. Run longer "
        "chains (more num_warmup and num_samples), and check for several modes or a bad start."
    ]
    text = health_message("NUTS", h, 2, 400)
    assert text.startswith("NUTS: ") and "b[1, 2]" in text
    # one chain: no R-hat; HMC (no max_tree_depth): no tree-depth count
    one = mcmc_health({"a": draws["a"][:1]}, {"diverging": np.zeros((1, 400), bool)})
    assert one["rhat_max"] is None and one["max_tree_depth_hits"] is None
    assert one["ess_bulk_min"] is not None


def test_a_chain_that_never_moves_is_reported():
    mu = np.random.default_rng(2).normal(size=(2, 50))
    mu[1] = 0.3
    h = mcmc_health({"mu": mu}, {"diverging": np.zeros((2, 50), bool)})
    assert h["stuck_chains"] == [1]
    assert any("chain 1 never moved for site 'mu'" in m for m in h["health_warnings"])


def test_components_constant_by_construction_are_not_a_stuck_chain():
    """A 2x2 LKJ Cholesky factor's first row is (1, 0) in every draw; the chain moves."""
    rng = np.random.default_rng(3)
    r = np.tanh(rng.normal(size=(2, 50)))
    chol = np.zeros((2, 50, 2, 2))
    chol[..., 0, 0], chol[..., 1, 0], chol[..., 1, 1] = 1.0, r, np.sqrt(1 - r**2)
    h = mcmc_health({"L": chol}, {"diverging": np.zeros((2, 50), bool)})
    assert h["stuck_chains"] == []
    chol[1] = chol[1, :1]  # chain 1 frozen at its first draw: every component constant
    assert mcmc_health({"L": chol}, {"diverging": np.zeros((2, 50), bool)})["stuck_chains"] == [1]


def test_pyro_backend_fills_the_same_diagnostics():
    est = NUTS(100, 100, jit=False, max_tree_depth=2)
    with pytest.warns(SamplerWarning, match="hit max_tree_depth=2") as caught:
        fit = ppgen.fit(normal_mean_pyro, {"x": X}, est, seed=0, progress=False)
    assert len([w for w in caught if issubclass(w.category, SamplerWarning)]) == 1
    d, st = fit.diagnostics, fit.sample_stats
    assert all(k in d for k in KEYS)
    assert d["divergences"] == int(st["diverging"].sum())
    # Pyro's tree of depth d also takes 2**(d-1)..2**d - 1 leapfrog steps
    assert st["tree_depth"].max() <= 2
    assert d["max_tree_depth_hits"] == int((st["tree_depth"] >= 2).sum()) > 0
    assert d["rhat_max"] is None and d["ess_bulk_min"] > 0
