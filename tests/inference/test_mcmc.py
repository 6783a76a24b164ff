"""NUTS/HMC against conjugate posteriors on Pyro and NumPyro; several chains; sample stats."""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pytest
from scipy import stats

import ppgen
from ppgen.errors import CheckpointError, EstimatorError
from ppgen.inference import HMC, NUTS
from ppgen.models import BetaBernoulli, EightSchools, GammaPoisson, NormalNormal

RNG = np.random.default_rng(5)
X_NORMAL = RNG.normal(0.5, 1.0, size=(15, 2))
X_BERN = (RNG.uniform(size=30) < 0.3).astype(np.int64)
X_POIS = RNG.poisson(4.0, size=25)


def _within_mcse(fit, site, truth, k=4.0):
    """|posterior mean - truth| <= k Monte Carlo standard errors (ArviZ's MCSE of the mean)."""
    idata = fit.to_arviz(posterior_predictive=False, log_likelihood=False)
    mean = idata.posterior[site].mean(("chain", "draw")).values
    mcse = az.mcse(idata, var_names=[site])[site].values
    assert np.all(np.abs(mean - truth) <= k * mcse + 1e-6), (mean, truth, mcse)
    return mcse


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nuts_normal_normal(backend):
    model = NormalNormal(dim=2)
    mean, sd = model.posterior(X_NORMAL)
    est = NUTS(num_samples=500, num_warmup=300, num_chains=2, jit=True)
    fit = ppgen.fit(model, {"x": X_NORMAL}, est, backend=backend, seed=1)
    assert fit.draws["mu"].shape == (2, 500, 2)
    mcse = _within_mcse(fit, "mu", mean)
    assert np.all(mcse < 0.02)  # enough effective draws for the check above to mean something
    np.testing.assert_allclose(fit.draws["mu"].reshape(-1, 2).std(0), sd, rtol=0.12)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nuts_beta_bernoulli(backend):
    model = BetaBernoulli()
    a, b = model.posterior(X_BERN)
    fit = ppgen.fit(
        model, {"x": X_BERN}, NUTS(num_samples=500, num_warmup=300, jit=True), backend=backend
    )
    _within_mcse(fit, "p", a / (a + b))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nuts_gamma_poisson(backend):
    model = GammaPoisson()
    shape, rate = model.posterior(X_POIS)
    fit = ppgen.fit(
        model, {"x": X_POIS}, NUTS(num_samples=500, num_warmup=300, jit=True), backend=backend
    )
    _within_mcse(fit, "rate", shape / rate)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_hmc_normal_normal(backend):
    model = NormalNormal(dim=2)
    mean, _ = model.posterior(X_NORMAL)
    # 3 steps of the adapted size (~0.7-0.9 in mass-whitened units) integrate ~2.1-2.7 time
    # units: far from the Gaussian's period 2*pi, where fixed-length HMC stops mixing
    est = HMC(num_samples=400, num_warmup=300, num_steps=3, jit=False)
    fit = ppgen.fit(model, {"x": X_NORMAL}, est, backend=backend)
    _within_mcse(fit, "mu", mean)
    # `num_steps` is the leapfrog count on both backends, whatever step size was adapted
    assert (fit.sample_stats["n_steps"] == 3).all()


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_hmc_trajectory_length_fixes_integration_time(backend):
    model = NormalNormal(dim=2)
    mean, _ = model.posterior(X_NORMAL)
    est = HMC(num_samples=300, num_warmup=200, trajectory_length=2.5, jit=False)
    fit = ppgen.fit(model, {"x": X_NORMAL}, est, backend=backend, seed=3)
    _within_mcse(fit, "mu", mean)
    st = fit.sample_stats
    ratio = 2.5 / st["step_size"].astype(np.float64)
    # the step count follows the adapted step size: int(L / eps) on Pyro, ceil(L / eps) on
    # NumPyro (bounds widened by a relative 1e-5 for float32 rounding of the ratio)
    rnd = np.floor if backend == "pyro" else np.ceil
    lo, hi = (np.maximum(rnd(ratio * (1 + e)), 1) for e in (-1e-5, 1e-5))
    n = st["n_steps"]
    assert np.all((n >= lo) & (n <= hi)), (n, ratio)
    assert n.max() > 1  # a trajectory, not a single step: the test can tell floor from fixed


