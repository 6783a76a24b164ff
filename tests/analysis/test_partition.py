"""RBM partition functions against truth: exact enumeration of the smaller layer against brute
force over every (v, h); AIS against exact log Z for a trained 64x16 RBM on binarised digits;
the Gaussian RBM's closed form against numerical integration; log_partition on a fit."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ppgen.analysis.partition import (
    AISResult,
    LogPartition,
    ais_betas,
    energy_ais,
    gaussian_rbm_log_partition_exact,
    log_partition,
    rbm_ais,
    rbm_log_likelihood,
    rbm_log_partition_exact,
    rbm_reverse_ais,
)
from ppgen.errors import DataError
from ppgen.inference.samplers import HMC
from ppgen.models import EBM, RBM, GaussianRBM
from ppgen.models.ebm import base_rate_bias


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _random_params(V: int, H: int, seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(H, V, generator=g, dtype=torch.float64) * scale
    b = torch.randn(V, generator=g, dtype=torch.float64) * scale
    c = torch.randn(H, generator=g, dtype=torch.float64) * scale
    return W, b, c


def _brute_force_log_z(W, b, c) -> float:
    """log sum over every (v, h) of exp(b.v + c.h + h^T W v)."""
    H, V = W.shape
    v, h = _states(V), _states(H)
    neg_e = (v @ b)[:, None] + (h @ c)[None, :] + v @ W.T @ h.T
    return float(torch.logsumexp(neg_e.reshape(-1), 0))


@pytest.mark.parametrize(("V", "H"), [(5, 3), (3, 6), (4, 4), (1, 7)])
def test_exact_log_z_equals_brute_force_over_all_pairs(V, H):
    W, b, c = _random_params(V, H, seed=V * 10 + H, scale=1.5)
    assert abs(rbm_log_partition_exact(W, b, c) - _brute_force_log_z(W, b, c)) < 1e-10


def test_exact_log_z_over_several_chunks():
    """17 hidden units span two chunks of 2^16 configurations: the enumeration over them
    equals the enumeration over the visible side (V = 18 > H, swapped roles: H = 18 > V)."""
    W, b, c = _random_params(18, 17, seed=0, scale=0.3)
    over_h = rbm_log_partition_exact(W, b, c)
    over_v = rbm_log_partition_exact(W.T, c, b)  # the same RBM with the layers swapped
    assert abs(over_h - over_v) < 1e-9


def test_exact_refuses_too_many_units_and_bad_shapes():
    W = torch.zeros(26, 30)
    with pytest.raises(ValueError, match=r"2\^26 hidden.*method='ais'"):
        rbm_log_partition_exact(W, torch.zeros(30), torch.zeros(26))
    with pytest.raises(DataError, match=r"`vbias` must have shape \(30,\)"):
        rbm_log_partition_exact(W, torch.zeros(29), torch.zeros(26))
    with pytest.raises(DataError, match="`hbias`"):
        rbm_log_partition_exact(W, torch.zeros(30), torch.zeros(2))
    with pytest.raises(DataError, match="matrix"):
        rbm_log_partition_exact(torch.zeros(3), torch.zeros(3), torch.zeros(1))
    with pytest.raises(DataError, match="NaN"):
        rbm_log_partition_exact(torch.full((2, 2), math.nan), torch.zeros(2), torch.zeros(2))


def test_log_likelihoods_of_all_states_sum_to_one():
    rbm = RBM(6, 4).double()
    with torch.no_grad():
        for p, t in zip(rbm.rbm_parameters(), _random_params(6, 4, seed=3), strict=True):
            p.copy_(t)
    ll = rbm_log_likelihood(rbm, _states(6), log_partition(rbm))
    assert ll.shape == (64,) and abs(np.exp(ll).sum() - 1.0) < 1e-12
    same = rbm_log_likelihood(tuple(rbm.rbm_parameters()), _states(6), log_partition(rbm).value)
    np.testing.assert_allclose(same, ll, atol=1e-12)


def _digits() -> torch.Tensor:
    return torch.tensor((load_digits().data > 7).astype(np.float64))


def _train_rbm(x: torch.Tensor, H: int = 16, steps: int = 2000, lr: float = 0.1):
    """Plain-torch PCD on binarised digits: only to get realistic, non-trivial weights."""
    g = torch.Generator().manual_seed(0)
    V = x.shape[1]
    W = torch.randn(H, V, generator=g, dtype=torch.float64) * 0.01
    b, c = base_rate_bias(x.mean(0)).double(), torch.zeros(H, dtype=torch.float64)
    vp = torch.bernoulli(torch.full((100, V), 0.5, dtype=torch.float64), generator=g)
    for _ in range(steps):
        v0 = x[torch.randint(0, len(x), (100,), generator=g)]
        ph0 = torch.sigmoid(c + v0 @ W.T)
        hp = torch.bernoulli(torch.sigmoid(c + vp @ W.T), generator=g)
        vp = torch.bernoulli(torch.sigmoid(b + hp @ W), generator=g)
        php = torch.sigmoid(c + vp @ W.T)
        W += lr * (ph0.T @ v0 - php.T @ vp) / 100
        b += lr * (v0.mean(0) - vp.mean(0))
        c += lr * (ph0.mean(0) - php.mean(0))
    return W, b, c


@pytest.fixture(scope="module")
def trained():
    x = _digits()
    W, b, c = _train_rbm(x)
    return x, W, b, c


def test_trained_rbm_is_not_trivial(trained):
    """The weights matter: the RBM beats the base-rate model on the data by nats per image."""
    x, W, b, c = trained
    assert float(W.abs().max()) > 1.5
    ll = rbm_log_likelihood((W, b, c), x, rbm_log_partition_exact(W, b, c)).mean()
    bA = base_rate_bias(x.mean(0)).double()
    base = rbm_log_likelihood(
        (torch.zeros_like(W), bA, torch.zeros_like(c)),
        x,
        rbm_log_partition_exact(torch.zeros_like(W), bA, torch.zeros_like(c)),
    )
    assert ll > base.mean() + 3.0


def test_ais_matches_exact_log_z_of_a_trained_rbm(trained):
    x, W, b, c = trained
    exact = rbm_log_partition_exact(W, b, c)
    r = rbm_ais(W, b, c, num_chains=100, num_betas=3000, base_vbias=base_rate_bias(x.mean(0)))
    assert isinstance(r, AISResult) and r.num_chains == 100 and r.num_betas == 3000
    assert r.log_weights.shape == (100,)
    assert abs(r.log_z - exact) < 0.1, (r.log_z, exact)
    assert 0 < r.stderr < 0.1
    # from the uniform base (zero biases) with few temperatures it is far off, below: the
    # tolerance above is one AIS can fail
    crude = rbm_ais(W, b, c, num_chains=20, num_betas=10, seed=1)
    assert crude.log_z < exact - 0.5


def test_ais_is_exact_when_base_and_target_coincide():
    W, b, c = torch.zeros(3, 5), torch.randn(5), torch.randn(3)
    r = rbm_ais(W, b, c, num_betas=[0.0, 0.3, 1.0], base_vbias=b, num_chains=5)
    assert r.stderr == 0.0 and abs(r.log_z - rbm_log_partition_exact(W, b, c)) < 1e-12


def test_ais_on_a_small_rbm_is_close_and_seeded():
    W, b, c = _random_params(8, 5, seed=7, scale=1.0)
    exact = rbm_log_partition_exact(W, b, c)
    r1 = rbm_ais(W, b, c, num_chains=200, num_betas=500, seed=3)
    r2 = rbm_ais(W, b, c, num_chains=200, num_betas=500, seed=3)
    assert r1.log_z == r2.log_z
    assert abs(r1.log_z - exact) < max(0.05, 4 * r1.stderr)


def test_ais_bad_arguments():
    W, b, c = _random_params(4, 2, seed=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        rbm_ais(W, b, c, num_betas=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ValueError, match="from 0.0 to 1.0"):
        rbm_ais(W, b, c, num_betas=[0.1, 1.0])
    with pytest.raises(ValueError, match="num_betas"):
        rbm_ais(W, b, c, num_betas=3)
    with pytest.raises(ValueError, match="num_chains"):
        rbm_ais(W, b, c, num_chains=1)
    with pytest.raises(DataError, match=r"base_vbias.*\(4,\)"):
        rbm_ais(W, b, c, base_vbias=torch.zeros(3))


def _exact_visible(W, b, c, n: int, seed: int) -> torch.Tensor:
    """``n`` exact draws of v from an RBM: h from its marginal (all 2^H states), then v | h."""
    g = torch.Generator().manual_seed(seed)
    h = _states(W.shape[0])
    log_ph = h @ c + torch.nn.functional.softplus(h @ W + b).sum(-1)
    draws = h[torch.multinomial(torch.softmax(log_ph, 0), n, replacement=True, generator=g)]
    return torch.bernoulli(torch.sigmoid(b + draws @ W), generator=g)


def test_reverse_ais_from_exact_samples_matches_exact_log_z_of_a_trained_rbm(trained):
    x, W, b, c = trained
    exact = rbm_log_partition_exact(W, b, c)
    bA = base_rate_bias(x.mean(0))
    v = _exact_visible(W, b, c, 100, seed=0)  # 2^16 hidden states: exact model samples
    r = rbm_reverse_ais(W, b, c, v, burn_in=0, num_betas=3000, base_vbias=bA)
    # measured: within 0.02 nats over seeds (AIS's accuracy here too)
    assert abs(r.log_z - exact) < 0.1 and 0 < r.stderr < 0.1, (r.log_z, exact)
    # through log_partition: the training data as start states, burnt in by Gibbs sweeps
    rbm = SimpleNamespace(rbm_parameters=lambda: (W, b, c))
    lz = log_partition(rbm, "reverse_ais", data=x[:100], burn_in=200, num_betas=1000)
    assert lz.method == "reverse_ais" and "overestimates" in lz.note
    assert abs(lz.value - exact) < 0.15


def test_ais_and_reverse_ais_bracket_log_z_in_expectation():
    """With a crude schedule (3 temperatures, 20 chains: near plain importance sampling) the
    two are biased in opposite directions: AIS low, reverse AIS from exact samples high."""
    W, b, c = _random_params(10, 8, seed=0, scale=2.0)
    exact = rbm_log_partition_exact(W, b, c)
    betas = [0.0, 0.5, 1.0]
    fwd = [rbm_ais(W, b, c, num_chains=20, num_betas=betas, seed=s).log_z for s in range(40)]
    rev = [
        rbm_reverse_ais(
            W, b, c, _exact_visible(W, b, c, 20, s), burn_in=0, num_betas=betas, seed=s
        ).log_z
        for s in range(40)
    ]
    # measured (another RBM of this kind): -1.3 +- 0.2 and +1.3 +- 0.2 nats
    assert np.mean(fwd) < exact - 0.4 and np.mean(rev) > exact + 0.4, (np.mean(fwd), np.mean(rev))


def test_reverse_ais_is_exact_when_base_and_target_coincide_and_checks_its_input():
    W, b, c = torch.zeros(3, 5), torch.randn(5), torch.randn(3)
    r = rbm_reverse_ais(W, b, c, torch.ones(4, 5), num_betas=[0.0, 0.3, 1.0], base_vbias=b)
    assert r.stderr == 0.0 and abs(r.log_z - rbm_log_partition_exact(W, b, c)) < 1e-12
    with pytest.raises(DataError, match="binary"):
        rbm_reverse_ais(W, b, c, torch.full((4, 5), 0.5))
    with pytest.raises(DataError, match=r"rows of 5 visible"):
        rbm_reverse_ais(W, b, c, torch.ones(4, 6))
    with pytest.raises(ValueError, match="burn_in"):
        rbm_reverse_ais(W, b, c, torch.ones(4, 5), burn_in=-1)
    with pytest.raises(ValueError, match="pass `init=`"):
        log_partition(RBM(5, 3), method="reverse_ais")
    with pytest.raises(ValueError, match="unknown"):
        log_partition(RBM(5, 3), method="reverse_ais", num_chains=10, init=np.ones((4, 5)))


def test_default_schedule():
    b = ais_betas(15001)
    assert len(b) == 15001 and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) > 0)
    # Salakhutdinov & Murray's step sizes: 5e-4 below 0.5, 1e-4 to 0.9, 1e-5 above
    np.testing.assert_allclose(np.diff(b[b <= 0.5]), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(np.diff(b[(b >= 0.5) & (b <= 0.9)]), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(np.diff(b[b >= 0.9]), 1e-5, rtol=1e-6)
    assert len(ais_betas(10)) == 10


@pytest.mark.parametrize(("V", "sigma"), [(1, 0.6), (2, 1.3)])
def test_gaussian_rbm_log_z_equals_numerical_integration(V, sigma):
    torch.manual_seed(V)
    rbm = GaussianRBM(V, 3, sigma=sigma).double()
    with torch.no_grad():
        for p, t in zip(
            rbm.rbm_parameters(), _random_params(V, 3, seed=11, scale=0.8), strict=True
        ):
            p.copy_(t)
    grid = torch.linspace(-14.0, 14.0, 2801 if V == 1 else 1401, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    pts = grid[:, None] if V == 1 else torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        log_z_numeric = float(torch.logsumexp(-rbm.energy(pts), 0)) + V * math.log(step)
    got = log_partition(rbm)
    assert got.method == "exact" and "Gaussian" in got.note
    assert abs(got.value - log_z_numeric) < 1e-8
    assert got.value == gaussian_rbm_log_partition_exact(*rbm.rbm_parameters(), sigma)


def test_log_partition_on_a_fit_uses_the_fitted_parameters():
    W, b, c = _random_params(10, 6, seed=5)
    rbm = RBM(10, 6)
    fit = SimpleNamespace(
        program=SimpleNamespace(obj=rbm),
        params={"rbm$$$W": W.numpy(), "rbm$$$vbias": b.numpy(), "rbm$$$hbias": c.numpy()},
    )
    exact = log_partition(fit)
    assert isinstance(exact, LogPartition) and exact.stderr == 0.0
    assert abs(exact.value - _brute_force_log_z(W, b, c)) < 1e-10
    data = {"x": torch.bernoulli(torch.full((50, 10), 0.3)).numpy()}
    ais = log_partition(fit, "ais", data=data, num_chains=100, num_betas=400)
    assert ais.method == "ais" and "base-rate" in ais.note and "optimistic" in ais.note
    assert abs(ais.value - exact.value) < max(0.05, 4 * ais.stderr)
    ll = rbm_log_likelihood(fit, data["x"], exact)
    want = rbm_log_likelihood((W, b, c), data["x"], exact.value)
    np.testing.assert_allclose(ll, want, atol=1e-12)


def test_ais_and_reverse_ais_of_a_gaussian_rbm_match_its_exact_log_z():
    """Gaussian visible units: the base N(data mean, sigma^2) x uniform hidden units; exact
    log Z by its 2^10 hidden configurations (each a Gaussian integral)."""
    V, H, sigma = 16, 10, 0.7
    W, b, c = _random_params(V, H, seed=5, scale=0.4)
    rbm = GaussianRBM(V, H, sigma=sigma).double()
    with torch.no_grad():
        for p, t in zip(rbm.rbm_parameters(), (W, b, c), strict=True):
            p.copy_(t)
    exact = log_partition(rbm).value
    # exact draws: h from its marginal (p(h) ∝ exp(c.h + |b + W'h|^2 / 2 s^2 - |b|^2 / 2 s^2)),
    # then v | h ~ N(b + W'h, s^2)
    g = torch.Generator().manual_seed(0)
    h = _states(H)
    mean = b + h @ W
    log_ph = h @ c + ((mean**2).sum(-1) - (b**2).sum()) / (2 * sigma**2)
    hs = h[torch.multinomial(torch.softmax(log_ph, 0), 200, replacement=True, generator=g)]
    x = b + hs @ W + sigma * torch.randn(200, V, generator=g, dtype=torch.float64)
    ais = log_partition(rbm, "ais", data=x, num_chains=100, num_betas=1000)
    rev = log_partition(
        rbm, "reverse_ais", init=x[:100], base_vbias=x.mean(0), burn_in=0, num_betas=1000
    )
    # measured: -0.004 and +0.002 nats; a wrong Gaussian term (sigma^2 for sigma) is nats off
    assert abs(ais.value - exact) < 0.1 and abs(rev.value - exact) < 0.1, (ais, rev, exact)
    crude = rbm_ais(W, b, c, num_chains=20, num_betas=[0.0, 1.0], sigma=sigma, seed=1)
    assert abs(crude.log_z - exact) > 0.2  # measured: 14 nats low (the tolerance can fail)


def test_energy_ais_matches_the_log_z_of_a_correlated_gaussian():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=g, dtype=torch.float64)
    P = A @ A.T / 5 + 0.5 * torch.eye(5, dtype=torch.float64)  # eigenvalues 0.5 .. ~4
    m = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)

    def energy(x):
        d = x - m
        return 0.5 * ((d @ P) * d).sum(-1)

    exact = 2.5 * math.log(2 * math.pi) - 0.5 * float(torch.logdet(P))
    r = energy_ais(
        energy,
        torch.zeros(5),
        torch.full((5,), 2.0),
        num_chains=200,
        num_betas=500,
        sampler=HMC(0.2, 5),
    )
    # measured: -0.04 nats (stderr 0.06); from the base alone (2 temperatures) 0.4 nats low
    assert abs(r.log_z - exact) < 0.15 and 0 < r.stderr < 0.1 and r.accept_rate > 0.8
    crude = energy_ais(
        energy, torch.zeros(5), torch.full((5,), 2.0), num_chains=20, num_betas=[0.0, 1.0]
    )
    assert crude.log_z < exact - 0.3


class DoubleWell:
    """A user's energy model: two wells at x1 = +-1.5 (a bimodal, non-Gaussian density)."""

    def energy(self, x):
        return 3.0 * (x[..., 0] ** 2 - 2.25) ** 2 / 2.25 + 0.5 * x[..., 1] ** 2


