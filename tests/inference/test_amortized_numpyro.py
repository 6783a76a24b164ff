"""Amortized encoder guides on NumPyro programs: exact linear-Gaussian posteriors, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import torch
from numpyro import handlers

import ppgen
from ppgen.errors import ProgramError
from ppgen.inference import SVI
from ppgen.inference._amortized_numpyro import NumPyroAmortized
from ppgen.inference.amortized import Amortized

D, K, SIGMA, S0 = 5, 2, 0.5, 10.0


def _ppca(n: int, seed: int = 0, global_mu: bool = False):
    """Linear-Gaussian latents: ``x_n = W z_n + mu + SIGMA eps``, W known; mu known or latent."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(D, K)).astype(np.float32)
    mu0 = rng.normal(size=D).astype(np.float32)

    def sim(m):
        return (rng.normal(size=(m, K)) @ w.T + mu0 + SIGMA * rng.normal(size=(m, D))).astype(
            np.float32
        )

    x, held_out = sim(n), sim(200)
    wj, muj = jnp.asarray(w), jnp.asarray(mu0)

    def model(x):
        mu = (
            numpyro.sample("mu", dist.Normal(0.0, S0).expand([D]).to_event(1)) if global_mu else muj
        )
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
            numpyro.sample("x", dist.Normal(z @ wj.T + mu, SIGMA).to_event(1), obs=x)

    return model, w, mu0, x, held_out


def _encode(guide: Amortized, fit, x: np.ndarray):
    """q(z | x) of the fitted NumPyro twin of ``guide`` (jitted: one compilation)."""
    params = {k: jnp.asarray(v) for k, v in fit.params.items()}
    return jax.jit(lambda p, x: guide.numpyro_guide.encode(p, x=x)["z"])(params, jnp.asarray(x))


def test_ppca_mvn_encoder_matches_exact_posterior_on_held_out_data():
    model, w, mu, x, xt = _ppca(500)
    m = w.T @ w + SIGMA**2 * np.eye(K)
    cov = SIGMA**2 * np.linalg.inv(m)  # p(z | x) = N(M^-1 W'(x - mu), SIGMA^2 M^-1)
    post_mean = (xt - mu) @ w @ np.linalg.inv(m).T
    guide = Amortized(family="mvn", hidden_features=())  # linear heads: the family is exact
    # the guide given to ppgen.fit itself (the program's guide), not to SVI
    fit = ppgen.fit(
        model, {"x": x}, SVI(steps=1000, lr=0.04, lr_decay=0.05, num_draws=2), guide=guide
    )
    mean = fit.encode({"x": xt})["z"]
    assert mean.shape == (200, K)
    # posterior sds 0.37-0.39: held-out means within 0.1 sd-units RMS (measured 0.045)
    rms = np.sqrt(np.mean((mean - post_mean) ** 2 / np.diag(cov)))
    assert rms < 0.1, rms
    covs = np.asarray(_encode(guide, fit, xt).covariance_matrix)
    # full covariance incl. the -0.09 correlation term, within 0.015 (measured 0.004)
    np.testing.assert_allclose(covs.mean(0), cov, atol=0.015)
    assert np.abs(covs - covs.mean(0)).max() < 0.05  # ~ the same for every datum (measured 0.023)


