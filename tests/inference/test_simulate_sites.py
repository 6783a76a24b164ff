"""A model's declared ``simulate_sites``: the Adversarial fit it speeds up is the program's fit."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen.distributions import Implicit
from ppgen.errors import ProgramError
from ppgen.inference import ALI, Adversarial
from ppgen.models import GAN


class UserGAN:
    """A user's own class: a Pyro program and a torch-only simulation of it."""

    def __init__(self, mode: str = "right") -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )
        self.mode, self.calls = mode, 0

    def model(self, x=None):
        net = pyro.module("G", self.net)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", Implicit(net(z), 1), obs=x)

    def simulate_sites(self, sites, x=None):
        self.calls += 1
        if self.mode == "decline":
            return None
        z = torch.randn(len(x), 2)
        if self.mode == "other noise":
            z = torch.randn(len(x), 2)
        out = self.net(z)
        if self.mode == "detached":  # same values, but no gradient reaches the weights
            out = out.detach()
        return {"x": out}


def _fit(model, steps=30, **kw):
    x = np.random.default_rng(0).normal(size=(256, 2)).astype(np.float32)
    est = Adversarial(loss="ns", lr=1e-3, batch_size=64, steps=steps, **kw)
    return ppgen.fit(model, {"x": x}, est, seed=1)


def _same_params(a, b):
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        np.testing.assert_allclose(np.asarray(a.params[k]), np.asarray(b.params[k]), atol=1e-6)


@pytest.mark.parametrize("n_critic", [1, 2])
def test_a_declared_simulation_gives_the_programs_fit_through_the_fast_path(n_critic):
    fast = UserGAN()
    with_declared = _fit(fast, n_critic=n_critic)
    # the fast path was taken: one draw per critic update, plus the check before training
    assert fast.calls == 30 * n_critic + 1
    plain = UserGAN()
    plain.simulate_sites = None  # switched off: ppgen runs the program
    _same_params(with_declared, _fit(plain, n_critic=n_critic))
    # the weights moved (the comparison is not between two untrained networks)
    assert not np.allclose(with_declared.params["G$$$0.weight"], UserGAN().net[0].weight.detach())


def test_a_declining_simulation_runs_the_program():
    declining = UserGAN("decline")
    plain = UserGAN()
    plain.simulate_sites = None
    _same_params(_fit(declining), _fit(plain))
    assert declining.calls == 1


@pytest.mark.parametrize(
    ("mode", "says"), [("other noise", "site 'x' differs"), ("detached", "the gradient of 'x'")]
)
def test_a_declaration_that_disagrees_with_the_program_is_refused_before_training(mode, says):
    user = UserGAN(mode)
    with pytest.raises(ProgramError, match="UserGAN.simulate_sites` disagrees") as err:
        _fit(user)
    assert says in str(err.value)
    assert user.calls == 1  # refused at the check, before any step


def test_the_zoo_gan_declares_it_and_fits_as_its_program():
    class Plain(GAN):
        simulate_sites = None

    x = np.random.default_rng(0).normal(size=(128, 2)).astype(np.float32)
    fits = []
    for cls in (GAN, Plain):
        torch.manual_seed(0)
        est = Adversarial(loss="wgan-gp", n_critic=2, batch_size=32, steps=15)
        fits.append(ppgen.fit(cls(2, z_dim=3, hidden_features=(16,)), {"x": x}, est, seed=2))
    _same_params(*fits)


def test_ali_draws_the_pairs_through_a_declaration_of_x_and_z():
    def encoder(x=None):
        net = pyro.module("E", enc)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(net(x), event_dim=1))

    class Plain(GAN):
        simulate_sites = None

    class Counted(GAN):
        calls = 0

        def simulate_sites(self, sites, **data):
            Counted.calls += 1
            return super().simulate_sites(sites, **data)

    x = np.random.default_rng(0).normal(size=(128, 2)).astype(np.float32)
    fits = []
    for cls in (Counted, Plain):
        torch.manual_seed(0)
        enc = torch.nn.Linear(2, 3)
        est = ALI(guide=encoder, batch_size=32, steps=12)
        fits.append(ppgen.fit(cls(2, z_dim=3, hidden_features=(16,)), {"x": x}, est, seed=2))
    assert Counted.calls == 12 + 1  # every step's pairs, plus the check
    _same_params(*fits)
