"""Saving and loading fits: identical predictions, netCDF round trip, safe and atomic files."""

from __future__ import annotations

import json
import os
import pickle

import arviz as az
import numpy as np
import pytest

import ppgen
from ppgen.errors import CheckpointError
from ppgen.inference import NUTS, SVI
from ppgen.io import load_tree, save_tree
from ppgen.models import EightSchools, LinearRegression

SCHOOLS = ppgen.data.load("eight_schools")


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("method", ["svi", "nuts"])
def test_save_load_identical_predictions(tmp_path, backend, method):
    est = (
        SVI(steps=50, num_draws=200)
        if method == "svi"
        else NUTS(num_samples=50, num_warmup=50, jit=False)
    )
    fit = ppgen.fit(EightSchools(), SCHOOLS, est, backend=backend, seed=3)
    fit.save(tmp_path / "run")
    again = ppgen.load(tmp_path / "run", EightSchools())
    assert again.backend == backend
    for k in fit.draws:
        np.testing.assert_array_equal(again.draws[k], fit.draws[k])
    p1, p2 = fit.predict(seed=11), again.predict(seed=11)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    np.testing.assert_array_equal(again.log_likelihood()["y"], fit.log_likelihood()["y"])
    if method == "svi":  # the guide is rebuilt: fresh posterior draws match too
        a, b = fit.sample_posterior(30, seed=5), again.sample_posterior(30, seed=5)
        np.testing.assert_allclose(a["mu"], b["mu"], rtol=1e-6)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["estimator"]["name"] == method
    assert manifest["backend"] == backend
    assert {"torch", "pyro-ppl", "numpyro", "jax", "arviz"} <= set(manifest["versions"])


def test_netcdf_round_trip(tmp_path):
    fit = ppgen.fit(EightSchools(), SCHOOLS, NUTS(num_samples=40, num_warmup=40, jit=False))
    fit.save(tmp_path / "run")
    idata = az.from_netcdf(tmp_path / "run" / "inference_data.nc")
    orig = fit.to_arviz()
    assert set(idata.groups()) == set(orig.groups())
    np.testing.assert_array_equal(idata.posterior["tau"].values, orig.posterior["tau"].values)
    np.testing.assert_array_equal(idata.log_likelihood["y"].values, orig.log_likelihood["y"].values)
    assert idata.posterior["theta"].dims == ("chain", "draw", "school")


def test_malicious_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    bad = tmp_path / "checkpoint.pt"
    with open(bad, "wb") as f:
        pickle.dump({"estimator": Evil()}, f)
    with pytest.raises(CheckpointError, match="Refusing"):
        load_tree(bad)
    assert not (tmp_path / "pwned").exists()

    fit = ppgen.fit(LinearRegression(), ppgen.data.load("regression", n=30), SVI(steps=5))
    fit.save(tmp_path / "run")
    with open(tmp_path / "run" / "params.safetensors", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(CheckpointError, match="Refusing"):
        ppgen.load(tmp_path / "run", LinearRegression())
    assert not (tmp_path / "pwned").exists()


def test_save_is_atomic_and_replaces_whole_runs(tmp_path):
    fit = ppgen.fit(LinearRegression(), ppgen.data.load("regression", n=30), SVI(steps=5))
    fit.save(tmp_path / "run")
    (tmp_path / "run" / "stale.txt").write_text("from an older run")
    fit.save(tmp_path / "run")
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp dirs left behind

    class Boom(RuntimeError):
        pass

    def broken(*a, **k):
        raise Boom

    original = fit.to_arviz
    fit._idata = None
    fit.to_arviz = broken
    with pytest.raises(Boom):
        fit.save(tmp_path / "run")
    fit.to_arviz = original
    assert (tmp_path / "run" / "manifest.json").exists()  # the old run is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_tree_round_trip_keeps_dtypes_and_shapes(tmp_path):
    tree = {"a": np.arange(3, dtype=np.uint32), "s": np.float32(2.5), "l": [1, (2, 3)], "n": None}
    save_tree(tmp_path / "t.pt", tree)
    back = load_tree(tmp_path / "t.pt")
    assert back["a"].dtype == np.uint32 and back["s"].shape == () and back["l"] == [1, (2, 3)]
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_tree(tmp_path / "missing.pt")


class _BNRegression(__import__("torch").nn.Module):
    """A program whose torch module has buffers (batch-norm running statistics)."""

    def __init__(self):
        import torch

        super().__init__()
        self.bn = torch.nn.BatchNorm1d(2)
        self.lin = torch.nn.Linear(2, 1)

    def model(self, X, y=None):
        import pyro
        import pyro.distributions as dist

        pyro.module("net", self)
        with pyro.plate("data", X.shape[0]):
            return pyro.sample("y", dist.Normal(self.lin(self.bn(X)).squeeze(-1), 1.0), obs=y)


def test_module_buffers_are_saved_and_restored(tmp_path):
    import torch

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, (64, 2)).astype(np.float32)
    y = X @ np.array([1.0, -1.0], np.float32)
    torch.manual_seed(0)
    net = _BNRegression()
    fit = ppgen.fit(net, {"X": X, "y": y}, ppgen.inference.MLE(steps=20, lr=0.01))
    assert float(net.bn.running_mean.abs().min()) > 0.1  # training moved the statistics
    fit.save(tmp_path / "run")
    fresh = _BNRegression()
    assert float(fresh.bn.running_mean.abs().max()) == 0.0
    again = ppgen.load(tmp_path / "run", fresh)
    for name, buf in net.named_buffers():
        assert torch.equal(dict(fresh.named_buffers())[name], buf), name
    net.eval(), fresh.eval()
    np.testing.assert_allclose(again.log_likelihood()["y"], fit.log_likelihood()["y"], rtol=1e-6)
