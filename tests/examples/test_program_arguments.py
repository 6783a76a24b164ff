"""Program arguments that are not observations (issue 17, item 2 and 5): positional arguments,
functions and settings objects passed to the program, user-level subsampling, and NumPyro
programs that compute with their covariates in NumPy inside a jitted SVI step.

Truth: the conjugate normal-normal posterior (mu ~ N(0, 10^2), x_i ~ N(mu, 1)): precision
n + 1/100, mean sum(x) / precision.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
from pyro import poutine

import ppgen
from ppgen.errors import CheckpointError, DataError, ProgramError
from ppgen.inference import NUTS, SVI

RNG = np.random.default_rng(3)
X = RNG.normal(1.5, 1.0, 20).astype(np.float32)
PREC = len(X) + 1 / 100
MEAN, SD = float(X.sum() / PREC), PREC**-0.5


def likelihood(settings, x):
    """The inner program of Pyro's eight-schools ``mcmc.py`` shape: it is conditioned by the
    outer one, which receives it as an argument."""
    mu = pyro.sample("mu", dist.Normal(0.0, settings.prior_scale))
    with pyro.plate("data", len(x)):
        return pyro.sample("obs", dist.Normal(mu, 1.0))


def conditioned_model(model, settings, x, y):
    return poutine.condition(model, data={"obs": y})(settings, x)


SETTINGS = argparse.Namespace(prior_scale=10.0)
DATA = {"model": likelihood, "settings": SETTINGS, "x": X, "y": X}


@pytest.mark.parametrize(
    "method",
    [
        SVI(steps=1500, lr=0.05, lr_decay=0.01, num_draws=2000),
        NUTS(num_warmup=300, num_samples=600),
    ],
    ids=["svi", "nuts"],
)
def test_a_function_and_a_settings_object_as_arguments_fit_save_and_load(method, tmp_path):
    """An argument named `model` reaches the program (not Pyro's ELBO), the posterior is the
    conjugate one, and the saved run asks for the unsaved arguments by name at load."""
    fit = ppgen.fit(conditioned_model, DATA, method, seed=1)
    mu = np.asarray(fit.draws["mu"]).ravel()
    # SVI (annealed, 2000 draws): measured |error| 0.01; NUTS: MC error ~ SD/sqrt(ESS ~ 200)
    assert abs(mu.mean() - MEAN) < 0.07
    assert abs(mu.std() - SD) < 0.05
    fit.save(tmp_path / "run")
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    assert '"model": "function `likelihood`"' in manifest and "Namespace object" in manifest
    with pytest.raises(CheckpointError, match=r"`model` \(function `likelihood`\).*static="):
        ppgen.load(tmp_path / "run", conditioned_model)
    with pytest.raises(CheckpointError, match=r"\['extra'\].*did not record"):
        ppgen.load(tmp_path / "run", conditioned_model, static={**_static(), "extra": 1})
    again = ppgen.load(tmp_path / "run", conditioned_model, static=_static())
    np.testing.assert_array_equal(again.draws["mu"], fit.draws["mu"])
    ll, ll2 = fit.log_likelihood(), again.log_likelihood()
    np.testing.assert_array_equal(ll["obs"], ll2["obs"])


def _static():
    return {"model": likelihood, "settings": SETTINGS}


def model_xy(x, scale=10.0, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, scale))
    with pyro.plate("data", len(x)):
        pyro.sample("y", dist.Normal(mu + 0 * x, 1.0), obs=y)


def test_positional_arguments_are_named_by_the_signature(tmp_path):
    fit = ppgen.fit(model_xy, {"y": X}, SVI(steps=400, lr=0.05), args=(X, 10.0))
    assert sorted(fit.data) == ["scale", "x", "y"]
    assert abs(np.asarray(fit.draws["mu"]).mean() - MEAN) < 0.1
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", model_xy)  # arrays and numbers come back by name
    np.testing.assert_array_equal(again.draws["mu"], fit.draws["mu"])


def star_model(*args):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(mu, 1.0), obs=args[0])


def only_positional(x, /, y=None):
    pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


@pytest.mark.parametrize(
    ("program", "args", "data", "match"),
    [
        (model_xy, (X, 10.0), {"x": X, "y": X}, r"\['x'\] are given twice"),
        (star_model, (X,), {}, r"would go to `\*args`.*wrap the program"),
        (model_xy, (X, 1.0, X, 3), {}, "takes no more"),
        (only_positional, (X,), {}, "positional-only"),
        (model_xy, X, {}, "must be a tuple"),
    ],
    ids=["twice", "star-args", "too-many", "positional-only", "not-a-tuple"],
)
def test_positional_arguments_that_cannot_be_named_are_refused(program, args, data, match):
    pyro.clear_param_store()
    with pytest.raises(DataError, match=match):
        ppgen.fit(program, data, SVI(steps=2), args=args)
    assert not list(pyro.get_param_store().keys())  # refused before any work


def pyro_subsampling(x, batch_size=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x), subsample_size=batch_size) as ind:
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x[ind])


def numpyro_subsampling(x, batch_size=None):
    import numpyro
    import numpyro.distributions as nd

    mu = numpyro.sample("mu", nd.Normal(0.0, 10.0))
    with numpyro.plate("data", len(x), subsample_size=batch_size) as ind:
        numpyro.sample("x", nd.Normal(mu, 1.0), obs=x[ind])


@pytest.mark.parametrize(
    "program", [pyro_subsampling, numpyro_subsampling], ids=["pyro", "numpyro"]
)
def test_subsampling_in_the_program_is_refused_and_ppgen_subsamples_instead(program):
    backend = "pyro" if program is pyro_subsampling else "numpyro"
    for method in (SVI(steps=2), NUTS(num_warmup=2, num_samples=2)):
        with pytest.raises(DataError, match=r"Plate `data` subsamples 5 of its 20.*batch_size=5"):
            ppgen.fit(program, {"x": X, "batch_size": 5}, method, backend=backend)
    # the remedy: the whole plate in the program, batch_size on the estimator (N/B-weighted)
    est = SVI(steps=1500, lr=0.05, lr_decay=0.01, batch_size=5, num_draws=2000)
    fit = ppgen.fit(program, {"x": X}, est, seed=0, backend=backend)
    assert abs(np.asarray(fit.draws["mu"]).mean() - MEAN) < 0.1  # minibatch noise: measured 0.02


def numpyro_groups(group, y=None):
    """A NumPyro program that computes with a covariate in NumPy (``np.unique``), as
    NumPyro's ``ucbadmit.py`` does: it needs the covariate's values, not a tracer."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd

    k = len(np.unique(group))
    mu = numpyro.sample("mu", nd.Normal(jnp.zeros(k), 10.0).to_event(1))
    with numpyro.plate("data", len(group)):
        numpyro.sample("y", nd.Normal(mu[group], 1.0), obs=y)


def test_numpyro_svi_closes_over_arguments_it_does_not_minibatch():
    group = np.repeat([0, 1], 10)
    y = X + 2.0 * group
    fit = ppgen.fit(
        numpyro_groups,
        {"group": group, "y": y},
        SVI(steps=1500, lr=0.05, lr_decay=0.01, num_draws=2000),
        seed=0,
        backend="numpyro",  # this file imports Pyro too
    )
    mu = np.asarray(fit.draws["mu"]).reshape(-1, 2).mean(0)
    truth = [y[group == g].sum() / (10 + 1 / 100) for g in (0, 1)]
    np.testing.assert_allclose(mu, truth, atol=0.07)  # measured 0.01
    # minibatched, `group` is sliced per step and so traced: the program cannot call NumPy on
    # it: the error names the minibatched arguments and what to do
    with pytest.raises(ProgramError, match=r"minibatched argument \(group, y\).*jax.numpy"):
        ppgen.fit(
            numpyro_groups, {"group": group, "y": y}, SVI(steps=2, batch_size=5), backend="numpyro"
        )


def test_minibatching_local_latents_with_an_autoguide_is_refused_before_training():
    """Eight schools' `eta` has one value per school: an autoguide cannot follow minibatches
    of schools (it crashed mid-step before; now the error names the sites and the remedy)."""
    from ppgen.models import EightSchools

    data = ppgen.data.load("eight_schools")
    with pytest.raises(ppgen.errors.EstimatorError, match=r"\['eta'\].*Amortized"):
        ppgen.fit(EightSchools(), data, SVI(steps=5, batch_size=4))
