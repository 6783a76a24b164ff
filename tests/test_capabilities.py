"""Capabilities a user's own model class declares: SVI uses them, checks them, or refuses them."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen.capabilities import ELBOTerms, declares
from ppgen.errors import ProgramError
from ppgen.inference import SVI

RNG = np.random.default_rng(1)
X = RNG.normal(1.0, 1.0, size=(40, 2)).astype(np.float32)


class LinearGaussianLatent(torch.nn.Module):
    """z ~ N(0, I), x | z ~ N(z + b, 1): the exact posterior is N((x - b) / 2, 1/2 I).

    A user's own class with its own amortised guide (a linear encoder) and ``elbo_terms``;
    ``shift`` adds a constant to the declared likelihood (a wrong declaration).
    """

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(2))
        self.enc = torch.nn.Linear(2, 4)
        self.shift = shift

    def model(self, x):
        pyro.module("user", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + self.b, 1.0).to_event(1), obs=x)

    def q(self, x):
        out = self.enc(x)
        return out[:, :2], torch.nn.functional.softplus(out[:, 2:]) + 1e-3

    def guide(self, x):
        pyro.module("user", self)
        loc, scale = self.q(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def elbo_terms(self, num_particles, x):
        loc, scale = self.q(x)
        eps = torch.randn((num_particles, *loc.shape))
        z = loc + scale * eps
        c = math.log(2 * math.pi)  # 0.5 log(2 pi) per dim, two dims
        log_px = -0.5 * ((x - z - self.b) ** 2).sum(-1) - c + self.shift
        log_pz = -0.5 * (z * z).sum(-1) - c
        log_q = (-0.5 * eps * eps - scale.log()).sum(-1) - c
        return ELBOTerms(log_px, log_pz, log_q)


def test_a_user_class_declaring_elbo_terms_takes_the_declared_path_to_the_truth():
    torch.manual_seed(0)
    m = LinearGaussianLatent()
    assert declares(m, "elbo_terms") and not declares(m, "log_density")
    est = SVI(steps=2000, lr=0.03, lr_decay=0.02, num_particles=4, num_draws=2)
    fit = ppgen.fit(m, {"x": X}, est)
    assert fit.diagnostics["path"] == "declared"
    # maximum likelihood of b: x ~ N(b, 2 I) marginally, so b -> the sample mean
    np.testing.assert_allclose(m.b.detach().numpy(), X.mean(0), atol=0.08)
    with torch.no_grad():
        loc, scale = m.q(torch.as_tensor(X))
    post_mean = (X - m.b.detach().numpy()) / 2
    assert np.abs(loc.numpy() - post_mean).max() < 0.1
    np.testing.assert_allclose(scale.numpy(), math.sqrt(0.5), atol=0.05)


def test_a_wrong_declaration_is_refused_before_training():
    with pytest.raises(ProgramError, match=r"LinearGaussianLatent.elbo_terms` disagrees"):
        ppgen.fit(LinearGaussianLatent(shift=3.0), {"x": X}, SVI(steps=2))


def test_declared_terms_do_not_apply_to_another_guide():
    fit = ppgen.fit(LinearGaussianLatent(), {"x": X}, SVI(guide="normal", steps=3, num_draws=2))
    assert fit.diagnostics["path"] == "reparam"
