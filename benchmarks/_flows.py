"""Helpers of ``bench_flows``: the ppgen and hand-written training paths, digits, AR sampling.

Not a benchmark on its own; run ``python -m benchmarks.bench_flows``.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import ppgen
from benchmarks._machine import Clock  # noqa: F401 - re-exported for the flow benchmarks
from ppgen.inference import MLE
from ppgen.models.autoregressive import MADE, CharRNN, GatedPixelCNN, PixelCNN, WaveNet
from ppgen.models.flows import DequantizedFlowModel

LR, WARM = 1e-3, 20
LEVELS, ALPHA, IMG = 17, 0.05, (1, 8, 8)  # digits: 17 grey levels; Real NVP's logit squeeze


# ---------------------------------------------------------------- training paths
def batch_order(n: int, batch: int, seed: int):
    """The index batches of ppgen's minibatcher for ``seed`` (a fresh permutation per epoch)."""
    rng = np.random.default_rng(seed)
    while True:
        perm = torch.as_tensor(rng.permutation(n))
        for i in range(0, n, batch):
            yield perm[i : i + batch]


def hand_train(loss: Callable, params, x, steps: int, batch: int, seed: int, clock=None) -> None:
    """The loop a user writes: Adam on ``loss(x_batch)``, one optimiser for every parameter."""
    opt = torch.optim.Adam(list(params), lr=LR)
    x = torch.as_tensor(x)
    for step, idx in zip(range(1, steps + 1), batch_order(len(x), batch, seed)):
        value = loss(x[idx])
        opt.zero_grad()
        value.backward()
        opt.step()
        if clock is not None:
            clock(step)


def train_both(model, hand, x, steps: int, batch: int, seed: int, clock=None) -> tuple:
    """``model`` by ppgen, ``hand`` (its copy) by the hand loop: the seconds each took."""
    with Timer() as tp:
        ppgen_train(model, {"x": x}, steps, batch, seed)
    with Timer() as th:
        hand_train(
            lambda xb: -hand.log_prob(xb).mean(), hand.parameters(), x, steps, batch, seed, clock
        )
    return tp.s, th.s


def ppgen_train(model, data: dict, steps: int, batch: int, seed: int, clock=None):
    est = MLE(steps=steps, batch_size=batch, lr=LR)
    return ppgen.fit(
        model, data, est, seed=seed, progress=False, callbacks=[clock] if clock else []
    )


class Timer:
    """``with Timer() as t: ...`` then ``t.s`` is the elapsed wall time in seconds."""

    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0


# ---------------------------------------------------------------- digits bits/dim
def DigitsFlow(kind: str, hidden: int) -> DequantizedFlowModel:  # noqa: N802
    """An image flow over the 17 digit levels (uniform dequantisation, logit map)."""
    # 2 levels x 2 couplings of conv residual nets: ~4x cheaper than the default 2 x 4
    return DequantizedFlowModel(
        kind, IMG, LEVELS, logit=ALPHA, hidden_features=hidden, num_levels=2, num_transforms=2
    )


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.int64).reshape(-1, 1, 8, 8)  # levels 0..16
    perm = np.random.default_rng(0).permutation(len(x))
    return x[perm[:1500]], x[perm[1500:]]


def digits_models(hidden: int) -> dict[str, Callable]:
    return {
        f"MADE (2 x {4 * hidden}, categorical)": lambda: MADE(
            64, hidden * 4, 2, likelihood="categorical", num_classes=LEVELS
        ),
        f"PixelCNN (5 x {hidden} ch, categorical)": lambda: PixelCNN(
            (1, 8, 8), hidden, 5, likelihood="categorical", num_classes=LEVELS
        ),
        f"RealNVP (2 levels x 2, {hidden} ch, uniform deq.)": lambda: DigitsFlow("realnvp", hidden),
        f"Glow (2 levels x 2, {hidden} ch, uniform deq.)": lambda: DigitsFlow("glow", hidden),
    }


@torch.no_grad()
def digits_bpd(model, x: np.ndarray, draws: int = 4) -> float:
    xt = torch.as_tensor(x)
    if isinstance(model, DequantizedFlowModel):  # the bound, averaged over noise draws
        model.eval()
        bpd = [model.bits_per_dim(xt) for _ in range(draws)]
        model.train()
        return float(torch.stack(bpd).mean())
    xt = xt.reshape(len(xt), 64) if isinstance(model, MADE) else xt
    return float(-model.log_prob(xt).mean() / (64 * math.log(2)))


def digits_quality(a) -> list[tuple]:
    xtr, xte = digits()
    if a.quick:
        xtr = xtr[:64]
    rows = []
    for name, make in digits_models(a.digits_hidden).items():
        torch.manual_seed(a.seed)
        model = make()
        hand = copy.deepcopy(model)
        shape = (-1, 64) if isinstance(model, MADE) else (-1, 1, 8, 8)
        tr = xtr.reshape(shape)
        tp, th = train_both(model, hand, tr, a.digits_steps, a.digits_batch, a.seed)
        bp, bh = digits_bpd(model, xte.reshape(shape)), digits_bpd(hand, xte.reshape(shape))
        rows.append((name, a.digits_steps, bp, bh, bp - bh, tp, th))
    return rows


def ar_sampling(a) -> list[str]:
    h, n, length = a.digits_hidden, a.sample_n, a.seq_len
    wavenet = lambda: WaveNet(length, 256, 32, (1, 2, 4, 8, 16, 32))  # noqa: E731
    charrnn = lambda: CharRNN(64, length, 32, 128)  # noqa: E731
    cases = [
        ("MADE 64 vars, 17 classes", lambda: MADE(64, 4 * h, 2, "categorical", LEVELS), None),
        ("PixelCNN 8x8, 17 classes", lambda: PixelCNN(IMG, h, 5, 3, "categorical", LEVELS), None),
        ("GatedPixelCNN 8x8, 17", lambda: GatedPixelCNN(IMG, h, 5, 3, "categorical", LEVELS), None),
        (f"WaveNet T={length}, 256 classes", wavenet, True),
        (f"WaveNet T={length}, 256 classes", wavenet, False),
        (f"CharRNN T={length}, 64 tokens", charrnn, True),
        (f"CharRNN T={length}, 64 tokens", charrnn, False),
    ]  # fmt: skip
    notes = {None: "no: one full pass per element", True: "yes: cached state", False: "no: prefix"}
    lines = [
        f"Sampling {n} sequences/images per call, median of {a.reps} calls (untrained weights; "
        "speed does not depend on them):\n",
        "| model | cached | s / call | samples / s | ms / generated element (batch) |",
        "|---|---|---|---|---|",
    ]
    for name, make, cache in cases:
        kw, cached = ({} if cache is None else {"cache": cache}), notes[cache]
        torch.manual_seed(0)
        m = make().eval()
        m.sample(2, **kw)  # warm-up
        times = []
        for _ in range(a.reps):
            with Timer() as t:
                m.sample(n, **kw)
            times.append(t.s)
        t = statistics.median(times)
        elements = math.prod(m.event_shape)
        lines.append(f"| {name} | {cached} | {t:.3f} | {n / t:.0f} | {1000 * t / elements:.2f} |")
    return lines