def test_log_partition_of_a_users_bimodal_energy_matches_numerical_integration():
    grid = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)
    pts = torch.cartesian_prod(grid, grid)
    step = float(grid[1] - grid[0])
    exact = float(torch.logsumexp(-DoubleWell().energy(pts), 0)) + 2 * math.log(step)
    g = torch.Generator().manual_seed(0)  # "data": both wells
    x = torch.randn(400, 2, generator=g, dtype=torch.float64) * 0.3
    x[:, 0] += torch.where(torch.rand(400, generator=g) < 0.5, -1.5, 1.5)
    lz = log_partition(
        DoubleWell(), "ais", data=x, num_chains=200, num_betas=500, sampler=HMC(0.15, 5)
    )
    assert lz.method == "ais" and "HMC" in lz.note
    # measured: -0.05 nats from the grid's sum (stderr 0.06), both wells found
    assert abs(lz.value - exact) < 0.1, (lz, exact)
    with pytest.raises(ValueError, match="pass `data=`"):
        log_partition(DoubleWell(), "ais")
    with pytest.raises(ValueError, match="method='ais' with `data=`"):
        log_partition(DoubleWell(), "reverse_ais", data=x)
    with pytest.raises(ValueError, match="exactly invariant"):
        energy_ais(DoubleWell().energy, x.mean(0), x.std(0), sampler="langevin")


def test_log_partition_errors():
    with pytest.raises(ValueError, match=r"RBM-structured energy.*EBM.*method='ais'"):
        log_partition(EBM(2, hidden_features=(4,)))
    with pytest.raises(ValueError, match="`method` must be 'exact', 'ais' or 'reverse_ais'"):
        log_partition(RBM(4, 2), method="nce")
    with pytest.raises(ValueError, match="unknown"):
        log_partition(RBM(4, 2), method="ais", chains=10)
    with pytest.raises(ValueError, match="takes no options"):
        log_partition(RBM(4, 2), num_chains=10)
    with pytest.raises(ValueError, match=r"2\^30 visible.*method='ais'"):
        log_partition(RBM(30, 40))
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        log_partition(RBM(4, 2), method="ais", data=np.zeros((3, 5)))
    with pytest.raises(DataError, match=r"\(N, 4\)"):
        rbm_log_likelihood(RBM(4, 2), np.zeros((3, 5)), 0.0)
