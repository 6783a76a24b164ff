"""The shared loop: exact resume, NaN guard, seeds, early stopping, callbacks, Ctrl-C."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen.errors import NonFiniteError
from ppgen.inference import SVI, EarlyStopping, StopTraining
from ppgen.inference._loop import CHECKPOINT_NAME
from ppgen.io import load_tree
from ppgen.models import LinearRegression

DATA = ppgen.data.load("regression", n=96, d=3)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_exact_resume_is_bit_identical(tmp_path, backend):
    est = dict(batch_size=32, lr=0.05)
    straight = ppgen.fit(LinearRegression(), DATA, SVI(steps=15, **est), backend=backend, seed=4)
    ppgen.fit(
        LinearRegression(),
        DATA,
        SVI(steps=5, **est),
        backend=backend,
        seed=4,
        checkpoint_dir=str(tmp_path),
    )
    resumed = ppgen.fit(
        LinearRegression(),
        DATA,
        SVI(steps=15, **est),
        backend=backend,
        seed=4,
        checkpoint_dir=str(tmp_path),
        resume=True,
    )
    assert resumed.history["loss"] == straight.history["loss"]  # exact, not approximate
    assert straight.params.keys() == resumed.params.keys()
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    # optimiser state too: the final checkpoints of both runs hold identical moments
    sd = load_tree(tmp_path / CHECKPOINT_NAME)
    assert sd["loop"]["step"] == 15


def test_checkpoint_every_writes_atomically(tmp_path):
    seen = []

    def spy(step, metrics):
        seen.append((tmp_path / CHECKPOINT_NAME).exists())

    ppgen.fit(
        LinearRegression(),
        DATA,
        SVI(steps=6),
        checkpoint_dir=str(tmp_path),
        checkpoint_every=3,
        callbacks=[spy],
    )
    assert seen == [False, False, False, True, True, True]  # written at step 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_nan_guard_names_step_and_site_and_keeps_checkpoint(tmp_path):
    calls = {"n": 0}

    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        calls["n"] += 1
        scale = torch.tensor(float("nan")) if calls["n"] > 8 else torch.tensor(1.0)
        with pyro.plate("data", 5):
            pyro.sample("x", dist.Normal(mu, scale), obs=x)

    with pytest.raises(NonFiniteError) as info:
        pyro.enable_validation(False)
        try:
            ppgen.fit(
                model,
                {"x": np.zeros(5)},
                SVI(steps=20),
                checkpoint_dir=str(tmp_path),
                checkpoint_every=1,
            )
        finally:
            pyro.enable_validation(True)
    msg = str(info.value)
    assert "step" in msg and "nan" in msg.lower()
    assert "locs.mu" in msg  # the NaN gradient reached the guide's params for site `mu`
    sd = load_tree(tmp_path / CHECKPOINT_NAME)
    for v in sd["estimator"]["params"].values():
        assert torch.isfinite(v).all()  # no NaN ever reaches a checkpoint


def test_nan_parameter_is_named():
    def model(x=None):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    with pytest.raises(NonFiniteError, match="loc"):
        ppgen.fit(
            model, {"x": np.array([1e30, -1e30, 1e30])}, ppgen.inference.MLE(lr=1e30, steps=5)
        )


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_seed_determinism(backend):
    def run(seed):
        return ppgen.fit(
            LinearRegression(), DATA, SVI(steps=20, batch_size=32), seed=seed, backend=backend
        )

    a, b, c = run(1), run(1), run(2)
    assert a.history["loss"] == b.history["loss"]
    np.testing.assert_array_equal(a.draws["w"], b.draws["w"])
    assert a.history["loss"] != c.history["loss"]
    assert not np.array_equal(a.draws["w"], c.draws["w"])


def test_early_stopping_and_callbacks():
    es = EarlyStopping(patience=5, min_delta=1e9)  # nothing ever improves by 1e9
    fit = ppgen.fit(LinearRegression(), DATA, SVI(steps=100), callbacks=[es])
    assert fit.diagnostics["steps"] == 6 and fit.diagnostics["early_stopped"]
    assert len(fit.history["loss"]) == 6

    def stop_at_3(step, metrics):
        if step == 3:
            raise StopTraining

    fit = ppgen.fit(LinearRegression(), DATA, SVI(steps=100), callbacks=[stop_at_3])
    assert fit.diagnostics["steps"] == 3


def test_keyboard_interrupt_leaves_loadable_checkpoint(tmp_path):
    def interrupt(step, metrics):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="Interrupted at step 4"):
        fit = ppgen.fit(
            LinearRegression(),
            DATA,
            SVI(steps=50),
            callbacks=[interrupt],
            checkpoint_dir=str(tmp_path),
        )
    assert fit.diagnostics["interrupted"] and fit.diagnostics["steps"] == 4
    assert load_tree(tmp_path / CHECKPOINT_NAME)["loop"]["step"] == 4
    resumed = ppgen.fit(
        LinearRegression(), DATA, SVI(steps=10), checkpoint_dir=str(tmp_path), resume=True
    )
    assert len(resumed.history["loss"]) == 10
    assert resumed.history["loss"][:4] == fit.history["loss"]


def _interruptible_regression():
    """A Pyro program whose model raises KeyboardInterrupt on the call after ``flag["on"]``:
    Ctrl-C landing inside a step, mid-program (the realistic case)."""
    flag = {"on": False}

    def model(X, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
        if flag["on"]:
            flag["on"] = False
            raise KeyboardInterrupt
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ w, sigma), obs=y)

    return model, flag


def test_ctrl_c_inside_a_pyro_step_resumes_exactly(tmp_path):
    model, flag = _interruptible_regression()
    data = {"X": DATA["X"], "y": DATA["y"]}
    est = dict(batch_size=32, lr=0.05)
    straight = ppgen.fit(model, data, SVI(steps=15, **est), seed=4)

    def arm_at_6(step, metrics):
        if step == 6:
            flag["on"] = True  # step 7 is cut short inside the model

    with pytest.warns(RuntimeWarning, match="Interrupted at step 6"):
        cut = ppgen.fit(
            model,
            data,
            SVI(steps=15, **est),
            seed=4,
            callbacks=[arm_at_6],
            checkpoint_dir=str(tmp_path),
        )
    assert (
        cut.diagnostics["steps"] == 6 and load_tree(tmp_path / CHECKPOINT_NAME)["loop"]["step"] == 6
    )
    resumed = ppgen.fit(
        model, data, SVI(steps=15, **est), seed=4, checkpoint_dir=str(tmp_path), resume=True
    )
    # the cut step's minibatch and random draws were given back: bit-identical to no Ctrl-C
    assert resumed.history["loss"] == straight.history["loss"]
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])


def _numpyro_ramp(x=None):
    """Loss ``-t`` with ``t`` rising by 1 per SGD step; the loss is NaN once ``t > 4.5``."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist

    t = numpyro.param("t", 0.0)
    numpyro.factor("ramp", t + jnp.where(t > 4.5, jnp.nan, 0.0))
    with numpyro.plate("data", 4):
        numpyro.sample("x", ndist.Normal(0.0, 1.0), obs=x)


