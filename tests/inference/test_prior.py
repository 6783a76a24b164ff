"""Programs with no observed site: NUTS/HMC on their joint density, the Prior estimator (prior
and prior-predictive draws), against analytic truth on both backends; refusals; save/load."""

from __future__ import annotations

import json

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import integrate, optimize, stats

import ppgen
from ppgen.distributions import Unnormalized
from ppgen.errors import DataError, EstimatorError
from ppgen.inference import HMC, NUTS, Prior

BACKENDS = ["pyro", "numpyro"]
Y_SD = 3.0  # y ~ N(0, 3) in Neal's funnel; x | y ~ N(0, exp(y / 2))


# ------------------------------------------------------------------ programs
def funnel():
    """Neal's funnel as NumPyro's examples/funnel.py writes it: a prior-only target density."""
    y = pyro.sample("y", dist.Normal(0.0, Y_SD))
    pyro.sample("x", dist.Normal(0.0, torch.exp(y / 2)))


def numpyro_funnel():
    y = numpyro.sample("y", nd.Normal(0.0, Y_SD))
    numpyro.sample("x", nd.Normal(0.0, jnp.exp(y / 2)))


def funnel_noncentred():
    """The same joint density of (y, x), written non-centred (NumPyro's ``reparam_model``):
    NUTS samples it without divergences, so its draws can be held to Monte Carlo error."""
    y = pyro.sample("y", dist.Normal(0.0, Y_SD))
    x_raw = pyro.sample("x_raw", dist.Normal(0.0, 1.0))
    pyro.deterministic("x", torch.exp(y / 2) * x_raw)


def numpyro_funnel_noncentred():
    y = numpyro.sample("y", nd.Normal(0.0, Y_SD))
    x_raw = numpyro.sample("x_raw", nd.Normal(0.0, 1.0))
    numpyro.deterministic("x", jnp.exp(y / 2) * x_raw)


def regression(t, y=None):
    """a, b ~ N(0, 1), y_i ~ N(a + b t_i, 1): prior predictive var(y_i) = 2 + t_i^2."""
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with pyro.plate("data", t.shape[0]):
        pyro.sample("y", dist.Normal(a + b * t, 1.0), obs=y)


def numpyro_regression(t, y=None):
    a = numpyro.sample("a", nd.Normal(0.0, 1.0))
    b = numpyro.sample("b", nd.Normal(0.0, 1.0))
    with numpyro.plate("data", t.shape[0]):
        numpyro.sample("y", nd.Normal(a + b * t, 1.0), obs=y)


FUNNEL = {"pyro": funnel, "numpyro": numpyro_funnel}
FUNNEL_NC = {"pyro": funnel_noncentred, "numpyro": numpyro_funnel_noncentred}
REGRESSION = {"pyro": regression, "numpyro": numpyro_regression}


def abs_x_median() -> tuple[float, float]:
    """The funnel's median of |x| and the density of |x| there, by quadrature over y.

    P(|x| < m) = E_y[2 Phi(m e^{-y/2}) - 1]; no closed form for the median.
    """
    py = stats.norm(0.0, Y_SD).pdf

    def cdf(m: float) -> float:
        f = lambda y: (2 * stats.norm.cdf(m * np.exp(-y / 2)) - 1) * py(y)  # noqa: E731
        return integrate.quad(f, -40, 40, limit=200)[0]

    m = optimize.brentq(lambda m: cdf(m) - 0.5, 1e-3, 10.0, xtol=1e-12)
    g = lambda y: 2 * stats.norm.pdf(m * np.exp(-y / 2)) * np.exp(-y / 2) * py(y)  # noqa: E731
    return m, integrate.quad(g, -40, 40, limit=200)[0]


