"""ppgen.evaluate's latent-variable and per-dimension metrics against closed forms: the ELBO
and IWAE bounds of a linear-Gaussian model (exact marginal, exact posterior), bits per
dimension of fair coins, the reasons bounds are skipped, and metrics a model declares."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

import ppgen
from ppgen import Fit, Program
from ppgen.errors import DataError, ProgramError
from ppgen.inference import SVI

# z_i ~ N(0, 1), x_i | z_i ~ N(A z_i + B, S^2): x_i ~ N(B, A^2 + S^2) and z_i | x_i is
# N(C x_i + D, E^2) with the constants below
A, B, S = 2.0, 0.5, 0.7
C, D, E = A / (A * A + S * S), -A * B / (A * A + S * S), math.sqrt(S * S / (A * A + S * S))
BACKENDS = ["pyro", "numpyro"]


def linear_gaussian(backend: str, c: float, d: float, e: float):
    """The model and a hand-written amortised affine guide q(z_i | x_i) = N(c x_i + d, e^2)."""
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
        from pyro.distributions import constraints

        def init(v):
            return torch.tensor(v)
    else:
        import numpyro as ppl
        import numpyro.distributions as dist
        from numpyro.distributions import constraints

        def init(v):
            return v

    def model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(A * z + B, S), obs=x)

    def guide(x):
        cc, dd = ppl.param("c", init(c)), ppl.param("d", init(d))
        ee = ppl.param("e", init(e), constraint=constraints.positive)
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Normal(cc * x + dd, ee))

    return model, guide


def draw_x(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (A * rng.normal(size=n) + B + S * rng.normal(size=n)).astype(np.float32)


def exact_log_p(x: np.ndarray) -> float:
    return float(norm.logpdf(x.astype(np.float64), B, math.sqrt(A * A + S * S)).mean())


def analytic_elbo(x: np.ndarray, c: float, d: float, e: float) -> float:
    """E_q[log p(x, z) - log q(z | x)] per datum, in closed form."""
    x = x.astype(np.float64)
    m = c * x + d
    log_prior = -0.5 * math.log(2 * math.pi) - 0.5 * (m**2 + e**2)
    sq = (x - A * m - B) ** 2 + A * A * e * e  # E_q[(x - A z - B)^2]
    log_lik = -0.5 * math.log(2 * math.pi) - math.log(S) - sq / (2 * S * S)
    entropy = 0.5 * math.log(2 * math.pi * e * e) + 0.5
    return float((log_prior + log_lik + entropy).mean())


def fixed_guide_fit(backend: str, x: np.ndarray, c: float, d: float, e: float) -> Fit:
    """An SVI fit whose guide keeps the given parameters (one step of lr 1e-12)."""
    model, guide = linear_gaussian(backend, c, d, e)
    est = SVI(steps=1, lr=1e-12, num_draws=2)
    return ppgen.fit(model, {"x": x}, est, guide=guide, backend=backend, progress=False)


# ---------------------------------------------------------------------- bounds vs the truth
@pytest.mark.parametrize("backend", BACKENDS)
def test_bounds_of_a_fitted_encoder_lie_below_the_exact_marginal(backend):
    x, test = draw_x(200, 0), draw_x(300, 1)
    model, guide = linear_gaussian(backend, 0.0, 0.0, 1.0)
    est = SVI(steps=150, lr=0.1, num_draws=2)
    fit = ppgen.fit(model, {"x": x}, est, guide=guide, backend=backend, progress=False)
    exact = exact_log_p(test)
    ev = ppgen.evaluate(fit, {"x": test}, iwae_k=100)
    c, d, e = (float(fit.params[k]) for k in "cde")
    # the fitted guide is close to the posterior: the ELBO gap is small; IWAE is tighter
    assert ev["elbo_per_datum"] <= ev["iwae_per_datum"] <= exact + 0.01
    assert exact - ev["elbo_per_datum"] < 0.05
    assert ev["elbo_per_datum"] == pytest.approx(analytic_elbo(test, c, d, e), abs=0.02)
    assert ev["iwae_k"] == 100 and ev["n_data"] == 300
    assert ev.details["bound_plate"] == "data"
    assert ev["bits_per_dim_iwae"] == pytest.approx(-ev["iwae_per_datum"] / math.log(2))
    assert "['z']" in ev.skipped["log_lik_per_datum"]  # the codes' draws are the training data's
    for row in ("elbo_per_datum", "iwae_per_datum", "iwae_k", "bits_per_dim_iwae"):
        assert row in [line.split()[0] for line in ev.table().splitlines()[2:]]
    # on the training data too, with the same guarantee
    train = ppgen.evaluate(fit, iwae_k=100)
    assert train["elbo_per_datum"] <= train["iwae_per_datum"] <= exact_log_p(x) + 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_exact_posterior_as_guide_makes_both_bounds_exact(backend):
    """log w = log p(x) whatever z when q(z | x) = p(z | x): a zero-variance check."""
    x, test = draw_x(50, 2), draw_x(200, 3)
    fit = fixed_guide_fit(backend, x, C, D, E)
    ev = ppgen.evaluate(fit, {"x": test}, iwae_k=20)
    exact = exact_log_p(test)
    assert ev["elbo_per_datum"] == pytest.approx(exact, abs=1e-4)
    assert ev["iwae_per_datum"] == pytest.approx(exact, abs=1e-4)
    # datum by datum: every one of the K x N weights is log p(x_i)
    ops = fit.program.ops
    w = ops.local_log_weights(
        fit.model_callable(),
        fit.guide_callable(),
        fit._native({"x": test}),
        plate="data",
        num_particles=7,
        seed=1,
    )
    assert w.shape == (7, 200) and w.dtype == np.float64
    want = norm.logpdf(test.astype(np.float64), B, math.sqrt(A * A + S * S))
    np.testing.assert_allclose(w, np.broadcast_to(want, w.shape), atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iwae_tightens_towards_the_exact_marginal_as_k_grows(backend):
    """A guide too wide by a factor 1.8: ELBO gap = KL(q || p) ~ 0.56 nats per datum."""
    x = draw_x(500, 4)
    e = 0.6
    fit = fixed_guide_fit(backend, x, C, D, e)
    exact, elbo = exact_log_p(x), analytic_elbo(x, C, D, e)
    evs = {k: ppgen.evaluate(fit, iwae_k=k, seed=7) for k in (1, 10, 100, 1000)}
    gap = {k: exact - ev["iwae_per_datum"] for k, ev in evs.items()}
    assert evs[1]["iwae_per_datum"] == evs[1]["elbo_per_datum"]  # K = 1 is the ELBO
    # sd(log w) is 1.8: the K = 1 mean of 500 weights is within 0.4 (5 se) of the ELBO
    assert evs[1]["iwae_per_datum"] == pytest.approx(elbo, abs=0.4)
    assert evs[1000]["elbo_per_datum"] == pytest.approx(elbo, abs=0.02)
    assert exact - elbo > 0.5 and gap[1] > 0.3
    assert gap[10] < gap[1] / 5
    assert abs(gap[100]) < abs(gap[10]) + 0.01 and abs(gap[100]) < 0.03
    assert abs(gap[1000]) < abs(gap[100]) + 0.005 and abs(gap[1000]) < 0.01
    for ev in evs.values():
        assert ev["elbo_per_datum"] <= ev["iwae_per_datum"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_bounds_are_seeded(backend):
    fit = fixed_guide_fit(backend, draw_x(40, 5), C, D, 1.0)
    a, b = (ppgen.evaluate(fit, iwae_k=30, seed=3) for _ in range(2))
    c = ppgen.evaluate(fit, iwae_k=30, seed=4)
    assert a["iwae_per_datum"] == b["iwae_per_datum"] != c["iwae_per_datum"]


def test_a_tiny_vae_gets_finite_bounds_on_held_out_data(tmp_path):
    from ppgen.models import VAE

    rng = np.random.default_rng(0)
    protos = rng.random((3, 12)) > 0.5
    labels = rng.integers(0, 3, 160)
    x = (protos[labels] ^ (rng.random((160, 12)) < 0.1)).astype(np.float32)
    vae = VAE(12, 2, hidden_features=(16,))
    fit = ppgen.fit(vae, {"x": x[:100]}, SVI(steps=100, num_draws=4), progress=False)
    ev = ppgen.evaluate(fit, {"x": x[100:]}, iwae_k=50)
    assert np.isfinite([ev["elbo_per_datum"], ev["iwae_per_datum"]]).all()
    assert ev["elbo_per_datum"] <= ev["iwae_per_datum"] < 0
    assert ev["n_data"] == 60 and ev.details["dims_per_datum"] == {"bits_per_dim_iwae": 12.0}
    assert ev["bits_per_dim_iwae"] == pytest.approx(-ev["iwae_per_datum"] / (12 * math.log(2)))
    assert "log_lik_per_datum" in ev.skipped and "elbo" not in ev.skipped
    # on its training data the likelihood is conditional on the codes: no bits/dim from it
    train = ppgen.evaluate(fit, iwae_k=10)
    assert "reconstruction" in train.skipped["bits_per_dim"]
    assert train["elbo_per_datum"] <= train["iwae_per_datum"]
    # a saved run, loaded, has its guide back: the same seeded bounds
    fit.save(tmp_path / "vae")
    again = ppgen.load(tmp_path / "vae", VAE(12, 2, hidden_features=(16,)))
    loaded = ppgen.evaluate(again, {"x": x[100:]}, iwae_k=50)
    assert loaded["iwae_per_datum"] == pytest.approx(ev["iwae_per_datum"], abs=1e-5)


# ---------------------------------------------------------------------- when bounds do not apply
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_global_latent_is_skipped_naming_the_site(backend):
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
    else:
        import numpyro as ppl
        import numpyro.distributions as dist

    def model(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(mu, 1.0))
            ppl.sample("x", dist.Normal(z, 1.0), obs=x)

    x = draw_x(20, 6)
    fit = ppgen.fit(model, {"x": x}, SVI(steps=2, num_draws=2), backend=backend, progress=False)
    ev = ppgen.evaluate(fit, iwae_k=5)
    assert "['mu']" in ev.skipped["elbo"] and "outside the data plate `data`" in ev.skipped["elbo"]
    assert ev.skipped["iwae"] == ev.skipped["elbo"]
    assert "elbo_per_datum" not in ev and "iwae_per_datum" not in ev
    assert "not applicable: elbo: the latent site(s) ['mu']" in ev.table()


def test_guides_whose_terms_do_not_split_per_datum_are_skipped():
    import pyro
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    x = draw_x(30, 7)
    exact = float(norm.logpdf(x, 0.0, math.sqrt(2.0)).mean())

    def fit_with(guide):
        return ppgen.fit(model, {"x": x}, SVI(guide=guide, steps=300, lr=0.05), progress=False)

    # AutoNormal: one factor per training datum; fine on the training data ...
    auto = fit_with("normal")
    ev = ppgen.evaluate(auto, iwae_k=50)
    assert ev["elbo_per_datum"] <= ev["iwae_per_datum"] <= exact + 0.05
    # ... not on held-out data (nothing encodes a new x)
    held = ppgen.evaluate(auto, {"x": x[:10]}, iwae_k=5)
    assert "autoguide" in held.skipped["elbo"] and "AutoNormal" in held.skipped["elbo"]
    # one joint latent vector outside the data plate, and point masses
    diag = ppgen.evaluate(fit_with("diagonal"), iwae_k=5)
    assert "['_AutoDiagonalNormal_latent']" in diag.skipped["elbo"]
    assert "the guide's site(s)" in diag.skipped["elbo"]
    delta = ppgen.evaluate(fit_with("delta"), iwae_k=5)  # MAP: no density q(z | x)
    assert delta.skipped["elbo"].startswith("no guide: this SVI fit")


def test_a_numpyro_autoguide_bounds_its_training_data_only():
    import numpyro
    import numpyro.distributions as dist

    def model(x):
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0))
            numpyro.sample("x", dist.Normal(z, 1.0), obs=x)

    x = draw_x(30, 8)
    est = SVI(guide="normal", steps=200, lr=0.1, num_draws=2)
    fit = ppgen.fit(model, {"x": x}, est, backend="numpyro", progress=False)
    ev = ppgen.evaluate(fit, iwae_k=50)
    exact = float(norm.logpdf(x, 0.0, math.sqrt(2.0)).mean())
    assert ev["elbo_per_datum"] <= ev["iwae_per_datum"] <= exact + 0.05
    held = ppgen.evaluate(fit, {"x": x[:10]}, iwae_k=5)
    assert "the guide (AutoNormal) is an autoguide" in held.skipped["elbo"]


def test_fits_without_a_guide_are_skipped_with_the_reason():
    from ppgen.models import NormalNormal

    x = np.random.default_rng(0).normal(size=(30, 1))
    fit = ppgen.fit(NormalNormal(dim=1), {"x": x}, "exact")
    ev = ppgen.evaluate(fit)
    assert ev.skipped["elbo"].startswith("no guide: this Exact fit")
    assert "elbo_per_datum" not in ev and "bits_per_dim" in ev


# ---------------------------------------------------------------------- bits per dimension
def coins(backend: str, nested: bool):
    """Fair-coin pixels: log p(x) = 8 log(1/2) per image whatever the data; a latent z the
    pixels ignore, with its exact posterior (its prior) as the guide."""
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
    else:
        import numpyro as ppl
        import numpyro.distributions as dist

    def model(x):
        if nested:  # a pixel plate inside the data plate: one entry per pixel
            with ppl.plate("data", x.shape[0], dim=-2):
                z = ppl.sample("z", dist.Normal(0.0, 1.0))
                with ppl.plate("pixels", x.shape[1], dim=-1):
                    ppl.sample("x", dist.Bernoulli(logits=0.0 * z), obs=x)
        else:  # one entry per image of 8 pixels
            with ppl.plate("data", x.shape[0]):
                z = ppl.sample("z", dist.Normal(0.0, 1.0))
                logits = 0.0 * z[..., None] + 0.0 * x  # (N, 8) zeros
                ppl.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        with ppl.plate("data", x.shape[0], dim=-2 if nested else -1):
            ppl.sample("z", dist.Normal(0.0, 1.0))

    return model, guide


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nested", [False, True], ids=["event", "pixel-plate"])
def test_fair_coin_pixels_score_exactly_one_bit_per_dim(backend, nested):
    model, guide = coins(backend, nested)
    rng = np.random.default_rng(0)
    x, test = (rng.random((40, 8)) > 0.3).astype(np.float32), (rng.random((25, 8)) > 0.7)
    prog = Program(model, guide=guide, backend=backend)
    _, info = prog.validate({"x": x})
    fit = Fit(program=prog, estimator=None, info=info, data={"x": x}, guide=prog.guide)
    ev = ppgen.evaluate(fit, {"x": test.astype(np.float32)}, iwae_k=4)
    assert ev["bits_per_dim"] == pytest.approx(1.0, abs=1e-6)
    assert ev["bits_per_dim_iwae"] == pytest.approx(1.0, abs=1e-6)
    assert ev["iwae_per_datum"] == pytest.approx(8 * math.log(0.5), abs=1e-5)
    per_entry = 1.0 if nested else 8.0  # log_lik_per_datum is per entry of the batch shape
    assert ev.details["dims_per_datum"] == {"bits_per_dim": per_entry, "bits_per_dim_iwae": 8.0}
    assert ev["log_lik_per_datum"] == pytest.approx(per_entry * math.log(0.5), abs=1e-5)


def test_an_mle_fit_of_a_coin_finds_one_bit_per_dim():
    import pyro
    import pyro.distributions as dist
    from pyro.distributions import constraints

    def model(x):
        p = pyro.param("p", torch.tensor(0.2), constraint=constraints.unit_interval)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Bernoulli(p).expand([x.shape[0], 4]).to_event(1), obs=x)

    x = np.tile(np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.float32), (10, 1))  # half heads
    fit = ppgen.fit(model, {"x": x}, ppgen.inference.MLE(steps=300, lr=0.05), progress=False)
    ev = ppgen.evaluate(fit)
    assert float(fit.params["p"]) == pytest.approx(0.5, abs=1e-3)
    assert ev["bits_per_dim"] == pytest.approx(1.0, abs=1e-5)
    assert "elbo_per_datum" not in ev and ev.skipped["elbo"].startswith("no guide: this MLE")


# ---------------------------------------------------------------------- declared metrics
class Unigram:
    """A user's language model: tokens ~ Categorical(probs), declaring its perplexity."""

    def __init__(self, probs, returns=None):
        self.probs = torch.tensor(probs)
        self.seen: list = []
        self.returns = returns

    def model(self, tokens):
        import pyro
        import pyro.distributions as dist

        with pyro.plate("tokens", tokens.shape[0]):
            pyro.sample("tokens_obs", dist.Categorical(self.probs), obs=tokens)

    def evaluate_metrics(self, fit, data):
        self.seen.append(data)
        if self.returns is not None:
            return self.returns
        tokens = np.asarray((fit.data if data is None else data)["tokens"])
        log_p = np.log(self.probs.numpy()[tokens.astype(int)])
        return {"perplexity": float(np.exp(-log_p.mean())), "n_tokens": int(tokens.size)}


