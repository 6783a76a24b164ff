"""Adversarial estimators: losses against their formulas, GANs against known optima, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ppgen
from ppgen.errors import EstimatorError, NonFiniteError
from ppgen.inference import SVI, Adversarial
from ppgen.inference._adversarial_jax import gradient_penalty_jax, spectral_normalise
from ppgen.inference._adversarial_torch import gradient_penalty
from ppgen.inference.objectives.gan import (
    LOSSES,
    array_ops,
    discriminator_loss,
    generator_loss,
)


def _sp(a):
    return np.log1p(np.exp(a))


D_REAL = np.array([0.5, -1.0, 2.0])
D_FAKE = np.array([-0.3, 0.7])
# (discriminator loss, generator loss), written from the papers' definitions
EXPECTED = {
    "minimax": (
        -np.mean(np.log(1 / (1 + np.exp(-D_REAL))))
        - np.mean(np.log(1 - 1 / (1 + np.exp(-D_FAKE)))),
        np.mean(np.log(1 - 1 / (1 + np.exp(-D_FAKE)))),
    ),
    "ns": (
        np.mean(_sp(-D_REAL)) + np.mean(_sp(D_FAKE)),
        -np.mean(np.log(1 / (1 + np.exp(-D_FAKE)))),
    ),
    "wgan-gp": (D_FAKE.mean() - D_REAL.mean(), -D_FAKE.mean()),
    "hinge": (
        np.mean(np.maximum(0, 1 - D_REAL)) + np.mean(np.maximum(0, 1 + D_FAKE)),
        -D_FAKE.mean(),
    ),
    "lsgan": (
        0.5 * np.mean((D_REAL - 1) ** 2) + 0.5 * np.mean(D_FAKE**2),
        0.5 * np.mean((D_FAKE - 1) ** 2),
    ),
}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("loss", LOSSES)
def test_losses_equal_their_formulas(loss, backend):
    if backend == "pyro":
        arr = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    else:
        import jax.numpy as jnp

        arr = jnp.asarray
    ops = array_ops(backend)
    ld = float(discriminator_loss(loss, arr(D_REAL), arr(D_FAKE), ops))
    lg = float(generator_loss(loss, arr(D_FAKE), ops))
    assert ld == pytest.approx(EXPECTED[loss][0], rel=1e-5)
    assert lg == pytest.approx(EXPECTED[loss][1], rel=1e-5)


@pytest.mark.parametrize("slope", [[3.0, -4.0], [0.6, 0.0]])
def test_gradient_penalty_of_a_linear_critic(slope):
    """A linear critic has gradient norm |w| at every interpolate: GP = (|w| - 1)^2."""
    w = np.array(slope)
    expected = (np.linalg.norm(w) - 1.0) ** 2
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    wt = torch.tensor(w, dtype=torch.float32)
    assert float(gradient_penalty(lambda x: x @ wt, real, fake)) == pytest.approx(
        expected, rel=1e-5
    )
    import jax
    import jax.numpy as jnp

    gp = gradient_penalty_jax(
        lambda p, x: x @ p,
        jnp.asarray(w),
        jnp.asarray(real.numpy()),
        jnp.asarray(fake.numpy()),
        jax.random.PRNGKey(0),
    )
    assert float(gp) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ programs
def location_scale(backend, dim=0):
    """x = loc + exp(log_s) z, z ~ N(0, I): the GAN optimum is the data's mean and sd.

    ``dim=0``: scalar data; ``dim=d``: d-vectors (one scale for all coordinates)."""
    shape, ev = ((dim,), 1) if dim else ((), 0)
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist

        from ppgen.distributions import Implicit

        def gen(x=None):
            loc = pyro.param("loc", torch.zeros(shape))
            log_s = pyro.param("log_s", torch.tensor(0.0))
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(torch.zeros(shape), 1.0).to_event(ev))
                pyro.sample("x", Implicit(loc + log_s.exp() * z, ev), obs=x)

        return gen
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist

    from ppgen.distributions import Implicit

    def gen_np(x=None):
        loc = numpyro.param("loc", jnp.zeros(shape))
        log_s = numpyro.param("log_s", 0.0)
        with numpyro.plate("data", len(x)):
            z = numpyro.sample("z", ndist.Normal(jnp.zeros(shape), 1.0).to_event(ev))
            numpyro.sample("x", Implicit(loc + jnp.exp(log_s) * z, ev), obs=x)

    return gen_np


X1 = np.random.default_rng(0).normal(2.0, 0.5, 2048).astype(np.float32)


X2 = (np.array([2.0, -1.0]) + 0.5 * np.random.default_rng(1).standard_normal((2048, 2))).astype(
    np.float32
)


# two time scales: a generator faster than its critic circles the data (measured: lr_g = lr_d
# = 0.01 ends 0.5 away, with the critic's Wasserstein estimate near 0)
WGAN = {"n_critic": 5, "lr": 0.01, "lr_g": 0.005, "betas": (0.5, 0.9)}


# WGAN-GP runs on 2-D data: with a 1-D critic the penalty's barrier at slope 0 stops the critic
# from changing sign (for a linear critic the loss in w is -dw + lambda (|w| - 1)^2, with a
# local minimum on each side for |d| < 2 lambda), so a generator that overshoots the data is
# never called back. In 2-D the critic's gradient rotates at no cost.
@pytest.mark.parametrize(
    "backend, loss, kw",
    [
        ("pyro", "ns", {}),
        ("pyro", "wgan-gp", WGAN),
        ("numpyro", "lsgan", {}),
        ("numpyro", "hinge", {}),
        ("numpyro", "wgan-gp", WGAN),
    ],
)
def test_location_scale_gan_recovers_mean_and_scale(backend, loss, kw):
    wgan = loss == "wgan-gp"
    data, mean = (X2, [2.0, -1.0]) if wgan else (X1, [2.0])
    fit = ppgen.fit(
        location_scale(backend, 2 if wgan else 0),
        {"x": data},
        Adversarial(
            **{"loss": loss, "steps": 800, "lr": 0.02, "hidden": (32, 32), "batch_size": 256, **kw}
        ),
        seed=1,
    )
    loc, scale = np.atleast_1d(fit.params["loc"]), math.exp(float(fit.params["log_s"]))
    # the sampling error of a 256-point minibatch mean is 0.03; a wrong sign or a missing
    # update lands at 0 / 1 (the initial values)
    assert np.abs(loc - mean).max() < 0.15, loc
    assert abs(scale - 0.5) < 0.15, scale
    assert set(fit.history) >= {"loss", "loss_d", "loss_g"}
    if wgan:
        assert {"gp", "wasserstein"} <= set(fit.history)
    assert fit.sample(4)["x"].shape == (4, *data.shape)


def conditional(backend):
    """Two classes, one location each: the generator sees y, the critic sees (x, y)."""
    if backend == "pyro":
        import pyro
        import pyro.distributions as dist

        from ppgen.distributions import Implicit

        def gen(x=None, y=None):
            locs = pyro.param("locs", torch.zeros(2))
            with pyro.plate("data", len(y)):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                pyro.sample("x", Implicit(locs[y] + 0.3 * z), obs=x)

        return gen
    import numpyro
    import numpyro.distributions as ndist

    from ppgen.distributions import Implicit

    def gen_np(x=None, y=None):
        locs = numpyro.param("locs", np.zeros(2, np.float32))
        with numpyro.plate("data", len(y)):
            z = numpyro.sample("z", ndist.Normal(0.0, 1.0))
            numpyro.sample("x", Implicit(locs[y] + 0.3 * z), obs=x)

    return gen_np


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_conditional_gan_learns_each_class(backend):
    """Without the label reaching the critic, both locations would collapse to the pooled
    mean (0.5); with it, each class finds its own (-1 and 2)."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 2048)
    x = np.where(y == 0, -1.0, 2.0) + 0.3 * rng.standard_normal(2048)
    fit = ppgen.fit(
        conditional(backend),
        {"x": x.astype(np.float32), "y": y},
        Adversarial(loss="ns", steps=800, lr=0.02, hidden=(32, 32), batch_size=256),
    )
    locs = np.asarray(fit.params["locs"])
    assert np.abs(locs - [-1.0, 2.0]).max() < 0.2, locs
    assert fit.diagnostics["covariates"] == ["y"]


