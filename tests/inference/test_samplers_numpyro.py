"""The samplers on NumPyro programs (issue 14): block Gibbs through a user's NumPyro RBM that
declares ``block_gibbs_step``, annealed Langevin as a JAX scan, against exact laws.

- Gibbs: PCD with the model's own sweep fits data drawn from a known small RBM to a small
  exact KL (all 2^8 visible states enumerated), and ``fit.sample``'s Gibbs chains reproduce
  the fitted RBM's exact visible marginals; the persistent chains resume bit-identically.
- Annealed Langevin on Song & Ermon's mixture recovers the 0.8 / 0.2 weights (plain Langevin
  on the same score does not: ``tests/inference/test_samplers.py`` shows that for torch).
- Refusals before any work: block Gibbs on a program without the sweep, a sweep returning
  the wrong shape, annealed Langevin as contrastive divergence's kernel.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import ppgen
from ppgen.distributions import Unnormalized
from ppgen.errors import EstimatorError
from ppgen.inference import ContrastiveDivergence
from ppgen.inference.samplers import AnnealedLangevin, BlockGibbs, geometric_sigmas
from ppgen.inference.samplers_jax import jax_run

V, H = 8, 3


class NumPyroRBM:
    """A user's Bernoulli RBM in NumPyro: the free energy as the observed site's energy, and
    the block-Gibbs sweep (h | v, then v | h) declared beside the program."""

    def __init__(self, v: int = V, h: int = H, seed: int = 0) -> None:
        self.v, self.h = v, h
        self.w0 = 0.01 * jax.random.normal(jax.random.PRNGKey(seed), (h, v))

    def params(self):
        w = numpyro.param("W", self.w0)
        b = numpyro.param("b", jnp.zeros(self.v))
        c = numpyro.param("c", jnp.zeros(self.h))
        return w, b, c

    def model(self, x=None):
        w, b, c = self.params()

        def free_energy(u):
            return -(u @ b) - jax.nn.softplus(u @ w.T + c).sum(-1)

        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", Unnormalized(free_energy, (self.v,)), obs=x)

    def block_gibbs_step(self, x, key):
        w, b, c = self.params()
        k_h, k_v = jax.random.split(key)
        h = jax.random.bernoulli(k_h, jax.nn.sigmoid(x @ w.T + c)).astype(x.dtype)
        return jax.random.bernoulli(k_v, jax.nn.sigmoid(h @ w + b)).astype(x.dtype)


STATES = np.array(list(itertools.product([0.0, 1.0], repeat=V)))


def log_p(w, b, c) -> np.ndarray:
    """Exact log p(v) of every visible state (enumeration, float64)."""
    w, b, c = (np.asarray(t, dtype=np.float64) for t in (w, b, c))
    neg_f = STATES @ b + np.logaddexp(0.0, STATES @ w.T + c).sum(-1)
    return neg_f - np.logaddexp.reduce(neg_f)


def teacher():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(H, V)) * 3.0
    b = rng.normal(size=V) * 0.5 - 0.25 * w.sum(0)
    c = rng.normal(size=H) * 0.5 - 0.25 * w.sum(1)
    lp = log_p(w, b, c)
    x = STATES[rng.choice(len(STATES), 4000, p=np.exp(lp))].astype(np.float32)
    return lp, x


def kl(lp_true, fit) -> float:
    lp = log_p(fit.params["W"], fit.params["b"], fit.params["c"])
    return float((np.exp(lp_true) * (lp_true - lp)).sum())


def test_pcd_with_the_models_gibbs_sweep_fits_a_known_rbm_and_samples_its_marginals():
    lp_true, x = teacher()
    untrained = log_p(NumPyroRBM().w0, np.zeros(V), np.zeros(H))
    assert float((np.exp(lp_true) * (lp_true - untrained)).sum()) > 1.0  # 1.5 nats
    # sampler "auto": block Gibbs, because the model declares the sweep
    est = ContrastiveDivergence(
        persistent=True, lr=0.02, steps=3000, batch_size=100, num_chains=1000
    )
    fit = ppgen.fit(NumPyroRBM(), {"x": x}, est, seed=0, backend="numpyro")
    # exact KL(teacher || fit) over the 256 visible states: measured 0.013-0.015 (seeds 0-2;
    # with 100 chains instead of 1000 the noisier gradient leaves 0.02-0.07); the torch RBM's
    # test (10 visible units, 5000 steps) measures 0.016-0.025
    assert kl(lp_true, fit) < 0.05
    # fit.sample runs the same sweep from fair coins: 1000 sweeps per chain, 4000 chains,
    # against the fitted RBM's exact marginals P(v_i = 1) (binomial sd <= 0.008; measured
    # largest error 0.009-0.017 over seeds; a chain that did not mix, or a sweep that drew
    # v | h from the wrong side, is off by > 0.1)
    draws = fit.sample(1, seed=1)["x"][0]
    assert draws.shape == x.shape and set(np.unique(draws)) <= {0.0, 1.0}
    exact = np.exp(log_p(fit.params["W"], fit.params["b"], fit.params["c"])) @ STATES
    np.testing.assert_allclose(draws.mean(0), exact, atol=0.035)


def test_gibbs_chains_resume_bit_identically(tmp_path):
    _, x = teacher()
    x = x[:64]

    def est():
        return ContrastiveDivergence(k=2, persistent=True, steps=12, batch_size=16)

    kw = {"seed": 3, "backend": "numpyro"}
    full = ppgen.fit(NumPyroRBM(), {"x": x}, est(), **kw)
    assert full.diagnostics["sampler"] == "BlockGibbs"  # "auto": the model declares the sweep
    stop = [lambda step, m: step == 5]
    ppgen.fit(
        NumPyroRBM(),
        {"x": x},
        est(),
        checkpoint_dir=tmp_path,
        checkpoint_every=5,
        callbacks=stop,
        **kw,
    )
    rest = ppgen.fit(NumPyroRBM(), {"x": x}, est(), checkpoint_dir=tmp_path, resume=True, **kw)
    assert rest.history == full.history
    for k, v in full.params.items():
        np.testing.assert_array_equal(rest.params[k], v)
    np.testing.assert_array_equal(rest.auxiliary["chains"]["x"], full.auxiliary["chains"]["x"])


MODES = jnp.array([[5.0, 5.0], [-5.0, -5.0]])
LOG_W = jnp.log(jnp.array([0.8, 0.2]))


def mixture_score(x, sigma):
    """The score of 0.8 N((5,5), I) + 0.2 N((-5,-5), I) convolved with N(0, sigma^2 I)."""
    var = 1.0 + sigma**2
    diff = x[:, None] - MODES[None]
    r = jax.nn.softmax(LOG_W - (diff * diff).sum(-1) / (2 * var), axis=-1)
    return -(r[..., None] * diff).sum(1) / var


def test_annealed_langevin_recovers_the_mixture_weights_on_jax():
    x0 = 16 * jax.random.uniform(jax.random.PRNGKey(0), (2000, 2)) - 8
    # the torch test's schedule (20 levels 20 -> 0.01, T = 200, eps = 2e-5): measured weight
    # 0.79-0.80 over seeds; binomial sd 0.009
    ald = AnnealedLangevin(geometric_sigmas(20.0, 0.01, 20), steps_per_sigma=200, eps=2e-5)
    run = jax.jit(lambda x, k: jax_run(ald, mixture_score, x, k, ald.num_steps))
    x = np.asarray(run(x0, jax.random.PRNGKey(1)))
    first = x[x.sum(1) > 0]
    assert abs(len(first) / len(x) - 0.8) < 0.05, len(first) / len(x)
    np.testing.assert_allclose(first.mean(0), [5.0, 5.0], atol=0.1)
    np.testing.assert_allclose(first.var(0), [1.0, 1.0], atol=0.2)
    # the same sampler with one level (no annealing) keeps the start's basins: about half
    plain = AnnealedLangevin((0.01,), steps_per_sigma=1000, eps=0.05)
    y = np.asarray(jax_run(plain, mixture_score, x0, jax.random.PRNGKey(1), 1000))
    assert abs((y.sum(1) > 0).mean() - 0.5) < 0.05


def test_annealed_langevin_schedule_matches_the_torch_samplers_step_sizes():
    # a score of zero leaves only the noise: the variance added is the sum of the steps'
    # alphas, level by level, and the steps after the schedule stay at the last level
    ald = AnnealedLangevin((2.0, 1.0), steps_per_sigma=3, eps=0.01)
    alphas = [ald.step_size(0)] * 3 + [ald.step_size(1)] * 3 + [ald.step_size(1)] * 2
    x = jax_run(ald, lambda x, s: jnp.zeros_like(x), jnp.zeros((40_000, 1)), jax.random.key(0), 8)
    np.testing.assert_allclose(float(x.var()), sum(alphas), rtol=0.03)  # sd of var: 0.7 %


def plain_energy(x=None):
    loc = numpyro.param("loc", jnp.zeros(V))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", Unnormalized(lambda u: ((u - loc) ** 2).sum(-1), (V,)), obs=x)


class BadSweep(NumPyroRBM):
    def block_gibbs_step(self, x, key):
        return x[:, :2]


@pytest.mark.parametrize(
    "program, est, match",
    [
        (
            plain_energy,
            ContrastiveDivergence(sampler=BlockGibbs(), steps=5),
            r"needs a model with conditional structure.*'langevin', 'mala' or 'hmc'",
        ),
        (
            plain_energy,
            ContrastiveDivergence(sampler="langevin", sample_sampler="gibbs", steps=5),
            r"needs a model with conditional structure",
        ),
        (
            BadSweep(),
            ContrastiveDivergence(steps=5),
            r"must return an array shaped like x: on x of shape \(2, 8\)",
        ),
        (
            NumPyroRBM(),
            ContrastiveDivergence(sampler=AnnealedLangevin((1.0, 0.1)), steps=5),
            r"not a fixed transition kernel.*sample_sampler=AnnealedLangevin",
        ),
    ],
    ids=["no-sweep", "no-sweep-for-sampling", "bad-shape", "annealed-as-kernel"],
)
def test_refusals_before_any_work(program, est, match):
    x = teacher()[1][:32]
    with pytest.raises(EstimatorError, match=match):
        ppgen.fit(program, {"x": x}, est, seed=0, backend="numpyro")
