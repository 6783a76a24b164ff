"""Tests for ppgen.evaluate: likelihood metrics against closed forms, sample metrics against
generators that are (or are not) the data's distribution, and bad arguments refused first."""

from __future__ import annotations

import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.stats import norm

import ppgen
from ppgen import Fit, Program
from ppgen.analysis.evaluate import Evaluation
from ppgen.analysis.sample_quality import DigitsFeatures
from ppgen.data.modes2d import grid25, grid25_centres, ring8, ring8_centres
from ppgen.distributions import Implicit
from ppgen.errors import DataError
from ppgen.models import NormalNormal


# ---------------------------------------------------------------------- explicit fits
@pytest.fixture(scope="module")
def conjugate():
    rng = np.random.default_rng(3)
    train, test = rng.normal(0.7, 1.0, (40, 1)), rng.normal(0.7, 1.0, (400, 1))
    model = NormalNormal(dim=1)
    fit = ppgen.fit(model, {"x": train}, ppgen.inference.Exact(num_draws=4000))
    return model, train, test, fit


def test_held_out_log_likelihood_is_the_analytic_posterior_predictive(conjugate):
    model, train, test, fit = conjugate
    ev = ppgen.evaluate(fit, {"x": test})
    mean, sd = model.posterior(train)
    # posterior predictive N(mean, 1 + sd^2); the 4000 draws' average is within 2e-3 of it
    want = norm.logpdf(test[:, 0], mean[0], math.sqrt(1.0 + sd[0] ** 2)).mean()
    assert ev.kind == "likelihood" and ev["n_data"] == 400
    assert ev["log_lik_per_datum"] == pytest.approx(want, abs=2e-3)
    assert ev.details["data"] == "the given data"
    assert set(ev.skipped) == {"elbo", "iwae"}  # an exact fit has no guide: no bounds
    assert ev["bits_per_dim"] == pytest.approx(-want / math.log(2), abs=3e-3)


def test_loo_and_waic_match_exact_leave_one_out(conjugate):
    model, train, _, fit = conjugate
    ev = ppgen.evaluate(fit)  # WAIC/LOO are always on the training data
    x, n = train[:, 0], len(train)
    prec = 1.0 / model.prior_scale**2 + (n - 1) / model.scale**2
    loc = (model.prior_loc / model.prior_scale**2 + (x.sum() - x) / model.scale**2) / prec
    exact_loo = norm.logpdf(x, loc, np.sqrt(model.scale**2 + 1.0 / prec)).sum()
    assert ev["elpd_loo"] == pytest.approx(exact_loo, abs=0.05)
    assert ev["elpd_waic"] == pytest.approx(exact_loo, abs=0.05)
    # p_waic: the posterior variance of log N(x_i | mu, 1), mu ~ N(m, s^2), summed over i
    (m,), (s,) = model.posterior(train)
    assert ev["p_waic"] == pytest.approx((((x - m) * s) ** 2 + s**4 / 2).sum(), abs=0.05)
    lppd = norm.logpdf(x, m, np.sqrt(1.0 + s**2)).sum()
    assert ev["p_loo"] == pytest.approx(lppd - exact_loo, abs=0.05)
    assert ev["pareto_k_max"] < 0.5 and "warnings" not in ev.details
    assert ev["n_data"] == n


def test_a_point_estimate_gives_the_plug_in_likelihood_and_no_waic():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(30, 1)), rng.normal(size=(50, 1))
    fit = ppgen.fit(NormalNormal(dim=1), {"x": train}, ppgen.inference.MLE(steps=100, lr=0.05))
    mu = float(fit.draws["mu"].reshape(-1)[0])
    ev = ppgen.evaluate(fit, test)  # an array: the values of the one observed site
    assert ev["log_lik_per_datum"] == pytest.approx(norm.logpdf(test, mu, 1.0).mean(), abs=1e-5)
    assert set(ev.skipped) == {"waic", "loo", "elbo", "iwae"} and "one draw" in ev.skipped["loo"]
    assert ev.skipped["elbo"].startswith("no guide: this MLE fit")  # MAP: a point mass
    assert "elpd_loo" not in ev


def test_per_datum_latents_are_not_reused_for_held_out_data():
    def program(x=None):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    rng = np.random.default_rng(0)
    x = rng.normal(size=6)
    prog = Program(program)
    _, info = prog.validate({"x": x})
    z = x / 2 + rng.normal(size=(2, 300, 6)) / np.sqrt(2)  # the exact posterior of each z_i
    fit = Fit(program=prog, estimator=None, info=info, data={"x": x}, draws={"z": z})
    ev = ppgen.evaluate(fit)
    assert ev.details["local_latents"] == ["z"] and ev["n_data"] == 6
    held_out = ppgen.evaluate(fit, {"x": rng.normal(size=6)})
    assert "['z']" in held_out.skipped["log_lik_per_datum"]
    assert "log_lik_per_datum" not in held_out
    assert held_out["elpd_loo"] == ev["elpd_loo"]  # LOO and WAIC: on the training data


