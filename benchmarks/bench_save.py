"""Cost of ``Fit.save`` against the raw cost of writing the same arrays, in the same run.

Usage, from the repository root: python -m benchmarks.bench_save [--draws N] [--tiny] [--reps N]
[--backends pyro numpyro] [--programs schools regression]

For each program and backend: an SVI fit with ``num_draws=N`` (default 20000, the size of the
issue-16 report), then ``fit.save(dir)`` timed from a fresh fit (no cached InferenceData: the
save computes the ``log_likelihood``, ``posterior_predictive`` and ``sample_stats`` groups, as a
user's first save does), against the raw write of the same arrays: ``safetensors`` files of the
params, draws, sample stats and data plus ``arviz.InferenceData.to_netcdf`` of the groups the
save wrote (computed beforehand, not timed). The ratio save/raw is the overhead of computing
the groups; about 1-3x means a save costs about what writing its arrays costs.

Programs: ``schools`` (the zoo's EightSchools, written to broadcast over sample dims),
``regression`` (a user's plain program ``y ~ Normal(b + X @ w, sigma)`` with 100 observations
and 3 covariates: ``X @ w`` does not broadcast over an extra leading sample dim, so Pyro cannot
run it plate-vectorised) and ``vae`` (issue 17's case: the zoo's ``VAE`` on all 1,797
binarised scikit-learn digits, minibatches of 128, Pyro only: per-datum latents, so the save
holds a local posterior and a predictive of 1,797 x 64 pixels a draw).
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.inference import SVI  # noqa: E402
from ppgen.models import VAE, EightSchools  # noqa: E402

HEADER = "| program | backend | draws | save s | raw write s | save/raw | run MB |"


def _regression_program(backend: str) -> Any:
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
    else:
        import numpyro as ppl
        import numpyro.distributions as dist

    def regression(X, y=None):
        w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        b = ppl.sample("b", dist.Normal(0.0, 10.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
        with ppl.plate("data", X.shape[0]):
            ppl.sample("y", dist.Normal(b + X @ w, sigma), obs=y)

    return regression


def program(name: str, backend: str) -> tuple[Any, dict[str, Any]]:
    """The program and data of case ``name``."""
    if name == "schools":
        return EightSchools(), ppgen.data.load("eight_schools")
    if name == "vae":
        from sklearn.datasets import load_digits

        x = (load_digits().data > 7).astype(np.float32)
        return VAE(64, 8, hidden_features=(256,), likelihood="bernoulli"), {"x": x}
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = X @ np.array([1.0, -1.0, 0.5]) + 0.3 + rng.normal(size=100)
    return _regression_program(backend), {"X": X, "y": y}


def raw_write(fit: ppgen.Fit, idata: Any, out: Path) -> float:
    """Seconds to write the fit's arrays with safetensors and its InferenceData with netCDF."""
    from safetensors.numpy import save_file

    def arrays(d: dict) -> dict:
        return {k: np.ascontiguousarray(v) for k, v in d.items() if isinstance(v, np.ndarray)}

    out.mkdir()
    t = time.perf_counter()
    for name, d in (
        ("params", fit.params),
        ("draws", fit.draws),
        ("sample_stats", fit.sample_stats),
        ("data", fit.data),
    ):
        save_file(arrays(d), str(out / f"{name}.safetensors"))
    idata.to_netcdf(str(out / "inference_data.nc"))
    return time.perf_counter() - t


def measure(name: str, backend: str, draws: int, steps: int, reps: int) -> dict[str, float]:
    """Median save and raw-write seconds over ``reps`` fresh fits."""
    model, data = program(name, backend)
    batch = {"batch_size": 128} if name == "vae" else {}
    with tempfile.TemporaryDirectory() as warm:  # imports and first-call costs, untimed
        small = SVI(steps=2, num_draws=5, **batch)
        ppgen.fit(model, data, small, backend=backend).save(Path(warm) / "run")
    saves, raws, size = [], [], 0.0
    for rep in range(reps):
        est = SVI(steps=steps, num_draws=draws, **batch)
        fit = ppgen.fit(model, data, est, backend=backend, seed=rep)
        tmp = Path(tempfile.mkdtemp(prefix="bench_save_"))
        try:
            t = time.perf_counter()
            fit.save(tmp / "run")
            saves.append(time.perf_counter() - t)
            size = sum(p.stat().st_size for p in (tmp / "run").iterdir()) / 1e6
            raws.append(raw_write(fit, fit.to_arviz(), tmp / "raw"))  # the groups save built
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    save, raw = statistics.median(saves), statistics.median(raws)
    return {"save": save, "raw": raw, "ratio": save / raw, "mb": size}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20000, help="SVI num_draws (default 20000)")
    parser.add_argument("--steps", type=int, default=200, help="SVI steps before saving")
    parser.add_argument("--reps", type=int, default=1, help="fits per case (median reported)")
    parser.add_argument("--tiny", action="store_true", help="smoke size: 20 draws, 5 steps")
    parser.add_argument("--backends", choices=("pyro", "numpyro"), nargs="*")
    parser.add_argument("--programs", choices=("schools", "regression", "vae"), nargs="*")
    args = parser.parse_args(argv)
    draws, steps = (20, 5) if args.tiny else (args.draws, args.steps)
    print("\n".join(machine()), flush=True)
    print(HEADER)
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in args.programs or ("schools", "regression", "vae"):
        for backend in args.backends or ("pyro", "numpyro"):
            if name == "vae" and backend == "numpyro":
                continue  # the zoo VAE here is the Pyro one
            r = measure(name, backend, draws, steps, args.reps)
            rows.append({"program": name, "backend": backend, "draws": draws, **r})
            print(
                f"| {name} | {backend} | {draws} | {r['save']:.2f} | {r['raw']:.2f} | "
                f"{r['ratio']:.1f} | {r['mb']:.1f} |",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
