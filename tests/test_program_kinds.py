"""Program kinds (explicit, implicit, energy): detection on both backends and refusal by fit."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen import Program
from ppgen.distributions import Implicit, Unnormalized
from ppgen.errors import EstimatorError, ProgramError
from ppgen.inference import Estimator

X = np.linspace(-1.0, 1.0, 6)
CALLS: list[str] = []


def pyro_gan(x=None):
    CALLS.append("gan")
    with pyro.plate("data", 6):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", Implicit(2.0 * z + 1.0), obs=x)


def numpyro_gan(x=None):
    CALLS.append("gan")
    with numpyro.plate("data", 6):
        z = numpyro.sample("z", nd.Normal(0.0, 1.0))
        numpyro.sample("x", Implicit(2.0 * z + 1.0), obs=x)


def pyro_ebm(x=None):
    w = pyro.sample("w", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", 6):
        pyro.sample("x", Unnormalized(lambda v: 0.5 * w * v**2), obs=x)


def numpyro_ebm(x=None):
    w = numpyro.sample("w", nd.LogNormal(0.0, 1.0))
    with numpyro.plate("data", 6):
        numpyro.sample("x", Unnormalized(lambda v: 0.5 * w * v**2), obs=x)


def pyro_normal(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 6):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def numpyro_normal(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 1.0))
    with numpyro.plate("data", 6):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


MODELS = {
    "pyro": {"implicit": pyro_gan, "energy": pyro_ebm, "explicit": pyro_normal},
    "numpyro": {"implicit": numpyro_gan, "energy": numpyro_ebm, "explicit": numpyro_normal},
}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("kind", ["explicit", "implicit", "energy"])
def test_program_kind_is_detected(backend, kind):
    prog = Program(MODELS[backend][kind])
    assert prog.backend == backend
    _, info = prog.validate({"x": X})
    assert info.kind == kind
    assert info.sites["x"].density == kind
    for other in ("explicit", "implicit", "energy"):
        assert info.sites_of_kind(other) == (["x"] if other == kind else [])
    assert all(info.sites[n].density == "explicit" for n in info.latent)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("method", ["nuts", "svi", "mle"])
def test_fit_refuses_an_implicit_program_before_any_work(backend, method):
    CALLS.clear()
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(MODELS[backend]["implicit"], {"x": X}, method, progress=False)
    assert CALLS == ["gan"]  # the one validation trace: no estimator ran the program
    msg = str(info.value)
    for w in ("`x`", "Implicit", "implicit", f"method={method!r}", "adversarial"):
        assert w in msg, msg


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_fit_refuses_an_energy_program_naming_contrastive_estimators(backend):
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(MODELS[backend]["energy"], {"x": X}, "svi", progress=False)
    msg = str(info.value)
    for w in ("`x`", "Unnormalized", "energy", "log Z", "contrastive"):
        assert w in msg, msg


def test_the_refusal_lists_registered_estimators_of_that_kind(monkeypatch):
    class Critic(Estimator):
        name = "critic"
        kinds = ("implicit",)

        def run(self, ctx):
            return "ran"

    monkeypatch.setitem(ppgen.inference.REGISTRY, "critic", Critic)
    with pytest.raises(EstimatorError) as info:
        ppgen.fit(pyro_gan, {"x": X}, "nuts", progress=False)
    assert "one of ['adversarial', 'ali', 'bigan', 'critic', 'gan', 'vae_gan', 'vaegan']" in str(
        info.value
    )
    assert ppgen.fit(pyro_gan, {"x": X}, Critic()) == "ran"  # the declared kind is accepted
    with pytest.raises(EstimatorError) as info:  # and an explicit program is refused by it
        ppgen.fit(pyro_normal, {"x": X}, Critic())
    assert "explicit" in str(info.value) and "'nuts'" in str(info.value)


def test_mixing_implicit_and_energy_observed_sites_is_a_program_error():
    def mixed(x=None, y=None):
        with pyro.plate("data", 6):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", Implicit(z), obs=x)
            pyro.sample("y", Unnormalized(lambda v: v**2), obs=y)

    with pytest.raises(ProgramError) as info:
        Program(mixed).validate({"x": X, "y": X})
    msg = str(info.value)
    assert "['x']" in msg and "['y']" in msg and "Implicit" in msg and "Unnormalized" in msg


def test_implicit_sites_keep_their_shape_checks():
    def gan(x=None):
        with pyro.plate("data", 5):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", Implicit(z * torch.ones(2), event_dim=1), obs=x)

    _, info = Program(gan).validate({"x": np.zeros((5, 2))})
    assert info.kind == "implicit" and info.sites["x"].event_shape == (2,)
    with pytest.raises(ppgen.errors.DataError, match="plate `data` of size 5"):
        Program(gan).validate({"x": np.zeros((4, 2))})