def test_global_and_local_latents_with_minibatches_match_exact_posterior():
    # x_n = W z_n + U a + SIGMA eps with [W, U] orthogonal columns: the posterior factorises
    # into q(a) (global, AutoNormal) and q(z_n | x_n) (local, encoder), both exactly Gaussian
    n, g = 400, 2
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(D, K + g)))
    w = (q[:, :K] * np.array([2.0, 1.0])).astype(np.float32)
    u = q[:, K:].astype(np.float32)
    a0 = rng.normal(size=g)

    def sim(m):
        z = rng.normal(size=(m, K))
        return (z @ w.T + u @ a0 + SIGMA * rng.normal(size=(m, D))).astype(np.float32)

    x, xt = sim(n), sim(200)
    wj, uj = jnp.asarray(w), jnp.asarray(u)

    def model(x):
        a = numpyro.sample("a", dist.Normal(0.0, S0).expand([g]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([K]).to_event(1))
            numpyro.sample("x", dist.Normal(z @ wj.T + uj @ a, SIGMA).to_event(1), obs=x)

    prec = 1.0 / S0**2 + n / SIGMA**2
    a_mean, a_sd = (u.T @ x.sum(0) / SIGMA**2) / prec, 1.0 / np.sqrt(prec)
    m = w.T @ w + SIGMA**2 * np.eye(K)  # diagonal: the diagonal Normal family is exact
    z_mean, z_sd = xt @ w @ np.linalg.inv(m).T, np.sqrt(SIGMA**2 / np.diag(m))
    guide = Amortized(hidden_features=())
    est = SVI(guide=guide, steps=1500, lr=0.03, lr_decay=0.02, batch_size=100, num_draws=1000)
    fit = ppgen.fit(model, {"x": x}, est)
    assert fit.draws["z"].shape == (1, 1000, n, K)
    a_draws = fit.draws["a"][0]
    # E_q[a] within 0.5 posterior sds (measured <= 0.2); sd(a) within 30 % (measured <= 18 %,
    # 1000 draws): a minibatch weight missing its N / B = 4 would double it
    assert np.abs((a_draws.mean(0) - a_mean) / a_sd).max() < 0.5
    np.testing.assert_allclose(a_draws.std(0), a_sd, rtol=0.3)
    # held-out encodings: means within 0.1 sd-units RMS (measured 0.02), sds within 5 % (1 %)
    enc = fit.encode({"x": xt})["z"]
    assert np.sqrt(np.mean(((enc - z_mean) / z_sd) ** 2)) < 0.1
    scale = _encode(guide, fit, xt).base_dist.scale
    np.testing.assert_allclose(np.asarray(scale).mean(0), z_sd, rtol=0.05)


def test_equinox_encoder_is_trained():
    eqx = pytest.importorskip("equinox")
    model, w, mu, x, xt = _ppca(300, seed=2)
    m = w.T @ w + SIGMA**2 * np.eye(K)
    post_mean = (xt - mu) @ w @ np.linalg.inv(m).T
    enc = eqx.nn.Linear(D, 4, key=jax.random.key(1))  # maps one datum; vmapped by the guide
    est = SVI(guide=Amortized(encoder=enc), steps=1500, lr=0.03, lr_decay=0.05, num_draws=2)
    fit = ppgen.fit(model, {"x": x}, est)
    mean = fit.encode({"x": xt})["z"]
    sd = np.sqrt(SIGMA**2 * np.diag(np.linalg.inv(m)))
    assert np.sqrt(np.mean(((mean - post_mean) / sd) ** 2)) < 0.15  # measured 0.065
    trained = [v for k, v in fit.params.items() if k.startswith("amortized.encoder$params")]
    init = [np.asarray(enc.weight), np.asarray(enc.bias)]
    assert sorted(a.shape for a in trained) == sorted(a.shape for a in init)
    for a in trained:  # the encoder's own weights were optimised, not only the heads'
        b = next(b for b in init if b.shape == a.shape)
        assert np.abs(a - b).max() > 1e-2


def test_lowrank_head_is_factor_plus_diagonal_and_follows_the_batch():
    model, *_, x, _ = _ppca(30)
    g = NumPyroAmortized(model, "lowrank", hidden_features=(), rank=3)

    @jax.jit  # one compilation instead of one per eager primitive
    def run(x):
        tr = handlers.trace(handlers.seed(g, rng_seed=0)).get_trace(x=x)
        p = {k: s["value"] for k, s in tr.items() if s["type"] == "param"}
        return p, tr["z"]["value"], g.encode(p, x=x[:7])["z"]

    p, z, q = run(jnp.asarray(x))
    assert g.plate.name == "data" and list(g.locals) == ["z"] and z.shape == (30, K)
    assert q.batch_shape == (7,) and q.event_shape == (K,)
    out = x[:7] @ np.asarray(p["amortized.z.weight"]) + np.asarray(p["amortized.z.bias"])
    f = out[:, 2 * K :].reshape(7, K, 3)
    d = np.log1p(np.exp(out[:, K : 2 * K])) + 1e-4
    want = f @ f.transpose(0, 2, 1) + d[:, :, None] * np.eye(K)
    np.testing.assert_allclose(np.asarray(q.covariance_matrix), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(q.mean), out[:, :K], rtol=1e-5, atol=1e-5)


def _two_locals(x):
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(z.sum(-1) + u, 1.0), obs=x)


def _global_only(x):
    m = numpyro.sample("m", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(m, 1.0), obs=x)


@pytest.mark.parametrize(
    "model, guide, match",
    [
        (_two_locals, Amortized(encoder=lambda x: x[:3, None]), r"local latent `z`.*\(40, F\)"),
        (_two_locals, Amortized(encoder=lambda x: {"z": x[:, None]}), r"missing: \['u'\]"),
        (_two_locals, Amortized(encoder=torch.nn.Linear(1, 4)), "torch module"),
        (_two_locals, Amortized(family="flow"), "Pyro-only"),
        (_two_locals, Amortized(family="mvn"), r"`u` has event shape \(\)"),
        (_two_locals, Amortized(inputs=["y"]), r"input\(s\) \['y'\] are not data keys"),
        (_two_locals, Amortized(plate="other"), "`plate='other'` does not hold"),
        (_global_only, Amortized(), "No latent site sits in the data plate `data`"),
    ],
)
def test_bad_input_is_named(model, guide, match):
    x = np.random.default_rng(0).normal(size=40).astype(np.float32)
    with pytest.raises(ProgramError, match=match):
        ppgen.fit(model, {"x": x}, SVI(guide=guide, steps=1, num_draws=1))


def test_numpyro_guide_refuses_a_pyro_program():
    import pyro
    import pyro.distributions as pdist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pdist.Normal(0.0, 1.0))
            pyro.sample("x", pdist.Normal(z, 1.0), obs=x)

    with pytest.raises(ProgramError, match="for a Pyro program use"):
        ppgen.fit(model, {"x": np.zeros(5)}, SVI(guide=NumPyroAmortized(), steps=1))
    with pytest.raises(ProgramError, match="must be one of"):
        NumPyroAmortized(family="iaf")
