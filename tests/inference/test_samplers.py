"""MCMC samplers for energy-based models against known laws.

Gaussian targets: Langevin (with its known step bias), MALA and HMC (exact); Song & Ermon's
mixture: annealed Langevin recovers the weights, plain Langevin does not; block Gibbs on a
two-state chain; refusals, settings, bit-exact resume.

Tolerances. Moments are pooled over 4000 independent chains and several snapshots per chain;
their standard errors are measured from 20 groups of 200 chains (chains are independent, so
the spread of the group estimates is an honest standard error whatever the autocorrelation
in time). Measured: means <= 0.007, covariance entries <= 0.008; the tests assert these
standard errors stay below 0.01-0.012. Each assertion allows >= 4 standard errors (plus, for
unadjusted Langevin against Sigma, its analytic step bias), and each is tight
enough to catch the usual mistakes: a flipped gradient sign diverges, a missing noise term
collapses the variance to 0, a sqrt(2h) noise doubles it, a missing Hastings correction in
MALA leaves the Langevin step bias (checked in test_gaussian_check_has_power and by mutating
the module by hand: every mutant failed).
"""

from __future__ import annotations

import math

import pytest
import torch

from ppgen.errors import EstimatorError
from ppgen.inference.samplers import (
    HMC,
    MALA,
    SAMPLERS,
    AnnealedLangevin,
    BlockGibbs,
    Langevin,
    Sampler,
    geometric_sigmas,
    make_sampler,
)

# --------------------------------------------------------------------- 2-D correlated Gaussian

MU = torch.tensor([1.0, -1.0])
SIGMA = torch.tensor([[1.0, 0.6], [0.6, 1.0]])  # eigenvalues 1.6 and 0.4
PREC = torch.linalg.inv(SIGMA)  # eigenvalues 2.5 and 0.625
N_CHAINS, GROUPS = 4000, 20


def gauss_energy(x):
    d = x - MU
    return 0.5 * ((d @ PREC) * d).sum(-1)


def langevin_cov(h: float) -> torch.Tensor:
    """The exact stationary covariance of unadjusted Langevin with step h on the Gaussian.

    x' = A x + sqrt(h) eps with A = I - h P / 2, so S = A S A + h I; with P symmetric,
    S = h (I - A^2)^-1 = (P - h P^2 / 4)^-1: the O(h) bias, P^-1 + h I / 4 + O(h^2).
    """
    return torch.linalg.inv(PREC - h * PREC @ PREC / 4)


def moments(sampler, energy=gauss_energy, *, burn, keep, thin, seed=1):
    """Mean and covariance pooled over chains and ``keep`` snapshots ``thin`` steps apart
    after ``burn`` steps from x = 0, with standard errors from groups of chains."""
    torch.manual_seed(seed)
    state = sampler.run(sampler.init(torch.zeros(N_CHAINS, 2)), energy, burn)
    snaps = []
    for _ in range(keep):
        state = sampler.run(state, energy, thin)
        snaps.append(state["x"])
    x = torch.stack(snaps).double()  # (keep, chains, 2)
    groups = x.reshape(keep, GROUPS, -1, 2).transpose(0, 1).reshape(GROUPS, -1, 2)
    means = groups.mean(1)
    covs = torch.stack([torch.cov(g.T) for g in groups])
    se = (means.std(0) / math.sqrt(GROUPS), covs.std(0) / math.sqrt(GROUPS))
    return means.mean(0), covs.mean(0), se, sampler.stats(state)


def check_gaussian(mean, cov, target_cov, *, tol_mean=0.04, tol_cov=0.05):
    err_mean = (mean - MU.double()).abs().max().item()
    err_cov = (cov - target_cov.double()).abs().max().item()
    assert err_mean < tol_mean, f"mean {mean.tolist()} vs {MU.tolist()}"
    assert err_cov < tol_cov, f"cov {cov.tolist()} vs {target_cov.tolist()}"
    return err_mean, err_cov