# ---------------------------------------------------------------------- implicit "fits"
def implicit_fit(centres: np.ndarray, sigma: float, data: np.ndarray, collapse: bool = False):
    """A fit whose generator is exactly the mixture of ``centres`` (or only its first mode)."""
    mu = torch.tensor(centres, dtype=torch.float32)

    def program(x=None):
        with pyro.plate("data", len(x)):
            logits = torch.zeros(len(mu))
            k = pyro.sample("k", dist.Categorical(logits=logits))
            e = pyro.sample("e", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            loc = mu[torch.zeros_like(k)] if collapse else mu[k]
            pyro.sample("x", Implicit(loc + sigma * e, event_dim=1), obs=x)

    prog = Program(program)
    _, info = prog.validate({"x": data})
    return Fit(program=prog, estimator=None, info=info, data={"x": data})


def test_the_data_distribution_scores_mmd_zero_and_covers_every_mode():
    data = ring8(1500, seed=1)
    ev = ppgen.evaluate(implicit_fit(ring8_centres(), 0.01, data), num_samples=1000)
    assert ev.kind == "samples"
    assert ev.details["modes"] == "ring8"  # recognised in the training data
    assert ev.details["modes_source"] == "recognised in the data"
    assert ev.details["num_samples"] == ev.details["num_data"] == 1000  # a subset of 1500
    assert abs(ev["mmd2"]) < 1e-3  # unbiased: about 0 (seeds 0-4 at 1000 points: |.| < 3e-4)
    assert ev["modes_covered"] == ev["n_modes"] == 8
    assert ev["high_quality_rate"] >= 0.95  # P(chi2_2 < 9) = 0.989
    assert ev["reverse_kl"] < 0.02
    assert set(ev.skipped) == {"log_lik_per_datum", "fcd"}
    assert "Implicit" in ev.skipped["log_lik_per_datum"]


def test_a_collapsed_generator_covers_one_mode():
    data = ring8(1000, seed=2)
    ev = ppgen.evaluate(implicit_fit(ring8_centres(), 0.01, data, collapse=True), num_samples=500)
    assert ev["modes_covered"] == 1 and ev["high_quality_rate"] >= 0.95
    assert ev["reverse_kl"] == pytest.approx(math.log(8))
    assert ev["mmd2"] > 0.3


def test_grid25_is_recognised_and_modes_can_be_given():
    data = grid25(2000, seed=0)
    fit = implicit_fit(grid25_centres(), 0.05, data)
    ev = ppgen.evaluate(fit, num_samples=1000, seed=4)
    assert ev.details["modes"] == "grid25" and ev["modes_covered"] == 25
    # given centres: the four corners only (every sample is near one of the 25 grid modes)
    corners = grid25_centres()[[0, 4, 20, 24]]
    ev = ppgen.evaluate(fit, num_samples=1000, modes=(corners, 0.05), seed=4)
    assert ev.details["modes"] == "given centres" and ev["n_modes"] == 4
    assert ev["high_quality_rate"] == pytest.approx(4 / 25, abs=0.05)


def test_data_that_look_like_no_benchmark_get_no_mode_coverage():
    data = np.random.default_rng(0).normal(size=(600, 2)).astype(np.float32)
    fit = implicit_fit(np.zeros((1, 2)), 1.0, data)
    ev = ppgen.evaluate(fit, num_samples=600)
    assert "modes_covered" not in ev and "modes" in ev.skipped["modes_covered"]
    assert abs(ev["mmd2"]) < 5e-3


def test_covariates_follow_the_subset_of_the_data():
    """A conditional generator: the labels in the data pick the mode of each sample."""
    mu = torch.tensor(ring8_centres(), dtype=torch.float32)

    def program(y, x=None):
        with pyro.plate("data", len(y)):
            e = pyro.sample("e", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", Implicit(mu[y.long()] + 0.01 * e, event_dim=1), obs=x)

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)  # three of the eight modes
    x = (ring8_centres()[y] + 0.01 * rng.standard_normal((3000, 2))).astype(np.float32)
    prog = Program(program)
    _, info = prog.validate({"x": x, "y": y})
    fit = Fit(program=prog, estimator=None, info=info, data={"x": x, "y": y})
    ev = ppgen.evaluate(fit, num_samples=800, modes="ring8")
    assert ev.details["num_samples"] == ev.details["num_data"] == 800
    assert abs(ev["mmd2"]) < 2e-3 and ev["modes_covered"] == 3


def test_digits_get_the_frechet_classifier_distance_on_any_pixel_scale():
    net = DigitsFeatures.default()
    test = net.test_images  # (599, 64) on 0..16
    pool = torch.tensor(test, dtype=torch.float32)

    def fit_for(images: np.ndarray, scale) -> Fit:
        pixels = scale(pool)

        def program(x=None):
            with pyro.plate("data", len(x)):
                i = pyro.sample("i", dist.Categorical(logits=torch.zeros(len(pixels))))
                pyro.sample("x", Implicit(pixels[i], event_dim=1), obs=x)

        prog = Program(program)
        _, info = prog.validate({"x": images})
        return Fit(program=prog, estimator=None, info=info, data={"x": images})

    same = ppgen.evaluate(fit_for(test, lambda p: p), num_samples=600)
    assert same.details["digits_scale"] == "0..16" and same["fcd"] >= 0
    noise = np.random.default_rng(0).uniform(0, 16, (600, 64)).astype(np.float32)
    far = ppgen.evaluate(fit_for(noise, lambda p: p), num_samples=600)
    assert far["fcd"] > 10 * same["fcd"]
    # the same images on [-1, 1] (as a tanh generator makes them) score the same
    signed = ppgen.evaluate(fit_for(test / 8.0 - 1.0, lambda p: p / 8.0 - 1.0), num_samples=600)
    assert signed.details["digits_scale"] == "[-1, 1] mapped to 0..16"
    assert signed["fcd"] == pytest.approx(same["fcd"], rel=1e-3, abs=1e-3)


# ---------------------------------------------------------------------- result and errors
def test_the_result_is_json_and_a_table(conjugate):
    ev = ppgen.evaluate(implicit_fit(ring8_centres(), 0.01, ring8(300), collapse=True), ring8(200))
    assert isinstance(ev, Evaluation)
    plain = json.loads(json.dumps(ev.as_dict(), allow_nan=False))
    assert plain["metrics"]["modes_covered"] == 1 and plain["details"]["num_data"] == 200
    table = ev.table()
    assert table.splitlines()[1].split() == ["metric", "value"]
    assert ["modes_covered", "1"] in [line.split() for line in table.splitlines()]
    assert "not applicable: fcd" in table
    assert str(ev) == table
    # a NaN metric (no high-quality sample: reverse KL) becomes null in JSON
    ev = ppgen.evaluate(implicit_fit(ring8_centres() + 5.0, 0.01, ring8(300)), num_samples=300)
    assert ev.details["modes"] == "ring8" and ev["high_quality_rate"] == 0.0
    assert math.isnan(ev["reverse_kl"]) and ev.as_dict()["metrics"]["reverse_kl"] is None


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        ({"num_samples": 1}, ["`num_samples`", ">= 2", "got 1"]),
        ({"num_samples": 2.5}, ["`num_samples`", "2.5"]),
        ({"num_samples": True}, ["`num_samples`", "True"]),
        ({"seed": -1}, ["`seed`", "[0, 2**32 - 1]", "got -1"]),
        ({"modes": "ring9"}, ["`modes`", "'ring8'", "'ring9'"]),
        ({"modes": (np.zeros(3), 0.1)}, ["`modes`", "(K, d)", "shape (3,)"]),
        ({"modes": (np.zeros((8, 2)), -1.0)}, ["`modes`", "positive"]),
        ({"modes": (np.zeros((8, 3)), 0.1)}, ["`modes`", "3-dimensional"]),
        ({"data": {"x": np.zeros((10, 3))}}, ["`data['x']`", "(10, 3)", "(n, 2)"]),
        ({"data": {"y": np.zeros((10, 2))}}, ["`x`", "['y']"]),
        ({"data": 3}, ["`data`", "int"]),
    ],
)
def test_bad_arguments_are_refused_before_sampling(kwargs, needles):
    fit = implicit_fit(ring8_centres(), 0.01, ring8(100))

    def no_work(*a, **k):
        raise AssertionError("sampled before checking the arguments")

    fit.sample = no_work
    with pytest.raises(DataError) as e:
        ppgen.evaluate(fit, **kwargs)
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_a_likelihood_fit_refuses_modes_and_a_non_fit_is_refused(conjugate):
    fit = conjugate[3]
    with pytest.raises(DataError, match="`modes` applies to fits scored by their samples"):
        ppgen.evaluate(fit, modes="ring8")
    with pytest.raises(DataError, match="`fit` must be a ppgen Fit"):
        ppgen.evaluate({"x": 1})
    with pytest.raises(DataError, match="cannot score the given data"):
        ppgen.evaluate(fit, {"x": np.zeros((5, 3))})
