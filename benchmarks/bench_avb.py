"""AVB against SVI (diagonal, IAF and NSF guides) and NUTS, on one program each, same run.

Usage, from the repository root: python -m benchmarks.bench_avb [--steps N] [--smoke]

Two Pyro programs: eight schools (non-centred, 10 latents) and a 2-D banana (a ~ N(0, 1),
b ~ N(0, 1), four observations y ~ N(b - a^2, 0.5) all 0, so the posterior bends along
b = a^2). Each is fitted by ppgen's ``AVB`` (adaptive contrast), ``SVI`` with a diagonal
Normal guide, and ``SVI`` with ``FlowGuide`` IAF and NSF posteriors, all for the same number of
steps; the reference is a long NUTS run (2 chains). Printed per method: the wall time of the
fit and the classifier two-sample test (c2st) accuracy of 2,000 of its draws against 2,000
NUTS draws, in the unconstrained space (log tau), with the protocol of sbi's ``c2st``
(``ppgen.analysis.metrics.c2st``: an MLP with two hidden layers of 10 x dim units, inputs
standardised by the reference, 5-fold cross-validated accuracy; 0.5 = indistinguishable,
1.0 = disjoint). The claim tested:
an implicit posterior is as good as a flow posterior.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

torch.set_num_threads(1)

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.analysis.metrics import c2st  # noqa: E402
from ppgen.data import load  # noqa: E402
from ppgen.inference import AVB, NUTS, SVI, FlowGuide  # noqa: E402
from ppgen.models.hierarchical import EightSchools  # noqa: E402


def banana(y=None):
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(b - a**2, 0.5), obs=y)


def flat(draws: dict[str, np.ndarray], sites: list[str], n: int) -> np.ndarray:
    """The first ``n`` draws of ``sites`` (all chains), as rows; tau on the log scale."""
    cols = []
    for s in sites:
        v = draws[s].reshape((-1,) + draws[s].shape[2:])[:n]
        v = np.log(v) if s == "tau" else v
        cols.append(v.reshape(len(v), -1))
    return np.concatenate(cols, 1)


def problems(smoke: bool) -> list[tuple[str, object, dict, list[str]]]:
    y = np.zeros(4 if not smoke else 2, np.float32)
    return [
        ("eight schools", EightSchools(), load("eight_schools"), ["mu", "tau", "eta"]),
        ("banana", banana, {"y": y}, ["a", "b"]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--smoke", action="store_true", help="tiny: few steps and draws")
    args = ap.parse_args()
    steps, n, warm = (30, 200, 50) if args.smoke else (args.steps, 2000, 1000)
    iters = 20 if args.smoke else 1000
    print("\n".join(machine()))
    print(f"steps={steps} draws={n} (c2st vs NUTS, 5-fold MLP; 0.5 is ideal)")
    print(f"{'program':<15}{'method':<22}{'seconds':>9}{'c2st':>8}")
    for label, prog, data, sites in problems(args.smoke):
        t = time.perf_counter()
        ref = ppgen.fit(prog, data, NUTS(num_samples=n, num_warmup=warm, num_chains=2), seed=1)
        ref_s = time.perf_counter() - t
        ref_x = flat(ref.draws, sites, 2 * n)
        print(f"{label:<15}{'NUTS (reference)':<22}{ref_s:>9.1f}{'':>8}", flush=True)
        fn = getattr(prog, "model", prog)  # a zoo model's program, or the function
        methods = {
            "AVB (adaptive)": AVB(steps=steps, num_draws=n),
            "SVI diagonal": SVI(guide="diagonal", steps=steps, lr=0.01, num_draws=n),
            "SVI IAF flow": SVI(guide=FlowGuide(fn, "iaf"), steps=steps, num_draws=n),
            "SVI NSF flow": SVI(guide=FlowGuide(fn, "nsf"), steps=steps, num_draws=n),
        }
        for name, est in methods.items():
            t = time.perf_counter()
            fit = ppgen.fit(prog, data, est, seed=0)
            sec = time.perf_counter() - t
            pick = np.random.default_rng(0).permutation(len(ref_x))[:n]
            acc = c2st(flat(fit.draws, sites, n), ref_x[pick], max_iter=iters)
            print(f"{label:<15}{name:<22}{sec:>9.1f}{acc:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