def test_langevin_small_step_matches_the_gaussian():
    # h = 0.05: the step bias is 0.014 at most (langevin_cov), under the tolerance; the
    # slowest direction relaxes at rate h * 0.625 / 2 per step: 1000 steps of burn-in is
    # e^-15 for the mean (e^-31 for the covariance)
    mean, cov, (se_m, se_c), _ = moments(Langevin(0.05), burn=1000, keep=40, thin=25)
    assert se_m.max() < 0.01 and se_c.max() < 0.012
    check_gaussian(mean, cov, SIGMA, tol_cov=0.05)
    # and what it converges to is the biased covariance, precisely
    check_gaussian(mean, cov, langevin_cov(0.05), tol_cov=0.04)


def test_langevin_step_bias_is_the_known_one_and_grows_with_the_step():
    small, big = 0.05, 0.3
    _, cov_small, _, _ = moments(Langevin(small), burn=1000, keep=20, thin=25)
    mean, cov_big, (_, se_c), _ = moments(Langevin(big), burn=300, keep=20, thin=10)
    assert se_c.max() < 0.008
    # h = 0.3 converges to (P - h P^2/4)^-1 (within 4 se), 0.085 away from Sigma ...
    check_gaussian(mean, cov_big, langevin_cov(big), tol_cov=0.03)
    assert (langevin_cov(big) - SIGMA).abs().max() > 0.08
    err_big = (cov_big - SIGMA.double()).abs().max().item()
    err_small = (cov_small - SIGMA.double()).abs().max().item()
    assert err_big > 0.06  # measured 0.092
    # ... and a smaller step is closer to the target
    assert err_small < err_big / 2


def test_gaussian_check_has_power():
    """The checks above fail for the usual bugs (emulated through the public API)."""
    flipped = lambda x: -gauss_energy(x)  # a wrong gradient sign: the chains run away  # noqa: E731
    broken = {
        "gradient sign": (Langevin(0.05), flipped),
        "no noise": (Langevin(0.05, noise_scale=0.0), gauss_energy),  # collapses to MU
        "sqrt(2h) noise": (Langevin(0.05, noise_scale=math.sqrt(2)), gauss_energy),
    }
    for what, (sampler, energy) in broken.items():
        mean, cov, _, _ = moments(sampler, energy, burn=300, keep=2, thin=10)
        with pytest.raises(AssertionError):
            check_gaussian(mean, cov, SIGMA)
            pytest.fail(f"a sampler with a bug ({what}) passed")


@pytest.mark.parametrize("step_size", [0.3, 1.0, 2.0])
def test_mala_is_exact_for_every_step(step_size):
    # at h = 1 unadjusted Langevin's covariance is off by > 0.4; at h = 2 it diverges
    # (|1 - h * 2.5 / 2| > 1); the accept/reject step removes both
    mean, cov, (se_m, se_c), stats = moments(MALA(step_size), burn=200, keep=20, thin=5)
    assert se_m.max() < 0.01 and se_c.max() < 0.01
    check_gaussian(mean, cov, SIGMA, tol_mean=0.04, tol_cov=0.04)
    assert 0.0 < stats["accept_rate"] < 1.0
    assert 0.0 < stats["min_chain_accept_rate"] <= stats["accept_rate"]


def test_mala_acceptance_drops_as_the_step_grows():
    rates = []
    for h in (0.3, 1.0, 2.0, 4.0):
        sampler = MALA(h)
        torch.manual_seed(0)
        state = sampler.run(sampler.init(torch.zeros(N_CHAINS, 2)), gauss_energy, 100)
        rates.append(sampler.stats(state)["accept_rate"])
    assert all(0.0 < r < 1.0 for r in rates)
    assert rates == sorted(rates, reverse=True), rates  # measured 0.95, 0.70, 0.38, 0.11
    assert rates[0] > 0.9 and rates[-1] < 0.3


