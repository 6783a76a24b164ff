"""MAP/MLE against truth: default settings reach the closed-form posterior mode of a linear
regression on both backends; a fit cut short warns naming the site still moving; L-BFGS
reaches the same mode; a point-mass (delta) guide gives one draw, not copies of it."""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import MLE, SVI, Optim
from ppgen.inference._convergence import convergence_report
from ppgen.inference.mle import NETWORK_LR, ConvergenceWarning

# issue 19: y = 9.2 + 2 x + noise, x ~ N(0, 1) (not standardised), N = 100. AutoDelta starts
# the intercept at a prior draw, up to ~13 units from its optimum; Adam moves a parameter by
# about lr per step, so the old lr=1e-3 x 1000 steps stopped far short
RNG = np.random.default_rng(19)
N = 100
X = RNG.normal(0.0, 1.0, N).astype(np.float32)
Y = (9.2 + 2.0 * X + RNG.normal(0.0, 1.0, N)).astype(np.float32)
DATA = {"x": X, "y": Y}
PRIOR_SD = 10.0
# Tolerance on the mode: the posterior sd of the intercept is 1/sqrt(N) = 0.1, so 1e-3 is
# 1% of a posterior sd; float32 Adam/L-BFGS land within ~1e-4 (measured: 0.0000 at 4 dp)
TOL = 1e-3


def _mode(sigma: float = 1.0) -> np.ndarray:
    """The closed-form posterior mode (ridge): (X'X + sigma^2 / s^2 I)^-1 X'y."""
    design = np.column_stack([np.ones(N), X.astype(np.float64)])
    precision = design.T @ design + np.eye(2) * sigma**2 / PRIOR_SD**2
    return np.linalg.solve(precision, design.T @ Y.astype(np.float64))


def pyro_regression(x, y=None):
    a = pyro.sample("a", dist.Normal(0.0, PRIOR_SD))
    b = pyro.sample("b", dist.Normal(0.0, PRIOR_SD))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(a + b * x, 1.0), obs=y)


def numpyro_regression(x, y=None):
    a = numpyro.sample("a", nd.Normal(0.0, PRIOR_SD))
    b = numpyro.sample("b", nd.Normal(0.0, PRIOR_SD))
    with numpyro.plate("data", len(x)):
        numpyro.sample("y", nd.Normal(a + b * x, 1.0), obs=y)


MODELS = {"pyro": pyro_regression, "numpyro": numpyro_regression}


def _point(fit):
    assert fit.draws["a"].shape == (1, 1) and fit.draws["b"].shape == (1, 1)
    return np.array([float(fit.draws["a"][0, 0]), float(fit.draws["b"][0, 0])])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_map_defaults_reach_the_closed_form_mode(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit = ppgen.fit(MODELS[backend], DATA, "map", seed=0)
    np.testing.assert_allclose(_point(fit), _mode(), atol=TOL)
    d = fit.diagnostics
    assert d["converged"] is True and d["moving"] == []
    assert abs(d["rel_loss_change"]) < 1e-6
    assert sorted(d["grad_norm"]) == ["a", "b"]  # named by site, not by guide parameter
    assert max(d["decrement"].values()) < d["tol"]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_fit_cut_short_warns_naming_the_site(backend):
    with pytest.warns(ConvergenceWarning, match=r"did not converge in 20 steps") as rec:
        fit = ppgen.fit(MODELS[backend], DATA, MLE(steps=20), seed=0)
    msg = str(rec[0].message)
    for needle in ("`a`", "raise `steps=` (now 20)", "`lr=` (now 0.05)", "optim='lbfgs'"):
        assert needle in msg, msg
    assert rec[0].filename == __file__  # points at the ppgen.fit call
    d = fit.diagnostics
    assert d["converged"] is False and d["moving"][0] == "a"
    assert d["loss_change"] > 1.0 and d["decrement"]["a"] > 1.0


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_lbfgs_reaches_the_closed_form_mode(backend):
    fit = ppgen.fit(MODELS[backend], DATA, MLE(optim="lbfgs", steps=40), seed=0)
    np.testing.assert_allclose(_point(fit), _mode(), atol=TOL)
    assert fit.diagnostics["converged"] is True


def test_lbfgs_backtracks_from_an_overflowing_trial_step():
    """An unknown noise scale: L-BFGS's trial steps in log(sigma) overflow the likelihood;
    torch's line search then backtracks (it used to interpolate to NaN parameters)."""

    def model(x, y=None):
        a = pyro.sample("a", dist.Normal(0.0, PRIOR_SD))
        b = pyro.sample("b", dist.Normal(0.0, PRIOR_SD))
        sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(a + b * x, sigma), obs=y)

    fit = ppgen.fit(model, DATA, MLE(optim="lbfgs", steps=60), seed=0)
    sigma = float(fit.draws["sigma"][0, 0])
    # given its sigma, the mode of (a, b) is the ridge solution with prior precision sigma^2/s^2
    np.testing.assert_allclose(_point(fit), _mode(sigma), atol=TOL)
    assert 0.8 < sigma < 1.2 and fit.diagnostics["converged"] is True


