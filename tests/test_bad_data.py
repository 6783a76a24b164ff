"""Bad data and bad programs on both backends: each refused with a named error, or handled.

The table ``BAD`` holds (model, data, method, guide, error type, words the message must
contain): the words name the culprit (site, data key, plate, step) and the remedy.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pyro
import pyro.distributions as dist
import pytest
import torch

import ppgen
from ppgen import Program
from ppgen.errors import DataError, ProgramError
from ppgen.inference import NUTS, SVI

X50 = np.random.default_rng(0).normal(1.0, 1.0, 50)
HUGE = np.r_[np.zeros(9), 1e300]  # finite in float64, inf in float32
COUNTS = np.array([1, 2, 3, 3_000_000_000], dtype=np.int64)  # wraps in int32
FIX = {"pyro": "torch.set_default_dtype", "numpyro": "jax_enable_x64"}


# ----------------------------------------------------------------------------- programs
def p_normal(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def n_normal(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def p_renamed(counts=None):  # data key `counts` feeds site `y`
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(counts)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=counts)


def n_renamed(counts=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    with numpyro.plate("data", len(counts)):
        numpyro.sample("y", nd.Normal(mu, 1.0), obs=counts)


def p_regression(w=None, y=None):  # `w` is a covariate, not observed
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(b * w, 1.0), obs=y)


def n_regression(w=None, y=None):
    b = numpyro.sample("b", nd.Normal(0.0, 1.0))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", nd.Normal(b * w, 1.0), obs=y)


def p_scalar(x=None):  # one scalar observation, no plate
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def n_scalar(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def p_plate10(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", 10):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def n_plate10(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    with numpyro.plate("data", 10):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def p_poisson(x=None):
    lam = pyro.sample("lam", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Poisson(lam), obs=x)


def n_poisson(x=None):
    lam = numpyro.sample("lam", nd.Gamma(2.0, 1.0))
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", nd.Poisson(lam), obs=x)


def p_literal(x=None):  # the plate's size is a literal, not len(x)
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", 50):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def n_literal(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    with numpyro.plate("data", 50):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def p_sized_by_arg(x=None, n=None):  # the size comes from a number passed as data
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", n):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def n_sized_by_arg(x=None, n=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    with numpyro.plate("data", n):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def p_half(x=None):
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(0.0, sigma), obs=x)


def p_half_guide(x=None):  # a Normal for a positive site: proposes negative values
    loc = pyro.param("loc", torch.tensor(0.2))
    pyro.sample("sigma", dist.Normal(loc, 1.0))


def n_half(x=None):
    sigma = numpyro.sample("sigma", nd.HalfNormal(1.0))
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", nd.Normal(0.0, sigma), obs=x)


def n_half_guide(x=None):
    loc = numpyro.param("loc", 0.2)
    numpyro.sample("sigma", nd.Normal(loc, 1.0))


def p_nan_factor(x=None):  # log of negative numbers through the data: NaN at every draw
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.factor("f", torch.log(x - 10.0).sum() + mu)
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def n_nan_factor(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 1.0))
    numpyro.factor("f", jnp.log(x - 10.0).sum() + mu)
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def n_inf_factor(x=None):  # -inf everywhere: no NaN, but no starting point either
    mu = numpyro.sample("mu", nd.Normal(0.0, 1.0))
    numpyro.factor("f", -jnp.inf * jnp.ones(()) + 0.0 * mu)
    with numpyro.plate("data", len(x)):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def _svi(**kw):
    return SVI(steps=3, num_draws=5, **kw)


def _nuts():
    return NUTS(num_samples=5, num_warmup=5)


MODELS = {
    "normal": {"pyro": p_normal, "numpyro": n_normal},
    "renamed": {"pyro": p_renamed, "numpyro": n_renamed},
    "regression": {"pyro": p_regression, "numpyro": n_regression},
    "scalar": {"pyro": p_scalar, "numpyro": n_scalar},
    "plate10": {"pyro": p_plate10, "numpyro": n_plate10},
    "literal": {"pyro": p_literal, "numpyro": n_literal},
    "sized_by_arg": {"pyro": p_sized_by_arg, "numpyro": n_sized_by_arg},
    "nan_factor": {"pyro": p_nan_factor, "numpyro": n_nan_factor},
}


def _both(case, model, data, method, err, words, guide=None):
    """The case on each backend (with the backend's own remedy where it differs)."""
    out = []
    for b in ("pyro", "numpyro"):
        w = [FIX[b] if x == "<fix>" else x for x in words]
        g = guide[b] if isinstance(guide, dict) else guide
        out.append(pytest.param(MODELS[model][b], data, method, g, err, w, id=f"{case}-{b}"))
    return out


# (model, data, method, guide, error type, words the message must contain)
BAD = [
    # -- data a backend cannot hold: float64 beyond float32, int64 beyond int32 (JAX)
    *_both(
        "float32-overflow-svi",
        "normal",
        {"x": HUGE},
        _svi(),
        DataError,
        ["Observed site `x`", "float32", "1e+300", "Rescale", "<fix>"],
    ),
    *_both(
        "float32-overflow-nuts",
        "normal",
        {"x": HUGE},
        _nuts(),
        DataError,
        ["Observed site `x`", "float32", "1e+300", "<fix>"],
    ),
    *_both(
        "float32-overflow-key-is-not-site",
        "renamed",
        {"counts": HUGE},
        _svi(),
        DataError,
        ["Observed site `y`", "'counts'", "float32", "<fix>"],
    ),
    *_both(
        "float32-overflow-covariate",
        "regression",
        {"w": HUGE, "y": np.zeros(10)},
        _svi(),
        DataError,
        ["Argument `w`", "float32", "Rescale"],
    ),
    pytest.param(
        n_poisson,
        {"x": COUNTS},
        _svi(),
        None,
        DataError,
        ["Observed site `x`", "int32", "3000000000", "wrap", "jax_enable_x64", "rescale"],
        id="int32-wrap-svi-numpyro",
    ),
    pytest.param(
        n_poisson,
        {"x": COUNTS},
        _nuts(),
        None,
        DataError,
        ["Observed site `x`", "int32", "-1294967296", "jax_enable_x64"],
        id="int32-wrap-nuts-numpyro",
    ),
    # -- empty data and Python scalars
    *_both(
        "empty-plated-svi",
        "normal",
        {"x": np.zeros(0)},
        _svi(),
        DataError,
        ["`data['x']` is empty", "non-empty"],
    ),
    *_both(
        "empty-plated-nuts",
        "normal",
        {"x": np.zeros(0)},
        _nuts(),
        DataError,
        ["`data['x']` is empty", "non-empty"],
    ),
    *_both(
        "empty-scalar-site",
        "scalar",
        {"x": np.zeros(0)},
        _svi(),
        DataError,
        ["Observed site `x` has no values", "at least one observation"],
    ),
    *_both(
        "python-scalar-for-plated-site",
        "plate10",
        {"x": 1.5},
        _svi(),
        DataError,
        ["Observed site `x`", "plate `data`", "plate('data', len(x))"],
    ),
    # -- torch tensors without values
    *_both(
        "meta-tensor",
        "normal",
        {"x": torch.zeros(5, device="meta")},
        _svi(),
        DataError,
        ["`data['x']`", "`meta` device", "no values", "Pass the tensor holding the data"],
    ),
    # -- a plate of fixed size with minibatches
    *_both(
        "literal-plate-with-batch-size",
        "literal",
        {"x": X50},
        _svi(batch_size=10),
        ProgramError,
        ["Plate `data` keeps size 50", "batch_size=10", "plate('data', len(x))"],
    ),
    *_both(
        "plate-sized-by-number-with-batch-size",
        "sized_by_arg",
        {"x": X50, "n": 50},
        _svi(batch_size=10),
        ProgramError,
        ["Plate `data` keeps size 50", "a number passed as data", "plate('data', len(x))"],
    ),
    # -- a factor that is NaN whatever the latents
    *_both(
        "nan-factor-svi",
        "nan_factor",
        {"x": X50},
        _svi(),
        ProgramError,
        ["Factor `f` is NaN", "the expression passed to `factor`"],
    ),
    *_both(
        "nan-factor-nuts",
        "nan_factor",
        {"x": X50},
        _nuts(),
        ProgramError,
        ["Factor `f` is NaN", "the expression passed to `factor`"],
    ),
    pytest.param(
        n_inf_factor,
        {"x": X50},
        _svi(),
        None,
        ProgramError,
        ["SVI cannot start", "['f']", "factor"],
        id="inf-factor-svi-numpyro",
    ),
    # -- a guide proposing values outside the model site's support
    pytest.param(
        p_half,
        {"x": X50},
        SVI(steps=50),
        p_half_guide,
        ProgramError,
        ["Site `sigma`", "proposed", "outside the support", "HalfNormal", "step", "AutoNormal"],
        id="guide-outside-support-pyro",
    ),
    pytest.param(
        p_half,
        {"x": X50},
        SVI(steps=50, elbo=pyro.infer.Trace_ELBO()),  # Pyro's ELBO: validation raises
        p_half_guide,
        ProgramError,
        ["Site `sigma`", "outside the support", "HalfNormal", "at step", "AutoNormal"],
        id="guide-outside-support-pyro-elbo",
    ),
    pytest.param(
        n_half,
        {"x": X50},
        SVI(steps=50),
        n_half_guide,
        ProgramError,
        ["Site `sigma`", "outside the support", "HalfNormal", "at step", "AutoNormal"],
        id="guide-outside-support-numpyro",
    ),
]


@pytest.mark.parametrize("model, data, method, guide, err, words", BAD)
def test_bad_data_or_program_raises_named_error(model, data, method, guide, err, words):
    with pytest.raises(err) as info:
        ppgen.fit(model, data, method, guide=guide, progress=False)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in message: {msg}"
    assert isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------- handled well
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("value", [1.5, 2])
def test_python_scalar_observation_of_a_scalar_site_fits(backend, value):
    model = MODELS["scalar"][backend]
    fit = ppgen.fit(model, {"x": value}, SVI(steps=200, lr=0.05, num_draws=200), progress=False)
    # posterior of mu: N(x * 100/101, ~1): the draws sit near the observation
    assert abs(float(fit.draws["mu"].mean()) - value) < 0.5
    nuts = ppgen.fit(model, {"x": value}, NUTS(num_samples=50, num_warmup=50), progress=False)
    assert np.isfinite(nuts.draws["mu"]).all()


def test_int64_counts_beyond_int32_fit_on_pyro():
    """torch keeps int64 counts: nothing wraps, the observed values reach the site intact."""
    x = np.array([3_000_000_000, 3_000_000_256, 2_999_999_744], dtype=np.int64)

    def model(x=None):
        lam = pyro.sample("lam", dist.LogNormal(21.8, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Poisson(lam), obs=x)

    info = Program(model).inspect({"x": x})
    np.testing.assert_array_equal(info.sites["x"].value.numpy().astype(np.int64), x)
    fit = ppgen.fit(model, {"x": x}, SVI(steps=5, num_draws=5), progress=False)
    assert np.isfinite(fit.draws["lam"]).all()


def test_a_factor_nan_at_some_draws_only_is_left_to_the_sampler():
    """NaN at the first draw but not at every one: a region to reject, not a broken program."""

    def model(c=None, x=None):
        mu = numpyro.sample("mu", nd.Normal(0.0, 1.0))
        numpyro.factor("f", jnp.log(mu - c))  # NaN where mu < c
        with numpyro.plate("data", len(x)):
            numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)

    x = np.zeros(3)
    mu0 = float(Program(model).inspect({"c": -100.0, "x": x}).sites["mu"].value)
    info = Program(model).inspect({"c": mu0 + 1e-3, "x": x})  # NaN at the seed-0 draw only
    assert bool(jnp.isnan(info.sites["f"].fn.log_factor))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_validation_leaves_the_global_rng_alone(backend):
    """The first run of the program draws from its own seed, so validating twice changes
    nothing (and a refused lossy conversion leaves nothing behind)."""
    model = MODELS["normal"][backend]
    torch.manual_seed(3)
    before = torch.get_rng_state()
    Program(model).validate({"x": X50})
    assert torch.equal(torch.get_rng_state(), before)
    with pytest.raises(DataError):
        Program(model).validate({"x": HUGE})
    Program(model).validate({"x": X50})  # fine again: the refusal was for that array only
