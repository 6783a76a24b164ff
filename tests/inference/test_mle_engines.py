"""MLE's engines: the direct torch path (zoo flows / AR models) and the lean engine (other Pyro
programs without latents) give Pyro's own step's losses, step by step."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen.inference import MLE
from ppgen.models.autoregressive import MADE
from ppgen.models.flows import MAFModel

RNG = np.random.default_rng(0)
X2 = RNG.normal(size=(64, 2)).astype(np.float32) * [1.0, 0.3] + [0.5, -1.0]
BIN = (RNG.random((48, 5)) > 0.5).astype(np.float32)
CTX = RNG.normal(size=(64, 3)).astype(np.float32)


def _histories(make, data, **kw):
    out = {}
    for engine in ("auto", "pyro"):
        torch.manual_seed(0)
        fit = ppgen.fit(make(), data, MLE(engine=engine, lr=1e-2, **kw), seed=3)
        out[fit.diagnostics["engine"]] = (fit.history["loss"], fit)
    return out


@pytest.mark.parametrize(
    "make, data, path",
    [
        (lambda: MAFModel(2, hidden_features=8, num_transforms=2), {"x": X2}, "direct"),
        (
            lambda: MAFModel(2, context_features=3, hidden_features=8, num_transforms=2),
            {"x": X2, "c": CTX},
            "direct",
        ),
        (lambda: MADE(5, hidden_features=16), {"x": BIN}, "direct"),
    ],
    ids=["maf", "conditional-maf", "made"],
)
def test_direct_density_path_equals_pyro_step(make, data, path):
    runs = _histories(make, data, steps=12, batch_size=16)
    assert sorted(runs) == sorted([path, "pyro"])
    np.testing.assert_allclose(runs[path][0], runs["pyro"][0], rtol=1e-5)
    # the reported per-datum NLL is the loss over N (full-data scale)
    fit = runs[path][1]
    n = len(data["x"])
    np.testing.assert_allclose(fit.history["nll"], np.array(fit.history["loss"]) / n, rtol=1e-6)


def test_lean_engine_for_a_user_program_without_latents():
    x = RNG.normal(2.0, 1.5, 200).astype(np.float32)

    def model(x=None):
        loc = pyro.param("loc", torch.zeros(()))
        scale = pyro.param("scale", torch.ones(()), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, scale), obs=x)

    runs = _histories(lambda: model, {"x": x}, steps=15, batch_size=50)
    assert sorted(runs) == ["lean", "pyro"]
    np.testing.assert_allclose(runs["lean"][0], runs["pyro"][0], rtol=1e-5)
    # and the lean engine converges to the MLE (sample mean and sd)
    fit = ppgen.fit(model, {"x": x}, MLE(lr=0.05, steps=800))
    assert fit.diagnostics["engine"] == "lean"
    assert abs(float(fit.params["loc"]) - x.mean()) < 0.02
    assert abs(float(fit.params["scale"]) - x.std()) < 0.02


def test_map_with_latents_keeps_pyro_step():
    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    fit = ppgen.fit(model, {"x": X2[:, 0]}, MLE(steps=5))
    assert fit.diagnostics["engine"] == "pyro"
