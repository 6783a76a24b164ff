"""Exact (conjugate) estimator: draws from the closed-form posterior, n-gram predictive, errors."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import beta as beta_dist

import ppgen
from ppgen.errors import DataError, EstimatorError
from ppgen.inference import Exact, ExactPosterior
from ppgen.models import BetaBernoulli, EightSchools, GammaPoisson, NormalNormal
from ppgen.models.ngram import NGramLM

N_DRAWS = 4000  # Monte Carlo error of a mean: sd / sqrt(4000) = 0.016 sd


def test_normal_normal_draws_match_closed_form():
    x = np.random.default_rng(0).normal([1.0, -2.0], 1.0, size=(30, 2))
    model = NormalNormal(dim=2, prior_scale=2.0)
    fit = ppgen.fit(model, {"x": x}, Exact(num_draws=N_DRAWS, num_chains=2))
    mean, sd = model.posterior(x)
    np.testing.assert_allclose(fit.params["mu_loc"], mean, rtol=1e-12)
    np.testing.assert_allclose(fit.params["mu_scale"], sd, rtol=1e-12)
    mu = fit.draws["mu"]
    assert mu.shape == (2, N_DRAWS, 2)
    flat = mu.reshape(-1, 2)
    assert np.all(np.abs(flat.mean(0) - mean) < 4 * sd / np.sqrt(flat.shape[0]))
    assert np.all(np.abs(flat.var(0) / sd**2 - 1) < 0.08)  # relative sd of a variance: 1.6%
    assert fit.diagnostics["exact"] is True


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_beta_bernoulli_draws_and_log_likelihood(backend):
    x = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1])
    fit = ppgen.fit(BetaBernoulli(2.0, 3.0), {"x": x}, "conjugate", backend=backend)
    a, b = 2.0 + 7, 3.0 + 3
    assert (float(fit.params["p_concentration1"]), float(fit.params["p_concentration0"])) == (
        a,
        b,
    )
    p = fit.draws["p"].ravel()
    assert abs(p.mean() - a / (a + b)) < 4 * beta_dist(a, b).std() / np.sqrt(p.size)
    # The draws are wired into the program: the pointwise log-likelihood is Bernoulli(p).
    ll = fit.log_likelihood()["x"]
    expected = np.where(x == 1, np.log(p)[:, None], np.log1p(-p)[:, None])
    np.testing.assert_allclose(ll.reshape(p.size, -1), expected, rtol=1e-4, atol=1e-5)
    if backend == "pyro":  # (ArviZ conversion is backend-neutral; one backend suffices)
        idata = fit.to_arviz()
        assert {"posterior", "log_likelihood", "posterior_predictive"} <= set(idata.groups())
        assert idata.posterior["p"].shape == (1, 1000)


def test_gamma_poisson_posterior_resamples_fresh_draws():
    x = np.array([3, 0, 2, 5, 1])
    fit = ppgen.fit(GammaPoisson(2.0, 1.0), {"x": x}, "exact", seed=3)
    shape, rate = 2.0 + 11, 1.0 + 5
    assert float(fit.params["rate_concentration"]) == shape
    assert float(fit.params["rate_rate"]) == rate
    fresh = fit.sample_posterior(N_DRAWS)["rate"]
    assert fresh.shape == (N_DRAWS,)
    assert abs(fresh.mean() - shape / rate) < 4 * np.sqrt(shape) / rate / np.sqrt(N_DRAWS)
    assert not np.array_equal(fresh[:1000], fit.draws["rate"][0])  # new seed, new draws


def reference_predictive(tokens: list[int], V: int, alpha, context: tuple) -> list:
    """p(. | context) by the recursion, written with Counters and loops."""
    p = None
    for k in range(len(context) + 1):
        u = tuple(context[len(context) - k :])
        c = Counter(tuple(tokens[t - k : t + 1]) for t in range(k, len(tokens)))
        c_u = {w: c[u + (w,)] for w in range(V)}
        tot = sum(c_u.values())
        base = [1.0 / V] * V if p is None else p
        p = [(c_u[w] + alpha[k] * base[w]) / (tot + alpha[k]) for w in range(V)]
    return p


def test_ngram_exact_fixed_concentration_is_the_smoothed_counts():
    lm = NGramLM(2, concentration=[6.0, 2.0], learn_concentration=False)
    fit = ppgen.fit(lm, {"tokens": "abracadabra"}, "exact")
    assert np.all(fit.draws["alpha_0"] == 6.0) and np.all(fit.draws["alpha_1"] == 2.0)
    pred = NGramLM.from_fit(fit)
    # vocab <unk> a b r c d; c(a, .) = 4 with c(a, b) = 2: p(b | a) = (2 + 2 * 3/17) / 6.
    assert pred.predictive("a")[2] == pytest.approx(float(Fraction(20, 51)), rel=1e-12)
    np.testing.assert_allclose(pred.predictive(""), np.array([1, 6, 3, 3, 2, 2]) / 17, rtol=1e-12)


def test_ngram_exact_predictive_through_fit_equals_closed_form():
    text = "the cat sat on the mat and the cat ate the rat " * 3
    fit = ppgen.fit(NGramLM(3, level="word"), {"tokens": text}, "exact")
    alpha = NGramLM(3, level="word").fit(text).concentration  # type-II ML by the model itself
    draws = np.array([fit.draws[f"alpha_{k}"] for k in range(3)])
    np.testing.assert_array_equal(draws, np.broadcast_to(alpha[:, None, None], draws.shape))
    assert fit.diagnostics["point_mass"] == ["alpha_0", "alpha_1", "alpha_2"]
    pred = NGramLM.from_fit(fit)  # counts from fit.params, alpha from fit.draws
    tok = pred.tokenizer
    ids, V = tok.encode(text).tolist(), len(tok)
    for ctx in [(), ("the",), ("cat",), ("the", "cat"), ("on", "the"), ("rat", "the"), ("dog",)]:
        u = tuple(tok.encode(" ".join(ctx), add_special=False).tolist())
        ref = reference_predictive(ids, V, alpha, u)
        np.testing.assert_allclose(pred.predictive(list(u)), ref, rtol=1e-12, atol=0)
    idata = fit.to_arviz()
    assert idata.log_likelihood["counts_1"].dims == ("chain", "draw", "contexts_1")


def test_ngram_map_over_concentrations_finds_the_joint_optimum():
    x = np.random.default_rng(0).integers(0, 6, size=400)
    lm = NGramLM(2, prior=(2.0, 0.5))
    est = ppgen.inference.MLE(lr=0.1, steps=300)
    fit = ppgen.fit(lm, {"tokens": x, "vocab_size": 6}, est)
    found = np.array([float(fit.draws[f"alpha_{k}"].mean()) for k in range(2)])
    ref = NGramLM(2, learn_concentration=False).fit(x, vocab_size=6)

    def neg_log_joint(log_a: np.ndarray) -> float:  # sum of evidences + Gamma(2, 0.5) prior
        a = np.exp(log_a)
        return -(ref.log_evidence(a).sum() + np.sum(np.log(a) - 0.5 * a))

    best = np.exp(minimize(neg_log_joint, np.zeros(2), method="Nelder-Mead", tol=1e-10).x)
    np.testing.assert_allclose(found, best, rtol=0.03)
    np.testing.assert_allclose(NGramLM.from_fit(fit).concentration, found, rtol=1e-6)


def test_ngram_svi_runs_and_posterior_is_positive():
    fit = ppgen.fit(
        NGramLM(2),
        {"tokens": "abababababcabab"},
        ppgen.inference.SVI(steps=50, lr=0.05, num_draws=20),
    )
    assert all(np.all(fit.draws[f"alpha_{k}"] > 0) for k in range(2))
    assert fit.to_arviz().posterior["alpha_1"].shape == (1, 20)


def no_closed_form(x=None):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 3):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


class WrongSites(NormalNormal):
    def exact_posterior(self, x):
        return ExactPosterior(lambda n, rng: {"m": np.zeros((n, self.dim))})


class WrongShape(NormalNormal):
    def exact_posterior(self, x):
        return ExactPosterior(lambda n, rng: {"mu": np.zeros((n, 3))})


class WrongType(NormalNormal):
    def exact_posterior(self, x):
        return {"mu": np.zeros(2)}


def test_bad_input_raises_named_errors():
    x3 = np.zeros(3)
    with pytest.raises(EstimatorError, match="function `no_closed_form` has none"):
        ppgen.fit(no_closed_form, {"x": x3}, "exact")
    schools = {"sigma": np.ones(8), "y": np.zeros(8)}
    with pytest.raises(EstimatorError, match="`EightSchools` has none.*'nuts'"):
        ppgen.fit(EightSchools(), schools, "exact")
    with pytest.raises(EstimatorError, match="`num_draws` must be a positive int; got 0"):
        Exact(num_draws=0)
    x = np.zeros((4, 2))
    with pytest.raises(EstimatorError, match=r"exactly the latent sites \['mu'\].*unknown \['m'\]"):
        ppgen.fit(WrongSites(), {"x": x}, "exact")
    with pytest.raises(EstimatorError, match=r"draws of `mu` with shape \(1000, 3\)"):
        ppgen.fit(WrongShape(), {"x": x}, "exact")
    with pytest.raises(EstimatorError, match="must return a ppgen.inference.ExactPosterior"):
        ppgen.fit(WrongType(), {"x": x}, "exact")
    with pytest.raises(DataError, match=r"unknown key\(s\) \['text'\]"):
        ppgen.fit(NGramLM(2), {"text": "abc"}, "exact")
    with pytest.raises(DataError, match="`tokens`: document 0, position 2 holds token id 7"):
        ppgen.fit(NGramLM(2), {"tokens": np.array([0, 1, 7]), "vocab_size": 5}, "exact")
    with pytest.raises(DataError, match="not of an NGramLM"):
        NGramLM.from_fit(ppgen.fit(NormalNormal(), {"x": x}, "exact"))
