"""Pyro NUTS chains in worker processes (issue 15, item 3): ``chain_method="parallel"`` gives
the sequential run's draws chain for chain (each chain seeded ``seed + chain`` wherever it
runs); a program that cannot be sent to a worker runs in sequence, with a warning saying why.

Kept apart from the NumPyro tests: each spawned worker imports this module to find the program.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest

import ppgen
from ppgen.inference import NUTS

X = np.random.default_rng(0).normal(1.0, 1.0, 20).astype(np.float32)


def model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("d", 20):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def test_parallel_pyro_chains_equal_the_sequential_chains():
    par = ppgen.fit(model, {"x": X}, NUTS(150, 150, num_chains=2, chain_method="parallel"))
    seq = ppgen.fit(model, {"x": X}, NUTS(150, 150, num_chains=2))
    assert par.draws["mu"].shape == (2, 150)
    # the same chains: seeded seed + chain in a worker as in this process (float rounding of
    # the same single-threaded computation: equal to 1e-5)
    np.testing.assert_allclose(par.draws["mu"], seq.draws["mu"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(par.draws["mu"][0], par.draws["mu"][1])  # two different chains
    prec = 20 + 1 / 100  # the conjugate posterior: mean sum(x) / prec (MC error ~0.02)
    assert abs(par.draws["mu"].mean() - X.sum() / prec) < 0.1


def test_a_program_that_cannot_be_sent_runs_in_sequence_and_says_why():
    scale = 10.0

    def local_model(x=None):  # defined inside a function: not picklable
        mu = pyro.sample("mu", dist.Normal(0.0, scale))
        with pyro.plate("d", 20):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    est = NUTS(20, 20, num_chains=2, chain_method="parallel")
    with pytest.warns(UserWarning, match="cannot be sent to worker processes.*one after another"):
        fit = ppgen.fit(local_model, {"x": X}, est)
    seq = ppgen.fit(local_model, {"x": X}, NUTS(20, 20, num_chains=2))
    np.testing.assert_array_equal(fit.draws["mu"], seq.draws["mu"])
