"""A run fitted with the user's own guide survives save/load: ``ppgen.load(path, model, guide=)``.

Each case fits a few SVI steps, saves, loads with a fresh guide of the same kind and checks the
loaded fit is the saved one: parameters, draws, ``predict(seed=1)``, ``sample_posterior`` and
``fit.guide``. Loading without the guide, ``guide=`` for a built-in guide and a guide whose
parameters differ are refused by name, before anything changes.
"""

from __future__ import annotations

import hashlib
import json

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as dist
import pytest
import torch
from numpyro.infer.autoguide import AutoNormal as NumPyroAutoNormal
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal

import ppgen
from ppgen.errors import CheckpointError
from ppgen.inference import SVI
from ppgen.models import NormalNormal

X = np.random.default_rng(0).normal(1.0, 1.0, 20).astype(np.float32)
FAST = {"steps": 20, "num_draws": 16, "lr": 0.05}


# ------------------------------------------------------------------ Pyro programs and guides
def pyro_model(x=None):

    sigma = pyro.param("sigma", torch.tensor(1.0), constraint=dist.constraints.positive)
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("d", 20):
        pyro.sample("x", dist.Normal(mu, sigma), obs=x)


def my_guide(x=None):

    loc = pyro.param("q_loc", torch.tensor(0.0))
    scale = pyro.param("q_scale", torch.tensor(1.0), constraint=dist.constraints.positive)
    pyro.sample("mu", dist.Normal(loc, scale))


def auto_diagonal():
    return AutoDiagonalNormal(pyro_model)


def auto_delta():
    return AutoDelta(pyro_model)


# ------------------------------------------------------------------ NumPyro programs and guides
def numpyro_model(x=None):
    sigma = numpyro.param("sigma", jnp.array(1.0), constraint=ndist.constraints.positive)
    mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
    with numpyro.plate("d", 20):
        numpyro.sample("x", ndist.Normal(mu, sigma), obs=x)


def my_numpyro_guide(x=None):

    loc = numpyro.param("q_loc", jnp.array(0.0))
    scale = numpyro.param("q_scale", jnp.array(1.0), constraint=ndist.constraints.positive)
    numpyro.sample("mu", ndist.Normal(loc, scale))


def numpyro_auto_normal():
    return NumPyroAutoNormal(numpyro_model)


def _snapshot(run):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}


def _fit_and_save(tmp_path, model, guide, *, to_estimator=False):
    if to_estimator:
        fit = ppgen.fit(model, {"x": X}, SVI(guide=guide, **FAST))
    else:
        fit = ppgen.fit(model, {"x": X}, SVI(**FAST), guide=guide)
    run = tmp_path / "run"
    fit.save(run)
    return fit, run