# ------------------------------------------------------------------ resume and guards
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_exact_resume_with_two_optimisers(tmp_path, backend):
    # with PacGAN's packing (pack=2): the packed critic is checkpointed state like any other
    make = lambda steps: Adversarial(  # noqa: E731
        loss="wgan-gp",
        n_critic=2,
        steps=steps,
        lr=0.01,
        hidden=(8,),
        batch_size=128,
        ema=0.9,
        pack=2,
    )
    data = {"x": X1[:512]}
    full = ppgen.fit(location_scale(backend), data, make(15), seed=3)
    ppgen.fit(location_scale(backend), data, make(5), seed=3, checkpoint_dir=str(tmp_path))
    resumed = ppgen.fit(
        location_scale(backend), data, make(15), seed=3, checkpoint_dir=str(tmp_path), resume=True
    )
    for k in full.params:
        np.testing.assert_array_equal(resumed.params[k], full.params[k])
    for k in full.auxiliary["discriminator"]:
        np.testing.assert_array_equal(
            resumed.auxiliary["discriminator"][k], full.auxiliary["discriminator"][k]
        )
    assert resumed.history["loss_g"] == full.history["loss_g"]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nan_guard_names_the_discriminator(backend):
    with pytest.raises(NonFiniteError) as info:
        ppgen.fit(
            location_scale(backend),
            {"x": X1[:256] * 1e6},
            Adversarial(loss="lsgan", steps=50, lr=1e-3, lr_d=1e30, optim="sgd", hidden=(8,)),
        )
    assert "discriminator" in str(info.value)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_save_and_load_reproduce_samples(tmp_path, backend):
    prog = location_scale(backend)
    fit = ppgen.fit(prog, {"x": X1[:256]}, Adversarial(steps=20, hidden=(8,), pack=2))
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", prog)
    assert again.estimator.pack == 2  # the settings come back with the run
    np.testing.assert_array_equal(again.sample(5, seed=1)["x"], fit.sample(5, seed=1)["x"])
    assert again.auxiliary["discriminator"].keys() == fit.auxiliary["discriminator"].keys()
    idata = again.to_arviz()
    assert "log_likelihood" not in idata.groups()
    # the training curves are the sample_stats: one chain, one draw per step, as fit.history
    assert idata.sample_stats["loss_g"].shape == (1, 20) and again.has_sample_stats
    np.testing.assert_array_equal(idata.sample_stats["loss_d"].values[0], fit.history["loss_d"])
    np.testing.assert_array_equal(idata.posterior_predictive["x"].shape[-1], 256)


