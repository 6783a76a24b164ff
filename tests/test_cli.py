"""Tests for ppgen.cli: fit/summary/datasets/models commands, data files, errors, console script."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pytest

import ppgen
from ppgen.cli import main
from ppgen.errors import ConvergenceWarning
from ppgen.models import EightSchools

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def summary_rows(text: str) -> dict[str, list[str]]:
    """First-column label -> the rest of the row, for a printed pandas table."""
    return {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def svi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "schools"
    argv = ["fit", "eight_schools", "--data", "eight_schools", "--method", "svi"]
    rc, stdout, stderr = run_cli(argv + ["--steps", "200", "--seed", "3", "--out", str(out)])
    return rc, out, stdout, stderr


def test_fit_svi_writes_the_run_summary_and_plots(svi_run):
    rc, out, _, stderr = svi_run
    assert rc == 0, stderr
    expected = {"manifest.json", "params.safetensors", "draws.safetensors", "history.json"}
    expected |= {"inference_data.nc", "summary.csv", "trace.png", "posterior.png", "loss.png"}
    assert expected <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "ppgen-run"
    assert manifest["estimator"]["name"] == "svi"
    assert manifest["estimator"]["settings"]["steps"] == 200
    assert manifest["seed"] == 3
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 200


def test_fit_prints_a_summary_with_mu_and_tau_rows(svi_run):
    _, out, stdout, _ = svi_run
    rows = summary_rows(stdout)
    assert {"mu", "tau", "theta[0]", "eta[7]"} <= set(rows)
    with open(out / "summary.csv") as f:
        saved = {r[""]: r for r in csv.DictReader(f)}
    assert rows["mu"][0] == f"{float(saved['mu']['mean']):.3f}"
    assert float(saved["tau"]["mean"]) > 0  # tau is a scale: its posterior mean is positive


def test_load_gives_the_draws_the_cli_saved(svi_run):
    _, out, _, _ = svi_run
    again = ppgen.load(out, EightSchools())
    idata = az.from_netcdf(str(out / "inference_data.nc"))
    assert again.draws["mu"].shape == (1, 1000)
    np.testing.assert_array_equal(again.draws["mu"], idata.posterior["mu"].values)
    np.testing.assert_array_equal(again.draws["theta"], idata.posterior["theta"].values)
    with open(out / "summary.csv") as f:
        saved = {r[""]: float(r["mean"]) for r in csv.DictReader(f)}
    assert saved["mu"] == pytest.approx(float(again.draws["mu"].mean()), abs=1e-3)


def test_plots_are_real_png_files(svi_run):
    _, out, _, _ = svi_run
    for name in ("trace.png", "posterior.png", "loss.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 1000, name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_summary_command_reads_the_saved_run(svi_run):
    _, out, stdout, _ = svi_run
    rc, text, err = run_cli(["summary", str(out)])
    assert rc == 0, err
    assert "SVI" in text.splitlines()[0]
    assert summary_rows(text)["mu"] == summary_rows(stdout)["mu"]


def _regression_data(n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 2))
    y = 0.5 + X @ np.array([2.0, -1.0]) + 0.3 * rng.normal(size=n)
    coef = np.linalg.lstsq(np.c_[X, np.ones(n)], y, rcond=None)[0]
    return X, y, coef


def _estimates(out: Path) -> dict[str, float]:
    with open(out / "summary.csv") as f:
        return {r[""]: float(r["estimate"]) for r in csv.DictReader(f)}


MAP = ["--method", "mle", "--steps", "300", "--lr", "0.3", "--no-plots"]


def test_csv_data_with_named_columns_recovers_the_slopes(tmp_path):
    X, y, coef = _regression_data()
    path = tmp_path / "reg.csv"
    rows = np.c_[np.arange(len(y)), X, y]
    np.savetxt(path, rows, delimiter=",", header="id,a,b,target", comments="")
    out = tmp_path / "run"
    argv = ["fit", "linear_regression", "--data", str(path), "--x-cols", "a,b"]
    rc, stdout, err = run_cli(argv + ["--y-col", "target", "--out", str(out)] + MAP)
    assert rc == 0, err
    assert "ignoring column(s) ['id']" in err
    est = _estimates(out)
    # MAP under a N(0, 1) prior is within 0.02 of least squares with 60 points, noise 0.3.
    np.testing.assert_allclose([est["w[0]"], est["w[1]"], est["b"]], coef, atol=0.02)
    assert "w[0]" in stdout


def test_npz_data_recovers_the_slopes(tmp_path):
    X, y, coef = _regression_data()
    path = tmp_path / "reg.npz"
    np.savez(path, X=X, y=y)
    out = tmp_path / "run"
    rc, _, err = run_cli(["fit", "linear_regression", "--data", str(path), "--out", str(out)] + MAP)
    assert rc == 0, err
    est = _estimates(out)
    np.testing.assert_allclose([est["w[0]"], est["w[1]"], est["b"]], coef, atol=0.02)
    loaded = ppgen.load(out, ppgen.models.LinearRegression())
    np.testing.assert_array_equal(loaded.data["X"], X)


USER_MODEL = (
    "import pyro, pyro.distributions as dist\n"
    "def model(sigma, y=None):\n"
    "    mu = pyro.sample('mu', dist.Normal(0.0, 10.0))\n"
    "    with pyro.plate('data', len(sigma)):\n"
    "        pyro.sample('y', dist.Normal(mu, sigma), obs=y)\n"
)


# Pyro's NUTS with jit=True (the CLI's default) goes through the deprecated torch.jit.trace.
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_csv_columns_named_after_arguments_and_a_user_model(tmp_path, monkeypatch):
    (tmp_path / "my_cli_models.py").write_text(USER_MODEL)
    np.savetxt(tmp_path / "d.csv", [[1, 4], [1, 6]], delimiter=",", header="sigma,y", comments="")
    monkeypatch.chdir(tmp_path)
    argv = ["fit", "my_cli_models:model", "--data", "d.csv", "--method", "nuts"]
    argv += ["--num-samples", "200", "--num-chains", "1", "--out", "run", "--no-plots"]
    rc, stdout, err = run_cli(argv)
    assert rc == 0, err
    # Posterior of mu: N(5, 1/2) up to the wide prior; the mean is within 4 sd errors of 5.
    mean = float(summary_rows(stdout)["mu"][0])
    assert abs(mean - 5.0) < 4 * 0.71 / np.sqrt(50)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["estimator"]["settings"]["num_warmup"] == 200  # = --num-samples
    assert str(tmp_path) not in sys.path


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["fit", "nosuch_model", "--data", "eight_schools"], ["MODEL", "nosuch_model"]),
        (["fit", "nosuch_mod_xyz:model", "--data", "eight_schools"], ["nosuch_mod_xyz"]),
        (["fit", "eight_schools", "--method", "bogus"], ["`method='bogus'`", "nuts", "svi"]),
        (["fit", "eight_schools", "--data", "missing_file.csv"], ["--data", "missing_file.csv"]),
        (["fit", "eight_schools", "--data", "nosuchset"], ["--data", "eight_schools"]),
        (["fit", "eight_schools", "--method", "svi", "--num-samples", "5"], ["--num-samples"]),
        (["fit", "eight_schools", "--seed", "-1"], ["`seed`", "[0, 2**32 - 1]", "got -1"]),
    ],
)
def test_bad_inputs_exit_2_with_a_message_naming_the_argument(tmp_path, argv, needles):
    rc, stdout, err = run_cli(argv + ["--out", str(tmp_path / "run")])
    assert rc == 2
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_csv_missing_a_column_exits_2_naming_it(tmp_path):
    path = tmp_path / "schools.csv"
    np.savetxt(path, [[28.0], [8.0]], delimiter=",", header="y", comments="")
    out = str(tmp_path / "run")
    rc, _, err = run_cli(["fit", "eight_schools", "--data", str(path), "--out", out])
    assert rc == 2
    assert "`sigma`" in err and "['y']" in err
    rc, _, err = run_cli(
        ["fit", "linear_regression", "--data", str(path), "--y-col", "z", "--out", out]
    )
    assert rc == 2
    assert "`--y-col`" in err and "['z']" in err


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_unreadable_data_files_exit_2_naming_the_file(tmp_path):
    """Each raised a raw UnicodeDecodeError / BadZipFile traceback before."""
    latin1 = tmp_path / "schools.csv"
    latin1.write_bytes("y,sigma,école\n28,15,1\n8,10,2\n".encode("latin-1"))
    rc, _, err = run_cli(
        ["fit", "eight_schools", "--data", str(latin1), "--out", str(tmp_path / "r")]
    )
    _one_line_error(rc, err, str(latin1), "not UTF-8", "0xe9", "Save it as UTF-8")
    good = tmp_path / "good.npz"
    np.savez(good, y=np.arange(8.0), sigma=np.ones(8))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:-40])  # truncated: its zip directory is gone
    rc, _, err = run_cli(["fit", "eight_schools", "--data", str(cut), "--out", str(tmp_path / "r")])
    _one_line_error(rc, err, str(cut), "truncated or corrupt", "numpy.savez")
    assert not (tmp_path / "r").exists()


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("y,sigma\n28,15\n8,10\n".encode("utf-8-sig"))
    from ppgen.data.files import load_data

    data = load_data(str(path), EightSchools())
    np.testing.assert_array_equal(data["y"], [28.0, 8.0])


def test_summary_of_a_run_with_a_corrupt_netcdf_exits_2(svi_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(svi_run[1], run)
    nc = run / "inference_data.nc"
    nc.write_bytes(nc.read_bytes()[:200])
    rc, _, err = run_cli(["summary", str(run)])
    _one_line_error(rc, err, str(nc), "damaged", "ppgen.load", "ppgen fit")


def test_out_that_is_not_a_run_is_refused_before_any_work(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    # --out is checked first: even a missing --data file is not reached, nor the fit
    rc, _, err = run_cli(["fit", "eight_schools", "--data", "nosuch.csv", "--out", str(tmp_path)])
    assert rc == 2 and "not a ppgen run" in err and str(tmp_path) in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    assert (tmp_path / "thesis.tex").read_text() == "years of work"
    rc, _, err = run_cli(["fit", "eight_schools", "--out", str(tmp_path / "thesis.tex")])
    assert rc == 2 and "existing file" in err
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_summary_of_a_directory_that_is_not_a_run_exits_2(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    (tmp_path / "inference_data.nc").write_bytes(b"")
    rc, _, err = run_cli(["summary", str(tmp_path)])
    assert rc == 2 and "not a ppgen run" in err
    rc, _, err = run_cli(["summary", str(tmp_path / "nowhere")])
    assert rc == 2 and "not a ppgen run directory" in err


def test_listing_commands_and_version(capsys):
    assert main(["datasets"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == list(ppgen.data.DATASETS)
    assert main(["models"]) == 0
    assert "gmm" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ppgen {ppgen.__version__}"
    assert main(["fit"]) == 2  # argparse: MODEL and --out are required
    assert "required" in capsys.readouterr().err


def test_console_module_runs_a_fit(tmp_path):
    (tmp_path / "console_models.py").write_text(USER_MODEL)
    np.savez(tmp_path / "d.npz", sigma=np.ones(4), y=np.array([4.0, 6.0, 5.0, 5.0]))
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "ppgen.cli", "fit", "console_models:model", "--data", "d.npz"]
    cmd += ["--method", "svi", "--steps", "300", "--lr", "0.1", "--threads", "1", "--out", "run"]
    cmd += ["--no-plots"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert abs(float(summary_rows(proc.stdout)["mu"][0]) - 5.0) < 0.3
    assert {"manifest.json", "summary.csv"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert not (tmp_path / "run" / "loss.png").exists()  # --no-plots
    assert "Traceback" not in proc.stderr and "it/s" not in proc.stderr  # no bar off a TTY


# ---------------------------------------------------------------------- ppgen evaluate
GAN_MODULE = "from ppgen.models import GAN\nmodel = GAN(2, z_dim=2, hidden_features=(16,))\n"


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    from ppgen.data.modes2d import ring8
    from ppgen.inference import Adversarial
    from ppgen.models import GAN

    root = tmp_path_factory.mktemp("evaluate")
    (root / "eval_gan_models.py").write_text(GAN_MODULE)
    gan = GAN(2, z_dim=2, hidden_features=(16,))
    fit = ppgen.fit(gan, {"x": ring8(1000, seed=0)}, Adversarial(steps=20, batch_size=128))
    fit.save(root / "gan")
    return root, fit


def test_evaluate_a_gan_run_matches_the_python_api(gan_run, monkeypatch):
    from ppgen.models import GAN

    root, fit = gan_run
    monkeypatch.chdir(root)
    argv = ["evaluate", "gan", "--model", "eval_gan_models:model", "--data", "ring8"]
    rc, stdout, err = run_cli(argv + ["-n", "1000", "--seed", "2"])
    assert rc == 0, err
    saved = json.loads((root / "gan" / "evaluation.json").read_text())
    assert saved["kind"] == "samples" and saved["details"]["modes"] == "ring8"
    assert saved["options"] == {
        "data": "ring8",
        "modes": None,
        "num_samples": 1000,
        "seed": 2,
        "iwae_k": 100,
    }
    loaded = ppgen.load(root / "gan", GAN(2, z_dim=2, hidden_features=(16,)))
    api = ppgen.evaluate(loaded, "ring8", num_samples=1000, seed=2).as_dict()
    assert saved["metrics"] == api["metrics"]  # the same numbers, bit for bit
    assert set(saved["metrics"]) == {"mmd2", "mmd_bandwidth", "modes_covered", "n_modes"} | {
        "high_quality_rate",
        "reverse_kl",
    }
    in_memory = ppgen.evaluate(fit, "ring8", num_samples=1000, seed=2).as_dict()["metrics"]
    for k, v in in_memory.items():  # None: NaN (no sample near a mode after 20 steps)
        assert saved["metrics"][k] == (None if v is None else pytest.approx(v, rel=1e-5)), k
    rows = summary_rows(stdout)
    assert rows["mmd2"] == [f"{api['metrics']['mmd2']:.6g}"]
    assert rows["modes_covered"] == [str(api["metrics"]["modes_covered"])]
    assert not [p for p in (root / "gan").iterdir() if p.name.endswith(".tmp")]
    assert ppgen.persist.verify_run(root / "gan")  # evaluation.json does not break the run


def test_evaluate_an_exact_run_on_held_out_data_matches_the_python_api(tmp_path):
    from ppgen.models import NormalNormal

    rng = np.random.default_rng(5)
    train, test = rng.normal(0.5, 1.0, (40, 2)), rng.normal(0.5, 1.0, (100, 2))
    fit = ppgen.fit(NormalNormal(), {"x": train}, ppgen.inference.Exact(num_draws=500))
    fit.save(tmp_path / "run")
    np.savez(tmp_path / "test.npz", x=test)
    argv = ["evaluate", str(tmp_path / "run"), "--model", "ppgen.models:NormalNormal"]
    rc, stdout, err = run_cli(argv + ["--data", str(tmp_path / "test.npz")])
    assert rc == 0, err
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    api = ppgen.evaluate(ppgen.load(tmp_path / "run", NormalNormal()), {"x": test})
    assert saved["metrics"] == api.as_dict()["metrics"]
    assert saved["metrics"]["n_data"] == 100 and "elpd_loo" in saved["metrics"]
    mean, sd = NormalNormal().posterior(train)  # the posterior predictive, per 2-D datum
    want = norm_logpdf(test, mean, np.sqrt(1.0 + sd**2)).sum(1).mean()
    assert saved["metrics"]["log_lik_per_datum"] == pytest.approx(want, abs=0.01)
    assert summary_rows(stdout)["n_data"] == ["100"]


def norm_logpdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def test_evaluate_finds_the_zoo_model_of_a_cli_run(svi_run, tmp_path):
    import shutil

    run = tmp_path / "schools"
    shutil.copytree(svi_run[1], run)
    rc, stdout, err = run_cli(["evaluate", str(run)])  # no --model: EightSchools, by its name
    assert rc == 0, err
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["kind"] == "likelihood" and saved["metrics"]["n_data"] == 8
    assert {"log_lik_per_datum", "elpd_waic", "elpd_loo", "p_loo"} <= set(saved["metrics"])
    assert "elpd_loo" in summary_rows(stdout)
    assert f"wrote {run / 'evaluation.json'}" in err


def test_evaluate_bad_inputs_exit_2_and_write_nothing(svi_run, gan_run, tmp_path):
    rc, _, err = run_cli(["evaluate", str(tmp_path / "nowhere")])
    _one_line_error(rc, err, "not a ppgen run directory", str(tmp_path / "nowhere"))
    rc, _, err = run_cli(["evaluate", str(svi_run[1]), "--data", "nosuch.csv"])
    _one_line_error(rc, err, "`--data 'nosuch.csv'`", "built-in dataset")
    assert not (svi_run[1] / "evaluation.json").exists()
    gan_json = gan_run[0] / "gan" / "evaluation.json"
    before = gan_json.read_bytes() if gan_json.exists() else None
    rc, _, err = run_cli(["evaluate", str(gan_json.parent)])  # a GAN: not a zoo model
    _one_line_error(rc, err, "GAN.model", "--model")
    rc, _, err = run_cli(["evaluate", str(svi_run[1]), "--modes", "ring8"])
    _one_line_error(rc, err, "`modes`", "likelihood")
    assert main(["evaluate", str(svi_run[1]), "-n", "1"]) == 2  # argparse: N >= 2
    assert not (svi_run[1] / "evaluation.json").exists()
    assert (gan_json.read_bytes() if gan_json.exists() else None) == before


def test_evaluation_json_is_never_half_written(gan_run, monkeypatch):
    root, _ = gan_run
    monkeypatch.chdir(root)
    out = root / "gan" / "evaluation.json"
    out.write_text('{"old": true}')

    def broken_dump(obj, f, **kwargs):
        f.write('{"metrics": ')
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    argv = ["evaluate", "gan", "--model", "eval_gan_models:model", "-n", "200"]
    with pytest.raises(OSError, match="disk full"):
        run_cli(argv)
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"old": True}
    assert not [p for p in (root / "gan").iterdir() if p.name.endswith(".tmp")]


def test_sample_writes_npz_items_equal_to_fit_sample(tmp_path):
    run = tmp_path / "schools"
    fit_argv = ["fit", "eight_schools", "--method", "svi", "--steps", "5", "--no-plots"]
    assert run_cli(fit_argv + ["--out", str(run)])[0] == 0
    out = tmp_path / "s.npz"
    rc, _, err = run_cli(["sample", str(run), "-n", "20", "--seed", "5", "--out", str(out)])
    assert rc == 0 and "y (20,)" in err
    got = np.load(out)["y"]
    # 20 items = rows of the school plate: ceil(20 / 8) = 3 data sets, flattened
    want = ppgen.load(run, EightSchools()).sample(3, seed=5)["y"].reshape(-1)[:20]
    np.testing.assert_array_equal(got, want)
    rc, _, err = run_cli(["sample", str(run), "-n", "5", "--out", str(out)])
    assert rc != 0 and "exists" in err  # never overwritten


def test_sample_plots_two_dimensional_points(tmp_path):
    run = tmp_path / "gmm"
    fit_argv = ["fit", "gmm", "--method", "svi", "--steps", "5", "--no-plots"]
    assert run_cli(fit_argv + ["--out", str(run)])[0] == 0
    out = tmp_path / "gmm.png"
    assert run_cli(["sample", str(run), "-n", "100", "--model", "gmm", "--out", str(out)])[0] == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    rc, _, err = run_cli(["sample", str(run), "--model", "gmm", "--out", str(tmp_path / "x.txt")])
    assert rc != 0 and ".npz" in err


ZOO_NAMES = sorted(__import__("ppgen.cli", fromlist=["zoo_specs"]).zoo_specs())


def tiny_data(name, tmp_path):
    """The zoo model's default dataset cut to its first 24 rows, as an .npz file."""
    from ppgen.cli import zoo_specs

    data = ppgen.data.load(zoo_specs()[name][1].data)
    rows = max((len(v) for v in data.values() if np.ndim(v)), default=0)  # text: kept whole
    tiny = {k: v[:24] if np.ndim(v) and len(v) == rows else v for k, v in data.items()}
    np.savez(tmp_path / "tiny.npz", **tiny)
    return str(tmp_path / "tiny.npz")


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_zoo_model_through_every_cli_verb(name, tmp_path):
    """fit (the model's own default method, sizes read from the data), summary, sample and
    evaluate on a tiny copy of its default data; evaluate's numbers equal the Python API's."""
    from ppgen.cli import zoo_specs

    cls, spec = zoo_specs()[name]
    data, out = tiny_data(name, tmp_path), tmp_path / name
    argv = ["fit", name, "--no-plots", "--out", str(out), "--data", data]
    if spec.method in ("nuts", "hmc"):
        argv += ["--num-samples", "4", "--num-warmup", "4", "--num-chains", "1"]
    elif spec.method != "exact":
        argv += ["--steps", "2"] + (["--num-draws", "4"] if spec.method == "svi" else [])
    with warnings.catch_warnings():  # 2 steps do not converge; the CLI says so, tests know
        warnings.simplefilter("ignore", ConvergenceWarning)
        rc, stdout, stderr = run_cli(argv)
        assert rc == 0, stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["estimator"]["name"] == spec.method  # the zoo model's own default
        settings = manifest["estimator"]["settings"]
        for key, attr in spec.estimator_args.items():  # InfoGAN: its codes reach Adversarial
            if key != "guide":  # a callable: not a setting
                assert settings[key] == getattr(
                    cls(**json.loads((out / "cli.json").read_text())["arguments"]), attr
                )
        assert (out / "summary.csv").exists() and stdout.strip()
        rc, stdout, stderr = run_cli(["summary", str(out)])
        assert rc == 0 and stdout.strip(), stderr

        # sample and evaluate rebuild the model from the run's cli.json: no --model
        rc, _, stderr = run_cli(["sample", str(out), "-n", "3", "--out", str(tmp_path / "s.npz")])
        assert rc == 0, stderr
        fit = ppgen.cli.load_run(out)
        assert type(fit.program.obj) is cls
        with np.load(tmp_path / "s.npz") as f:
            items = {k: f[k] for k in f.files}
        assert set(items) == set(fit.info.observed) and all(len(v) == 3 for v in items.values())
        for site, v in items.items():  # an item is a row of the data (or a whole data set)
            shape = fit.info.sites[site].shape
            assert v.shape[1:] == (shape[1:] if fit.info.sites[site].batch_shape else shape)
        n = ["-n", "200"]
        rc, _, stderr = run_cli(["evaluate", str(out), "--data", data] + n)
        assert rc == 0, stderr
        saved = json.loads((out / "evaluation.json").read_text())["metrics"]
        api = ppgen.evaluate(fit, data, num_samples=200).as_dict()["metrics"]
    assert saved == api and saved  # the same numbers, bit for bit
    finite = [v for v in saved.values() if isinstance(v, float)]
    assert finite and np.all(np.isfinite(finite)), saved
    if spec.family == "VAE":  # an amortised guide: the per-datum bounds, ELBO <= IWAE
        assert saved["iwae_k"] == 100 and saved["elbo_per_datum"] <= saved["iwae_per_datum"]
    if name in ("ngram", "lda"):  # the model's declared metric
        assert saved["perplexity"] > 1.0