@pytest.mark.parametrize(("step_size", "num_steps", "jitter"), [(0.5, 5, 0.0), (1.1, 3, 0.2)])
def test_hmc_is_exact(step_size, num_steps, jitter):
    # 1.1 is near the leapfrog's stability limit 2 / sqrt(2.5) = 1.26: large energy errors,
    # many rejections, still the right law (jitter: see test_hmc_jitter_breaks_periodicity)
    sampler = HMC(step_size, num_steps, jitter=jitter)
    mean, cov, (se_m, se_c), stats = moments(sampler, burn=30, keep=20, thin=5)
    assert se_m.max() < 0.01 and se_c.max() < 0.01
    check_gaussian(mean, cov, SIGMA, tol_mean=0.04, tol_cov=0.04)
    assert 0.0 < stats["accept_rate"] < 1.0


def test_hmc_jitter_breaks_periodicity():
    # h = 1.1, 3 leapfrog steps: along the stiff eigenvector (1, -1) (precision 2.5) each
    # leapfrog step rotates by arccos(1 - 1.1^2 * 2.5 / 2) = 2.11 rad, three make 6.33 ~ 2 pi:
    # every trajectory ends where it began in that direction, which holds MU = (1, -1), so
    # fixed-step chains from 0 never find the mean; a random step size does
    means = {}
    for jitter in (0.0, 0.2):
        torch.manual_seed(0)
        hmc = HMC(1.1, 3, jitter=jitter)
        state = hmc.run(hmc.init(torch.zeros(N_CHAINS, 2)), gauss_energy, 100)
        means[jitter] = state["x"].mean(0)
    assert (means[0.0] - MU).abs().max() > 0.5  # measured 0.75
    assert (means[0.2] - MU).abs().max() < 0.05


def test_hmc_acceptance_drops_as_the_step_grows():
    rates = []
    for h in (0.3, 0.9, 1.2):
        torch.manual_seed(0)
        sampler = HMC(h, 4)
        state = sampler.run(sampler.init(torch.zeros(N_CHAINS, 2)), gauss_energy, 20)
        rates.append(sampler.stats(state)["accept_rate"])
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.9, rates


def test_energy_samplers_keep_gradients_off_the_callers_parameters():
    shift = torch.nn.Parameter(torch.tensor([0.5, -0.5]))

    def energy(x):
        return 0.5 * ((x - shift) ** 2).sum(-1)

    x0 = torch.zeros(8, 2)
    for sampler in (Langevin(0.1, clip_grad=1.0, clip_x=3.0), MALA(0.1), HMC(0.1, 3)):
        with torch.no_grad():  # an estimator may sample under no_grad: still works
            state = sampler.run(sampler.init(x0), energy, 3)
        state = sampler.run(state, energy, 2)
        assert shift.grad is None
        assert not state["x"].requires_grad and state["x"].grad_fn is None
        assert not torch.equal(state["x"], x0)
    assert torch.equal(x0, torch.zeros(8, 2))  # init copies


def test_langevin_clipping():
    torch.manual_seed(0)
    steep = lambda x: 1e4 * (x**2).sum(-1)  # noqa: E731
    x0 = torch.full((5, 3), 2.0)
    one = Langevin(0.01, noise_scale=0.0, clip_grad=1.0).step(
        Langevin(0.01).init(x0), steep
    )  # each chain moves by h/2 * (gradient of norm 1)
    moved = (one["x"] - x0).norm(dim=1)
    torch.testing.assert_close(moved, torch.full((5,), 0.005))
    boxed = Langevin(1.0, clip_x=(-1.0, 0.5)).run(Langevin(1.0).init(x0), steep, 2)
    assert boxed["x"].min() >= -1.0 and boxed["x"].max() <= 0.5


# ------------------------------------------------------ Song & Ermon's mixture (their Fig. 3)

MODES = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])
LOG_W = torch.log(torch.tensor([0.8, 0.2]))


