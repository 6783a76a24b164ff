"""ppgen against raw Pyro / raw NumPyro in one process: NUTS ESS/s and SVI seconds per 1000 steps.

Usage, from the repository root: python -m benchmarks.bench_core [--quick] [--reps N] [--write]

Every ppgen run is paired with the same program written in the plain library, with the same
seed and sampler/optimiser settings; pairs are interleaved (ppgen first in even repetitions,
raw first in odd ones) so drift on a shared machine cancels, and the median is reported.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as pdist  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine as _machine  # noqa: E402
from ppgen.data import load  # noqa: E402
from ppgen.inference import NUTS, SVI  # noqa: E402
from ppgen.models import EightSchools, LogisticRegression  # noqa: E402

TABLE_HEADER = "| case | metric | better | ppgen | raw | ppgen/raw | within 5% |"
SEED = 0


# ---------------------------------------------------------------- plain-library programs
def pyro_schools(sigma, y=None):
    mu = pyro.sample("mu", pdist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", pdist.HalfCauchy(5.0))
    with pyro.plate("school", sigma.shape[0]):
        eta = pyro.sample("eta", pdist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        return pyro.sample("y", pdist.Normal(theta, sigma), obs=y)


def numpyro_schools(sigma, y=None):
    mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", ndist.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        eta = numpyro.sample("eta", ndist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * eta)
        return numpyro.sample("y", ndist.Normal(theta, sigma), obs=y)


def pyro_logistic(X, y=None):
    n, d = X.shape
    w = pyro.sample("w", pdist.Normal(0.0, 1.0).expand([d]).to_event(1))
    b = pyro.sample("b", pdist.Normal(0.0, 10.0))
    with pyro.plate("data", n):
        return pyro.sample("y", pdist.Bernoulli(logits=b + X @ w), obs=y)


def numpyro_logistic(X, y=None):
    n, d = X.shape
    w = numpyro.sample("w", ndist.Normal(0.0, 1.0).expand([d]).to_event(1))
    b = numpyro.sample("b", ndist.Normal(0.0, 10.0))
    with numpyro.plate("data", n):
        return numpyro.sample("y", ndist.Bernoulli(logits=b + X @ w), obs=y)


def torch_data(data: dict) -> dict:
    """What a Pyro user passes: float32 tensors (0/1 labels as floats for Bernoulli)."""
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in data.items()}


def jax_data(data: dict) -> dict:
    """What a NumPyro user passes: float32 covariates, integer labels as int32."""
    return {
        k: jnp.asarray(v, dtype=jnp.float32 if np.asarray(v).dtype.kind == "f" else jnp.int32)
        for k, v in data.items()
    }


# ---------------------------------------------------------------- XLA compile time, in-run
# JAX reports each trace / lowering / backend compile; a NumPyro NUTS run of 1000 + 1000 draws
# here is mostly compilation, so the runners report how much of their own wall time it was.
_COMPILE = [0.0]


def _on_duration(event: str, duration: float, **_: Any) -> None:
    if event.startswith("/jax/core/compile/"):
        _COMPILE[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_duration)

# what ppgen asks NumPyro's MCMC to keep for ArviZ's sample_stats (ppgen/inference/mcmc.py)
PPGEN_FIELDS = (
    "diverging",
    "energy",
    "num_steps",
    "accept_prob",
    "potential_energy",
    "adapt_state.step_size",
)


# ---------------------------------------------------------------- runners (return draws, compile s)
def nuts_ppgen(zoo: Any, data: dict, backend: str, warmup: int, samples: int) -> tuple:
    c0 = _COMPILE[0]
    est = NUTS(num_samples=samples, num_warmup=warmup, jit=True, backend=backend)
    fit = ppgen.fit(zoo, data, est, seed=SEED, progress=False, backend=backend)
    return {k: np.asarray(v) for k, v in fit.draws.items()}, _COMPILE[0] - c0


def nuts_raw_pyro(model: Callable, data: dict, warmup: int, samples: int) -> tuple:
    from pyro.infer import MCMC
    from pyro.infer import NUTS as PyroNUTS

    pyro.set_rng_seed(SEED)
    kernel = PyroNUTS(model, jit_compile=True, ignore_jit_warnings=True)
    mcmc = MCMC(kernel, num_samples=samples, warmup_steps=warmup, disable_progbar=True)
    mcmc.run(**data)
    return {k: v.detach().numpy()[None] for k, v in mcmc.get_samples().items()}, 0.0


def nuts_raw_numpyro(
    model: Callable, data: dict, warmup: int, samples: int, fields: tuple = ()
) -> tuple:
    from numpyro.infer import MCMC
    from numpyro.infer import NUTS as JaxNUTS

    c0 = _COMPILE[0]
    kernel = JaxNUTS(model)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(SEED), extra_fields=fields, **data)
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    if fields:
        _ = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return draws, _COMPILE[0] - c0


def min_ess(draws: dict, sites: list[str]) -> float:
    """Minimum bulk ESS (ArviZ) over every scalar component of ``sites``."""
    out = []
    for s in sites:
        a = draws[s].reshape(draws[s].shape[0], draws[s].shape[1], -1)
        out += [float(az.ess(a[:, :, j], method="bulk")) for j in range(a.shape[-1])]
    return min(out)


class StepClock:
    """Time stamps at step ``start`` and at the last step (a ppgen callback, or called by hand)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end, self.t = start, end, {}

    def __call__(self, step: int, metrics: Any = None) -> bool:
        if step in (self.start, self.end):
            self.t[step] = time.perf_counter()
        return False

    def per_1000(self) -> float:
        return 1000 * (self.t[self.end] - self.t[self.start]) / (self.end - self.start)


