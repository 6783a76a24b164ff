"""NumPyro NUTS, like for like: ppgen against raw NumPyro asked for the same sample statistics.

Usage, from the repository root:
    python -m benchmarks.bench_nuts_ab [schools|logistic] [--reps N] [--draws N]

At 1000 + 1000 draws a NumPyro NUTS run here is ~90% XLA compilation, whose time varies by about
±10% from run to run, so bench_core's ESS/s ratios swing between its runs. This script runs, in one
warmed-up process and interleaved: ppgen's `NUTS(backend="numpyro")` on the zoo model; raw NumPyro
on the plain program keeping the sample statistics ppgen keeps for ArviZ (`rawF`); and raw NumPyro
with its default outputs (`raw`). It prints median wall, XLA trace + compile, and the rest.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import bench_core as bc  # sets XLA_FLAGS and the compile-time listener
from ppgen.data import load
from ppgen.models import EightSchools, LogisticRegression


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", default="schools", choices=("schools", "logistic"))
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000, help="warmup and samples each")
    a = ap.parse_args()
    if a.case == "logistic":
        data, zoo, raw = load("logistic"), LogisticRegression(), bc.numpyro_logistic
    else:
        data, zoo, raw = load("eight_schools"), EightSchools(), bc.numpyro_schools
    jd, w = bc.jax_data(data), a.draws
    runs = {
        "ppgen": lambda: bc.nuts_ppgen(zoo, data, "numpyro", w, w),
        "rawF": lambda: bc.nuts_raw_numpyro(raw, jd, w, w, bc.PPGEN_FIELDS),
        "raw": lambda: bc.nuts_raw_numpyro(raw, jd, w, w),
    }
    for f in runs.values():  # warm-up: imports, caches
        f()
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for r in range(a.reps):
        for k, f in list(runs.items())[:: 1 if r % 2 == 0 else -1]:
            t = time.perf_counter()
            _, c = f()
            res[k].append((time.perf_counter() - t, c))
    print("\n".join(bc.machine()))
    print(f"- {a.case}, NUTS {w} + {w}, 1 chain, median of {a.reps} interleaved runs\n")
    print("| run | wall s | XLA trace + compile s | rest s | wall / rawF |")
    print("|---|---|---|---|---|")
    ref = statistics.median(t for t, _ in res["rawF"])
    for k, v in res.items():
        t = statistics.median(t for t, _ in v)
        c = statistics.median(c for _, c in v)
        rest = statistics.median(t - c for t, c in v)
        print(f"| {k} | {t:.3f} | {c:.3f} | {rest:.3f} | {t / ref:.3f} |")


if __name__ == "__main__":
    main()
