"""Flows and autoregressive models: ppgen ``MLE`` against hand-written loops, in the same run.

Usage, from the repository root: python -m benchmarks.bench_flows [--quick] [--write] [--only ...]

1. Quality on the 2-D toy densities of ``ppgen.data.toy2d``: held-out log-likelihood (nats) of
   each flow trained by ``ppgen.fit(FlowModel, method=MLE)`` and by a hand-written torch loop
   (``-flow.log_prob(xb).mean()``, one ``torch.optim.Adam``) from the same initial weights
   (a deep copy), for the same steps, batch size, learning rate and batch order (the numpy
   permutation ppgen's minibatcher draws for the seed). The true density's value is the ceiling.
   A 20-step check with ppgen's loss scale ((N/B) x sum) in the hand loop confirms that both
   paths optimise the same objective (parameters equal to float rounding). The anchor row is
   MAF 5x64 on 10k moons for 2000 steps at batch 512, with nflows' own MAF layers and nflows'
   ``MaskedAutoregressiveFlow`` class (5 layers, 2 residual blocks) beside it.
2. Digits (scikit-learn, 8x8, 17 levels) bits/dim on a held-out split: MADE and PixelCNN are
   exact discrete models; RealNVP and Glow are trained on uniformly dequantised, logit-
   transformed data and report the dequantisation bound on the discrete scale.
3. Speed: MAF 5x64 on moons, batch 512: ppgen against a raw nflows loop (nflows' own MAF
   layers + torch Adam) and against the hand loop on ppgen's MAF module; interleaved
   repetitions, steps 20..end timed, same-run ratios; then a cProfile of the ppgen run.
4. FFJORD cost per step (with the number of function evaluations, NFE) and the speed of the
   sequential samplers of MADE, PixelCNN, WaveNet and CharRNN (cached and uncached).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import datetime
import io
import math
import pstats
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import nflows.distributions  # noqa: E402
import nflows.flows  # noqa: E402
import nflows.transforms as nt  # noqa: E402

from benchmarks._flows import (  # noqa: E402
    LR,
    WARM,
    Clock,
    Timer,
    ar_sampling,
    digits_quality,
    hand_train,
    ppgen_train,
    train_both,
)
from benchmarks._machine import machine  # noqa: E402
from ppgen.data.toy2d import TOY2D, TOY2D_LOG_PROB, moons  # noqa: E402
from ppgen.flows import CNFTransform  # noqa: E402
from ppgen.models.flows import FlowModel  # noqa: E402

KINDS = ("maf", "realnvp", "nsf", "nice", "glow")
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[bench_flows {time.perf_counter() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- 2-D quality
def _cnf_blocks(flow) -> list:
    return [m for m in flow.modules() if isinstance(m, CNFTransform)]


class NFE:
    """Counts vector-field evaluations of an FFJORD flow (forward hooks on its MLPs)."""

    def __init__(self, flow):
        self.count = 0
        for t in _cnf_blocks(flow):
            t.f.register_forward_hook(lambda *a: setattr(self, "count", self.count + 1))


@torch.no_grad()
def test_ll(flow, x: np.ndarray, chunk: int = 5000) -> float:
    """Mean held-out log-likelihood in nats (FFJORD with its exact trace)."""
    blocks = _cnf_blocks(flow)
    for t in blocks:
        t.exact = True
    flow.eval()
    xt = torch.as_tensor(x)
    out = torch.cat([flow.log_prob(xt[i : i + chunk]) for i in range(0, len(xt), chunk)])
    flow.train()
    for t in blocks:
        t.exact = False
    return out.mean().item()


def flow_kwargs(kind: str, hidden: int) -> dict:
    if kind == "ffjord":  # small: 2x32 vector field, loose solver tolerances
        return {"hidden_features": max(hidden // 2, 8), "rtol": 1e-3, "atol": 1e-3}
    return {"hidden_features": hidden}


def toy_quality(a) -> tuple[list[tuple], dict]:
    rows, extra = [], {}
    for ds in a.datasets:
        xtr, xte = TOY2D[ds](a.n_train, seed=a.seed), TOY2D[ds](a.n_test, seed=a.seed + 1)
        ceiling = float(np.mean(TOY2D_LOG_PROB[ds](xte)))
        for kind in a.kinds + (["ffjord"] if ds in a.ffjord_datasets else []):
            n_steps = a.ffjord_steps if kind == "ffjord" else a.steps
            torch.manual_seed(a.seed)
            model = FlowModel(kind, 2, **flow_kwargs(kind, a.hidden))
            hand = copy.deepcopy(model)
            nfe = NFE(hand.flow) if kind == "ffjord" else None
            clock = Clock(min(WARM, n_steps // 2))
            tp, th = train_both(model, hand, xtr, n_steps, a.batch, a.seed, clock)
            nfe_per_step = nfe.count / n_steps if nfe is not None else math.nan
            lp, lh = test_ll(model.flow, xte), test_ll(hand.flow, xte)
            rows.append((ds, kind, n_steps, lp, lh, lp - lh, ceiling, tp, th))
            log(f"{ds}/{kind}: ppgen {lp:.3f}, hand {lh:.3f} ({tp:.0f} s + {th:.0f} s)")
            if kind == "ffjord":
                extra[ds] = (model, nfe_per_step, 1000 / clock.rate, n_steps / tp)
            if kind == "maf" and ds == a.datasets[0]:
                extra["identical"] = identical_check(a, xtr)
    return rows, extra


def identical_check(a, xtr, steps: int = 20) -> tuple[float, float]:
    """ppgen vs the hand loop with ppgen's loss scale ((N/B) x sum), same init and batches.

    Returns the largest parameter difference after ``steps`` steps, and the largest change of
    a parameter from its initial value (the scale the difference is small against). Few
    steps, so float rounding (e.g. a fused optimiser) has not yet been amplified by training.
    """
    torch.manual_seed(a.seed)
    model = FlowModel("maf", 2, **flow_kwargs("maf", a.hidden))
    hand, init = copy.deepcopy(model), copy.deepcopy(model)
    ppgen_train(model, {"x": xtr}, steps, a.batch, a.seed)
    n = len(xtr)
    loss = lambda xb: -(n / len(xb)) * hand.log_prob(xb).sum()  # noqa: E731
    hand_train(loss, hand.parameters(), xtr, steps, a.batch, a.seed)

    def gap(m1, m2) -> float:
        return max((p - q).abs().max().item() for p, q in zip(m1.parameters(), m2.parameters()))

    return gap(model, hand), gap(model, init)


def nflows_maf(features: int = 2, hidden: int = 64, layers: int = 5) -> nflows.flows.Flow:
    """nflows' own MAF (its masked affine layer, softplus scale), reversed between layers."""
    ts: list = []
    for i in range(layers):
        if i > 0:
            ts.append(nt.ReversePermutation(features))
        ts.append(nt.MaskedAffineAutoregressiveTransform(features, hidden, num_blocks=2))
    return nflows.flows.Flow(nt.CompositeTransform(ts), nflows.distributions.StandardNormal([2]))


