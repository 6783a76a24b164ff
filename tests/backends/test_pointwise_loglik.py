"""Pointwise log-likelihood against exact references: HMMs (forward algorithm), mixtures,
masks, a discrete latent shared by all data, and the refusals; both backends."""

from __future__ import annotations

import json
import warnings

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from numpyro import handlers
from numpyro.contrib.control_flow import scan
from pyro.ops.indexing import Vindex
from scipy.special import logsumexp
from scipy.stats import norm

import ppgen
from ppgen.backends.numpyro import OPS as NP
from ppgen.backends.pyro import OPS as PY
from ppgen.errors import CapabilityError
from ppgen.inference import SVI

N, T, D, K = 3, 5, 2, 2
RNG = np.random.default_rng(0)
SEQS = RNG.integers(0, 2, (N, T, D)).astype(np.float32)
LENGTHS = np.array([5, 3, 4])
S = 4
PX = RNG.dirichlet(np.ones(K), size=(S, K)).astype(np.float32)
PY_ = RNG.uniform(0.1, 0.9, (S, K, D)).astype(np.float32)
TOL = 1e-4  # float32 forward recursion over 5 steps: errors ~1e-6; a wrong unit is off by > 0.1


def forward(px, py, seqs, lengths):
    """log p(sequence) by the forward algorithm, x_0 ~ px[0], masked steps t >= length."""
    out = []
    for s, n in zip(seqs, lengths, strict=True):
        a = np.log(px[0])
        for t in range(n):
            if t > 0:
                a = logsumexp(a[:, None] + np.log(px), 0)
            a = a + (np.log(py) * s[t] + np.log1p(-py) * (1 - s[t])).sum(-1)
        out.append(logsumexp(a))
    return np.array(out)


def hmm_pyro(sequences, lengths):
    """Pyro's examples/hmm.py model_1 (plain indexing, length mask)."""
    probs_x = pyro.sample("probs_x", dist.Dirichlet(0.9 * torch.eye(K) + 0.1).to_event(1))
    probs_y = pyro.sample("probs_y", dist.Beta(0.1, 0.9).expand([K, D]).to_event(2))
    tones = pyro.plate("tones", D, dim=-1)
    with pyro.plate("sequences", sequences.shape[0], dim=-2):
        x = 0
        for t in pyro.markov(range(sequences.shape[1])):
            with poutine.mask(mask=(t < lengths).unsqueeze(-1)):
                x = pyro.sample(
                    f"x_{t}", dist.Categorical(probs_x[x]), infer={"enumerate": "parallel"}
                )
                with tones:
                    pyro.sample(
                        f"y_{t}", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=sequences[:, t]
                    )


