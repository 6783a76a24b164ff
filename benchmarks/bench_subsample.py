"""SVI with minibatches as the data grow: step time and memory must not grow with N.

Usage, from the repository root: python -m benchmarks.bench_subsample [--sizes 1e3 1e4 1e5 1e6]
[--batch 256] [--steps 300] [--quick]

A Bayesian logistic regression (10 covariates, one weight vector and a bias) fitted by
``SVI(batch_size=256)`` on N synthetic rows, for each N, on both backends, each N in a fresh
process (so that peak memory is that fit's): the median step time of the steps after the
first 20 (compilation) and the process's peak resident memory beyond the data's own bytes.
A step costs O(batch) when both stay flat as N grows 1000-fold; the permutation drawn once per
epoch is O(N), amortised over N / batch steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CHILD = "--child"


def child(n: int, backend: str, batch: int, steps: int) -> dict:
    """One fit in this (fresh) process: step times and peak memory."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import numpy as np
    import torch

    import ppgen
    from ppgen.inference import SVI

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # float32 from the start: no float64 temporaries to raise the memory high-water mark
    X = rng.standard_normal((n, 10), dtype=np.float32)
    logits = X @ np.linspace(-1, 1, 10, dtype=np.float32)
    y = (rng.random(n, dtype=np.float32) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    del logits
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist
    else:
        import numpyro as ppl
        import numpyro.distributions as dist

    def model(X, y=None):
        w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([10]).to_event(1))
        b = ppl.sample("b", dist.Normal(0.0, 5.0))
        with ppl.plate("data", X.shape[0]):
            ppl.sample("y", dist.Bernoulli(logits=b + X @ w), obs=y)

    times: list[float] = []
    last = [time.perf_counter()]

    def clock(step: int, metrics: dict) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    est = SVI(steps=steps, batch_size=batch, num_draws=10)
    ppgen.fit(model, {"X": X, "y": y}, est, backend=backend, callbacks=[clock])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    data_mb = (X.nbytes + y.nbytes) / 2**20
    return {
        "step_ms": 1000 * float(np.median(times[20:])),
        "peak_beyond_data_mb": (peak - before) / 1024,
        "data_mb": data_mb,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e3, 1e4, 1e5, 1e6])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="smoke size: N 2000, 40 steps")
    ap.add_argument(CHILD, nargs=3, metavar=("N", "BACKEND", "STEPS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        n, backend, steps = int(a.child[0]), a.child[1], int(a.child[2])
        print(json.dumps(child(n, backend, a.batch, steps)))
        return []
    from benchmarks._machine import machine

    sizes, steps = ([2e3], 40) if a.quick else (a.sizes, a.steps)
    print("\n".join(machine()), flush=True)
    print(f"\nSVI, batch {a.batch}, {steps} steps; median step after the first 20\n")
    print("| backend | N | step ms | peak memory beyond data, MiB | data MiB |")
    print("|---|---|---|---|---|")
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for backend in ("pyro", "numpyro"):
        for n in sizes:
            cmd = [sys.executable, "-m", "benchmarks.bench_subsample", "--batch", str(a.batch)]
            cmd += [CHILD, str(int(n)), backend, str(steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"backend": backend, "n": int(n), **r})
            print(
                f"| {backend} | {int(n)} | {r['step_ms']:.2f} | {r['peak_beyond_data_mb']:.0f} "
                f"| {r['data_mb']:.1f} |",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