# ------------------------------------------------------------------ refusals, before work
def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(EstimatorError, match="hinge"):
        Adversarial(loss="wasserstein")
    with pytest.raises(EstimatorError, match="n_critic"):
        Adversarial(n_critic=0)
    with pytest.raises(EstimatorError, match="betas"):
        Adversarial(betas=(1.5, 0.9))
    with pytest.raises(EstimatorError, match="ema"):
        Adversarial(ema=1.0)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_svi_on_an_implicit_program_names_the_site_and_the_estimator(backend):
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(location_scale(backend), {"x": X1[:64]}, SVI(steps=5))
    assert "`x`" in str(info.value) and "adversarial" in str(info.value)


def test_discriminator_of_the_wrong_input_size_is_refused_before_training():
    critic = torch.nn.Linear(3, 1)
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(
            location_scale("pyro"), {"x": X1[:64]}, Adversarial(discriminator=critic, steps=5)
        )
    assert "discriminator" in str(info.value) and "`x`" in str(info.value)


def test_a_program_without_observed_sites_is_refused():
    import pyro
    import pyro.distributions as dist

    def prior_only(n=3):
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ppgen.errors.PPGenError, match="observed"):
        ppgen.fit(prior_only, {"n": 3}, Adversarial(steps=5))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_spectral_norm_bounds_every_critic_layer_and_the_generator_still_learns(backend):
    """SNGAN's setting (hinge loss, spectral norm): each critic layer's largest singular value
    is 1 (so the critic is 1-Lipschitz), and the location-scale generator still finds the
    data. The generator is read from an EMA of its weights (0.99): the last iterate of this
    game circles the data (Pyro seeds 0-3 without EMA: 0.11, 0.37, 0.18, 0.34 from the mean;
    with it: 0.01, 0.07, 0.03, 0.10)."""
    est = Adversarial(
        loss="hinge",
        spectral_norm=True,
        steps=800,
        lr=0.02,
        hidden=(32, 32),
        batch_size=256,
        ema=0.99,
    )
    fit = ppgen.fit(
        location_scale(backend, 2),
        {"x": X2},
        est,
        backend=backend,
        seed=1,
    )
    loc = np.atleast_1d(fit.params["loc"])
    assert np.abs(loc - [2.0, -1.0]).max() < 0.2, loc
    critic = fit.auxiliary["discriminator"]
    if backend == "pyro":
        # torch's parametrisation keeps W and its power-iteration vectors u, v: sigma = u'Wv
        norms = []
        for k, w in critic.items():
            if k.endswith("weight.original"):
                base = k[: -len("original")]
                u, v = critic[base + "0._u"], critic[base + "0._v"]
                norms.append(np.linalg.norm(w, 2) / float(u @ w @ v))
    else:
        leaves = [v for _, v in sorted(critic.items(), key=lambda kv: int(kv[0][4:]))]
        norms = [
            np.linalg.norm(np.asarray(w), 2) for w in spectral_normalise(leaves) if w.ndim == 2
        ]
    assert len(norms) == 3  # two hidden layers and the output
    np.testing.assert_allclose(norms, 1.0, atol=0.02)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_lr_decay_slows_both_networks_over_the_run(backend):
    """With the learning rates falling to 1e-9 of their start (1/8 of it a tenth of the way
    in), the generator's location moves a small part of the way the constant-rate run moves."""
    moved = []
    for decay in (None, 1e-9):
        est = Adversarial(loss="ns", steps=200, lr=0.02, hidden=(16,), lr_decay=decay)
        fit = ppgen.fit(location_scale(backend), {"x": X1[:512]}, est, backend=backend, seed=0)
        moved.append(abs(float(fit.params["loc"])))
    assert moved[0] > 1.0, moved  # from 0 towards the data's 2
    assert moved[1] < 0.3 * moved[0], moved
    with pytest.raises(EstimatorError, match="lr_decay"):
        Adversarial(lr_decay=1.5)