def hmm_numpyro(sequences, lengths):
    """NumPyro's examples/hmm_enum.py model_1 (``scan``, length mask)."""
    probs_x = numpyro.sample("probs_x", nd.Dirichlet(0.9 * jnp.eye(K) + 0.1).to_event(1))
    probs_y = numpyro.sample("probs_y", nd.Beta(0.1, 0.9).expand([K, D]).to_event(2))
    n = sequences.shape[0]

    def step(carry, y):
        x_prev, t = carry
        with numpyro.plate("sequences", n, dim=-2):
            with handlers.mask(mask=(t < lengths)[..., None]):
                x = numpyro.sample(
                    "x", nd.Categorical(probs_x[x_prev]), infer={"enumerate": "parallel"}
                )
                with numpyro.plate("tones", D, dim=-1):
                    numpyro.sample("y", nd.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
        return (x, t + 1), None

    scan(step, (jnp.zeros((n, 1), dtype=jnp.int32), 0), jnp.swapaxes(sequences, 0, 1))


REF = np.stack([forward(PX[i], PY_[i], SEQS, LENGTHS) for i in range(S)])


def test_hmm_pyro_is_the_forward_marginal_per_sequence():
    kw = {"sequences": torch.tensor(SEQS), "lengths": torch.tensor(LENGTHS)}
    shapes = {f"y_{t}": (N, D) for t in range(T)}
    ll = PY.log_likelihood(hmm_pyro, kw, {"probs_x": PX, "probs_y": PY_}, shapes)
    assert list(ll) == ["y_0"] and ll["y_0"].shape == (S, N)
    unit = ll.units["y_0"]
    assert unit.sites == tuple(shapes) and unit.plates == (("sequences", N),)
    assert unit.enumerated == tuple(f"x_{t}" for t in range(T))
    np.testing.assert_allclose(ll["y_0"], REF, atol=TOL, rtol=0)
    with pytest.raises(CapabilityError, match="`y_1`"):  # half a group has no value
        PY.log_likelihood(hmm_pyro, kw, {"probs_x": PX, "probs_y": PY_}, {"y_1": (N, D)})


def test_hmm_numpyro_scan_is_the_forward_marginal_per_sequence():
    kw = {"sequences": jnp.asarray(SEQS), "lengths": jnp.asarray(LENGTHS)}
    ll = NP.log_likelihood(hmm_numpyro, kw, {"probs_x": PX, "probs_y": PY_}, {"y": (T, N, D)})
    assert ll["y"].shape == (S, N) and ll.units["y"].plates == (("sequences", N),)
    assert ll.units["y"].enumerated == ("x",)
    assert (ll["y"] < 0).all()  # Bernoulli probabilities
    np.testing.assert_allclose(ll["y"], REF, atol=TOL, rtol=0)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto:UserWarning")
@pytest.mark.filterwarnings("ignore:For one or more samples the posterior variance:UserWarning")
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_hmm_fit_to_arviz_and_loo(backend):
    data = {"sequences": SEQS, "lengths": LENGTHS}
    model, var, n_sites = (hmm_pyro, "y_0", T) if backend == "pyro" else (hmm_numpyro, "y", 1)
    est = SVI(elbo="enum", steps=3, num_draws=6)
    fit = ppgen.fit(model, data, est, backend=backend)
    idata = fit.to_arviz(posterior_predictive=False)
    ll = idata.log_likelihood
    assert list(ll.data_vars) == [var] and ll[var].dims == ("chain", "draw", "sequences")
    units = json.loads(idata.attrs["ppgen_log_likelihood_units"])
    assert units[var]["unit_plates"] == ["sequences"] and len(units[var]["sites"]) == n_sites
    px, py = fit.draws["probs_x"][0], fit.draws["probs_y"][0]
    ref = np.stack([forward(px[i], py[i], SEQS, LENGTHS) for i in range(len(px))])
    np.testing.assert_allclose(ll[var].values[0], ref, atol=TOL, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        elpd = az.loo(idata).elpd_loo
    # leave-one-sequence-out: finite, negative, below the in-sample total of the best draw
    assert np.isfinite(elpd) and elpd < 0 and elpd <= ref.sum(1).max() + TOL


def mixture_pyro(x):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(K)))
    locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([K]).to_event(1))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], 1.0), obs=x)


def mixture_numpyro(x):
    w = numpyro.sample("w", nd.Dirichlet(jnp.ones(K)))
    locs = numpyro.sample("locs", nd.Normal(0.0, 3.0).expand([K]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", nd.Categorical(w), infer={"enumerate": "parallel"})
        numpyro.sample("x", nd.Normal(locs[z], 1.0), obs=x)


X = RNG.normal(0.0, 2.0, 6).astype(np.float32)
W = RNG.dirichlet(np.ones(K), size=S).astype(np.float32)
LOCS = RNG.normal(0.0, 2.0, (S, K)).astype(np.float32)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_mixture_is_log_sum_per_datum(backend):
    ops, model, arr = (
        (PY, mixture_pyro, torch.tensor)
        if backend == "pyro"
        else (NP, mixture_numpyro, jnp.asarray)
    )
    ll = ops.log_likelihood(model, {"x": arr(X)}, {"w": W, "locs": LOCS}, {"x": (6,)})
    ref = logsumexp(np.log(W)[:, None, :] + norm.logpdf(X[None, :, None], LOCS[:, None]), -1)
    assert ll["x"].shape == (S, 6) and ll.units["x"].enumerated == ("z",)
    np.testing.assert_allclose(ll["x"], ref, atol=TOL, rtol=0)


def shared_pyro(x):
    w = pyro.sample("w", dist.Dirichlet(torch.ones(K)))
    locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([K]).to_event(1))
    z = pyro.sample("z", dist.Categorical(w), infer={"enumerate": "parallel"})
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], 1.0), obs=x)