def test_numpyro_losses_read_one_step_late_equal_synchronous_ones(tmp_path):
    """JAX engines queue step t+1 before reading step t's loss; the history is unchanged."""
    est = dict(steps=23, batch_size=32, lr=0.05)
    lagged = ppgen.fit(LinearRegression(), DATA, SVI(**est), backend="numpyro", seed=2)
    synced = ppgen.fit(  # a checkpoint after every step makes every step synchronous
        LinearRegression(),
        DATA,
        SVI(**est),
        backend="numpyro",
        seed=2,
        checkpoint_dir=str(tmp_path),
        checkpoint_every=1,
    )
    assert len(lagged.history["loss"]) == 23
    assert lagged.history["loss"] == synced.history["loss"]
    for k in synced.params:
        np.testing.assert_array_equal(lagged.params[k], synced.params[k])


def test_numpyro_callback_stop_undoes_the_queued_step(tmp_path):
    """A stop at step 7 seen one step late gives the 7-step fit, and resumes exactly."""
    est = dict(batch_size=32, lr=0.05)
    seen = []

    def stop_at_7(step, metrics):
        seen.append(step)
        return step == 7

    def run(steps, **kw):
        return ppgen.fit(
            LinearRegression(), DATA, SVI(steps=steps, **est), backend="numpyro", seed=3, **kw
        )

    stopped = run(15, callbacks=[stop_at_7], checkpoint_dir=str(tmp_path))
    seven = run(7)
    assert seen == list(range(1, 8))
    assert stopped.diagnostics["steps"] == 7 and stopped.diagnostics["early_stopped"]
    assert stopped.history["loss"] == seven.history["loss"]
    for k in seven.params:
        np.testing.assert_array_equal(stopped.params[k], seven.params[k])
    resumed = run(15, checkpoint_dir=str(tmp_path), resume=True)
    straight = run(15)
    assert resumed.history["loss"] == straight.history["loss"]  # the minibatch order too