def mixture_score(x, sigma):
    """Analytic score of the mixture convolved with N(0, sigma^2 I): components N(mu_k,
    (1 + sigma^2) I), responsibilities by a softmax of the component log-weights."""
    var = 1.0 + sigma**2
    diff = MODES[None] - x[:, None]  # (N, 2 components, 2 dims)
    resp = torch.softmax(LOG_W - (diff * diff).sum(-1) / (2 * var), dim=-1)
    return (resp[..., None] * diff).sum(1) / var


def mixture_energy(x, sigma=0.0):
    var = 1.0 + sigma**2
    diff = x[:, None] - MODES[None]
    return -torch.logsumexp(LOG_W - (diff * diff).sum(-1) / (2 * var), dim=-1)


def weight_of_first_mode(x):
    return (x.sum(1) > 0).double().mean().item()


def test_mixture_score_is_the_gradient_of_the_perturbed_log_density():
    x = (16 * torch.rand(50, 2, dtype=torch.float64) - 8).requires_grad_(True)
    for sigma in (0.0, 1.0, 20.0):
        (grad,) = torch.autograd.grad(mixture_energy(x, sigma).sum(), x)
        torch.testing.assert_close(mixture_score(x.detach(), sigma), -grad)
    far = torch.tensor([[1e3, -1e3], [-60.0, -60.0]])  # softmax stays finite far out
    assert torch.isfinite(mixture_score(far, 0.01)).all()


def test_annealed_langevin_recovers_the_mixture_weights_plain_langevin_does_not():
    torch.manual_seed(0)
    x0 = 16 * torch.rand(2000, 2) - 8  # uniform on [-8, 8]^2
    # 20 geometric levels 20 -> 0.01, T = 200, eps = 2e-5: measured weight 0.787-0.795 over
    # seeds (the paper's 10 levels x 100 steps give 0.75-0.78, 20 x 100 give 0.77-0.80: the
    # modes stop exchanging chains near sigma = 2, and a longer or finer schedule leaves
    # them more steps to equilibrate above it); binomial sd 0.009
    ald = AnnealedLangevin(geometric_sigmas(20.0, 0.01, 20), steps_per_sigma=200, eps=2e-5)
    x = ald.sample(x0, mixture_score)
    w_annealed = weight_of_first_mode(x)
    assert abs(w_annealed - 0.8) < 0.05, w_annealed
    # the samples sit in the modes, with the modes' unit variance
    first = x[x.sum(1) > 0]
    torch.testing.assert_close(first.mean(0), MODES[0], atol=0.1, rtol=0)
    torch.testing.assert_close(first.var(0), torch.ones(2), atol=0.2, rtol=0)

    # plain Langevin on the data's own energy (score at sigma = 0), from the same points:
    # each chain stays in the basin it starts in, and the boundary is near x1 + x2 = 0, so
    # both modes get about half (measured 0.49-0.51: an error of 0.3)
    lang = Langevin(0.1)
    plain = lang.run(lang.init(x0), mixture_energy, 1000)["x"]
    w_plain = weight_of_first_mode(plain)
    assert abs(w_plain - 0.8) > 0.2, w_plain
    assert abs(w_plain - 0.5) < 0.05, w_plain


def test_annealed_langevin_schedule():
    sigmas = (4.0, 2.0, 1.0)
    ald = AnnealedLangevin(sigmas, steps_per_sigma=3, eps=0.01)
    assert ald.num_steps == 9
    assert [ald.step_size(i) for i in range(3)] == pytest.approx([0.16, 0.04, 0.01])
    seen = []

    def score(x, sigma):
        assert isinstance(sigma, float)
        seen.append(sigma)
        return torch.zeros_like(x)

    state = ald.init(torch.zeros(4, 2))
    assert ald.stats(state) == {"sigma": 4.0, "level": 0.0, "done": 0.0}
    state = ald.run(state, score, 4)
    assert (int(state["level"]), int(state["t"])) == (1, 1)
    state = ald.run(state, score, 5)
    assert seen == [4.0] * 3 + [2.0] * 3 + [1.0] * 3
    assert ald.stats(state)["done"] == 1.0
    state = ald.run(state, score, 2)  # past the end: stays at the last level
    assert seen[-2:] == [1.0, 1.0] and int(state["step"]) == 11