def test_lbfgs_refuses_what_it_cannot_do():
    with pytest.raises(EstimatorError, match="needs the full-data objective"):
        MLE(optim="lbfgs", batch_size=10)
    with pytest.raises(EstimatorError, match="Monte Carlo estimate"):
        SVI(optim="lbfgs")
    with pytest.raises(EstimatorError, match=r"takes no \['lr_decay'\]"):
        MLE(optim="lbfgs", lr_decay=0.1)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_delta_guide_gives_one_draw(backend):
    fit = ppgen.fit(MODELS[backend], DATA, SVI(guide="delta", steps=5), seed=0)
    assert fit.draws["a"].shape == (1, 1)  # not num_draws=1000 copies of the point
    assert "converged" not in fit.diagnostics  # SVI's noisy loss is not checked
    if backend == "pyro":  # (the groups come from fit.draws alike on both backends)
        assert dict(fit.to_arviz().posterior.sizes) == {"chain": 1, "draw": 1}


def test_skipped_checks_leave_converged_unset():
    short = ppgen.fit(pyro_regression, DATA, MLE(steps=20, check_convergence=False))
    assert short.diagnostics["converged"] is None
    # minibatch losses are noisy estimates: not checked
    batched = ppgen.fit(pyro_regression, DATA, MLE(steps=20, batch_size=25))
    assert batched.diagnostics["converged"] is None


def test_a_network_program_gets_the_network_learning_rate():
    from ppgen.models.autoregressive import MADE

    est = MLE(steps=2, check_convergence=False)
    bits = (RNG.random((16, 3)) > 0.5).astype(np.float32)
    ppgen.fit(MADE(3, hidden_features=4), {"x": bits}, est)
    assert est._optim_spec().lr == NETWORK_LR
    ppgen.fit(pyro_regression, DATA, est)
    assert est._optim_spec().lr == 0.05
    assert Optim("lbfgs").full_batch and MLE(optim="lbfgs")._optim_spec().lr == 1.0


def test_the_report_compares_window_means_and_names_sites_by_decrement():
    flat = convergence_report([5.0, 4.0] + [3.0] * 98, {"a": (1e-3, 1.0)})
    assert flat["converged"] and flat["window"] == 10 and flat["loss_change"] == 0.0
    # a steady fall of 0.1 nats a step: 1 nat between window means of 10 steps
    falling = convergence_report([100 - 0.1 * i for i in range(100)], None)
    assert not falling["converged"] and falling["loss_change"] == pytest.approx(1.0)
    assert falling["rel_loss_change"] == pytest.approx(1.0 / 90.1)
    # gradient 2, curvature g'Hg = 4 (H = 1): a line search gains g^4 / (2 g'Hg) = 2 nats
    r = convergence_report([1.0] * 10, {"w": (2.0, 4.0), "v": (1e-4, 1e-8), "u": (1.0, -1.0)})
    assert r["decrement"]["w"] == 2.0 and math.isnan(r["decrement"]["u"])
    assert r["moving"] == ["w"] and not r["converged"]
    # a large loss: the tolerance grows with it (float32 rounding)
    assert convergence_report([1e6] * 4, None)["tol"] == pytest.approx(1.0)