def test_numpyro_nan_guard_names_the_step_when_losses_are_read_late():
    with pytest.raises(NonFiniteError, match=r"loss=nan became non-finite at step 6\b"):
        ppgen.fit(
            _numpyro_ramp,
            {"x": np.zeros(4)},
            SVI(guide=lambda x=None: None, optim="sgd", lr=1.0, steps=20),
            backend="numpyro",
        )


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_batch_size_larger_than_the_data_warns_once_and_runs_full_batch(backend):
    with pytest.warns(UserWarning) as record:
        fit = ppgen.fit(LinearRegression(), DATA, SVI(steps=3, batch_size=500), backend=backend)
    said = [str(w.message) for w in record if "batch_size" in str(w.message)]
    assert len(said) == 1, said
    for words in ("`batch_size=500`", "N=96", "full-batch", "plate `"):
        assert words in said[0], said[0]
    assert fit.diagnostics["steps"] == 3
    assert fit.history["loss"][0] == fit.history["loss"][0]  # ran, on the full data


def test_nan_caught_by_distribution_validation_is_the_nan_guard(tmp_path):
    """Pyro's own ELBO validates arguments: a NaN scale raises ValueError inside the step; the
    NaN guard reports it as NonFiniteError naming the step and the site, checkpoint intact."""
    calls = {"n": 0}

    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        calls["n"] += 1
        scale = torch.tensor(float("nan")) if calls["n"] > 12 else torch.tensor(1.0)
        with pyro.plate("data", 5):
            pyro.sample("x", dist.Normal(mu, scale), obs=x)

    with pytest.raises(NonFiniteError) as info:
        ppgen.fit(
            model,
            {"x": np.zeros(5)},
            SVI(steps=20, elbo=pyro.infer.Trace_ELBO()),
            checkpoint_dir=str(tmp_path),
            checkpoint_every=1,
        )
    msg = str(info.value)
    for words in ("became NaN at step ", "site `x`", "`scale`", "Lower the learning rate"):
        assert words in msg, msg
    sd = load_tree(tmp_path / CHECKPOINT_NAME)
    assert sd["loop"]["step"] >= 1
    for v in sd["estimator"]["params"].values():
        assert torch.isfinite(v).all()


def test_nan_validation_error_of_any_estimator_names_the_step():
    """Without an engine to find the site, a NaN that torch's validation caught inside a step is
    still the NaN guard's error, with the step."""
    from ppgen.inference import OptimEstimator

    class Broken(OptimEstimator):
        name = "broken"

        def init(self, ctx):
            return {"n": 0}

        def step(self, state, batch):
            state["n"] += 1
            scale = torch.tensor(float("nan") if state["n"] == 3 else 1.0)
            return state, {"loss": float(dist.Normal(0.0, scale).log_prob(torch.tensor(0.0)))}

        def state_dict(self, state):
            return dict(state)

        def load_state_dict(self, state, sd):
            return dict(sd)

        def finalize(self, ctx, state, history):  # pragma: no cover - never reached
            raise AssertionError("the NaN step must stop the loop")

    def model(x=None):
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(NonFiniteError, match="became NaN at step 3"):
        ppgen.fit(model, {"x": np.zeros(3)}, Broken(steps=5))