def anchor(a) -> list[tuple]:
    """MAF 5x64 (2 residual blocks per MADE) on moons for the issue's step count and data size:
    ppgen, the hand loop on ppgen's module, nflows' MAF layers, and nflows' own
    ``MaskedAutoregressiveFlow`` class, every one by Adam(1e-3) on the same batches."""
    xtr, xte = moons(a.anchor_n_train, seed=a.seed), moons(a.n_test, seed=a.seed + 1)
    torch.manual_seed(a.seed)
    model = FlowModel("maf", 2, hidden_features=a.hidden, num_transforms=5, num_blocks=2)
    hand = copy.deepcopy(model)
    torch.manual_seed(a.seed)
    raw = nflows_maf(hidden=a.hidden)
    torch.manual_seed(a.seed)
    ref = nflows.flows.MaskedAutoregressiveFlow(2, a.hidden, num_layers=5, num_blocks_per_layer=2)
    tp, th = train_both(model, hand, xtr, a.anchor_steps, a.batch, a.seed)
    timed = []
    for flow in (raw, ref):
        with Timer() as t:
            loss = lambda xb, f=flow: -f.log_prob(xb).mean()  # noqa: E731
            hand_train(loss, flow.parameters(), xtr, a.anchor_steps, a.batch, a.seed)
        timed.append(t.s)
    h = a.hidden
    return [
        (f"ppgen.fit(MAFModel(2, {h}, 5, num_blocks=2), MLE)", test_ll(model.flow, xte), tp),
        ("hand loop, ppgen MAF (same init)", test_ll(hand.flow, xte), th),
        ("hand loop, nflows' own MAF layers", test_ll(raw, xte), timed[0]),
        (f"hand loop, nflows MaskedAutoregressiveFlow(2, {h}, 5, 2)", test_ll(ref, xte), timed[1]),
    ]