def test_hmc_bad_step_arguments_are_named():
    with pytest.raises(EstimatorError, match="not both"):
        HMC(num_steps=5, trajectory_length=2.0)
    with pytest.raises(EstimatorError, match="`num_steps`"):
        HMC(num_steps=0)
    with pytest.raises(EstimatorError, match="`trajectory_length`"):
        HMC(trajectory_length=-1.0)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_sample_stats_are_kept(backend):
    fit = ppgen.fit(
        EightSchools(centered=True),
        ppgen.data.load("eight_schools"),
        # depth 6: the centred funnel's trees hit depth 10 in warmup (68 s on Pyro for 400
        # draws); the statistics kept are the same whatever the cap
        NUTS(num_samples=50, num_warmup=50, num_chains=2, jit=True, max_tree_depth=6),
        backend=backend,
        seed=0,
    )
    st = fit.sample_stats
    for k in ("diverging", "energy", "step_size", "tree_depth", "n_steps", "acceptance_rate", "lp"):
        assert st[k].shape == (2, 50), k
        assert np.isfinite(st[k].astype(float)).all(), k
    assert st["diverging"].dtype == bool
    assert (st["acceptance_rate"] >= 0).all() and (st["acceptance_rate"] <= 1 + 1e-6).all()
    assert (st["tree_depth"] >= 1).all() and (st["tree_depth"] <= 6).all()
    assert (st["n_steps"] >= 1).all()
    assert fit.diagnostics["divergences"] == int(st["diverging"].sum())
    # BFMI needs a real energy trace: it is computable and positive
    bfmi = az.bfmi(fit.to_arviz(posterior_predictive=False, log_likelihood=False))
    assert np.all(bfmi > 0)
    # lp is -potential energy: the log joint of each draw in unconstrained space, i.e.
    # log p(mu) + log p(tau) + sum log p(theta | mu, tau) + sum log p(y | theta) + log tau
    data = ppgen.data.load("eight_schools")
    mu, tau, theta = (fit.draws[k] for k in ("mu", "tau", "theta"))
    lp = (
        stats.norm(0, 5).logpdf(mu)
        + stats.halfcauchy(scale=5).logpdf(tau)
        + stats.norm(mu[..., None], tau[..., None]).logpdf(theta).sum(-1)
        + stats.norm(theta, data["sigma"]).logpdf(data["y"]).sum(-1)
        + np.log(tau)
    )
    np.testing.assert_allclose(st["lp"], lp, rtol=1e-4, atol=1e-3)


def test_chains_differ_and_seed_reproduces():
    data = {"x": X_NORMAL}
    a = ppgen.fit(NormalNormal(), data, NUTS(num_samples=50, num_chains=2, jit=False), seed=7)
    b = ppgen.fit(NormalNormal(), data, NUTS(num_samples=50, num_chains=2, jit=False), seed=7)
    c = ppgen.fit(NormalNormal(), data, NUTS(num_samples=50, num_chains=2, jit=False), seed=8)
    np.testing.assert_array_equal(a.draws["mu"], b.draws["mu"])
    assert not np.array_equal(a.draws["mu"][0], a.draws["mu"][1])
    assert not np.array_equal(a.draws["mu"], c.draws["mu"])


def test_backend_neutral_zoo_model_runs_on_numpyro_nuts():
    """A Pyro user's zoo model sampled by NumPyro's NUTS gives the same posterior as Pyro's."""
    data = ppgen.data.load("eight_schools")
    fits = {
        b: ppgen.fit(
            EightSchools(),
            data,
            NUTS(num_samples=600, num_warmup=400, jit=True),
            backend=b,
            seed=2,
        )
        for b in ("pyro", "numpyro")
    }
    assert fits["numpyro"].backend == "numpyro"
    m = {b: f.draws["mu"].mean() for b, f in fits.items()}
    s = {b: f.draws["mu"].std() for b, f in fits.items()}
    # both estimate the same posterior mean of mu (sd ~3.3): agree within MC error
    assert abs(m["pyro"] - m["numpyro"]) < 0.8
    assert abs(s["pyro"] - s["numpyro"]) / s["pyro"] < 0.2


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: NUTS(step_size=-1.0), "step_size"),
        (lambda: NUTS(max_tree_depth=0), "max_tree_depth"),
        (lambda: NUTS(thinning=0), "thinning"),
        (lambda: HMC(num_steps=0), "num_steps"),
    ],
)
def test_bad_sampler_arguments_are_refused_at_construction(make, name):
    """Each used to be accepted and leave chains stuck, or fail only after sampling."""
    with pytest.raises(EstimatorError, match=f"`{name}`"):
        make()