def svi_ppgen(backend: str, data: dict, steps: int, skip: int, program: Any = None) -> float:
    """ppgen's SVI on the zoo's backend-neutral EightSchools, or on ``program`` if given."""
    clock = StepClock(skip, steps)
    est = SVI(guide="normal", steps=steps, lr=0.01, num_draws=10)
    program = EightSchools() if program is None else program
    ppgen.fit(program, data, est, seed=SEED, progress=False, backend=backend, callbacks=[clock])
    return clock.per_1000()


def svi_raw_pyro(data: dict, steps: int, skip: int) -> float:
    from pyro.infer import SVI as PyroSVI
    from pyro.infer import Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    pyro.clear_param_store()
    pyro.set_rng_seed(SEED)
    clock = StepClock(skip, steps)
    svi = PyroSVI(
        pyro_schools, AutoNormal(pyro_schools), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO()
    )
    for i in range(1, steps + 1):
        loss = svi.step(**data)  # Pyro's step already returns a Python float
        clock(i, loss)
    return clock.per_1000()


def svi_raw_numpyro(data: dict, steps: int, skip: int, to_float: bool) -> float:
    from numpyro.infer import SVI as JaxSVI
    from numpyro.infer import Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    clock = StepClock(skip, steps)
    svi = JaxSVI(
        numpyro_schools, AutoNormal(numpyro_schools), numpyro.optim.Adam(0.01), Trace_ELBO()
    )
    state = svi.init(jax.random.PRNGKey(SEED), **data)
    update = jax.jit(svi.update)
    for i in range(1, steps + 1):
        state, loss = update(state, **data)
        if to_float:
            loss = float(loss)
        elif i in (skip, steps):
            jax.block_until_ready(loss)
        clock(i, loss)
    return clock.per_1000()


