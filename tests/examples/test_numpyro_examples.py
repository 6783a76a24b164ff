"""Official NumPyro example programs fitted by ppgen as users would write them (issue 17).

``examples/baseball.py`` (its models verbatim, the Efron-Morris 45-at-bat hits typed in for
``load_dataset(BASEBALL)``) and ``examples/funnel.py`` (verbatim: the model and its
``reparam(model, config={"x": LocScaleReparam(0)})``), each fitted by two ppgen estimators,
compared with raw NumPyro's own run of the same program (or the analytic answer), and taken
through the round trip of ``_roundtrip.roundtrip`` (ArviZ, LOO where there is a likelihood,
save, load, same answers).

MCMC comparisons: posterior means of ppgen's and raw NumPyro's runs (different keys, so
independent chains) agree within ``K_MCSE = 4`` combined Monte Carlo standard errors,
``sqrt(mcse_ppgen^2 + mcse_raw^2)`` by ``az.mcse`` (batch means: autocorrelation included).
The difference of two independent estimates is about normal with that standard error, so an
honest pair fails with probability ~6e-5 per component; 4 rather than 3 absorbs the noise of
the MCSE estimate itself (about +-10% at ESS 100). A sampler of another density (data
ignored, a term dropped) moves the means by many posterior sds.
"""

from __future__ import annotations

import functools

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from _roundtrip import roundtrip
from numpyro.handlers import reparam
from numpyro.infer import MCMC
from numpyro.infer import NUTS as NumPyroNUTS
from numpyro.infer.reparam import LocScaleReparam
from scipy import stats

import ppgen
from ppgen.inference import NUTS

K_MCSE = 4.0