def test_annealed_langevin_step_sizes():
    # with a zero score, x is a sum of independent N(0, alpha_i) steps: variance T sum alpha_i
    torch.manual_seed(0)
    ald = AnnealedLangevin((3.0, 1.0), steps_per_sigma=10, eps=0.01)
    x = ald.sample(torch.zeros(N_CHAINS, 2), lambda x, sigma: torch.zeros_like(x))
    expected = 10 * (0.09 + 0.01)  # 1.0; the sd of the estimate is 0.016
    assert abs(x.var(0).mean().item() - expected) < 0.06


def test_annealed_langevin_on_a_gaussian_and_denoise():
    # on N(0, 1) the perturbed score is -x / v, v = 1 + sigma^2, and each step is linear:
    # Var' = (1 - alpha / (2 v))^2 Var + alpha, a recurrence that gives the exact variance
    torch.manual_seed(0)
    ald = AnnealedLangevin((1.0, 0.5), steps_per_sigma=50, eps=0.05)
    score = lambda x, sigma: -x / (1 + sigma**2)  # noqa: E731
    var = 0.0
    for level, sigma in enumerate(ald.sigmas):
        alpha, v = ald.step_size(level), 1 + sigma**2
        for _ in range(ald.steps_per_sigma):
            var = (1 - alpha / (2 * v)) ** 2 * var + alpha
    x0 = torch.zeros(N_CHAINS, 1)
    torch.manual_seed(1)
    x = ald.sample(x0, score)
    assert abs(x.var().item() - var) < 0.1 * var  # measured within 3%; the sd is 2.2%
    torch.manual_seed(1)
    x_denoised = ald.sample(x0, score, denoise=True)
    # Tweedie's step x + sigma_L^2 s(x, sigma_L) = x / (1 + sigma_L^2), on the same draws
    torch.testing.assert_close(x_denoised, x / 1.25)


# -------------------------------------------------------------------------------- block Gibbs


class TwoState:
    """A Markov chain on {0, 1}: 0 -> 1 w.p. 0.1, 1 -> 1 w.p. 0.7; stationary P(1) = 0.25."""

    def block_gibbs_step(self, x):
        u = torch.rand(x.shape)
        return torch.where(x == 0, u < 0.1, u < 0.7).to(x.dtype)


def test_block_gibbs_reaches_the_stationary_law():
    torch.manual_seed(0)
    gibbs = BlockGibbs()
    # the second eigenvalue is 0.6: after 40 steps the start is forgotten (0.6^40 ~ 1e-9)
    state = gibbs.run(gibbs.init(torch.zeros(N_CHAINS, 1)), TwoState(), 40)
    frac = [float(state["x"].mean())]
    for _ in range(9):
        state = gibbs.run(state, TwoState(), 10)
        frac.append(float(state["x"].mean()))
    # pooled over 10 snapshots of 4000 chains: sd <= 0.007 / sqrt(10) * ~1.1
    assert abs(sum(frac) / len(frac) - 0.25) < 0.015, frac
    assert int(state["step"]) == 130 and gibbs.stats(state) == {}
    ints = gibbs.run(gibbs.init(torch.zeros(10, 3, dtype=torch.int64)), TwoState(), 2)
    assert ints["x"].dtype == torch.int64


# ----------------------------------------------------------------------- refusals and settings


class GibbsOnly:
    def block_gibbs_step(self, x):
        return x