# ------------------------------------------------------------------ NUTS / HMC
@pytest.mark.parametrize("backend", BACKENDS)
def test_nuts_samples_the_funnel_joint_density_and_round_trips(backend, tmp_path):
    est = NUTS(num_samples=1000, num_warmup=500, num_chains=2)
    fit = ppgen.fit(FUNNEL_NC[backend], {}, est, seed=0)
    assert fit.kind == "unobserved" and fit.draws["y"].shape == (2, 1000)
    assert fit.diagnostics["divergences"] == 0
    idata = fit.to_arviz()
    y = fit.draws["y"]
    mcse_mean = float(az.mcse(idata, var_names=["y"])["y"])
    mcse_sd = float(az.mcse(idata, var_names=["y"], method="sd")["y"])
    abs_x = np.abs(fit.draws["x"])
    mcse_med = float(az.mcse(abs_x, method="quantile", prob=0.5))  # (chain, draw) array
    m_true, _ = abs_x_median()
    print(
        f"\n{backend} NUTS funnel: mean(y)={y.mean():.3f} (MCSE {mcse_mean:.3f}), "
        f"sd(y)={y.std():.3f} (MCSE {mcse_sd:.3f}), median|x|={np.median(abs_x):.3f} "
        f"(MCSE {mcse_med:.3f}, truth {m_true:.3f}), ESS bulk min "
        f"{fit.diagnostics['ess_bulk_min']:.0f}"
    )
    assert abs(y.mean() - 0.0) < 4 * mcse_mean  # marginal y ~ N(0, 3)
    assert abs(y.std() - Y_SD) < 4 * mcse_sd
    assert abs(np.median(abs_x) - m_true) < 4 * mcse_med
    # no observed site: posterior (+ sample_stats), nothing conditioned on, and why
    assert set(idata.groups()) == {"posterior", "sample_stats"}
    omitted = json.loads(idata.attrs["ppgen_omitted_groups"])
    assert {"log_likelihood", "observed_data", "posterior_predictive"} <= set(omitted)
    assert all("no observed sites" in why for why in omitted.values())
    assert set(fit.summary().index) == {"y", "x_raw", "x"}
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", FUNNEL_NC[backend])
    assert again.kind == "unobserved"
    assert sorted(again.draws) == sorted(fit.draws)
    for k, v in fit.draws.items():
        np.testing.assert_array_equal(again.draws[k], v)
    np.testing.assert_array_equal(again.sample_stats["diverging"], fit.sample_stats["diverging"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_hmc_and_nuts_accept_the_centred_funnel(backend):
    """The centred funnel of the issue is accepted by HMC and NUTS on both backends (short
    runs: its neck makes the samplers diverge, so no accuracy is asked of them here)."""
    for est in (HMC(num_samples=100, num_steps=5), NUTS(num_samples=50, max_tree_depth=5)):
        fit = ppgen.fit(FUNNEL[backend], {}, est, seed=1)
        y = fit.draws["y"]
        assert fit.kind == "unobserved" and y.shape == (1, est.num_samples)
        assert np.isfinite(y).all() and np.isfinite(fit.draws["x"]).all()
        assert "divergences" in fit.diagnostics


# ------------------------------------------------------------------ Prior
@pytest.mark.parametrize("backend", BACKENDS)
def test_prior_draws_the_funnel_exactly_and_round_trips(backend, tmp_path):
    n = 20_000
    fit = ppgen.fit(FUNNEL[backend], {}, Prior(num_samples=n // 2, num_chains=2), seed=3)
    assert fit.kind == "unobserved" and fit.draws["y"].shape == (2, n // 2)
    y, x = fit.draws["y"].ravel(), fit.draws["x"].ravel()
    m_true, density = abs_x_median()
    se_med = 1.0 / (2.0 * density * np.sqrt(n))  # asymptotic sd of a sample median
    print(
        f"\n{backend} Prior funnel (n={n}): mean(y)={y.mean():.4f} (se {Y_SD / np.sqrt(n):.4f}), "
        f"sd(y)={y.std():.4f} (se {Y_SD / np.sqrt(2 * n):.4f}), median|x|="
        f"{np.median(np.abs(x)):.4f} (truth {m_true:.4f}, se {se_med:.4f})"
    )
    assert abs(y.mean()) < 4 * Y_SD / np.sqrt(n)
    assert abs(y.std() - Y_SD) < 4 * Y_SD / np.sqrt(2 * n)
    assert abs(np.median(np.abs(x)) - m_true) < 4 * se_med
    # independent draws: x | y ~ N(0, e^{y/2}), so x e^{-y/2} is N(0, 1) and independent of y
    z = x * np.exp(-y / 2)
    assert abs(z.std() - 1.0) < 4 / np.sqrt(2 * n) and abs(np.corrcoef(z, y)[0, 1]) < 4 / n**0.5
    idata = fit.to_arviz()
    assert set(idata.groups()) == {"posterior"}
    assert "observed_data" in json.loads(idata.attrs["ppgen_omitted_groups"])
    assert set(fit.summary().index) == {"y", "x"}
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", FUNNEL[backend])
    assert isinstance(again.estimator, Prior) and again.estimator.num_samples == n // 2
    for k, v in fit.draws.items():
        np.testing.assert_array_equal(again.draws[k], v)
    # the same seed gives the same draws
    same = ppgen.fit(FUNNEL[backend], {}, Prior(num_samples=n // 2, num_chains=2), seed=3)
    np.testing.assert_array_equal(same.draws["y"], fit.draws["y"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_prior_of_an_observed_program_is_the_prior_predictive(backend):
    t = np.array([0.0, 1.0, 2.0])  # a covariate: used as given
    y_obs = np.full(3, 7.0)  # observations: ignored (a posterior would move a towards 7)
    n = 8000
    fit = ppgen.fit(REGRESSION[backend], {"t": t, "y": y_obs}, Prior(num_samples=n), seed=5)
    assert fit.kind == "explicit" and fit.diagnostics["prior_predictive"] is True
    a = fit.draws["a"].ravel()
    assert abs(a.mean()) < 4 / np.sqrt(n) and abs(a.var() - 1.0) < 4 * np.sqrt(2 / n)
    if backend == "pyro":  # the ArviZ groups (backend-neutral code; one backend suffices)
        idata = fit.to_arviz()
        assert {"posterior", "posterior_predictive", "observed_data", "log_likelihood"} <= set(
            idata.groups()
        )
        yp = idata.posterior_predictive["y"].values.reshape(n, 3)
    else:
        yp = fit.predict(sites=["y"])["y"].reshape(n, 3)
    var_true = 2.0 + t**2  # var(a) + t^2 var(b) + 1
    print(
        f"\n{backend} prior predictive: mean {np.round(yp.mean(0), 3)}, var "
        f"{np.round(yp.var(0), 3)} (truth {var_true}), cov(y0, y1) "
        f"{np.cov(yp[:, 0], yp[:, 1])[0, 1]:.3f} (truth 1)"
    )
    assert np.all(np.abs(yp.mean(0)) < 4 * np.sqrt(var_true / n))
    assert np.all(np.abs(yp.var(0) - var_true) < 4 * var_true * np.sqrt(2 / n))
    # one data set shares its (a, b): cov(y_0, y_1) = var(a) + t_0 t_1 var(b) = 1
    c01 = np.cov(yp[:, 0], yp[:, 1])[0, 1]
    assert abs(c01 - 1.0) < 4 * np.sqrt((var_true[0] * var_true[1] + 1.0) / n)
    assert fit.sample(4)["y"].shape == (4, 3)


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    "backend, method", [("pyro", "svi"), ("numpyro", "svi"), ("pyro", "mle"), ("pyro", "exact")]
)
def test_estimators_that_cannot_fit_an_unobserved_program_name_those_that_can(backend, method):
    with pytest.raises(DataError) as info:
        ppgen.fit(FUNNEL[backend], {}, method)
    msg = str(info.value)
    for w in ("no observed sites", f"method={method!r}", "unobserved", "`y`", "`x`", "obs="):
        assert w in msg, msg
    assert "method= one of ['hmc', 'nuts', 'prior']" in msg, msg


def test_prior_refuses_what_it_cannot_run_forward():
    with pytest.raises(EstimatorError, match="num_samples"):
        Prior(num_samples=0)

    def ebm(x=None):
        w = pyro.sample("w", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", 4):
            pyro.sample("x", Unnormalized(lambda v: w * v**2), obs=x)

    with pytest.raises(EstimatorError, match="energy"):
        ppgen.fit(ebm, {"x": np.zeros(4)}, "prior")

    def no_latent(x=None):
        with pyro.plate("data", 4):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(EstimatorError, match="no latent sites"):
        ppgen.fit(no_latent, {"x": np.zeros(4)}, "prior")

    # an estimator that ignores the data is not offered for programs with observed sites
    def gan(x=None):
        with pyro.plate("data", 4):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", ppgen.distributions.Implicit(z), obs=x)

    with pytest.raises(EstimatorError) as info:
        ppgen.fit(gan, {"x": np.zeros(4)}, "svi")
    assert "'prior'" not in str(info.value)
