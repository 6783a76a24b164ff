"""Amortised AVB: an implicit encoder z = g(x, eps) per datum against each datum's analytic
posterior; minibatches, exact resume, save/load, and the guides and programs it refuses."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import ppgen
from ppgen.errors import EstimatorError, ProgramError
from ppgen.inference import AVB, SVI, Amortized, ImplicitAmortized

# x_n ~ N(W z_n, s^2 I), z_n ~ N(0, I): q(z_n | x_n) = N(S W' x_n / s^2, S), S = (I + W'W/s^2)^-1
W = torch.tensor([[1.0, 0.8], [0.5, 1.0], [0.0, 0.6]])
SIGMA = 0.5


def factor(x=None):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, SIGMA).to_event(1), obs=x)


def factor_data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    return (z @ W.numpy().T + SIGMA * rng.normal(size=(n, 3))).astype(np.float32)


def exact(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = W.numpy()
    cov = np.linalg.inv(np.eye(2) + w.T @ w / SIGMA**2)
    return x @ w @ cov.T / SIGMA**2, cov


def codes(fit: ppgen.Fit, n: int) -> np.ndarray:
    z = fit.local_draws.get("z") if fit.local_draws else fit.draws["z"]
    return np.asarray(z).reshape(-1, n, 2)


def test_amortised_avb_matches_every_datums_correlated_posterior():
    x = factor_data(256)
    mean, cov = exact(x)
    sd = np.sqrt(np.diag(cov))  # 0.58 and 0.47
    corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])  # -0.71
    guide = ImplicitAmortized(hidden_features=(64, 64))
    est = AVB(guide, steps=300, lr=3e-3, batch_size=64, num_draws=400)
    fit = ppgen.fit(factor, {"x": x}, est, seed=0)
    z = codes(fit, 256)
    # measured: RMS error of the means 0.04, sds within 3 %, correlation -0.72
    assert np.sqrt(((z.mean(0) - mean) ** 2).mean()) < 0.1
    np.testing.assert_allclose(z.std(0).mean(0), sd, rtol=0.1)
    r = np.array([np.corrcoef(z[:, i].T)[0, 1] for i in range(256)])
    assert abs(r.mean() - corr) < 0.08
    assert fit.diagnostics["guide"] == "implicit amortized"
    # the per-datum draws are the fit's posterior: ArviZ has them with the data plate's axis
    idata = fit.to_arviz()
    group = idata.posterior_local if "posterior_local" in idata.groups() else idata.posterior
    assert group["z"].shape[-2:] == (256, 2)
    # an amortised *density* guide with a diagonal Normal cannot represent the correlation
    svi = ppgen.fit(
        factor,
        {"x": x},
        SVI(guide=Amortized(hidden_features=(32,)), steps=200, lr=0.01, num_draws=50),
        seed=0,
    )
    zs = codes(svi, 256)
    assert abs(np.mean([np.corrcoef(zs[:, i].T)[0, 1] for i in range(256)])) < 0.15


def factor_numpyro(x=None):
    w = W.numpy()
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", nd.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("x", nd.Normal(z @ w.T, SIGMA).to_event(1), obs=x)


def test_amortised_avb_on_numpyro_matches_every_datums_correlated_posterior():
    x = factor_data(256)
    mean, cov = exact(x)
    corr = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    est = AVB(
        ImplicitAmortized(hidden_features=(64, 64)),
        steps=600,
        lr=3e-3,
        batch_size=64,
        num_draws=400,
    )
    fit = ppgen.fit(factor_numpyro, {"x": x}, est, seed=0, backend="numpyro")
    z = codes(fit, 256)
    # measured: RMS error of the means 0.034, sds within 5 %, correlation -0.74 (one jitted step)
    assert np.sqrt(((z.mean(0) - mean) ** 2).mean()) < 0.1
    np.testing.assert_allclose(z.std(0).mean(0), np.sqrt(np.diag(cov)), rtol=0.1)
    assert abs(np.mean([np.corrcoef(z[:, i].T)[0, 1] for i in range(256)]) - corr) < 0.08


def test_numpyro_amortised_resume_is_exact_and_a_loaded_run_draws_the_same_codes(tmp_path):
    data, kw = {"x": factor_data(40, seed=1)}, {"seed": 3, "backend": "numpyro"}
    full = ppgen.fit(factor_numpyro, data, small(12), **kw)
    ppgen.fit(factor_numpyro, data, small(5), checkpoint_dir=str(tmp_path / "ck"), **kw)
    resumed = ppgen.fit(
        factor_numpyro, data, small(12), checkpoint_dir=str(tmp_path / "ck"), resume=True, **kw
    )
    assert resumed.history == full.history
    np.testing.assert_array_equal(codes(resumed, 40), codes(full, 40))
    full.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", factor_numpyro)
    np.testing.assert_array_equal(
        again.sample_posterior(3, seed=2)["z"], full.sample_posterior(3, seed=2)["z"]
    )


def small(steps: int, guide: ImplicitAmortized | None = None) -> AVB:
    # (a constant rate: a decay's schedule depends on the run's length, which differs here)
    return AVB(
        guide or ImplicitAmortized(hidden_features=(8,), noise_dim=4),
        steps=steps,
        particles=4,
        n_critic=2,
        critic_hidden=(8,),
        lr_decay=None,
        batch_size=16,
        num_draws=5,
    )


def test_minibatched_resume_is_exact_and_a_loaded_run_draws_the_same_codes(tmp_path):
    data = {"x": factor_data(40, seed=1)}
    full = ppgen.fit(factor, data, small(12), seed=3)
    ppgen.fit(factor, data, small(5), seed=3, checkpoint_dir=str(tmp_path / "ck"))
    resumed = ppgen.fit(
        factor, data, small(12), seed=3, checkpoint_dir=str(tmp_path / "ck"), resume=True
    )
    assert resumed.history == full.history
    for k in full.auxiliary["guide"]:
        np.testing.assert_array_equal(resumed.auxiliary["guide"][k], full.auxiliary["guide"][k])
    np.testing.assert_array_equal(codes(resumed, 40), codes(full, 40))
    # a loaded run rebuilds the default encoder from its saved weights: the same new draws
    full.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", factor)
    np.testing.assert_array_equal(codes(again, 40), codes(full, 40))
    np.testing.assert_array_equal(
        again.sample_posterior(3, seed=2)["z"], full.sample_posterior(3, seed=2)["z"]
    )
    assert again.sample_posterior(3, seed=2)["z"].shape == (3, 40, 2)


class ZeroInit(nn.Module):
    """A user's encoder: ``encoder(x, eps)`` -> (B, 2)."""

    def __init__(self, noise: int = 2, out: int = 2) -> None:
        super().__init__()
        self.net = nn.Linear(3 + noise, out)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, eps], -1))