def mean_and_mcse(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and its MCSE of each scalar component of ``(chain, draw, *shape)``."""
    draws = np.asarray(draws, dtype=float)
    flat = draws.reshape(draws.shape[:2] + (-1,))
    mcse = np.array([az.mcse(flat[..., i]) for i in range(flat.shape[-1])])
    return draws.mean((0, 1)), mcse.reshape(draws.shape[2:])


def assert_means_agree(ours: dict, raw: dict, sites: list[str], k: float = K_MCSE) -> None:
    """Means of ``sites`` from two independent runs agree within ``k`` combined MCSEs."""
    for site in sites:
        (ma, sa), (mb, sb) = mean_and_mcse(ours[site]), mean_and_mcse(raw[site])
        diff, se = np.abs(ma - mb), np.hypot(sa, sb)
        assert np.all(diff < k * se), f"{site}: ppgen {ma} vs raw {mb}, |diff| {diff} >= {k}*{se}"


def raw_numpyro_nuts(model, *args, num_samples: int, num_warmup: int, seed: int) -> dict:
    """Raw NumPyro's MCMC(NUTS(model)) as the examples' run_inference; ``(1, draw, ...)``."""
    mcmc = MCMC(
        NumPyroNUTS(model), num_warmup=num_warmup, num_samples=num_samples, progress_bar=False
    )
    mcmc.run(jax.random.PRNGKey(seed), *args)
    return {k: np.asarray(v)[None] for k, v in mcmc.get_samples().items()}


# =================================================================== 4. baseball
# numpyro/examples/baseball.py: the models verbatim.
def fully_pooled(at_bats, hits=None):
    r"""
    Number of hits in $K$ at bats for each player has a Binomial
    distribution with a common probability of success, $\phi$.

    :param (jnp.DeviceArray) at_bats: Number of at bats for each player.
    :param (jnp.DeviceArray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    phi_prior = dist.Uniform(0, 1)
    phi = numpyro.sample("phi", phi_prior)
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


def partially_pooled(at_bats, hits=None):
    r"""
    Number of hits has a Binomial distribution with independent
    probability of success, $\phi_i$. Each $\phi_i$ follows a Beta
    distribution with concentration parameters $c_1$ and $c_2$, where
    $c_1 = m * kappa$, $c_2 = (1 - m) * kappa$, $m ~ Uniform(0, 1)$,
    and $kappa ~ Pareto(1, 1.5)$.

    :param (jnp.DeviceArray) at_bats: Number of at bats for each player.
    :param (jnp.DeviceArray) hits: Number of hits for the given at bats.
    :return: Number of hits predicted by the model.
    """
    m = numpyro.sample("m", dist.Uniform(0, 1))
    kappa = numpyro.sample("kappa", dist.Pareto(1, 1.5))
    num_players = at_bats.shape[0]
    with numpyro.plate("num_players", num_players):
        phi_prior = dist.Beta(m * kappa, (1 - m) * kappa)
        phi = numpyro.sample("phi", phi_prior)
        return numpyro.sample("obs", dist.Binomial(at_bats, probs=phi), obs=hits)


# Efron & Morris (1975): hits in each of 18 players' first 45 at-bats of the 1970 season (the
# "train" split of numpyro.examples.datasets.BASEBALL). For predictions, the rest of the
# season's at-bats (the "test" split's covariate) are replaced by generated counts.
HITS = np.array([18, 17, 16, 15, 14, 14, 13, 12, 11, 11, 10, 10, 10, 10, 10, 9, 8, 7])
AT_BATS = np.full(18, 45)
SEASON_AT_BATS = np.random.default_rng(0).integers(150, 600, 18)
BASEBALL = {"fully_pooled": fully_pooled, "partially_pooled": partially_pooled}
# the compared functionals: kappa's posterior has a Pareto tail (the data barely bound it
# from above), too heavy for a mean with an MCSE, so log(kappa) is compared instead
COMPARED = {"fully_pooled": ["phi"], "partially_pooled": ["m", "phi", "log_kappa"]}


def _with_log_kappa(draws: dict) -> dict:
    out = dict(draws)
    if "kappa" in out:
        out["log_kappa"] = np.log(out["kappa"])
    return out


@functools.cache
def raw_baseball(name: str) -> dict:
    """Raw NumPyro's NUTS on the example's training data, 300 + 300 (shared by the tests)."""
    args = (jnp.asarray(AT_BATS), jnp.asarray(HITS))
    draws = raw_numpyro_nuts(BASEBALL[name], *args, num_samples=300, num_warmup=300, seed=1)
    return _with_log_kappa(draws)


@pytest.mark.parametrize("name", sorted(BASEBALL))
def test_baseball_nuts_matches_raw_numpyro_and_round_trips(name, tmp_path):
    """ppgen NUTS (300 + 300 as raw; the example's 1500 + 3000 serve its printed table)
    against raw NumPyro's NUTS: K_MCSE combined MCSEs.
    The round trip predicts the rest of the season's hits from the new at-bats."""
    model = BASEBALL[name]
    data = {"at_bats": AT_BATS, "hits": HITS}
    fit = ppgen.fit(model, data, NUTS(num_samples=300, num_warmup=300), seed=0)
    assert_means_agree(_with_log_kappa(fit.draws), raw_baseball(name), COMPARED[name])
    loaded, loo = roundtrip(fit, model, tmp_path, predict_data={"at_bats": SEASON_AT_BATS})
    assert loo.loo_i.shape == (18,)
    season = loaded.predict({"at_bats": SEASON_AT_BATS}, seed=1)["obs"]
    assert season.shape == (1, 300, 18) and np.all(season <= SEASON_AT_BATS)


@pytest.mark.parametrize("name", sorted(BASEBALL))
def test_baseball_svi_matches_the_posterior_and_round_trips(name, tmp_path):
    """ppgen's default SVI (AutoNormal, 1000 Adam steps at lr 0.01; 500 draws kept) on NumPyro.

    fully_pooled has a conjugate posterior, phi | hits ~ Beta(1 + 218, 1 + 592) (mean 0.270,
    sd 0.016); the fit's mean must be within 0.01 of it (measured 0.005). partially_pooled
    is held to raw NumPyro's NUTS: every phi_i and m within 0.05 of the NUTS means (the
    AutoNormal mean-field approximation and the unconverged kappa put them up to 0.035 apart,
    measured). A fit that ignored the hits would sit at the prior mean 0.5 of phi and m, 0.2+
    away, and fail both."""
    model = BASEBALL[name]
    data = {"at_bats": AT_BATS, "hits": HITS}
    fit = ppgen.fit(model, data, ppgen.inference.SVI(num_draws=500), seed=0)
    assert fit.diagnostics["guide"] == "AutoNormal" and fit.diagnostics["path"] == "numpyro"
    if name == "fully_pooled":
        exact = stats.beta(1 + HITS.sum(), 1 + (AT_BATS - HITS).sum())
        assert abs(fit.draws["phi"].mean() - exact.mean()) < 0.01
        assert abs(fit.draws["phi"].std() - exact.std()) < 0.005
    else:
        raw = raw_baseball(name)
        for site in ("m", "phi"):
            diff = np.abs(fit.draws[site].mean((0, 1)) - raw[site].mean((0, 1)))
            assert np.all(diff < 0.05), (site, diff)
    loaded, loo = roundtrip(fit, model, tmp_path, predict_data={"at_bats": SEASON_AT_BATS})
    assert loo.loo_i.shape == (18,)


# =================================================================== 5. Neal's funnel
# numpyro/examples/funnel.py verbatim: no observed site, the target is the prior itself.
def model(dim=10):
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


reparam_model = reparam(model, config={"x": LocScaleReparam(0)})

Y_SD = 3.0  # the analytic marginal: y ~ Normal(0, 3); x_i | y ~ Normal(0, exp(y / 2))


def assert_funnel_marginals(draws: dict, k: float = K_MCSE) -> None:
    """y's mean and sd, and the sd of x * exp(-y / 2) (Normal(0, 1) given any y), match the
    analytic funnel within ``k`` MCSEs (ArviZ's MCSE of the mean and of the sd)."""
    y = np.asarray(draws["y"], dtype=float)
    z = np.asarray(draws["x"], dtype=float)[..., 0] * np.exp(-y / 2)
    assert abs(y.mean()) < k * az.mcse(y), (y.mean(), az.mcse(y))
    assert abs(y.std() - Y_SD) < k * az.mcse(y, method="sd"), (y.std(), az.mcse(y, method="sd"))
    assert abs(z.std() - 1.0) < k * az.mcse(z, method="sd"), (z.std(), az.mcse(z, method="sd"))


def test_funnel_prior_draws_are_the_analytic_funnel_and_round_trip(tmp_path):
    """``method="prior"`` on both parameterisations: exact independent draws of the joint, so
    the analytic marginals hold within K_MCSE MCSEs (here simply sd / sqrt(n))."""
    for program in (model, reparam_model):
        fit = ppgen.fit(program, {}, "prior", seed=0)
        assert fit.kind == "unobserved" and fit.draws["y"].shape == (1, 1000)
        assert_funnel_marginals(fit.draws)
    assert "x_decentered" in fit.draws  # the reparameterised program's own latent
    loaded, _ = roundtrip(fit, reparam_model, tmp_path, loo=False, compare_arviz=True)
    assert "x" in loaded.predict(seed=1)  # the deterministic site, recomputed


def test_funnel_reparam_nuts_is_the_analytic_funnel_and_matches_raw_numpyro(tmp_path):
    """NUTS on the non-centred program (the example's reparam_model; 500 + 500): no
    divergences, the analytic marginals within K_MCSE MCSEs, and the means of y and of the
    sampled x_decentered within K_MCSE combined MCSEs of raw NumPyro's run."""
    fit = ppgen.fit(reparam_model, {}, NUTS(num_samples=500, num_warmup=500), seed=0)
    assert fit.diagnostics["divergences"] == 0
    assert_funnel_marginals(fit.draws)
    raw = raw_numpyro_nuts(reparam_model, num_samples=500, num_warmup=500, seed=1)
    assert_means_agree(fit.draws, raw, ["y", "x_decentered"])
    roundtrip(fit, reparam_model, tmp_path, loo=False)


def test_funnel_centred_nuts_is_numpyros_own_run_and_round_trips(tmp_path):
    """NUTS on the centred program: the example's point is that HMC cannot enter the neck,
    so the draws are biased (y's sd falls short of 3) and may diverge: MCSEs computed from them
    are not trustworthy and neither the analytic nor an MCSE comparison applies. ppgen's NUTS
    on a NumPyro program is NumPyro's own sampler, so with the same key (ppgen ``seed=0``,
    ``PRNGKey(0)``) it gives raw NumPyro's draws, to float rounding (rtol 1e-5)."""
    fit = ppgen.fit(model, {}, NUTS(num_samples=500, num_warmup=500), seed=0)
    raw = raw_numpyro_nuts(model, num_samples=500, num_warmup=500, seed=0)
    for site in ("y", "x"):
        np.testing.assert_allclose(fit.draws[site], raw[site], rtol=1e-5, atol=1e-5)
    roundtrip(fit, model, tmp_path, loo=False)