# ---------------------------------------------------------------- speed and profile
def speed(a) -> dict[str, list[float]]:
    x = moons(a.n_train, seed=a.seed)

    def raw_nflows(clock: Clock) -> None:
        f = nflows_maf(hidden=a.hidden)
        loss = lambda xb: -f.log_prob(xb).mean()  # noqa: E731
        hand_train(loss, f.parameters(), x, a.speed_steps, a.batch, 0, clock)

    def hand_ppgen_module(clock: Clock) -> None:
        m = FlowModel("maf", 2, hidden_features=a.hidden)
        loss = lambda xb: -m.log_prob(xb).mean()  # noqa: E731
        hand_train(loss, m.parameters(), x, a.speed_steps, a.batch, 0, clock)

    def fit(clock: Clock) -> None:
        m = FlowModel("maf", 2, hidden_features=a.hidden)
        ppgen_train(m, {"x": x}, a.speed_steps, a.batch, 0, clock)

    cases = {
        "raw nflows MAF + torch Adam": raw_nflows,
        "hand loop, ppgen MAF module": hand_ppgen_module,
        "ppgen.fit(MAFModel, MLE)": fit,
    }
    rates: dict[str, list[float]] = {}
    for rep in range(a.reps):
        for name in list(cases) if rep % 2 == 0 else list(cases)[::-1]:
            torch.manual_seed(rep)
            clock = Clock()
            cases[name](clock)
            rates.setdefault(name, []).append(clock.rate)
    return rates


PROFILE_ROWS = [  # (label, file fragment, function name); rows absent from the profile are skipped
    ("ppgen loop: run_loop (incl. setup and finalize)", "ppgen/inference/_loop.py", "run_loop"),
    ("SVI.step (the whole step, MLE's too)", "ppgen/inference/svi.py", "step"),
    ("TorchEngine.step", "ppgen/inference/_svi_torch.py", "step"),
    ("pyro.infer.SVI.step", "pyro/infer/svi.py", "step"),
    ("Pyro optimiser: one torch Adam per param tensor", "pyro/optim/optim.py", "__call__"),
    ("Trace_ELBO loss_and_grads", "pyro/infer/trace_elbo.py", "loss_and_grads"),
    ("  model+guide traces (incl. log_prob)", "pyro/infer/enum.py", "get_importance_trace"),
    ("pyro.module param registration", "pyro/primitives.py", "module"),
    ("flow log_prob (nflows)", "nflows/flows/base.py", "_log_prob"),
    ("backward", "~", "<method 'run_backward' of 'torch._C._EngineBase' objects>"),
    ("torch Adam.step calls", "torch/optim/adam.py", "step"),
    ("minibatch slicing", "ppgen/inference/_loop.py", "next"),
]


def profile_ppgen(a) -> list[str]:
    x = moons(a.n_train, seed=a.seed)
    model = FlowModel("maf", 2, hidden_features=a.hidden)
    prof = cProfile.Profile()
    prof.runcall(ppgen_train, model, {"x": x}, a.speed_steps, a.batch, 0)
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = {(k[0], k[2]): (v[1], v[3]) for k, v in stats.stats.items()}
    steps = [
        t for (f, fn), (_, t) in rows.items() if "ppgen/inference/svi.py" in f and fn == "step"
    ]
    loop = max(steps, default=math.nan)
    lines = [
        f"cProfile of one ppgen fit ({a.speed_steps} steps; profiler overhead inflates small "
        "calls). Cumulative time per function, as a share of the time in `SVI.step`:\n",
        "| where | calls | cumulative s | % of step time |",
        "|---|---|---|---|",
    ]
    for label, where, func in PROFILE_ROWS:
        hits = [(n, t) for (f, fn), (n, t) in rows.items() if where in f and fn == func]
        if hits:
            n, t = max(hits, key=lambda h: h[1])
            lines.append(f"| {label} | {n} | {t:.2f} | {100 * t / loop:.0f}% |")
    return lines


# ---------------------------------------------------------------- FFJORD and AR sampling
def ffjord_cost(extra: dict) -> list[str]:
    lines = [
        "| data | NFE / train step (hand) | ms / step hand | ms / step ppgen (whole fit) | "
        "exact log p, 1000 pts: ms (NFE) | sample 1000: ms (NFE) |",
        "|---|---|---|---|---|---|",
    ]
    for ds, v in extra.items():
        if ds == "identical":
            continue
        model, nfe_step, ms_hand, ppgen_rate = v
        counter, flow = NFE(model.flow), model.flow
        x = torch.as_tensor(TOY2D[ds](1000, seed=9))
        with Timer() as t_eval:
            test_ll(flow, x.numpy())
        n_eval, counter.count = counter.count, 0
        with torch.no_grad(), Timer() as t_samp:
            flow.sample(1000)
        lines.append(
            f"| {ds} | {nfe_step:.1f} | {ms_hand:.1f} | {1000 / ppgen_rate:.1f} | "
            f"{1000 * t_eval.s:.0f} ({n_eval}) | {1000 * t_samp.s:.0f} ({counter.count}) |"
        )
    return lines


