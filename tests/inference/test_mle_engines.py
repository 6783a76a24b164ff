"""MLE's paths: a declared ``log_density`` (zoo flows / AR models, or a user's class) and the
handler path (other Pyro programs without latents) give Pyro's own objective's losses, step by
step; a declaration that disagrees with its program is refused before training."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen.errors import ProgramError
from ppgen.inference import MLE
from ppgen.models.autoregressive import MADE
from ppgen.models.flows import MAFModel

RNG = np.random.default_rng(0)
X2 = RNG.normal(size=(64, 2)).astype(np.float32) * [1.0, 0.3] + [0.5, -1.0]
BIN = (RNG.random((48, 5)) > 0.5).astype(np.float32)
CTX = RNG.normal(size=(64, 3)).astype(np.float32)


def _histories(make, data, **kw):
    """The same fit with ppgen's choice of path and with Pyro's own ELBO object forced."""
    out = {}
    for force_pyro in (False, True):
        torch.manual_seed(0)
        est = MLE(lr=1e-2, **kw)
        if force_pyro:
            est.elbo = pyro.infer.Trace_ELBO()
        fit = ppgen.fit(make(), data, est, seed=3)
        out[fit.diagnostics["path"]] = (fit.history["loss"], fit)
    return out


@pytest.mark.parametrize(
    "make, data, path",
    [
        (lambda: MAFModel(2, hidden_features=8, num_transforms=2), {"x": X2}, "declared"),
        (
            lambda: MAFModel(2, context_features=3, hidden_features=8, num_transforms=2),
            {"x": X2, "c": CTX},
            "declared",
        ),
        (lambda: MADE(5, hidden_features=16), {"x": BIN}, "declared"),
    ],
    ids=["maf", "conditional-maf", "made"],
)
def test_declared_density_path_equals_pyro_step(make, data, path):
    runs = _histories(make, data, steps=12, batch_size=16)
    assert sorted(runs) == sorted([path, "pyro"])
    np.testing.assert_allclose(runs[path][0], runs["pyro"][0], rtol=1e-5)
    # the reported per-datum NLL is the loss over N (full-data scale)
    fit = runs[path][1]
    n = len(data["x"])
    np.testing.assert_allclose(fit.history["nll"], np.array(fit.history["loss"]) / n, rtol=1e-6)


def test_handler_path_for_a_user_program_without_latents():
    x = RNG.normal(2.0, 1.5, 200).astype(np.float32)

    def model(x=None):
        loc = pyro.param("loc", torch.zeros(()))
        scale = pyro.param("scale", torch.ones(()), constraint=dist.constraints.positive)
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, scale), obs=x)

    runs = _histories(lambda: model, {"x": x}, steps=15, batch_size=50)
    assert sorted(runs) == ["pyro", "reparam"]
    np.testing.assert_allclose(runs["reparam"][0], runs["pyro"][0], rtol=1e-5)
    # and the handler path converges to the MLE (sample mean and sd)
    fit = ppgen.fit(model, {"x": x}, MLE(lr=0.05, steps=800))
    assert fit.diagnostics["path"] == "reparam"
    assert abs(float(fit.params["loc"]) - x.mean()) < 0.02
    assert abs(float(fit.params["scale"]) - x.std()) < 0.02


def test_map_with_latents_runs_the_handler_path():
    def model(x=None):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    fit = ppgen.fit(model, {"x": X2[:, 0]}, MLE(steps=300, lr=0.05))
    assert fit.diagnostics["path"] == "reparam"  # AutoDelta: a reparameterised point mass
    # MAP of mu under N(0, 10^2) with 64 unit-variance points: the shrunk sample mean
    x = X2[:, 0].astype(np.float64)
    assert abs(float(fit.params["AutoDelta.mu"]) - x.sum() / (len(x) + 1e-2)) < 0.01


class _UserGaussian:
    """A user's own class (not a zoo model) declaring ``log_density``; ``wrong`` breaks it."""

    def __init__(self, wrong: bool = False):
        self.wrong = wrong

    def model(self, x=None):
        loc = pyro.param("loc", torch.zeros(2))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def log_density(self, x=None):
        lp = dist.Normal(pyro.param("loc"), 1.0).to_event(1).log_prob(x)
        return lp + 1.0 if self.wrong else lp


def test_a_user_class_declaring_log_density_gets_the_declared_path():
    runs = _histories(_UserGaussian, {"x": X2}, steps=10, batch_size=16)
    assert sorted(runs) == ["declared", "pyro"]
    np.testing.assert_allclose(runs["declared"][0], runs["pyro"][0], rtol=1e-5)
    fit = ppgen.fit(_UserGaussian(), {"x": X2}, MLE(lr=0.05, steps=400))
    np.testing.assert_allclose(fit.params["loc"], X2.mean(0), atol=0.02)


def test_a_declaration_that_disagrees_with_its_program_is_refused():
    with pytest.raises(ProgramError, match=r"_UserGaussian.log_density` disagrees"):
        ppgen.fit(_UserGaussian(wrong=True), {"x": X2}, MLE(steps=3))