# ---------------------------------------------------------------- timing harness
def paired(fa: Callable[[], Any], fb: Callable[[], Any], reps: int) -> tuple[list, list]:
    """Run ``fa`` (ppgen) and ``fb`` (raw) ``reps`` times each, alternating which goes first.

    Each entry is ``(seconds, result)``.
    """
    ra, rb = [], []
    for r in range(reps):
        order = [(fa, ra), (fb, rb)] if r % 2 == 0 else [(fb, rb), (fa, ra)]
        for f, out in order:
            t = time.perf_counter()
            res = f()
            out.append((time.perf_counter() - t, res))
            print(
                f"    {'ppgen' if f is fa else 'raw'}: {out[-1][0]:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    return ra, rb


def med(runs: list) -> float:
    return statistics.median(t for t, _ in runs)


ROWS: list[tuple] = []


def row(case: str, metric: str, better: str, a: float, b: float) -> float:
    ratio = a / b
    ok = ratio >= 0.95 if better == "higher" else ratio <= 1.05
    ROWS.append((case, metric, better, a, b, ratio, "yes" if ok else "NO"))
    return ratio


def nuts_case(name: str, zoo: Any, raw: tuple, data: dict, sites: list, cfg: dict) -> dict:
    """Four NUTS runs (ppgen/raw x Pyro/NumPyro); returns ESS/s of the raw runs per backend."""
    w, s, reps = cfg["warmup"], cfg["samples"], cfg["reps"]
    pyro_model, jax_model = raw
    tdata, jdata = torch_data(data), jax_data(data)
    out = {}
    raws = {
        "pyro": lambda ww, ss: nuts_raw_pyro(pyro_model, tdata, ww, ss),
        "numpyro": lambda ww, ss: nuts_raw_numpyro(jax_model, jdata, ww, ss),
    }
    for backend, fb in raws.items():
        if backend not in cfg["backends"]:
            continue

        def run_a(ww: int, ss: int, b: str = backend) -> tuple:
            return nuts_ppgen(zoo, data, b, ww, ss)

        if cfg["fixed"]:  # an untimed first pair warms the process up (imports, caches)
            paired(lambda: run_a(1, 1), lambda f=fb: f(1, 1), 1)
        ra, rb = paired(lambda: run_a(w, s), lambda f=fb: f(w, s), reps)
        ess_a, ess_b = min_ess(ra[0][1][0], sites), min_ess(rb[0][1][0], sites)
        same = all(np.array_equal(ra[0][1][0][k], rb[0][1][0][k]) for k in sites)
        ta, tb = med(ra), med(rb)
        case = f"NUTS {name} [{backend}]"
        row(case, "wall s (incl. compile)", "lower", ta, tb)
        row(case, "min bulk ESS", "higher", ess_a, ess_b)
        row(case, "ESS/s (incl. compile)", "higher", ess_a / ta, ess_b / tb)
        if backend == "numpyro":
            ca = statistics.median(c for _, (_, c) in ra)
            cb = statistics.median(c for _, (_, c) in rb)
            row(case, "XLA trace + compile s (in run)", "lower", ca, cb)
            xa = statistics.median(t - c for t, (_, c) in ra)
            xb = statistics.median(t - c for t, (_, c) in rb)
            row(case, "ESS/s (excl. XLA compile)", "higher", ess_a / xa, ess_b / xb)
            # like for like: raw NumPyro asked for the sample statistics ppgen keeps for ArviZ
            ra2, rc = paired(
                lambda: run_a(w, s),
                lambda: nuts_raw_numpyro(jax_model, jdata, w, s, PPGEN_FIELDS),
                reps,
            )
            case2 = f"NUTS {name} [numpyro; raw keeps ppgen's sample stats]"
            row(case2, "ESS/s (incl. compile)", "higher", ess_a / med(ra2), ess_b / med(rc))
        print(f"  {case}: identical draws ppgen vs raw: {same}", flush=True)
        out[backend] = (ess_a / ta, ess_b / tb)
    if len(out) < 2:
        return out
    row(
        f"NUTS {name} NumPyro/Pyro",
        "ESS/s ratio, ppgen",
        "higher",
        out["numpyro"][0],
        out["pyro"][0],
    )
    row(
        f"NUTS {name} NumPyro/Pyro", "ESS/s ratio, raw", "higher", out["numpyro"][1], out["pyro"][1]
    )
    ROWS[-2] = ROWS[-2][:6] + ("-",)
    ROWS[-1] = ROWS[-1][:6] + ("-",)
    return out


def svi_case(cfg: dict) -> None:
    data, steps, skip, reps = load("eight_schools"), cfg["steps"], cfg["skip"], cfg["reps"]
    tdata, jdata = torch_data(data), jax_data(data)
    if cfg["fixed"]:  # untimed warm-up of both paths
        paired(
            lambda: svi_ppgen("pyro", data, skip + 1, skip),
            lambda: svi_raw_pyro(tdata, skip + 1, skip),
            1,
        )
    ra, rb = paired(
        lambda: svi_ppgen("pyro", data, steps, skip), lambda: svi_raw_pyro(tdata, steps, skip), reps
    )
    case = "SVI AutoNormal schools [pyro]"
    row(
        case,
        "s/1000 steps (loop, float each step)",
        "lower",
        statistics.median(r for _, r in ra),
        statistics.median(r for _, r in rb),
    )
    row(case, "wall s per fit (setup + compile + loop)", "lower", med(ra), med(rb))
    # the same plain-Pyro program on both sides: ppgen's own cost, without the zoo model's
    ra, rb = paired(
        lambda: svi_ppgen("pyro", tdata, steps, skip, program=pyro_schools),
        lambda: svi_raw_pyro(tdata, steps, skip),
        reps,
    )
    row(
        "SVI AutoNormal schools, same plain-Pyro program [pyro]",
        "s/1000 steps (loop, float each step)",
        "lower",
        statistics.median(r for _, r in ra),
        statistics.median(r for _, r in rb),
    )
    if cfg["fixed"]:
        paired(
            lambda: svi_ppgen("numpyro", data, skip + 1, skip),
            lambda: svi_raw_numpyro(jdata, skip + 1, skip, True),
            1,
        )
    for to_float in (True, False) if cfg["fixed"] else (True,):
        ra, rb = paired(
            lambda: svi_ppgen("numpyro", data, steps, skip),
            lambda tf=to_float: svi_raw_numpyro(jdata, steps, skip, tf),
            reps,
        )
        case = "SVI AutoNormal schools [numpyro]"
        what = "raw float each step" if to_float else "raw no float"
        row(
            case,
            f"s/1000 steps (loop, {what})",
            "lower",
            statistics.median(r for _, r in ra),
            statistics.median(r for _, r in rb),
        )
        if to_float:
            row(case, "wall s per fit (setup + compile + loop)", "lower", med(ra), med(rb))


# ---------------------------------------------------------------- report
def machine() -> list[str]:
    return [*_machine(), "- XLA_FLAGS=" + os.environ["XLA_FLAGS"]]


def table() -> list[str]:
    lines = [TABLE_HEADER, "|" + "---|" * 7]
    for case, metric, better, a, b, ratio, ok in ROWS:
        lines.append(f"| {case} | {metric} | {better} | {a:.4g} | {b:.4g} | {ratio:.3f} | {ok} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--only", choices=("schools", "logistic", "svi"), nargs="*")
    parser.add_argument(
        "--backends", choices=("pyro", "numpyro"), nargs="*", help="NUTS backends (default both)"
    )
    for k in ("warmup", "samples", "steps"):
        parser.add_argument(f"--{k}", type=int, default=None, help=f"override the {k} size")
    parser.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    q = args.quick
    reps = args.reps or (1 if q else 3)
    sizes = {"warmup": 30 if q else 1000, "samples": 30 if q else 1000, "steps": 100 if q else 2000}
    sizes.update({k: getattr(args, k) for k in sizes if getattr(args, k) is not None})
    cfg = {**sizes, "reps": reps, "fixed": not q, "skip": 20 if q else 100}
    cfg["backends"] = tuple(args.backends or ("pyro", "numpyro"))
    only = set(args.only or ("schools", "logistic", "svi"))
    t0 = time.perf_counter()
    print("\n".join(machine()), flush=True)
    if "schools" in only:
        nuts_case(
            "eight schools",
            EightSchools(),
            (pyro_schools, numpyro_schools),
            load("eight_schools"),
            ["mu", "tau"],
            cfg,
        )
    if "logistic" in only:
        data = load("logistic", n=500, d=5) if q else load("logistic")
        nuts_case(
            "logistic {}x{}".format(*data["X"].shape),
            LogisticRegression(),
            (pyro_logistic, numpyro_logistic),
            data,
            ["w", "b"],
            cfg,
        )
    if "svi" in only:
        svi_case(cfg)
    body = table()
    print("\n".join(body))
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s", flush=True)
    if args.write:
        note = (
            f"NUTS {cfg['warmup']} warmup + {cfg['samples']} samples, 1 chain; "
            f"SVI {cfg['steps']} steps (per-1000 timing from step {cfg['skip']}); "
            f"median of {reps} interleaved repetitions"
        )
        text = [
            f"\n## Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "",
            *machine(),
            f"- {note}",
            "",
            *body,
            "",
        ]
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write("\n".join(text))


if __name__ == "__main__":
    main()