# ---------------------------------------------------------------- report
def header() -> list[str]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    libs = ("torch", "pyro-ppl", "nflows", "torchdiffeq", "ppgen")
    return [
        f"\n## Flows and autoregressive models, MLE ({now})\n",
        *machine(libs),
        "- command: `" + " ".join(["python -m benchmarks.bench_flows", *ARGV]) + "`",
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes; numbers are meaningless")
    ap.add_argument("--only", nargs="*", default=["toy", "anchor", "digits", "speed", "sampling"])
    ap.add_argument("--datasets", nargs="*", default=list(TOY2D))
    ap.add_argument("--kinds", nargs="*", default=list(KINDS))
    ap.add_argument("--ffjord-datasets", nargs="*", default=["moons"])
    ap.add_argument("--steps", type=int, default=400, help="steps per toy-density fit")
    ap.add_argument("--ffjord-steps", type=int, default=300)
    ap.add_argument("--anchor-steps", type=int, default=2000)
    ap.add_argument("--anchor-n-train", type=int, default=10_000, help="the issue's 10k moons")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=20_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--digits-steps", type=int, default=400)
    ap.add_argument("--digits-batch", type=int, default=128)
    ap.add_argument("--digits-hidden", type=int, default=32)
    ap.add_argument("--speed-steps", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sample-n", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.ffjord_steps, a.anchor_steps, a.batch, a.hidden = 8, 3, 8, 64, 8
        a.anchor_n_train = 256
        a.n_train, a.n_test, a.datasets, a.kinds = 256, 256, ["moons"], ["maf", "nice"]
        a.digits_steps, a.digits_batch, a.digits_hidden, a.speed_steps, a.reps = 3, 32, 4, 24, 1
        a.sample_n, a.seq_len = 2, 8
    return a


ARGV: list[str] = []


def main(argv: list[str] | None = None) -> str:
    ARGV[:] = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    lines = header()
    if "toy" in a.only:
        log("section toy")
        rows, extra = toy_quality(a)
        lines += [
            f"\n### 2-D toy densities: held-out log-likelihood (nats, {a.n_test} test points), "
            f"batch {a.batch}, Adam {LR}, hidden {a.hidden}, {a.n_train} training points\n",
            "| data | flow | steps | ppgen | hand loop | ppgen - hand | true density | "
            "s ppgen | s hand |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {d} | {k} | {n} | {p:.3f} | {h:.3f} | {p - h:+.3f} | {c:.3f} | {t:.1f} | {u:.1f} |"
            for d, k, n, p, h, _, c, t, u in rows
        ]
        if "identical" in extra:
            diff, moved = extra["identical"]
            lines.append(
                f"\nSame init and batches, ppgen's loss scale ((N/B) x sum) in the hand loop, "
                f"{a.datasets[0]}/maf after 20 steps: max |parameter difference| = {diff:.3g}, "
                f"while training moved a parameter by up to {moved:.3g}."
            )
        if any(k != "identical" for k in extra):
            lines += ["\n### FFJORD cost (Hutchinson trace in training, exact trace to evaluate)\n"]
            lines += ffjord_cost(extra)
    if "anchor" in a.only:
        log("section anchor")
        lines += [
            f"\n### Anchor: MAF 5x{a.hidden} (2 residual blocks) on moons, {a.anchor_n_train} "
            f"training points, {a.anchor_steps} steps, batch {a.batch}, Adam {LR}\n",
            "| path | test log-lik (nats) | s |",
            "|---|---|---|",
        ]
        lines += [f"| {n} | {v:.3f} | {t:.1f} |" for n, v, t in anchor(a)]
    if "digits" in a.only:
        log("section digits")
        lines += [
            f"\n### Digits (8x8, 17 levels, 1500 train / 297 test): bits/dim after "
            f"{a.digits_steps} steps, batch {a.digits_batch}\n",
            "| model | steps | ppgen | hand loop | ppgen - hand | s ppgen | s hand |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {s} | {p:.3f} | {h:.3f} | {d:+.3f} | {tp:.1f} | {th:.1f} |"
            for n, s, p, h, d, tp, th in digits_quality(a)
        ]
    if "speed" in a.only:
        log("section speed")
        rates = speed(a)
        raw = rates["raw nflows MAF + torch Adam"]
        lines += [
            f"\n### Speed: MAF 5x{a.hidden} on moons, batch {a.batch}, {a.reps} interleaved reps "
            f"x {a.speed_steps} steps (steps {WARM}..end timed)\n",
            "| path | steps/s (median) | ratio to raw nflows, same rep: median (min..max) |",
            "|---|---|---|",
        ]
        for name, r in rates.items():
            ratios = [v / w for v, w in zip(r, raw)]
            lines.append(
                f"| {name} | {statistics.median(r):.1f} | {statistics.median(ratios):.3f} "
                f"({min(ratios):.3f}..{max(ratios):.3f}) |"
            )
        lines += [""] + profile_ppgen(a)
    if "sampling" in a.only:
        log("section sampling")
        lines += ["\n### Autoregressive sampling speed\n"] + ar_sampling(a)
    lines.append(f"\nTotal run time {time.perf_counter() - T0:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    main()