def test_a_target_without_what_the_sampler_needs_is_refused():
    x = torch.zeros(3, 2)
    with pytest.raises(EstimatorError, match=r"no `block_gibbs_step`; use Langevin, MALA or HMC"):
        BlockGibbs().step(BlockGibbs().init(x), gauss_energy)
    for sampler in (Langevin(0.1), MALA(0.1), HMC(0.1)):
        with pytest.raises(EstimatorError, match=r"`block_gibbs_step`.*use BlockGibbs"):
            sampler.step(sampler.init(x), GibbsOnly())
        with pytest.raises(EstimatorError, match=r"like score\(x, sigma\); use AnnealedLangevin"):
            sampler.step(sampler.init(x), mixture_score)
    ald = AnnealedLangevin((1.0, 0.1))
    with pytest.raises(EstimatorError, match=r"like energy\(x\); use Langevin, MALA or HMC"):
        ald.step(ald.init(x), gauss_energy)
    with pytest.raises(EstimatorError, match=r"use BlockGibbs"):
        ald.step(ald.init(x), GibbsOnly())
    with pytest.raises(EstimatorError, match=r"give a callable energy"):
        Langevin(0.1).step(Langevin(0.1).init(x), 3.0)


def test_bad_energies_and_starts_are_refused():
    x = torch.zeros(3, 2)
    with pytest.raises(EstimatorError, match=r"shape \(3,\).*got \(3, 1\)"):
        MALA(0.1).step(MALA(0.1).init(x), lambda x: (x**2).sum(-1, keepdim=True))
    with pytest.raises(EstimatorError, match="not differentiable in x"):
        HMC(0.1).step(HMC(0.1).init(x), lambda x: (x.detach() ** 2).sum(-1))
    with pytest.raises(EstimatorError, match="shaped like x"):
        ald = AnnealedLangevin((1.0,))
        ald.step(ald.init(x), lambda x, sigma: x[:, :1])
    with pytest.raises(EstimatorError, match="shaped like x"):
        BlockGibbs().step(BlockGibbs().init(x), type("G", (), {"block_gibbs_step": len})())
    with pytest.raises(EstimatorError, match="floating-point"):
        Langevin(0.1).init(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(EstimatorError, match="at least one row"):
        MALA(0.1).init(torch.tensor(1.0))
    with pytest.raises(EstimatorError, match="torch.Tensor"):
        HMC(0.1).init([[0.0, 1.0]])
    with pytest.raises(EstimatorError, match=r"`k` must be an int >= 0"):
        Langevin(0.1).run(Langevin(0.1).init(x), gauss_energy, 1.5)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: Langevin(0.0), "step_size"),
        (lambda: Langevin(-1.0), "step_size"),
        (lambda: Langevin(float("nan")), "step_size"),
        (lambda: Langevin(0.1, noise_scale=-1.0), "noise_scale"),
        (lambda: Langevin(0.1, clip_grad=0.0), "clip_grad"),
        (lambda: Langevin(0.1, clip_x=(1.0, -1.0)), "clip_x"),
        (lambda: Langevin(0.1, clip_x="big"), "clip_x"),
        (lambda: MALA(True), "step_size"),
        (lambda: HMC(0.1, num_steps=0), "num_steps"),
        (lambda: HMC(0.1, num_steps=2.5), "num_steps"),
        (lambda: HMC(0.1, jitter=1.0), "jitter"),
        (lambda: AnnealedLangevin((1.0, 1.0)), "sigmas"),
        (lambda: AnnealedLangevin((0.1, 1.0)), "sigmas"),
        (lambda: AnnealedLangevin((1.0, -0.1)), "sigmas"),
        (lambda: AnnealedLangevin(()), "sigmas"),
        (lambda: AnnealedLangevin((1.0, 0.1), steps_per_sigma=0), "steps_per_sigma"),
        (lambda: AnnealedLangevin((1.0, 0.1), eps=0), "eps"),
        (lambda: geometric_sigmas(0.1, 1.0, 5), "sigma_max"),
        (lambda: geometric_sigmas(1.0, 0.1, 1), "num"),
    ],
)
def test_settings_are_validated(build, argument):
    with pytest.raises(EstimatorError, match=f"`{argument}`"):
        build()


