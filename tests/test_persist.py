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
    # a short fit that moves the buffers; not meant to converge
    short = ppgen.inference.MLE(steps=20, lr=0.01, check_convergence=False)
    fit = ppgen.fit(net, {"X": X, "y": y}, short)
    assert float(net.bn.running_mean.abs().min()) > 0.1  # training moved the statistics
    fit.save(tmp_path / "run")
    fresh = _BNRegression()
    assert float(fresh.bn.running_mean.abs().max()) == 0.0
    again = ppgen.load(tmp_path / "run", fresh)
    for name, buf in net.named_buffers():
        assert torch.equal(dict(fresh.named_buffers())[name], buf), name
    net.eval(), fresh.eval()
    np.testing.assert_allclose(again.log_likelihood()["y"], fit.log_likelihood()["y"], rtol=1e-6)


def _normal(x=None):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 6):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _gan(x=None):
    import pyro
    import pyro.distributions as dist

    from ppgen.distributions import Implicit

    with pyro.plate("data", 6):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", Implicit(2.0 * z + 1.0), obs=x)


X6 = np.linspace(-1.0, 1.0, 6)


def test_auxiliary_state_round_trips_bit_identically(tmp_path, monkeypatch):
    fit = ppgen.fit(_normal, {"x": X6}, SVI(steps=5, num_draws=10))
    rng = np.random.default_rng(0)
    disc = {"w": rng.normal(size=(3, 4)).astype(np.float32), "step": np.arange(5, dtype=np.int64)}
    chains = {"v": rng.normal(size=(2, 6))}
    fit.auxiliary = {"disc": disc, "chains-0": chains}
    fit.auxiliary_settings = {"disc": {"lr": 1e-3, "layers": [4, 3]}, "sampler": {"k": 1}}
    fit.save(tmp_path / "run")
    assert (tmp_path / "run" / "aux_disc.safetensors").exists()
    restored = []
    monkeypatch.setattr(
        SVI, "restore_auxiliary", lambda self, *a: restored.append(a), raising=False
    )
    again = ppgen.load(tmp_path / "run", _normal)
    assert sorted(again.auxiliary) == ["chains-0", "disc"]
    for name, arrays in fit.auxiliary.items():
        for k, v in arrays.items():
            got = again.auxiliary[name][k]
            assert got.dtype == v.dtype and np.array_equal(got, v), (name, k)
    assert again.auxiliary_settings == fit.auxiliary_settings
    assert [(a[1], a[3]) for a in restored] == [
        ("chains-0", {}),
        ("disc", {"lr": 1e-3, "layers": [4, 3]}),
        ("sampler", {"k": 1}),
    ]
    assert all(a[0] is again for a in restored)
    assert np.array_equal(restored[1][2]["w"], disc["w"])


def test_auxiliary_names_must_be_safe_file_names(tmp_path):
    fit = ppgen.fit(_normal, {"x": X6}, SVI(steps=2, num_draws=5))
    fit.auxiliary = {"../evil": {"w": np.zeros(2)}}
    with pytest.raises(CheckpointError, match=r"'\.\./evil'.*letters, digits"):
        fit.save(tmp_path / "run")
    assert not (tmp_path / "run").exists()
    fit.auxiliary = {"ok": {"w": np.zeros(2)}}
    fit.save(tmp_path / "run")
    original = (tmp_path / "run" / "manifest.json").read_text()
    manifest = json.loads(original)
    manifest["auxiliary"]["arrays"] = ["../../etc/passwd"]
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="safe file name"):
        ppgen.load(tmp_path / "run", _normal)
    (tmp_path / "run" / "manifest.json").write_text(original)
    (tmp_path / "run" / "aux_ok.safetensors").unlink()
    with pytest.raises(CheckpointError, match="'ok'.*aux_ok.safetensors` is missing"):
        ppgen.load(tmp_path / "run", _normal)


def test_load_refuses_settings_the_estimator_rejects(tmp_path):
    fit = ppgen.fit(_normal, {"x": X6}, SVI(steps=2, num_draws=5))
    fit.save(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["estimator"]["settings"]["steps"] = -5
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as info:
        ppgen.load(tmp_path / "run", _normal)
    msg = str(info.value)
    for w in ("SVI", "'steps': -5", "EstimatorError", "`steps`", "manifest.json"):
        assert w in msg, msg


def test_implicit_fits_save_and_load_and_the_kind_must_match(tmp_path):
    from ppgen import Program
    from ppgen.result import Fit

    prog = Program(_gan)
    _, info = prog.validate({"x": X6})
    z = np.random.default_rng(0).normal(size=(1, 50, 6)).astype(np.float32)
    fit = Fit(program=prog, estimator=SVI(), info=info, data={"x": X6}, draws={"z": z})
    fit.save(tmp_path / "gan")
    manifest = json.loads((tmp_path / "gan" / "manifest.json").read_text())
    assert manifest["program_kind"] == "implicit"
    idata = az.from_netcdf(tmp_path / "gan" / "inference_data.nc")
    assert "log_likelihood" not in idata.groups() and "posterior_predictive" in idata.groups()
    assert "Implicit" in json.loads(idata.attrs["ppgen_omitted_groups"])["log_likelihood"]
    again = ppgen.load(tmp_path / "gan", _gan)
    assert again.kind == "implicit" and np.array_equal(again.draws["z"], z)
    with pytest.raises(CheckpointError, match="implicit program.*explicit"):
        ppgen.load(tmp_path / "gan", _normal)
    ppgen.fit(_normal, {"x": X6}, SVI(steps=2, num_draws=5)).save(tmp_path / "normal")
    with pytest.raises(CheckpointError, match="explicit program.*implicit.*`x`"):
        ppgen.load(tmp_path / "normal", _gan)


@pytest.fixture(scope="module")
def small_fit():
    return ppgen.fit(EightSchools(), SCHOOLS, SVI(steps=5, num_draws=5), seed=1)


def test_save_never_replaces_what_is_not_a_run(tmp_path, small_fit):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(CheckpointError, match="not a ppgen run.*thesis.tex"):
        small_fit.save(str(user))
    assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]
    assert (user / "thesis.tex").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(CheckpointError, match="existing file"):
        small_fit.save(str(a_file))
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]  # no .old copy


def test_save_into_an_empty_directory_or_over_a_previous_run(tmp_path, small_fit):
    empty = tmp_path / "empty"
    empty.mkdir()
    small_fit.save(str(empty))
    assert (empty / "manifest.json").exists()
    other = ppgen.fit(EightSchools(), SCHOOLS, SVI(steps=5, num_draws=7), seed=2)
    other.save(str(empty))  # a previous run is replaced
    assert ppgen.load(str(empty), EightSchools()).draws["mu"].shape == (1, 7)


def test_saved_files_follow_the_umask(tmp_path, small_fit):
    old = os.umask(0o022)
    try:
        small_fit.save(str(tmp_path / "run"))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes and all(m == 0o644 for m in modes.values()), modes


def test_save_runs_the_program_once_for_lp_and_log_likelihood(monkeypatch, small_fit):
    from ppgen.result import Fit

    small_fit._idata = None
    calls = []
    original = Fit.site_log_probs
    monkeypatch.setattr(
        Fit, "site_log_probs", lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
    )
    idata = small_fit.to_arviz()
    assert len(calls) == 1  # the lp pass also gives the log-likelihood group
    np.testing.assert_array_equal(idata.log_likelihood["y"].values, small_fit.log_likelihood()["y"])
    lps = original(small_fit, *calls[0])
    lp = sum(v.reshape(1, 5, -1).sum(-1) for v in lps.values())
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, lp)
