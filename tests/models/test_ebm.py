"""The energy-based zoo: RBM conditionals, free energies and Gibbs kernel against brute-force
enumeration of exp(-E(v, h)); the Gaussian RBM likewise; the deep EBM's shapes, gradients and
program; clear errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from pyro.poutine.util import site_is_subsample
from scipy import stats

from ppgen.distributions import Unnormalized
from ppgen.errors import DataError, EnergySamplingError
from ppgen.models import EBM, RBM, GaussianRBM
from ppgen.models.ebm import base_rate_bias


def _states(n: int) -> torch.Tensor:
    """All 2^n binary vectors, float64, in a fixed order."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _random_rbm(cls=RBM, V: int = 4, H: int = 3, seed: int = 0, scale: float = 1.0, **kw):
    torch.manual_seed(seed)
    rbm = cls(V, H, **kw).double()
    with torch.no_grad():
        rbm.W.normal_(0.0, scale)
        rbm.vbias.normal_(0.0, scale)
        rbm.hbias.normal_(0.0, scale)
    return rbm


def _joint_energy(rbm: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) for every pair: (len(v), len(h))."""
    W, b, c = (t.detach() for t in rbm.rbm_parameters())
    return -(v @ b)[:, None] - (h @ c)[None, :] - v @ W.T @ h.T


def _gaussian_joint_energy(rbm: GaussianRBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    W, b, c = (t.detach() for t in rbm.rbm_parameters())
    s2 = rbm.sigma**2
    quad = ((v - b) ** 2).sum(-1) / (2 * s2)
    return quad[:, None] - (h @ c)[None, :] - (v @ W.T @ h.T) / s2


# ---------------------------------------------------------------- Bernoulli RBM


def test_rbm_conditionals_match_enumeration_of_the_joint():
    rbm = _random_rbm()
    v, h = _states(4), _states(3)
    joint = torch.softmax(-_joint_energy(rbm, v, h).reshape(-1), 0).reshape(16, 8)
    p_v = joint.sum(1, keepdim=True)
    p_h = joint.sum(0, keepdim=True)
    # p(h_j = 1 | v) = sum_{h: h_j = 1} p(v, h) / p(v)
    want_h = (joint / p_v) @ h
    want_v = ((joint / p_h).T) @ v
    with torch.no_grad():
        got_h = rbm.hidden_given_visible(v).probs
        got_v = rbm.visible_given_hidden(h).probs
    torch.testing.assert_close(got_h, want_h, atol=1e-12, rtol=0)
    torch.testing.assert_close(got_v, want_v, atol=1e-12, rtol=0)
    assert got_h.shape == (16, 3) and got_v.shape == (8, 4)


def test_rbm_free_energy_sums_out_the_hidden_units():
    rbm = _random_rbm()
    v, h = _states(4), _states(3)
    want = -torch.logsumexp(-_joint_energy(rbm, v, h), 1)
    torch.testing.assert_close(rbm.energy(v).detach(), want, atol=1e-12, rtol=0)
    # batch dims pass through
    assert rbm.energy(v.reshape(2, 8, 4)).shape == (2, 8)


def test_rbm_block_gibbs_step_follows_the_exact_kernel():
    """Empirical transition counts from each of the 2^V states against
    T(v'|v) = sum_h p(h|v) p(v'|h), by a chi-square test (p > 1e-4 over 16 x 15 dof)."""
    rbm = _random_rbm(V=4, H=3, seed=1).float()
    v64, h64 = _states(4), _states(3)
    with torch.no_grad():
        ph = torch.exp(rbm.double().hidden_given_visible(v64).log_prob(h64[:, None, :]).sum(-1))
        pv = torch.exp(rbm.visible_given_hidden(h64).log_prob(v64[:, None, :]).sum(-1))
    kernel = (ph.T @ pv.T).numpy()  # (v, v')
    np.testing.assert_allclose(kernel.sum(1), 1.0, atol=1e-12)
    rbm = rbm.float()
    n = 4000
    torch.manual_seed(3)
    start = v64.float().repeat_interleave(n, 0)
    nxt = rbm.block_gibbs_step(start)
    assert nxt.shape == start.shape and nxt.dtype == start.dtype
    code = (nxt.double() @ (2.0 ** torch.arange(3, -1, -1)).double()).long().numpy()
    counts = np.stack([np.bincount(code[i * n : (i + 1) * n], minlength=16) for i in range(16)])
    expected = n * kernel
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = 16 * 15
    assert stats.chi2.sf(chi2, dof) > 1e-4, chi2
    # and the test has power: a kernel that ignores the weights is rejected
    wrong = np.tile(counts.sum(0) / counts.sum(), (16, 1)) * n
    assert stats.chi2.sf(float(((counts - wrong) ** 2 / wrong).sum()), dof) < 1e-10


def test_rbm_long_chain_reaches_the_exact_marginal():
    rbm = _random_rbm(V=4, H=3, seed=2, scale=0.8)
    v = _states(4)
    exact = torch.softmax(-rbm.energy(v).detach(), 0).numpy()
    torch.manual_seed(0)
    x = torch.zeros(500, 4, dtype=torch.float64)
    counts = np.zeros(16)
    weights = 2.0 ** torch.arange(3, -1, -1, dtype=torch.float64)
    for t in range(240):
        x = rbm.block_gibbs_step(x)
        if t >= 40:
            counts += np.bincount((x @ weights).long().numpy(), minlength=16)
    tv = 0.5 * np.abs(counts / counts.sum() - exact).sum()
    assert tv < 0.02, tv


def test_rbm_program_site_log_prob_is_minus_the_free_energy():
    rbm = _random_rbm(V=5, H=2).float()
    x = torch.bernoulli(torch.full((7, 5), 0.5))
    pyro.clear_param_store()
    trace = pyro.poutine.trace(rbm.model).get_trace(x)
    site = trace.nodes["x"]
    assert isinstance(site["fn"], Unnormalized) and site["is_observed"]
    latent = [
        name
        for name, s in trace.nodes.items()
        if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
    ]
    assert latent == []
    torch.testing.assert_close(site["fn"].log_prob(x), -rbm.energy(x))
    trace.compute_log_prob()
    torch.testing.assert_close(site["log_prob"], -rbm.energy(x))
    assert "rbm$$$W" in pyro.get_param_store()


def test_rbm_program_cannot_be_forward_sampled():
    pyro.clear_param_store()
    with pytest.raises(EnergySamplingError):
        RBM(4, 2).model(num_samples=3)


def test_rbm_init_and_visible_bias():
    rbm = RBM(3, 2, init_std=0.5)
    assert rbm.W.shape == (2, 3) and torch.all(rbm.vbias == 0) and torch.all(rbm.hbias == 0)
    assert 0.3 < float(RBM(100, 50, init_std=0.5).W.detach().std()) < 0.7
    rbm.init_visible_bias(np.array([0.25, 0.5, 0.0]))
    p = torch.sigmoid(rbm.vbias.detach())
    torch.testing.assert_close(p, torch.tensor([0.25, 0.5, 1e-3]), atol=1e-6, rtol=0)
    torch.testing.assert_close(base_rate_bias(torch.tensor([0.9])), torch.tensor([math.log(9)]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_visible": 0}, "num_visible"),
        ({"num_hidden": 2.5}, "num_hidden"),
        ({"init_std": -1.0}, "init_std"),
    ],
)
def test_rbm_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RBM(**kwargs)


def test_rbm_bad_shapes():
    rbm = RBM(4, 2)
    with pytest.raises(DataError, match="last dimension 4"):
        rbm.energy(torch.zeros(3, 5))
    with pytest.raises(DataError, match="last dimension 2"):
        rbm.visible_given_hidden(torch.zeros(3, 4))
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        rbm.model(torch.zeros(2, 3, 4))
    with pytest.raises(DataError, match="data_mean"):
        rbm.init_visible_bias(np.zeros(3))
    with pytest.raises(ValueError, match="sigma"):
        GaussianRBM(2, sigma=0.0)


# ---------------------------------------------------------------- Gaussian RBM


def test_gaussian_rbm_conditionals_and_free_energy_match_the_joint():
    rbm = _random_rbm(GaussianRBM, V=2, H=3, seed=4, sigma=0.7)
    h = _states(3)
    v = torch.randn(6, 2, dtype=torch.float64)
    e = _gaussian_joint_energy(rbm, v, h)
    torch.testing.assert_close(rbm.energy(v).detach(), -torch.logsumexp(-e, 1))
    p_h_given_v = torch.softmax(-e, 1)  # (6 v, 8 h)
    torch.testing.assert_close(rbm.hidden_given_visible(v).probs.detach(), p_h_given_v @ h)
    # p(v | h) is proportional to exp(-E(v, h)) in v: the difference is constant in v
    d = rbm.visible_given_hidden(h).log_prob(v[:, None, :]).sum(-1).detach() + e
    torch.testing.assert_close(d - d[0], torch.zeros_like(d))
    assert rbm.visible_given_hidden(h).stddev.unique().tolist() == [0.7]
    torch.manual_seed(0)
    x = rbm.block_gibbs_step(v.float())
    assert x.shape == (6, 2) and x.dtype == torch.float32


def test_gaussian_rbm_gibbs_chain_matches_the_exact_mean():
    """The stationary mean of v is E[b + W^T h] under the exact p(h) (enumerated)."""
    rbm = _random_rbm(GaussianRBM, V=2, H=3, seed=5, sigma=1.0)
    W, b, c = (t.detach() for t in rbm.rbm_parameters())
    h = _states(3)
    m = b + h @ W
    log_ph = h @ c + ((m * m).sum(-1) - b @ b) / 2
    want = torch.softmax(log_ph, 0) @ m
    torch.manual_seed(1)
    x = torch.zeros(2000, 2, dtype=torch.float64)
    acc = torch.zeros(2, dtype=torch.float64)
    for t in range(120):
        x = rbm.block_gibbs_step(x)
        if t >= 20:
            acc += x.mean(0)
    torch.testing.assert_close(acc / 100, want, atol=0.05, rtol=0)


# ---------------------------------------------------------------- deep EBM


def test_ebm_mlp_shapes_gradients_and_program():
    ebm = EBM(3, hidden_features=(8, 8))
    x = torch.randn(4, 5, 3)
    assert ebm.energy(x).shape == (4, 5)
    ebm.energy(x).sum().backward()
    for name, p in ebm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    pyro.clear_param_store()
    xs = torch.randn(6, 3)
    trace = pyro.poutine.trace(ebm.model).get_trace(xs)
    trace.compute_log_prob()
    torch.testing.assert_close(trace.nodes["x"]["log_prob"], -ebm.energy(xs))


def test_ebm_conv_shapes_gradients_and_program():
    ebm = EBM((1, 8, 8), conv=True, channels=4)
    x = torch.randn(2, 3, 1, 8, 8)
    assert ebm.energy(x).shape == (2, 3)
    ebm.energy(x).sum().backward()
    for name, p in ebm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    pyro.clear_param_store()
    xs = torch.randn(5, 1, 8, 8)
    trace = pyro.poutine.trace(ebm.model).get_trace(xs)
    trace.compute_log_prob()
    torch.testing.assert_close(trace.nodes["x"]["log_prob"], -ebm.energy(xs))
    assert trace.nodes["x"]["fn"].event_shape == (1, 8, 8)


def test_ebm_bad_arguments():
    with pytest.raises(ValueError, match="event_shape"):
        EBM((2, 0))
    with pytest.raises(ValueError, match=r"conv=True.*\(C, H, W\)"):
        EBM((4,), conv=True)
    with pytest.raises(ValueError, match="hidden_features"):
        EBM(2, hidden_features=(8, 0))
    with pytest.raises(ValueError, match="channels"):
        EBM((1, 8, 8), conv=True, channels=-1)
    with pytest.raises(DataError, match="event shape"):
        EBM(3).energy(torch.zeros(4, 2))
    with pytest.raises(DataError, match="event_shape"):
        EBM(3).model(torch.zeros(4, 2))