def shared_numpyro(x):
    w = numpyro.sample("w", nd.Dirichlet(jnp.ones(K)))
    locs = numpyro.sample("locs", nd.Normal(0.0, 3.0).expand([K]).to_event(1))
    z = numpyro.sample("z", nd.Categorical(w), infer={"enumerate": "parallel"})
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", nd.Normal(locs[z], 1.0), obs=x)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_shared_discrete_latent_is_one_unit(backend):
    ops, model, arr = (
        (PY, shared_pyro, torch.tensor) if backend == "pyro" else (NP, shared_numpyro, jnp.asarray)
    )
    ll = ops.log_likelihood(model, {"x": arr(X)}, {"w": W, "locs": LOCS}, {"x": (6,)})
    ref = logsumexp(np.log(W) + norm.logpdf(X[None, :, None], LOCS[:, None]).sum(1), -1)
    assert ll["x"].shape == (S,) and ll.units["x"].plates == ()
    np.testing.assert_allclose(ll["x"], ref, atol=TOL * 10, rtol=0)  # a sum of 6 terms


XR = RNG.normal(size=(7, 2)).astype(np.float32)
YR = RNG.normal(size=7).astype(np.float32)
MASK = np.array([1, 1, 0, 1, 1, 0, 1], dtype=bool)
BETA = RNG.normal(size=(S, 2)).astype(np.float32)


def reg_pyro_matmul(X, y, mask):  # X @ b does not broadcast over draws: the vmap path
    b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with pyro.plate("data", X.shape[0]), poutine.mask(mask=mask):
        pyro.sample("y", dist.Normal(X @ b, 1.0), obs=y)


def reg_pyro_bcast(X, y, mask):  # broadcasts: the outer-plate path
    b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with pyro.plate("data", X.shape[0]), poutine.mask(mask=mask):
        pyro.sample("y", dist.Normal((X * b.unsqueeze(-2)).sum(-1), 1.0), obs=y)


def reg_numpyro(X, y, mask):
    b = numpyro.sample("b", nd.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", X.shape[0]), handlers.mask(mask=mask):
        numpyro.sample("y", nd.Normal(X @ b, 1.0), obs=y)


@pytest.mark.parametrize("model", [reg_pyro_matmul, reg_pyro_bcast, reg_numpyro])
def test_masked_points_are_zero(model):
    arr = jnp.asarray if model is reg_numpyro else torch.tensor
    ops = NP if model is reg_numpyro else PY
    kw = {"X": arr(XR), "y": arr(YR), "mask": arr(MASK)}
    ll = ops.log_likelihood(model, kw, {"b": BETA}, {"y": (7,)})["y"]
    exact = norm.logpdf(YR, BETA @ XR.T)
    assert (ll[:, ~MASK] == 0).all()
    np.testing.assert_allclose(ll[:, MASK], exact[:, MASK], atol=TOL, rtol=0)
    np.testing.assert_allclose(ll.sum(1), exact[:, MASK].sum(1), atol=TOL * 10, rtol=0)


def seq_pyro(x):
    locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([K]).to_event(1))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(torch.ones(K) / K), infer={"enumerate": "sequential"})
        pyro.sample("x", dist.Normal(Vindex(locs)[..., z], 1.0), obs=x)


def seq_numpyro(x):
    locs = numpyro.sample("locs", nd.Normal(0.0, 3.0).expand([K]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", nd.Categorical(jnp.ones(K) / K), infer={"enumerate": "sequential"})
        numpyro.sample("x", nd.Normal(locs[z], 1.0), obs=x)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_sequential_enumeration_is_refused(backend):
    ops, model, arr = (
        (PY, seq_pyro, torch.tensor) if backend == "pyro" else (NP, seq_numpyro, jnp.asarray)
    )
    with pytest.raises(CapabilityError, match=r"`z`.*sequential"):
        ops.log_likelihood(model, {"x": arr(X)}, {"locs": LOCS}, {"x": (6,)})


def test_to_arviz_omits_or_raises_a_refused_log_likelihood():
    prog = ppgen.Program(seq_pyro)
    _, info = prog.validate({"x": X})
    fit = ppgen.Fit(
        program=prog, estimator=None, info=info, data={"x": X}, draws={"locs": LOCS[None]}
    )
    idata = fit.to_arviz(posterior_predictive=False)
    assert "log_likelihood" not in idata.groups()
    assert "`z`" in json.loads(idata.attrs["ppgen_omitted_groups"])["log_likelihood"]
    with pytest.raises(CapabilityError, match="`z`"):
        fit.to_arviz(posterior_predictive=False, log_likelihood=True)
    with pytest.raises(CapabilityError, match="`z`"):
        fit.log_likelihood()
