"""Parallel MCMC chains against sequential ones, in the same run: wall seconds and ratio.

Usage, from the repository root: python -m benchmarks.bench_chains [--chains 4] [--samples N]
[--quick]

1. Pyro: ``NUTS(num_chains=C, chain_method="parallel")`` (spawned worker processes, at most
   one per core) against ``chain_method="sequential"`` on eight schools (the zoo's non-centred
   ``EightSchools`` on the Pyro backend), the same seed, so the same draws; the parallel time
   includes starting the workers (a fresh interpreter each).
2. NumPyro: the same program on the NumPyro backend, ``chain_method="parallel"`` (one chain per
   JAX device; this script makes ``C`` host devices with ``XLA_FLAGS`` before JAX starts)
   against ``"sequential"`` and ``"vectorized"``.

On a 2-core machine at most 2 chains run at once, so 4 chains can be at best ~2x faster.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # host devices must exist before JAX starts
    _chains = int(sys.argv[sys.argv.index("--chains") + 1]) if "--chains" in sys.argv else 4
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={_chains} --xla_cpu_multi_thread_eigen=false "
        "intra_op_parallelism_threads=1"
    )
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.inference import NUTS  # noqa: E402
from ppgen.models import EightSchools  # noqa: E402


def timed(backend: str, method: str, chains: int, samples: int) -> tuple[float, np.ndarray]:
    data = ppgen.data.load("eight_schools")
    est = NUTS(samples, samples, num_chains=chains, chain_method=method)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: ESS warnings are not the point here
        fit = ppgen.fit(EightSchools(), data, est, backend=backend, seed=0)
    return time.perf_counter() - t, np.asarray(fit.draws["mu"])


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1000, help="warm-up and draws per chain")
    ap.add_argument(
        "--quick", action="store_true", help="smoke size: 2 chains x 20 draws, no vectorized"
    )
    a = ap.parse_args(argv)
    chains, samples = (2, 20) if a.quick else (a.chains, a.samples)
    torch.set_num_threads(1)
    print("\n".join(machine()), flush=True)
    print(f"\n{chains} chains x {samples} warm-up + {samples} draws, eight schools (non-centred)\n")
    print("| backend | chain_method | s | sequential / this | same draws as sequential |")
    print("|---|---|---|---|---|")
    rows = []
    jax_methods = ("sequential", "parallel") + (() if a.quick else ("vectorized",))
    for backend, methods in (("pyro", ("sequential", "parallel")), ("numpyro", jax_methods)):
        if not a.quick:
            timed(backend, "sequential", 1, 5)  # imports and first compilations, untimed
        base, base_mu = None, None
        for m in methods:
            s, mu = timed(backend, m, chains, samples)
            if base is None:
                base, base_mu = s, mu
            # vectorised chains draw other random numbers: no draw-for-draw comparison
            same = "-" if m == "vectorized" else str(np.allclose(mu, base_mu, rtol=1e-4, atol=1e-4))
            rows.append({"backend": backend, "method": m, "s": s, "ratio": base / s, "same": same})
            print(f"| {backend} | {m} | {s:.1f} | {base / s:.2f} | {same} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
