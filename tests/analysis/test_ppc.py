"""Posterior predictive p-values against what the model can and cannot reproduce."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest

import ppgen
from ppgen.analysis.ppc import STATISTICS, predictive_pvalues
from ppgen.models import NormalNormal

RNG = np.random.default_rng(0)


def exact(x):
    return ppgen.fit(NormalNormal(dim=1, prior_scale=10.0), {"x": x}, method="exact", seed=1)


def test_a_misspecified_scale_gives_extreme_p_values_and_a_correct_model_does_not():
    """The model fixes the data's sd at 1. Data with sd 3: no replicate is as spread out
    (p_sd = 0) or reaches the data's maximum, while the mean is reproduced. Data with sd 1:
    every p-value away from 0 and 1."""
    wrong = predictive_pvalues(exact(RNG.normal(0.0, 3.0, (200, 1))))
    assert wrong["sd"] == 0.0 and wrong["max"] == 0.0 and wrong["min"] == 1.0
    assert 0.05 < wrong["mean"] < 0.95
    right = predictive_pvalues(exact(RNG.normal(1.0, 1.0, (200, 1))))
    assert all(0.02 < p < 0.98 for p in right.values()), right


def test_p_values_are_the_share_of_replicates_at_least_as_extreme():
    fit = exact(RNG.normal(0.5, 1.0, (50, 1)))
    got = predictive_pvalues(fit, seed=3)
    reps = fit.predict(num_samples=500, seed=3, sites=["x"], max_draws=500)["x"].reshape(-1, 50, 1)
    assert len(reps) == 500
    y = fit.data["x"]
    for name, t in STATISTICS.items():
        assert got[name] == np.mean([t(r) >= t(y) for r in reps]), name


def test_held_out_data_far_from_the_training_data_are_flagged():
    fit = exact(RNG.normal(0.0, 1.0, (100, 1)))
    p = predictive_pvalues(fit, {"x": RNG.normal(5.0, 1.0, (100, 1))})
    assert p["mean"] == 0.0 and p["max"] == 0.0


def test_evaluate_reports_the_checks_or_says_why_not():
    x = RNG.normal(0.0, 3.0, (100, 1))
    fit = exact(x)
    ev = ppgen.evaluate(fit, seed=0)
    assert ev["ppc_p_sd"] == 0.0
    assert {ev[f"ppc_p_{k}"] for k in STATISTICS} == set(predictive_pvalues(fit, seed=0).values())

    def two(a=None, b=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 10):
            pyro.sample("a", dist.Normal(mu, 1.0), obs=a)
            pyro.sample("b", dist.Normal(mu, 1.0), obs=b)

    data = {"a": RNG.normal(size=10), "b": RNG.normal(size=10)}
    fit2 = ppgen.fit(two, data, ppgen.inference.NUTS(num_samples=20, num_warmup=20, jit=True))
    ev2 = ppgen.evaluate(fit2)
    assert "2 observed sites" in ev2.skipped["ppc"] and "ppc_p_mean" not in ev2


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_both_backends_replicate_through_the_program(backend):
    from ppgen.models import LinearRegression

    d = ppgen.data.load("regression", n=80)
    fit = ppgen.fit(LinearRegression(), d, ppgen.inference.SVI(steps=400, lr=0.05), backend=backend)
    p = predictive_pvalues(fit)
    assert all(0.02 < v < 0.98 for v in p.values()), p  # a well-specified regression