def test_metrics_a_model_declares_arrive_in_the_table():
    lm = Unigram([0.5, 0.25, 0.25])
    train = np.array([0, 1, 2, 0, 0, 1])
    test = np.array([2, 2, 0, 1])
    prog = Program(lm)
    _, info = prog.validate({"tokens": train})
    fit = Fit(program=prog, estimator=None, info=info, data={"tokens": train})
    ev = ppgen.evaluate(fit, {"tokens": test})
    assert ev["perplexity"] == pytest.approx(math.exp(-ev["log_lik_per_datum"]), rel=1e-6)
    assert ev["n_tokens"] == 4 and isinstance(ev["n_tokens"], int)
    assert ev.details["declared_metrics"] == ["perplexity", "n_tokens"]
    assert ev.details["declared_by"] == "Unigram.evaluate_metrics"
    assert ["perplexity", f"{ev['perplexity']:.6g}"] in [r.split() for r in ev.table().splitlines()]
    assert set(lm.seen[-1]) == {"tokens"}  # held-out data: the dict
    ppgen.evaluate(fit)
    assert lm.seen[-1] is None  # the training data: None


@pytest.mark.parametrize(
    "returns, needle",
    [
        ([1.0], "must return a dict"),
        ({"perplexity": "high"}, "'perplexity'"),
        ({"perplexity": np.ones(2)}, "'perplexity'"),
        ({"perplexity": True}, "'perplexity'"),
        ({"log_lik_per_datum": 1.0}, "evaluate computes itself"),
    ],
)
def test_bad_declared_metrics_are_refused(returns, needle):
    tokens = np.array([0, 1, 1])
    prog = Program(Unigram([0.5, 0.5], returns=returns))
    _, info = prog.validate({"tokens": tokens})
    fit = Fit(program=prog, estimator=None, info=info, data={"tokens": tokens})
    with pytest.raises(ProgramError, match="evaluate_metrics") as e:
        ppgen.evaluate(fit)
    assert needle in str(e.value)


@pytest.mark.parametrize("iwae_k", [0, 2.5, True, "10"])
def test_a_bad_iwae_k_is_refused_before_any_work(iwae_k):
    tokens = np.array([0, 1, 1])
    prog = Program(Unigram([0.5, 0.5]))
    _, info = prog.validate({"tokens": tokens})
    fit = Fit(program=prog, estimator=None, info=info, data={"tokens": tokens})

    def no_work(*a, **k):
        raise AssertionError("scored before checking the arguments")

    fit.log_likelihood = no_work
    with pytest.raises(DataError, match="`iwae_k` must be an int >= 1"):
        ppgen.evaluate(fit, iwae_k=iwae_k)