def test_models_lists_every_declared_zoo_model():
    from ppgen.cli import zoo_specs

    rc, stdout, _ = run_cli(["models"])
    assert rc == 0
    rows = {line.split()[0]: line.split()[1:4] for line in stdout.splitlines()[1:]}
    for name, (_, spec) in zoo_specs().items():
        assert rows[name] == [spec.family, spec.method, spec.data]
    assert {"vae", "gan", "maf", "made", "gmm", "eight_schools"} <= set(rows)


def test_zoo_options_reach_the_constructor(tmp_path):
    out = tmp_path / "vae"
    argv = ["fit", "vae", "--steps", "2", "--no-plots", "--arg", "z_dim=3", "--num-draws", "5"]
    argv += ["--out", str(out)]
    assert run_cli(argv)[0] == 0
    fit = ppgen.load(out, ppgen.models.VAE(z_dim=3))
    assert fit.program.obj.z_dim == 3
    rc, _, err = run_cli(["fit", "vae", "--arg", "depth=3", "--out", str(tmp_path / "bad")])
    assert rc != 0 and "z_dim" in err and not (tmp_path / "bad").exists()


def test_sizes_come_from_the_data_and_the_run_remembers_its_arguments(tmp_path):
    """MADE's `features` is read from the data (6 columns here, 64 for digits); bmm's fixed
    K=10 yields to --K; cli.json rebuilds both for `sample`/`evaluate` without --model."""
    x = (np.random.default_rng(0).random((30, 6)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "six.npz", x=x)
    for name, extra, attr, want in (("made", [], "features", 6), ("bmm", ["--K", "3"], "K", 3)):
        out = tmp_path / name
        argv = ["fit", name, "--data", str(tmp_path / "six.npz"), "--steps", "2", "--no-plots"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            assert run_cli(argv + extra + ["--out", str(out)])[0] == 0
        record = json.loads((out / "cli.json").read_text())
        assert record["model"] == name and record["arguments"][attr] == want
        assert getattr(ppgen.cli.load_run(out).program.obj, attr) == want


def test_a_tampered_cli_record_is_refused_naming_the_argument(tmp_path):
    out = tmp_path / "vae"
    argv = ["fit", "vae", "--steps", "1", "--no-plots", "--num-draws", "2", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert run_cli(argv)[0] == 0
    (out / "cli.json").write_text(json.dumps({"model": "vae", "arguments": {"decoder": "os"}}))
    rc, _, err = run_cli(["evaluate", str(out)])
    assert rc == 2 and "decoder" in err and "z_dim" in err
    assert not (out / "evaluation.json").exists()


def test_sample_writes_text_for_a_text_model_equal_to_the_python_api(tmp_path):
    out, txt = tmp_path / "ngram", tmp_path / "s.txt"
    np.savez(tmp_path / "text.npz", tokens=np.array("the ship sailed on the sea. " * 20))
    argv = ["fit", "ngram", "--data", str(tmp_path / "text.npz"), "--no-plots", "--out", str(out)]
    assert run_cli(argv)[0] == 0
    assert run_cli(["sample", str(out), "-n", "3", "--seed", "5", "--out", str(txt)])[0] == 0
    blocks = txt.read_text().split("--- sample ")[1:]
    fit = ppgen.cli.load_run(out)
    texts = fit.program.obj.sample_text(fit, 3, seed=5)
    assert [b.split("\n", 1)[1].rstrip("\n") for b in blocks] == texts
    assert all(t and set(t) <= set("the ship sailed on the sea. ") for t in texts)
    rc, _, err = run_cli(["sample", str(tmp_path / "ngram"), "--out", str(tmp_path / "s2.txt")])
    assert rc == 0
    # a model with no text form says how to declare one, and writes nothing
    gmm = tmp_path / "gmm"
    assert (
        run_cli(["fit", "gmm", "--method", "svi", "--steps", "2", "--no-plots", "--out", str(gmm)])[
            0
        ]
        == 0
    )
    rc, _, err = run_cli(["sample", str(gmm), "--out", str(tmp_path / "g.txt")])
    assert rc == 2 and "sample_text" in err and not (tmp_path / "g.txt").exists()


def test_dataset_options_pick_the_held_out_split_and_bad_ones_are_refused(tmp_path):
    from ppgen.data.files import load_data

    test = load_data("digits_binary:split=test", None)["x"]
    assert test.shape == (297, 64)
    assert np.array_equal(test, ppgen.data.load("digits_binary", split="test")["x"])
    assert load_data("moons:n=50,seed=3", None)["x"].shape == (50, 2)
    out = tmp_path / "made"
    argv = ["fit", "made", "--steps", "2", "--no-plots", "--data", "digits_binary:split=test"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert run_cli(argv + ["--out", str(out)])[0] == 0
    rc, _, err = run_cli(["evaluate", str(out), "--data", "digits_binary:split=train"])
    assert rc == 0, err
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["metrics"]["n_data"] == 1500
    for bad, needle in (("digits_binary:depth=3", "split"), ("moons:n", "key=value")):
        rc, _, err = run_cli(["evaluate", str(out), "--data", bad])
        assert rc == 2 and needle in err, err


def test_grey_pixels_for_a_bernoulli_vae_say_how_to_switch_likelihood(tmp_path):
    rc, _, err = run_cli(["fit", "vae", "--data", "digits", "--out", str(tmp_path / "a")])
    assert rc == 2 and "--arg likelihood=" in err and not (tmp_path / "a").exists()
    argv = ["fit", "vae", "--data", "digits", "--arg", "likelihood=cbernoulli", "--steps", "2"]
    assert run_cli(argv + ["--no-plots", "--num-draws", "2", "--out", str(tmp_path / "b")])[0] == 0
    assert ppgen.cli.load_run(tmp_path / "b").program.obj.likelihood == "cbernoulli"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_zoo_model_fits_saves_and_loads_on_the_device(name, tmp_path, device):
    """`pytest -m gpu --device cuda` (benchmarks/gpu.sh): every zoo model with its own default
    estimator (SVI, MLE, MCMC, Adversarial, exact) fits on the device, the run records it, and
    the loaded run samples there."""
    from ppgen.cli import zoo_specs

    spec = zoo_specs()[name][1]
    data, out = tiny_data(name, tmp_path), tmp_path / name
    argv = ["fit", name, "--no-plots", "--out", str(out), "--data", data, "--device", device]
    if spec.method in ("nuts", "hmc"):
        argv += ["--num-samples", "4", "--num-warmup", "4", "--num-chains", "1"]
    elif spec.method != "exact":
        argv += ["--steps", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        rc, _, stderr = run_cli(argv)
    assert rc == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest.get("device") or "cpu") == device
    fit = ppgen.cli.load_run(out)
    assert (fit.device or "cpu") == device
    items = fit.sample_items(3, seed=0)
    assert all(np.isfinite(np.asarray(v, dtype=float)).all() for v in items.values())