CASES = {  # model, a fresh guide, its manifest name, a guide with other parameters
    "pyro-AutoDiagonalNormal": (
        pyro_model,
        auto_diagonal,
        {"class": "AutoDiagonalNormal"},
        lambda: my_guide,
    ),
    "pyro-function": (pyro_model, lambda: my_guide, {"function": "my_guide"}, auto_diagonal),
    "pyro-AutoDelta": (pyro_model, auto_delta, {"class": "AutoDelta"}, auto_diagonal),
    "numpyro-AutoNormal": (
        numpyro_model,
        numpyro_auto_normal,
        {"class": "AutoNormal"},
        lambda: my_numpyro_guide,
    ),
    "numpyro-function": (
        numpyro_model,
        lambda: my_numpyro_guide,
        {"function": "my_numpyro_guide"},
        numpyro_auto_normal,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_guide_round_trips_through_save_and_load(tmp_path, case):
    model, make, name, other = CASES[case]
    fit, run = _fit_and_save(tmp_path, model, make())
    record = json.loads((run / "manifest.json").read_text())["guide"]
    assert record == {"kind": "user", **name, "passed": "fit"}

    again = ppgen.load(run, model, guide=make())  # a fresh guide of the same kind
    assert sorted(again.params) == sorted(fit.params)
    for k, v in fit.params.items():
        np.testing.assert_array_equal(again.params[k], v)
    assert sorted(again.draws) == sorted(fit.draws)
    for k, v in fit.draws.items():
        np.testing.assert_array_equal(again.draws[k], v)
    expected = fit.predict(seed=1)
    got = again.predict(seed=1)
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v)
    for k, v in fit.sample_posterior(5, seed=3).items():
        np.testing.assert_array_equal(again.sample_posterior(5, seed=3)[k], v)
    assert (again.guide is None) == (fit.guide is None)
    if again.guide is not None:  # the fitted guide, runnable with the loaded parameters
        assert callable(again.guide_callable())
    # a guide whose parameters differ is refused, naming the saved ones it lacks
    with pytest.raises(CheckpointError, match="in the run but not in the guide") as err:
        ppgen.load(run, model, guide=other())
    guide_params = sorted(set(fit.params) - {"sigma"})  # `sigma` is the model's
    assert guide_params and all(f"`{k}`" in str(err.value) for k in guide_params), str(err.value)


def test_guide_passed_to_the_estimator_round_trips(tmp_path):
    fit, run = _fit_and_save(tmp_path, pyro_model, my_guide, to_estimator=True)
    record = json.loads((run / "manifest.json").read_text())["guide"]
    assert record == {"kind": "user", "function": "my_guide", "passed": "estimator"}
    again = ppgen.load(run, pyro_model, guide=my_guide)
    assert again.estimator.guide is my_guide
    for k, v in fit.predict(seed=1).items():
        np.testing.assert_array_equal(again.predict(seed=1)[k], v)


def test_builtin_guides_are_recorded_as_such(tmp_path):
    fit = ppgen.fit(pyro_model, {"x": X}, SVI(guide="diagonal", **FAST))
    fit.save(tmp_path / "run")
    record = json.loads((tmp_path / "run" / "manifest.json").read_text())["guide"]
    assert record == {"kind": "builtin", "class": "AutoDiagonalNormal"}
    again = ppgen.load(tmp_path / "run", pyro_model)
    np.testing.assert_array_equal(again.draws["mu"], fit.draws["mu"])


# ------------------------------------------------------------------ refusals, before any work
@pytest.mark.parametrize(
    ("make", "named", "remedy"),
    [
        (auto_diagonal, "`AutoDiagonalNormal`", "guide=AutoDiagonalNormal(model)"),
        (lambda: my_guide, "function `my_guide`", "guide=my_guide"),
    ],
)
def test_load_without_the_users_guide_names_it_and_the_remedy(tmp_path, make, named, remedy):

    _, run = _fit_and_save(tmp_path, pyro_model, make())
    before = _snapshot(run)
    pyro.clear_param_store()
    pyro.param("sentinel", torch.tensor(3.0))
    with pytest.raises(CheckpointError) as err:
        ppgen.load(run, pyro_model)
    msg = str(err.value)
    assert named in msg and remedy in msg and "your own guide" in msg, msg
    assert _snapshot(run) == before  # nothing written
    assert list(pyro.get_param_store().keys()) == ["sentinel"]  # refused before any work


@pytest.mark.parametrize("method", ["svi", "exact"])
def test_guide_for_a_run_with_a_builtin_guide_or_none_is_refused(tmp_path, method):
    if method == "svi":
        model, fit = pyro_model, ppgen.fit(pyro_model, {"x": X}, SVI(**FAST))
        named = "built-in guide `AutoNormal`"
    else:
        model = NormalNormal(dim=1)
        fit = ppgen.fit(model, {"x": X[:, None]}, ppgen.inference.Exact(num_draws=10))
        named = "which has no guide"
    run = tmp_path / "run"
    fit.save(run)
    before = _snapshot(run)
    pyro.clear_param_store()
    pyro.param("sentinel", torch.tensor(3.0))
    with pytest.raises(CheckpointError) as err:
        ppgen.load(run, model, guide=auto_diagonal())
    msg = str(err.value)
    assert named in msg and "without `guide=`" in msg, msg
    assert _snapshot(run) == before
    assert list(pyro.get_param_store().keys()) == ["sentinel"]


def test_a_guide_with_other_parameters_is_refused_naming_them(tmp_path):
    _, run = _fit_and_save(tmp_path, pyro_model, auto_diagonal())
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as err:
        ppgen.load(run, pyro_model, guide=AutoNormal(pyro_model))
    msg = str(err.value)
    assert "`AutoDiagonalNormal.loc`" in msg and "`AutoDiagonalNormal.scale`" in msg, msg
    assert "`AutoNormal.locs.mu`" in msg and "`AutoNormal.scales.mu`" in msg, msg
    assert "guide=AutoDiagonalNormal(model)" in msg, msg
    assert _snapshot(run) == before
