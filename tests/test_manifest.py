"""Run format 2: every file of a saved run checked against its manifest; saved-run faults named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import ppgen
from ppgen.errors import CheckpointError
from ppgen.inference import SVI

X6 = np.linspace(-1.0, 1.0, 6)


def _normal(x=None):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", 6):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two saved runs of the same program (different seeds): one to damage, one to swap from."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (1, 2):
        fit = ppgen.fit(_normal, {"x": X6}, SVI(steps=2, num_draws=5), seed=seed)
        fit.save(root / f"run{seed}")
    return root / "run1", root / "run2"


def _copy(two_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_runs[0], run)
    return run, two_runs[1]


def _edit_manifest(run, change):
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _as_format_1(manifest):
    """What format 1 wrote: no `files` (checksums) and no `sites`."""
    del manifest["files"], manifest["sites"]
    manifest["format_version"] = 1


def _truncate(file):
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _flip_last_byte(file):
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))


DAMAGE = "the saved run is damaged"
RESTORE = "Restore the run from a backup, or fit and save it again"
# (case, damage(run, other_run), words the CheckpointError must contain)
FAULTS = [
    (
        "deleted draws",
        lambda run, other: (run / "draws.safetensors").unlink(),
        ["draws.safetensors", "is missing", DAMAGE, RESTORE],
    ),
    (
        "draws swapped for another run's",
        lambda run, other: (run / "draws.safetensors").write_bytes(
            (other / "draws.safetensors").read_bytes()
        ),
        ["draws.safetensors", "sha256", "replaced by another run's file", DAMAGE, RESTORE],
    ),
    (
        "truncated params",
        lambda run, other: _truncate(run / "params.safetensors"),
        ["params.safetensors", "truncated", DAMAGE, RESTORE],
    ),
    (
        "edited data",
        lambda run, other: _flip_last_byte(run / "data.safetensors"),
        ["data.safetensors", "edited", DAMAGE, RESTORE],
    ),
    (
        "edited history",
        lambda run, other: (run / "history.json").write_text('{"loss": [0.0]}'),
        ["history.json", "sha256", DAMAGE],
    ),
    (
        "unlisted file copied in",
        lambda run, other: (run / "buffers.safetensors").write_bytes(
            (other / "params.safetensors").read_bytes()
        ),
        ["buffers.safetensors", "not listed", "Remove the file"],
    ),
    (
        "truncated manifest",
        lambda run, other: _truncate(run / "manifest.json"),
        ["manifest.json", "not valid JSON", "line", "Restore it from a backup"],
    ),
    (
        "newer format_version",
        lambda run, other: _edit_manifest(run, lambda m: m.update(format_version=99)),
        ["newer ppgen", "run format 99", "Upgrade ppgen"],
    ),
    (
        "missing format_version",
        lambda run, other: _edit_manifest(run, lambda m: m.pop("format_version")),
        ["no `format_version`", "manifest.json", RESTORE],
    ),
    (
        "garbage format_version",
        lambda run, other: _edit_manifest(run, lambda m: m.update(format_version="two")),
        ["`format_version` 'two'", "manifest.json", RESTORE],
    ),
    (
        "missing estimator",
        lambda run, other: _edit_manifest(run, lambda m: m.pop("estimator")),
        ["`estimator`", "manifest.json", RESTORE],
    ),
    (
        "missing estimator name",
        lambda run, other: _edit_manifest(run, lambda m: m["estimator"].pop("name")),
        ["`estimator.name`", RESTORE],
    ),
    (
        "missing estimator settings",
        lambda run, other: _edit_manifest(run, lambda m: m["estimator"].pop("settings")),
        ["`estimator.settings`", RESTORE],
    ),
    (
        "garbage device",
        lambda run, other: _edit_manifest(run, lambda m: m.update(device="tpu")),
        ["`device` 'tpu'", "'cpu'"],
    ),
    (
        "file list naming a path outside the run",
        lambda run, other: _edit_manifest(
            run, lambda m: m["files"].update({"../../etc/passwd": {"sha256": "0", "bytes": 0}})
        ),
        ["'../../etc/passwd'", "not plain names", RESTORE],
    ),
    (
        "format 2 without its file list",
        lambda run, other: _edit_manifest(run, lambda m: m.pop("files")),
        ["`files`", "checksums", RESTORE],
    ),
]


@pytest.mark.parametrize("case,damage,words", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_damaged_run_is_refused_naming_the_culprit(two_runs, tmp_path, case, damage, words):
    run, other = _copy(two_runs, tmp_path)
    damage(run, other)
    with pytest.raises(CheckpointError) as info:
        ppgen.load(run, _normal)
    msg = str(info.value)
    for w in words:
        assert w in msg, (case, w, msg)


def test_saved_files_keep_the_format_1_bytes_and_the_manifest_records_them(two_runs):
    from safetensors.numpy import save_file

    from ppgen.persist import FORMAT_VERSION, verify_run

    run = two_runs[0]
    manifest = verify_run(run)
    assert manifest["format_version"] == FORMAT_VERSION == 2
    files = manifest["files"]
    assert set(files) == {p.name for p in run.iterdir()} - {"manifest.json"}
    assert files["draws.safetensors"]["arrays"] == {"mu": {"shape": [1, 5], "dtype": "float32"}}
    again = ppgen.load(run, _normal)
    for name, arrays in (("draws", again.draws), ("params", again.params)):
        save_file(arrays, str(run.parent / f"v1_{name}.safetensors"))  # format 1's writer
        v1 = (run.parent / f"v1_{name}.safetensors").read_bytes()
        assert v1 == (run / f"{name}.safetensors").read_bytes(), name


def test_format_1_runs_load_unverified_with_a_note_and_saving_upgrades_them(two_runs, tmp_path):
    run, _ = _copy(two_runs, tmp_path)
    _edit_manifest(run, _as_format_1)
    with pytest.warns(UserWarning, match=r"run format 1.*no checksums.*Save it again"):
        again = ppgen.load(run, _normal)
    np.testing.assert_array_equal(again.draws["mu"], ppgen.load(two_runs[0], _normal).draws["mu"])
    again.save(run)
    assert json.loads((run / "manifest.json").read_text())["format_version"] == 2
    _truncate(run / "history.json")  # a format-1 run's JSON is still read through read_json
    _edit_manifest(run, _as_format_1)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="history.json.*JSON"):
        ppgen.load(run, _normal)


def test_verify_run_checks_the_netcdf_that_load_does_not_read(two_runs, tmp_path):
    from ppgen.persist import verify_run

    run, _ = _copy(two_runs, tmp_path)
    _truncate(run / "inference_data.nc")
    ppgen.load(run, _normal)  # load reads no netCDF
    with pytest.raises(CheckpointError, match=r"inference_data.nc.*truncated.*damaged"):
        verify_run(run)


def _programs(backend):
    """A program, and one with other sites: `w` (3,) -> (5,), param `s` (2,) -> (4,), new `v`."""
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
        import torch

        ones = torch.ones
    else:
        import jax.numpy as jnp
        import numpyro as ppl
        import numpyro.distributions as dist

        ones = jnp.ones

    def fitted(x=None):
        w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        s = ppl.param("s", ones(2))
        with ppl.plate("data", 6):
            ppl.sample("x", dist.Normal(w.sum(-1) + s.sum(), 1.0), obs=x)

    def other(x=None):
        w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([5]).to_event(1))
        v = ppl.sample("v", dist.Normal(0.0, 1.0))
        s = ppl.param("s", ones(4))
        with ppl.plate("data", 6):
            ppl.sample("x", dist.Normal(w.sum(-1) + v + s.sum(), 1.0), obs=x)

    def renamed(x=None):
        u = ppl.sample("u", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        s = ppl.param("s", ones(2))
        with ppl.plate("data", 6):
            ppl.sample("x", dist.Normal(u.sum(-1) + s.sum(), 1.0), obs=x)

    def covariates(X, y=None):
        with ppl.plate("data", X.shape[0]):
            ppl.sample("y", dist.Normal(X.sum(-1), 1.0), obs=y)

    return fitted, other, renamed, covariates


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_load_with_another_program_names_the_sites_that_differ(tmp_path, backend):
    fitted, other, renamed, covariates = _programs(backend)
    fit = ppgen.fit(fitted, {"x": X6}, SVI(steps=2, num_draws=4), backend=backend)
    fit.save(tmp_path / "run")
    with pytest.raises(CheckpointError) as info:  # was a raw "size of tensor a (5) must match"
        ppgen.load(tmp_path / "run", other)
    msg = str(info.value)
    for w in (
        "different program",
        "`w`: saved shape (3,), program (5,)",
        "param `s`: saved shape (2,), program (4,)",
        "in the program but not in the run: `v`",
        "Load it with the program",
    ):
        assert w in msg, msg
    with pytest.raises(CheckpointError, match=r"in the run but not in the program: `w`.*`u`"):
        ppgen.load(tmp_path / "run", renamed)
    with pytest.raises(CheckpointError, match=r"does not accept the data saved.*'X'.*fitted with"):
        ppgen.load(tmp_path / "run", covariates)
    _edit_manifest(tmp_path / "run", _as_format_1)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as info:
        ppgen.load(tmp_path / "run", other)  # format 1: the draws' and params' shapes
    assert "`w`: saved shape (3,), program (5,)" in str(info.value)
    assert "param `s`: saved shape (2,), program (4,)" in str(info.value)


def _has_cuda(backend):
    if backend == "pyro":
        import torch

        return torch.cuda.is_available()
    import jax

    try:
        return bool(jax.devices("cuda"))
    except RuntimeError:
        return False


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_run_fitted_on_cuda_loads_onto_the_cpu_with_a_notice(tmp_path, backend):
    if _has_cuda(backend):
        pytest.skip("this machine has CUDA: the run would load onto it")
    fitted = _programs(backend)[0]
    fit = ppgen.fit(fitted, {"x": X6}, SVI(steps=2, num_draws=4), backend=backend)
    fit.save(tmp_path / "run")
    _edit_manifest(tmp_path / "run", lambda m: m.update(device="cuda:0"))
    with pytest.warns(UserWarning, match=r"fitted on `cuda:0`.*onto the CPU"):
        again = ppgen.load(tmp_path / "run", fitted)
    assert again.device in (None, "cpu")
    np.testing.assert_array_equal(again.draws["w"], fit.draws["w"])
    np.testing.assert_allclose(again.log_likelihood()["x"], fit.log_likelihood()["x"], rtol=1e-6)