def test_a_users_encoder_trains_and_its_loaded_run_keeps_the_saved_draws(tmp_path):
    data = {"x": factor_data(40, seed=1)}
    guide = ImplicitAmortized(encoder=ZeroInit(), noise_dim=2)
    before = guide.encoder.net.weight.detach().clone()
    fit = ppgen.fit(factor, data, small(20, guide), seed=0)
    assert not torch.equal(guide.encoder.net.weight, before)  # the user's network was fitted
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", factor)  # the encoder is code: not rebuilt
    assert again.posterior_sampler is None
    np.testing.assert_array_equal(codes(again, 40), codes(fit, 40))


def test_guides_and_programs_amortised_avb_cannot_fit_are_refused():
    data = {"x": factor_data(8)}
    # a guide with a density is SVI's job
    with pytest.raises(EstimatorError, match="SVI"):
        ppgen.fit(factor, data, AVB(Amortized(), steps=1))
    with pytest.raises(EstimatorError, match="SVI"):
        ppgen.fit(factor, data, AVB(steps=1), guide=Amortized())
    # minibatching needs the amortised form (global latents see all the data every step)
    with pytest.raises(EstimatorError, match="ImplicitAmortized"):
        ppgen.fit(factor, data, AVB(steps=1, batch_size=4))

    # a global latent beside the local ones
    def with_global(x=None):
        s = pyro.sample("s", dist.HalfNormal(1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, s).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T, SIGMA).to_event(1), obs=x)

    with pytest.raises(ProgramError, match=r"\['s'\] are global"):
        ppgen.fit(with_global, data, AVB(ImplicitAmortized(), steps=1))
    # an encoder whose output does not match the latents' size
    bad = ImplicitAmortized(encoder=ZeroInit(4, 3), noise_dim=4)
    with pytest.raises(ProgramError, match=r"must return \(8, 2\).*`z` \(2,\).*got \(8, 3\)"):
        ppgen.fit(factor, data, AVB(bad, steps=1))
    # ... or that cannot take the data and the noise
    bad = ImplicitAmortized(encoder=nn.Linear(7, 2), noise_dim=4)
    with pytest.raises(ProgramError, match=r"called `encoder\(\*inputs, eps\)`"):
        ppgen.fit(factor, data, AVB(bad, steps=1))

    # on NumPyro the encoder is ppgen's MLP: a torch module is refused
    with pytest.raises(EstimatorError, match="torch module"):
        ppgen.fit(factor_numpyro, data, AVB(ImplicitAmortized(encoder=ZeroInit()), steps=1))


def test_the_implicit_encoder_serves_as_alis_stochastic_encoder():
    from ppgen.distributions import Implicit
    from ppgen.inference import ALI

    def gen(x=None):
        a = pyro.param("a", torch.tensor(1.0))
        b = pyro.param("b", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", Implicit(a * z + b), obs=x)

    x = np.random.default_rng(0).normal(3.0, 0.5, 256).astype(np.float32)
    guide = ImplicitAmortized(hidden_features=(8,), noise_dim=2)
    est = ALI(guide=guide, steps=200, lr=0.02, hidden=(16,), batch_size=128, local_draws=4)
    fit = ppgen.fit(gen, {"x": x}, est, seed=0)
    assert any(k.startswith("implicit$$$") for k in fit.params)  # the encoder was trained
    assert abs(float(fit.params["b"]) - 3.0) < 0.5  # G's location reaches the data's
    draws = fit.local_draws["z"]  # (1, 4, 256): noise goes in, so a datum's draws differ
    assert draws.shape == (1, 4, 256) and float(np.abs(draws[0, 0] - draws[0, 1]).max()) > 0
