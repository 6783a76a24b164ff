"""Program: backend detection, tracing, and the table of bad inputs/programs with named errors."""

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
from ppgen.errors import CheckpointError, DataError, EstimatorError, ProgramError
from ppgen.inference import NUTS, SVI
from ppgen.models import EightSchools, NormalNormal


def normal_model(x=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 10):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def np_normal_model(x=None):
    mu = numpyro.sample("mu", nd.Normal(0.0, 1.0))
    with numpyro.plate("data", 10):
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x)


def poisson_model(x=None):
    lam = pyro.sample("lam", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", 5):
        pyro.sample("x", dist.Poisson(lam), obs=x)


def np_poisson_model(x=None):
    lam = numpyro.sample("lam", nd.Gamma(2.0, 1.0))
    with numpyro.plate("data", 5):
        numpyro.sample("x", nd.Poisson(lam), obs=x)


def bernoulli_model(y=None):
    p = pyro.sample("p", dist.Beta(1.0, 1.0))
    with pyro.plate("data", 4):
        pyro.sample("y", dist.Bernoulli(p), obs=y)


def categorical_model(c=None):
    probs = pyro.sample("probs", dist.Dirichlet(torch.ones(3)))
    with pyro.plate("data", 4):
        pyro.sample("c", dist.Categorical(probs), obs=c)


def mvn_model(x=None):
    mu = pyro.sample("mu", dist.Normal(torch.zeros(3), 1.0).to_event(1))
    with pyro.plate("data", 4):
        pyro.sample("x", dist.MultivariateNormal(mu, torch.eye(3)), obs=x)


def duplicate_model(x=None):
    pyro.sample("mu", dist.Normal(0.0, 1.0))
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 10):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def plate_mismatch_model(x=None):
    with pyro.plate("data", 10):
        z = pyro.sample("z", dist.Normal(torch.zeros(7), 1.0))
        pyro.sample("x", dist.Normal(z.sum(), 1.0), obs=x)


def wrong_shape_guide(x=None):
    pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))


def missing_latent_guide(x=None):
    pass


def observed_in_guide(x=None):
    pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(0.0, 1.0))


def discrete_latent_model(x=None):
    z = pyro.sample("z", dist.Bernoulli(0.5))
    with pyro.plate("data", 10):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


X10 = np.linspace(-1, 1, 10)

# (model, data, method, guide, error type, substrings the message must contain)
BAD = [
    pytest.param(normal_model, {}, "svi", None, DataError, ["no observed sites"], id="no-data"),
    pytest.param(
        EightSchools(),
        {"y": np.zeros(8)},
        "svi",
        None,
        DataError,
        ["sigma", "missing"],
        id="missing-key",
    ),
    pytest.param(
        normal_model,
        {"x": X10, "z": X10},
        "svi",
        None,
        DataError,
        ["'z'", "does not take"],
        id="unknown-key",
    ),
    pytest.param(
        normal_model,
        {"x": np.r_[X10[:9], np.nan]},
        "svi",
        None,
        DataError,
        ["'x'", "NaN"],
        id="nan",
    ),
    pytest.param(
        normal_model,
        {"x": np.r_[X10[:9], np.inf]},
        "svi",
        None,
        DataError,
        ["'x'", "inf"],
        id="inf",
    ),
    pytest.param(
        normal_model,
        {"x": np.array(["a"] * 10)},
        "svi",
        None,
        DataError,
        ["'x'", "numeric"],
        id="string-dtype",
    ),
    pytest.param(
        normal_model,
        {"x": np.zeros(7)},
        "svi",
        None,
        DataError,
        ["`x`", "plate `data`", "10"],
        id="plate-size",
    ),
    pytest.param(
        poisson_model,
        {"x": np.array([1, 2, -1, 0, 3])},
        "svi",
        None,
        DataError,
        ["`x`", "support", "-1"],
        id="negative-counts",
    ),
    pytest.param(
        poisson_model,
        {"x": np.array([1.5, 2, 1, 0, 3])},
        "svi",
        None,
        DataError,
        ["`x`", "support"],
        id="non-integer-counts",
    ),
    pytest.param(
        bernoulli_model,
        {"y": np.array([0, 1, 2, 1])},
        "svi",
        None,
        DataError,
        ["`y`", "Bernoulli", "support"],
        id="non-binary",
    ),
    pytest.param(
        categorical_model,
        {"c": np.array([0, 1, 5, 1])},
        "svi",
        None,
        DataError,
        ["`c`", "support"],
        id="category-out-of-range",
    ),
    pytest.param(
        mvn_model,
        {"x": np.zeros((4, 2))},
        "svi",
        None,
        DataError,
        ["`x`", "event shape"],
        id="event-shape",
    ),
    pytest.param(
        np_poisson_model,
        {"x": np.array([1, 2, -3, 0, 3])},
        "svi",
        None,
        DataError,
        ["`x`", "support"],
        id="numpyro-negative-counts",
    ),
    pytest.param(
        np_normal_model,
        {"x": np.zeros(4)},
        "nuts",
        None,
        DataError,
        ["`x`", "plate `data`"],
        id="numpyro-plate-size",
    ),
    pytest.param(
        duplicate_model,
        {"x": X10},
        "svi",
        None,
        ProgramError,
        ["mu"],
        id="duplicate-site",
    ),
    pytest.param(
        plate_mismatch_model,
        {"x": X10},
        "svi",
        None,
        ProgramError,
        ["z"],
        id="latent-plate-mismatch",
    ),
    pytest.param(
        normal_model,
        {"x": X10},
        "svi",
        wrong_shape_guide,
        ProgramError,
        ["`mu`", "shape"],
        id="guide-shape",
    ),
    pytest.param(
        normal_model,
        {"x": X10},
        "svi",
        missing_latent_guide,
        ProgramError,
        ["`mu`", "missing from the guide"],
        id="guide-missing-latent",
    ),
    pytest.param(
        normal_model,
        {"x": X10},
        "svi",
        observed_in_guide,
        ProgramError,
        ["`x`", "observed"],
        id="guide-samples-observed",
    ),
    pytest.param(
        normal_model,
        {"x": X10},
        "sgld",
        None,
        EstimatorError,
        ["sgld", "nuts", "svi"],
        id="unknown-method",
    ),
    pytest.param(
        discrete_latent_model,
        {"x": X10},
        NUTS(num_samples=5),
        None,
        EstimatorError,
        ["'z'", "enumerate"],
        id="nuts-discrete-latent",
    ),
    pytest.param(
        discrete_latent_model,
        {"x": X10},
        "svi",
        None,
        EstimatorError,
        ["'z'", "enum"],
        id="autoguide-discrete-latent",
    ),
    pytest.param(
        normal_model,
        [1, 2, 3],
        "svi",
        None,
        DataError,
        ["`data`", "dict"],
        id="data-not-dict",
    ),
]