def test_make_sampler():
    assert set(SAMPLERS) == {"langevin", "mala", "hmc", "annealed_langevin", "gibbs"}
    for name, cls in SAMPLERS.items():
        sampler = make_sampler(name)
        assert type(sampler) is cls and sampler.name == name
        assert repr(make_sampler(sampler.settings())) == repr(sampler)  # settings round trip
    mala = MALA(0.3)
    assert make_sampler(mala) is mala
    assert make_sampler("HMC", step_size=0.2, num_steps=4).settings()["num_steps"] == 4
    assert make_sampler("annealed_langevin").sigmas == geometric_sigmas(1.0, 0.01, 10)
    with pytest.raises(EstimatorError, match=r"Unknown sampler 'nuts'.*'annealed_langevin'"):
        make_sampler("nuts")
    with pytest.raises(EstimatorError, match=r"HMC takes \['step_size', 'num_steps', 'jitter'\]"):
        make_sampler("hmc", step=0.1)
    with pytest.raises(EstimatorError, match="'name' key"):
        make_sampler({"step_size": 0.1})
    with pytest.raises(EstimatorError, match="built sampler"):
        make_sampler(mala, step_size=0.1)
    assert {s.needs for s in map(make_sampler, SAMPLERS)} == {"energy", "score", "gibbs"}


# ------------------------------------------------------------------------ bit-exact resume


@pytest.mark.parametrize(
    ("sampler", "target"),
    [
        (Langevin(0.1, clip_grad=5.0), gauss_energy),
        (MALA(0.5), gauss_energy),
        (HMC(0.3, 4, jitter=0.1), gauss_energy),
        (AnnealedLangevin((4.0, 2.0, 1.0), steps_per_sigma=4, eps=0.05), mixture_score),
        (BlockGibbs(), TwoState()),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Sampler) else "",
)
def test_state_round_trip_is_bit_exact(sampler, target):
    torch.manual_seed(3)
    x0 = torch.rand(64, 2).round() if isinstance(sampler, BlockGibbs) else torch.randn(64, 2)
    state = sampler.run(sampler.init(x0), target, 5)
    # per-chain tensors and int counters (a checkpoint stores both as they are)
    assert all(isinstance(v, torch.Tensor | int) for v in state.values())
    saved = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}

    def same(u, v):
        return torch.equal(u, v) if isinstance(u, torch.Tensor) else type(u) is type(v) and u == v

    rng = torch.get_rng_state()
    a = sampler.run(state, target, 10)
    assert all(same(state[k], saved[k]) for k in saved)  # step does not mutate
    torch.set_rng_state(rng)
    b = sampler.run(saved, target, 10)
    assert a.keys() == b.keys() == saved.keys()
    for k in a:
        assert same(a[k], b[k]), k
    assert not torch.equal(a["x"], saved["x"])
    assert int(a["step"]) == 15


@pytest.mark.parametrize("noise_scale", [1.0, 0.0])
def test_langevin_run_is_k_steps_exactly(noise_scale):
    """``run``'s bare loop (checks on the first transition only) is ``step`` k times, bit for
    bit: the same arithmetic and the same draws from the global RNG."""
    sampler = Langevin(0.05, noise_scale=noise_scale)

    def energy(x):
        return 0.5 * (x**2).sum(-1) + torch.sin(3 * x[:, 0])

    x0 = torch.randn(50, 3)
    torch.manual_seed(7)
    fast = sampler.run(sampler.init(x0), energy, 6)
    torch.manual_seed(7)
    slow = sampler.init(x0)
    for _ in range(6):
        slow = sampler.step(slow, energy)
    assert torch.equal(fast["x"], slow["x"]) and fast["step"] == slow["step"] == 6
    assert not fast["x"].requires_grad and not torch.equal(fast["x"], x0)
