"""NumPyro VAE on scikit-learn digits: ppgen's SVI against a raw ``jax.jit(svi.update)`` loop.

Usage, from the repository root:
python -m benchmarks.bench_vae_numpyro [--quick] [--reps N] [--steps N] [--profile] [--write]

Both runs fit the same NumPyro program (2x256 MLP decoder, z=16, Bernoulli likelihood on
binarised digits) with the same guide, ppgen's ``Amortized`` encoder (2x256 MLP, diagonal
Normal), Trace_ELBO, Adam lr 1e-3, batch 128 drawn as shuffled minibatches of the 1500
training digits and weighted N / B. ppgen: ``ppgen.fit(model, data, SVI(guide=Amortized(),
batch_size=128))``. Raw: ``numpyro.infer.SVI`` with ``svi.init`` then ``jax.jit(svi.update)``
over numpy-indexed minibatches, in two flavours: keeping the losses as device arrays (no sync
per step; the fastest loop one can write) and reading ``float(loss)`` every step, as ppgen's
loop does (it needs the value for NaN checks, history and callbacks). Steps 20..end are timed,
runs are interleaved (order reversed every repetition) and ratios are taken per repetition.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import jax  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro import handlers  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.inference import SVI  # noqa: E402
from ppgen.inference.guides._amortized_numpyro import NumPyroAmortized, mlp  # noqa: E402
from ppgen.inference.guides.amortized import Amortized  # noqa: E402

LR, BATCH, Z, WARM = 1e-3, 128, 16, 20


def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0 > 0.5).astype(np.float32)
    return x[np.random.default_rng(0).permutation(len(x))[:1500]]


def make_model(hidden: tuple[int, ...]):
    def vae(x):
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([Z]).to_event(1))
            logits = mlp("decoder", z, hidden, x.shape[-1])
            numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    return vae


def ppgen_run(x: np.ndarray, steps: int, hidden: tuple[int, ...], seed: int) -> tuple:
    clock: dict = {}

    def cb(step, metrics):
        if step == WARM:
            clock["a"] = time.perf_counter()
        clock["b"] = time.perf_counter()

    est = SVI(
        guide=Amortized(hidden_features=hidden), steps=steps, batch_size=BATCH, lr=LR, num_draws=2
    )
    fit = ppgen.fit(make_model(hidden), {"x": x}, est, callbacks=[cb], seed=seed)
    rate = (steps - WARM) / (clock["b"] - clock["a"])
    return rate, float(np.mean(fit.history["loss"][-50:]))


def raw_run(x: np.ndarray, steps: int, hidden: tuple[int, ...], seed: int, sync: bool) -> tuple:
    n = len(x)
    model = make_model(hidden)
    guide = NumPyroAmortized(model, hidden_features=hidden)

    def scaled(fn):
        def run(x):
            with handlers.scale(scale=n / x.shape[0]):  # every site is in the data plate
                return fn(x=x)

        return run

    svi = numpyro.infer.SVI(
        scaled(model), scaled(guide), numpyro.optim.Adam(LR), numpyro.infer.Trace_ELBO()
    )
    state = svi.init(jax.random.PRNGKey(seed), x=x)
    update = jax.jit(svi.update)
    rng = np.random.default_rng(seed)
    perm, pos, losses = rng.permutation(n), 0, []
    for step in range(steps):
        if step == WARM:
            jax.block_until_ready(state)
            t0 = time.perf_counter()
        if pos >= n:
            perm, pos = rng.permutation(n), 0
        state, loss = update(state, x=x[perm[pos : pos + BATCH]])
        pos += BATCH
        losses.append(float(loss) if sync else loss)
    jax.block_until_ready(state)
    rate = (steps - WARM) / (time.perf_counter() - t0)
    return rate, float(np.mean([float(v) for v in losses[-50:]]))


CASES = {
    "ppgen SVI(guide=Amortized()), batch_size=128": lambda x, s, h, r: ppgen_run(x, s, h, r),
    "raw jax.jit(svi.update) loop, losses kept on device": lambda x, s, h, r: raw_run(
        x, s, h, r, False
    ),
    "raw jax.jit(svi.update) loop, float(loss) every step": lambda x, s, h, r: raw_run(
        x, s, h, r, True
    ),
}
BASE = "raw jax.jit(svi.update) loop, losses kept on device"


def speed(x: np.ndarray, steps: int, reps: int, hidden: tuple[int, ...]) -> dict:
    out: dict[str, dict[str, list[float]]] = {k: {"rate": [], "loss": []} for k in CASES}
    for rep in range(reps):
        order = list(CASES) if rep % 2 == 0 else list(CASES)[::-1]
        for name in order:
            rate, loss = CASES[name](x, steps, hidden, rep)
            out[name]["rate"].append(rate)
            out[name]["loss"].append(loss)
    return out


def profile(x: np.ndarray, steps: int, hidden: tuple[int, ...]) -> str:
    """cProfile of one ppgen fit: where the per-step time goes (top functions by own time)."""
    import cProfile
    import io
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    ppgen_run(x, steps, hidden, 0)
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes; numbers meaningless")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one ppgen fit")
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    a = ap.parse_args()
    hidden = (256, 256)
    if a.quick:
        a.reps, a.steps, hidden = 1, WARM + 10, (16,)
    x = digits()
    load0 = os.getloadavg()[0]
    res = speed(x, a.steps, a.reps, hidden)
    load1 = os.getloadavg()[0]
    base = res[BASE]["rate"]
    lines = [
        "\n## NumPyro VAE on digits: ppgen SVI vs raw jax.jit(svi.update)\n",
        *machine(("numpyro", "jax", "ppgen")),
        f"- XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}; 1-min load average {load0:.1f} before "
        f"the timed runs, {load1:.1f} after",
        f"- model: {hidden} MLP decoder, z={Z}, Bernoulli; guide: Amortized {hidden} MLP "
        f"encoder, diagonal Normal; Adam lr {LR}, batch {BATCH} of 1500 digits",
        f"- {a.reps} interleaved reps x {a.steps} steps, steps {WARM}..end timed; ratio = "
        "steps/s over the no-sync raw loop of the same repetition\n",
        "| path | steps/s (median) | ratio to raw: median (min..max) | mean loss, last 50 steps |",
        "|---|---|---|---|",
    ]
    for name, r in res.items():
        ratios = [v / b for v, b in zip(r["rate"], base)]
        lines.append(
            f"| {name} | {statistics.median(r['rate']):.1f} | {statistics.median(ratios):.3f}x "
            f"({min(ratios):.3f}..{max(ratios):.3f}) | {statistics.median(r['loss']):.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if a.profile:
        print(profile(x, a.steps, hidden))
    if a.write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