@pytest.mark.parametrize("model, data, method, guide, err, words", BAD)
def test_bad_input_raises_named_error(model, data, method, guide, err, words):
    with pytest.raises(err) as info:
        ppgen.fit(model, data, method, guide=guide, progress=False)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in message: {msg}"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: SVI(guide="autofancy"), ["autofancy", "normal", "mvn"]),
        (lambda: SVI(elbo="iwae", num_particles=1), ["num_particles", "iwae"]),
        (lambda: SVI(elbo="tracey"), ["tracey", "trace"]),
        (lambda: SVI(steps=-3), ["`steps`", "-3"]),
        (lambda: SVI(lr=0.0), ["`lr`"]),
        (lambda: NUTS(num_samples=0), ["`num_samples`"]),
        (lambda: NUTS(target_accept=1.5), ["`target_accept`"]),
        (lambda: NUTS(init_strategy="best"), ["best", "median"]),
    ],
)
def test_bad_estimator_settings_fail_at_construction(make, words):
    with pytest.raises(EstimatorError) as info:
        make()
    for w in words:
        assert w in str(info.value)


def test_bad_fit_arguments():
    data = {"x": X10}
    with pytest.raises(EstimatorError, match="device"):
        ppgen.fit(normal_model, data, "svi", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EstimatorError, match="CUDA"):
            ppgen.fit(normal_model, data, "svi", device="cuda")
    with pytest.raises(EstimatorError, match="batch_plate"):
        ppgen.fit(normal_model, data, SVI(steps=2, batch_size=2, batch_plate="rows"))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ppgen.fit(normal_model, data, SVI(steps=2), checkpoint_dir="/nonexistent", resume=True)
    with pytest.raises(EstimatorError, match="checkpoint_dir"):
        ppgen.fit(normal_model, data, SVI(steps=2), checkpoint_every=1)
    with pytest.raises(ProgramError, match="pyroapi"):
        ppgen.fit(normal_model, data, "svi", backend="numpyro")


def test_backend_detection():
    assert Program(normal_model).backend == "pyro"
    assert Program(np_normal_model).backend == "numpyro"
    neutral = Program(NormalNormal())
    assert neutral.neutral and neutral.backend == "pyro"
    assert neutral.with_backend("numpyro").backend == "numpyro"


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_trace_learns_sites(backend):
    prog = Program(EightSchools(), backend=backend)
    _, info = prog.validate({"sigma": np.ones(8), "y": np.zeros(8)})
    assert info.observed == ["y"]
    assert info.latent == ["mu", "tau", "eta"]
    assert info.sites["theta"].kind == "deterministic"
    assert info.sites["eta"].shape == (8,)
    assert [p.name for p in info.sites["y"].plates] == ["school"]
    assert info.plates["school"].size == 8
    assert info.obs_keys == {"y": "y"}
    assert any(w in info.sites["tau"].support.lower() for w in ("greaterthan", "positive"))


def test_stale_params_of_an_earlier_fit_do_not_leak_into_validation():
    """A second fit whose params have another shape validates and fits (scratch param store)."""

    def make(k):
        def model(x=None):
            w = pyro.param("w", torch.zeros(k))
            with pyro.plate("data", len(x)):
                pyro.sample("x", dist.Normal(w.sum(), 1.0), obs=x)

        return model

    x = np.random.default_rng(0).normal(1.0, 1.0, 50)
    ppgen.fit(make(3), {"x": x}, ppgen.inference.MLE(steps=2, check_convergence=False))
    pyro.param("w", torch.zeros(3))  # a stale 3-vector in the global store
    fit = ppgen.fit(make(2), {"x": x}, ppgen.inference.MLE(steps=300, lr=0.05))
    assert fit.params["w"].shape == (2,)
    assert abs(float(fit.params["w"].sum()) - x.mean()) < 0.02
    # validation's trace leaves the global store as it found it
    pyro.clear_param_store()
    Program(make(4)).validate({"x": x})
    assert "w" not in pyro.get_param_store()
