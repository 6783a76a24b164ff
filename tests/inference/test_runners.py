"""Runners: the default Local runner, a custom runner's seam, and a bad `runner=`."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest

import ppgen
from ppgen.errors import EstimatorError
from ppgen.inference import SVI, FitContext
from ppgen.inference.runners import Local, Runner
from ppgen.result import Fit

X = np.random.default_rng(0).normal(1.0, 1.0, 8)
CALLS: list[int] = []


def model(x=None):
    CALLS.append(1)
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 8):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_local_runner_is_the_default_bit_for_bit(backend):
    from ppgen.models import NormalNormal

    data = {"x": np.random.default_rng(1).normal(size=(8, 2))}
    a = ppgen.fit(NormalNormal(), data, SVI(steps=20, num_draws=50), backend=backend, seed=4)
    b = ppgen.fit(
        NormalNormal(), data, SVI(steps=20, num_draws=50), backend=backend, seed=4, runner=Local()
    )
    assert a.draws["mu"].shape == (1, 50, 2)
    np.testing.assert_array_equal(a.draws["mu"], b.draws["mu"])
    assert a.history["loss"] == b.history["loss"]


def test_a_custom_runner_gets_the_estimator_and_the_validated_context():
    seen = []

    class Recording(Runner):
        def run(self, estimator, ctx):
            seen.append((estimator, ctx))
            return estimator.run(ctx)

    est = SVI(steps=5, num_draws=10)
    fit = ppgen.fit(model, {"x": X}, est, seed=2, runner=Recording())
    assert isinstance(fit, Fit)
    [(got_est, ctx)] = seen
    assert got_est is est
    assert isinstance(ctx, FitContext)
    assert ctx.seed == 2 and ctx.info.observed == ["x"] and ctx.info.kind == "explicit"
    np.testing.assert_array_equal(ctx.data_np["x"], X)

    class Sentinel(Runner):
        def run(self, estimator, ctx):
            return "from the runner"

    assert ppgen.fit(model, {"x": X}, est, runner=Sentinel()) == "from the runner"


@pytest.mark.parametrize("bad", ["local", Local, object()])
def test_a_runner_that_is_not_a_runner_is_refused_before_any_work(bad):
    CALLS.clear()
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(model, {"x": X}, SVI(steps=5), runner=bad)
    msg = str(info.value)
    assert "`runner`" in msg and "Runner" in msg and type(bad).__name__ in msg
    assert CALLS == []