# --------------------------------------------------------------- checkpoints and resume
def _ckpt_est(**kw):
    """Two vectorised chains, thinned: the chain axis and the thinning phase must survive."""
    return NUTS(
        num_samples=20, num_warmup=30, num_chains=2, chain_method="vectorized", thinning=2, **kw
    )


def _ckpt_fit(directory, **kw):
    return ppgen.fit(
        NormalNormal(dim=2),
        {"x": X_NORMAL},
        _ckpt_est(),
        backend="numpyro",
        seed=3,
        checkpoint_dir=str(directory),
        checkpoint_every=10,
        **kw,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A checkpointed run (warm-up, then 2 chunks of 10), with a copy of each checkpoint."""
    import shutil

    from ppgen.inference import _mcmc_checkpoint as mc

    root = tmp_path_factory.mktemp("mcmc_ckpt")
    snapshots = []
    save = mc._save

    def spy(path, *args):
        save(path, *args)
        snapshots.append(root / f"snap{len(snapshots)}")
        snapshots[-1].mkdir()
        shutil.copy(path, snapshots[-1] / path.name)

    mp = pytest.MonkeyPatch()
    mp.setattr(mc, "_save", spy)
    try:
        fit = _ckpt_fit(root / "run")
    finally:
        mp.undo()
    return fit, snapshots


def _assert_same_run(a, b):
    assert a.draws.keys() == b.draws.keys() and a.sample_stats.keys() == b.sample_stats.keys()
    for k in a.draws:
        np.testing.assert_array_equal(a.draws[k], b.draws[k], err_msg=k)
    for k in a.sample_stats:
        np.testing.assert_array_equal(a.sample_stats[k], b.sample_stats[k], err_msg=k)


def test_numpyro_mcmc_checkpoints_after_warmup_and_each_chunk(uninterrupted):
    fit, snapshots = uninterrupted
    assert fit.draws["mu"].shape == (2, 10, 2)  # 20 transitions thinned by 2
    assert len(snapshots) == 3  # after the warm-up, after each of the 2 chunks
    assert fit.diagnostics["checkpoint_chunk"] == 10 and not fit.diagnostics["interrupted"]
    from safetensors.numpy import load_file

    saved = load_file(str(snapshots[-1] / "mcmc_checkpoint.safetensors"))
    np.testing.assert_array_equal(saved["draws/mu"], fit.draws["mu"])
    assert "state.adapt_state.step_size" in saved and "state.rng_key" in saved
    assert "draws/mu" not in load_file(str(snapshots[0] / "mcmc_checkpoint.safetensors"))


def test_numpyro_mcmc_killed_then_interrupted_then_resumed_is_bit_identical(
    uninterrupted, tmp_path, monkeypatch
):
    """Resume after a kill (the checkpoint written after warm-up), Ctrl-C in the 2nd chunk
    (the draws so far come back), resume again: the draws and stats of the uninterrupted run."""
    import shutil

    from ppgen.inference import _mcmc_checkpoint as mc

    full, snapshots = uninterrupted
    shutil.copytree(snapshots[0], tmp_path / "run")  # killed during the first chunk
    sample = mc._sample_chunk
    calls = []

    def ctrl_c_on_second_chunk(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return sample(*args)

    monkeypatch.setattr(mc, "_sample_chunk", ctrl_c_on_second_chunk)
    with pytest.warns(RuntimeWarning, match="Interrupted after 10 of 20 transitions"):
        part = _ckpt_fit(tmp_path / "run", resume=True)
    assert part.diagnostics["interrupted"]
    np.testing.assert_array_equal(part.draws["mu"], full.draws["mu"][:, :5])
    monkeypatch.setattr(mc, "_sample_chunk", sample)
    _assert_same_run(_ckpt_fit(tmp_path / "run", resume=True), full)
    # a finished checkpoint resumes to the same fit without sampling
    monkeypatch.setattr(mc, "_sample_chunk", None)
    _assert_same_run(_ckpt_fit(tmp_path / "run", resume=True), full)


def test_numpyro_mcmc_resume_refuses_another_runs_checkpoint(uninterrupted, tmp_path):
    import shutil

    shutil.copytree(uninterrupted[1][0], tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"'seed'.*drop `resume=True`"):
        ppgen.fit(
            NormalNormal(dim=2),
            {"x": X_NORMAL},
            _ckpt_est(),
            backend="numpyro",
            seed=4,
            checkpoint_dir=str(tmp_path / "run"),
            checkpoint_every=10,
            resume=True,
        )
    with pytest.raises(CheckpointError, match=r"num_samples=20 \(now 40\)"):
        ppgen.fit(
            NormalNormal(dim=2),
            {"x": X_NORMAL},
            NUTS(
                num_samples=40, num_warmup=30, num_chains=2, chain_method="vectorized", thinning=2
            ),
            backend="numpyro",
            seed=3,
            checkpoint_dir=str(tmp_path / "run"),
            checkpoint_every=10,
            resume=True,
        )


def test_resume_without_a_checkpoint_is_named(tmp_path):
    est = NUTS(num_samples=10, num_warmup=10)
    with pytest.raises(CheckpointError, match=r"no MCMC checkpoint in `checkpoint_dir=.*Drop"):
        ppgen.fit(
            NormalNormal(),
            {"x": X_NORMAL},
            est,
            backend="numpyro",
            checkpoint_dir=str(tmp_path),
            resume=True,
        )
    with pytest.raises(CheckpointError, match="`resume=True` needs `checkpoint_dir=`"):
        ppgen.fit(NormalNormal(), {"x": X_NORMAL}, est, backend="numpyro", resume=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kw, named",
    [
        ({"checkpoint_dir": "CKPT"}, "`checkpoint_dir`"),
        ({"checkpoint_dir": "CKPT", "resume": True}, "`checkpoint_dir` and `resume`"),
        ({"resume": True}, "`resume`"),
    ],
)
def test_pyro_mcmc_refuses_checkpoints_before_any_work(tmp_path, kw, named):
    """Pyro's kernels cannot export their adapted state: once silently ignored."""
    kw = {k: str(tmp_path / "c") if v == "CKPT" else v for k, v in kw.items()}
    for est in (NUTS(num_samples=10, jit=False), HMC(num_samples=10, jit=False)):
        with pytest.raises(EstimatorError) as info:
            ppgen.fit(NormalNormal(), {"x": X_NORMAL}, est, backend="pyro", **kw)
        msg = str(info.value)
        for needle in (type(est).__name__, "Pyro", named, "NumPyro", "backend='numpyro'"):
            assert needle in msg, msg
    assert not (tmp_path / "c").exists()


def test_checkpoint_file_round_trips_a_single_chains_scalar_state(tmp_path):
    """One chain's state has 0-d leaves (step count, energy): they must come back 0-d."""
    from collections import namedtuple

    import jax.numpy as jnp

    from ppgen.inference import _mcmc_checkpoint as mc

    State = namedtuple("State", "i z rng_key")
    state = State(
        jnp.int32(7), {"mu": jnp.ones(2), "tau": jnp.float32(0.5)}, jnp.zeros(2, "uint32")
    )
    arrays, layout = mc._flatten(state)
    meta = {"format": mc.FORMAT, "sampler": "NUTS", "settings": {}, "chunk": 1, "seed": 0}
    meta["data"] = "d"
    draws = {"mu": np.zeros((1, 3, 2))}
    mc._save(tmp_path / "c.safetensors", arrays, ([draws], [{"energy": np.ones((1, 3))}]), 3, meta)
    back, d, e, done = mc._load(tmp_path / "c.safetensors", meta)
    assert done == 3 and d["mu"].shape == (1, 3, 2) and e["energy"].shape == (1, 3)
    restored = mc._unflatten(back, layout)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match=r"'seed'"):
        mc._load(tmp_path / "c.safetensors", {**meta, "seed": 1})
    (tmp_path / "c.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a readable MCMC checkpoint.*Delete it"):
        mc._load(tmp_path / "c.safetensors", meta)
