"""VAE on scikit-learn digits: ppgen's SVI paths against a hand-written PyTorch loop, same run.

Usage, from the repository root: python -m benchmarks.bench_vae [--quick] [--reps N] [--write]

Speed: steps/s of the same ELBO (2x256 MLP, z=16, batch 128, Adam 1e-3) for hand-written torch
loops (closed-form log densities, default and fused Adam; torch.distributions), ppgen ``SVI`` on
the zoo ``VAE`` (declared ``elbo_terms``), on a user's own class declaring ``elbo_terms``, on a
user's own plain Pyro program with ``Amortized()`` and on the zoo VAE's program as plain
functions (both the handler path), with Pyro's ``Trace_ELBO`` object (Pyro's objective), and raw
``pyro.infer.SVI``. Runs are interleaved, ratios are per repetition against the hand loop of
the same repetition, and the median is reported.
Quality: test ELBO (10 draws) and IWAE(K=50) on a held-out split after the same number of
steps, for the hand loop, ppgen's VAE (diagonal Normal and IAF posteriors) and the other zoo
models.
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import pyro  # noqa: E402
import pyro.distributions as pdist  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.analysis.latent import elbo, iwae_log_likelihood  # noqa: E402
from ppgen.capabilities import ELBOTerms  # noqa: E402
from ppgen.inference import SVI  # noqa: E402
from ppgen.inference.guides import Amortized  # noqa: E402
from ppgen.models.vae import VAE, ConditionalVAE, ConvVAE, HierarchicalVAE  # noqa: E402

LR, BATCH, Z = 1e-3, 128, 16


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0 > 0.5).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(x))
    tr, te = perm[:1500], perm[1500:]
    return x[tr], x[te], d.target[tr], d.target[te]


def batches(n: int, steps: int):
    """Index tensors of ``steps`` minibatches of size ``BATCH``: a fresh permutation per epoch."""
    perm, pos = torch.randperm(n), 0
    for _ in range(steps):
        if pos >= n:
            perm, pos = torch.randperm(n), 0
        yield perm[pos : pos + BATCH]
        pos += BATCH


def hand_loop(vae: VAE, x: np.ndarray, steps: int, fused: bool = False, clock: dict | None = None):
    """The same ELBO written by hand: reparameterised Normal posterior, Bernoulli likelihood."""
    opt = torch.optim.Adam(vae.parameters(), lr=LR, fused=fused or None)
    xt = torch.tensor(x)
    n, d = len(xt), vae.z_dim
    c = 0.5 * d * math.log(2 * math.pi)
    for step, idx in enumerate(batches(n, steps)):
        if clock is not None and step == 20:
            clock["a"] = time.perf_counter()
        xb = xt[idx]
        out = vae.head.linear(vae.encoder(xb))
        loc, scale = out[:, :d], F.softplus(out[:, d:]) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        logits = vae.decoder(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(-1)
        log_pz = -0.5 * (z * z).sum(-1) - c
        log_qz = (-0.5 * eps * eps - scale.log()).sum(-1) - c
        loss = -(n / len(xb)) * (log_px + log_pz - log_qz).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if clock is not None:
        clock["b"] = time.perf_counter()


def hand_elbo(model: VAE, xb: torch.Tensor, yb: torch.Tensor | None) -> torch.Tensor:
    """The model's ELBO per datum, written out by hand from its networks (no Pyro)."""
    cond = () if yb is None else (model.onehot(yb),)
    q = model.posterior(xb, *cond)
    z = q.rsample()
    log_w = model.decode(z, *cond).log_prob(xb) - q.log_prob(z)
    if isinstance(model, HierarchicalVAE):  # q(z1|x) q(z2|z1) ..., p(zL) ... p(z1|z2) p(x|z1)
        for level, (enc, head) in enumerate(model.up):
            q_up = head(enc(z))
            upper = q_up.rsample()
            log_p = model._conditional_prior(level, upper).log_prob(z)
            log_w = log_w + log_p - q_up.log_prob(upper)
            z = upper
        return log_w + model._top_prior(len(xb)).log_prob(z)
    return log_w + model.prior(len(xb)).log_prob(z)


def hand_loop_model(model: VAE, data: dict, steps: int) -> None:
    """Any zoo VAE's own networks trained by a hand-written torch loop (minibatches, N/B)."""
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt = torch.tensor(data["x"])
    yt = torch.tensor(data["y"]) if "y" in data else None
    n = len(xt)
    for idx in batches(n, steps):
        loss = -(n / len(idx)) * hand_elbo(model, xt[idx], None if yt is None else yt[idx]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def raw_pyro(vae: VAE, x: np.ndarray, steps: int, clock: dict) -> None:
    pyro.clear_param_store()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": LR}), pyro.infer.Trace_ELBO())
    xt = torch.tensor(x)
    n = len(xt)
    for step, idx in enumerate(batches(n, steps)):
        if step == 20:
            clock["a"] = time.perf_counter()
        # plate over the batch, scaled N / B like ppgen's minibatching
        with pyro.poutine.scale(scale=n / len(idx)):
            svi.step(xt[idx])
    clock["b"] = time.perf_counter()


def ppgen_run(model, data, est, steps: int, clock: dict | None = None):
    def cb(step, metrics):
        if clock is not None:
            if step == 20:
                clock["a"] = time.perf_counter()
            clock["b"] = time.perf_counter()

    return ppgen.fit(model, data, est, callbacks=[cb], seed=0)


def hand_loop_dists(vae: VAE, x: np.ndarray, steps: int, clock: dict) -> None:
    """The program's ELBO written by hand with torch.distributions (no closed forms)."""
    opt = torch.optim.Adam(vae.parameters(), lr=LR)
    xt = torch.tensor(x)
    n = len(xt)
    for step, idx in enumerate(batches(n, steps)):
        if step == 20:
            clock["a"] = time.perf_counter()
        xb = xt[idx]
        loss = -(n / len(xb)) * hand_elbo(vae, xb, None).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    clock["b"] = time.perf_counter()


class UserVAE(torch.nn.Module):
    """A user's own VAE class (no ppgen base class) that declares ``elbo_terms``."""

    def __init__(self) -> None:
        super().__init__()
        h = 256
        self.enc = torch.nn.Sequential(
            torch.nn.Linear(64, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU()
        )
        self.head = torch.nn.Linear(h, 2 * Z)
        self.dec = torch.nn.Sequential(
            torch.nn.Linear(Z, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU()
        )
        self.out = torch.nn.Linear(h, 64)

    def q(self, x):
        o = self.head(self.enc(x))
        return o[..., :Z], F.softplus(o[..., Z:]) + 1e-4

    def model(self, x):
        pyro.module("user_vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pdist.Normal(torch.zeros(len(x), Z), 1.0).to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=self.out(self.dec(z))).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("user_vae", self)
        loc, scale = self.q(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pdist.Normal(loc, scale).to_event(1))

    def elbo_terms(self, num_particles, x):
        loc, scale = self.q(x)
        eps = torch.randn((num_particles, *loc.shape))
        z = loc + scale * eps
        c = 0.5 * Z * math.log(2 * math.pi)
        logits = self.out(self.dec(z))
        log_px = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_q = (-0.5 * eps * eps - scale.log()).sum(-1) - c
        return ELBOTerms(log_px, -0.5 * (z * z).sum(-1) - c, log_q)


def user_program():
    """A user's own plain Pyro program (a function and a decoder): no capability declared."""
    dec = torch.nn.Sequential(
        torch.nn.Linear(Z, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 64),
    )

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pdist.Normal(torch.zeros(len(x), Z), 1.0).to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=dec(z)).to_event(1), obs=x)

    return model


def speed(x: np.ndarray, steps: int, reps: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}

    def est(**kw):
        return SVI(steps=steps, batch_size=BATCH, lr=LR, num_draws=2, **kw)

    def plain(vae):
        return ppgen.Program(vae.model, vae.guide)

    def amortized():
        return Amortized(hidden_features=(256, 256))

    cases = {
        "hand-written torch loop (Adam default)": lambda c: hand_loop(
            VAE(64, Z), x, steps, clock=c
        ),
        "hand-written torch loop (Adam fused)": lambda c: hand_loop(VAE(64, Z), x, steps, True, c),
        "hand-written torch.distributions loop": lambda c: hand_loop_dists(VAE(64, Z), x, steps, c),
        "ppgen SVI, zoo VAE (declared elbo_terms)": lambda c: ppgen_run(
            VAE(64, Z), {"x": x}, est(), steps, c
        ),
        "ppgen SVI, user's own class declaring elbo_terms": lambda c: ppgen_run(
            UserVAE(), {"x": x}, est(), steps, c
        ),
        "ppgen SVI(guide=Amortized()), user's plain program (model under handlers)": lambda c: (
            ppgen_run(user_program(), {"x": x}, est(guide=amortized()), steps, c)
        ),
        "ppgen SVI, zoo VAE as plain functions (handlers)": lambda c: ppgen_run(
            plain(VAE(64, Z)), {"x": x}, est(), steps, c
        ),
        "ppgen SVI(elbo=pyro.infer.Trace_ELBO()) (Pyro's objective)": lambda c: ppgen_run(
            VAE(64, Z), {"x": x}, est(elbo=pyro.infer.Trace_ELBO()), steps, c
        ),
        "raw pyro.infer.SVI + Trace_ELBO": lambda c: raw_pyro(VAE(64, Z), x, steps, c),
    }
    for rep in range(reps):
        order = list(cases) if rep % 2 == 0 else list(cases)[::-1]
        for name in order:
            torch.manual_seed(rep)
            clock: dict = {}
            cases[name](clock)
            rates.setdefault(name, []).append((steps - 20) / (clock["b"] - clock["a"]))
    return rates


MODELS = {
    "vae": ("ppgen VAE, diagonal Normal", lambda: VAE(64, Z), False),
    "iaf": ("ppgen VAE, IAF posterior", lambda: VAE(64, Z, family="flow"), False),
    "conv": ("ppgen ConvVAE", lambda: ConvVAE((1, 8, 8), Z), False),
    "cvae": ("ppgen ConditionalVAE", lambda: ConditionalVAE(64, Z), True),
    "hier": ("ppgen HierarchicalVAE (16, 8)", lambda: HierarchicalVAE(64, (Z, 8)), False),
}


def quality(xtr, xte, ytr, yte, steps: int, seeds: int, models: list[str]) -> list[tuple]:
    """Mean (and spread) over ``seeds`` of test ELBO and IWAE(K=50) after ``steps`` steps."""
    rows: dict[str, list[tuple[float, float]]] = {}
    for seed in range(seeds):
        torch.manual_seed(seed)
        vae = VAE(64, Z)
        hand_loop(vae, xtr, steps)
        fit = ppgen.fit(vae, {"x": xtr}, SVI(steps=0, num_draws=2))  # wraps the trained nets
        rows.setdefault("hand-written loop, VAE", []).append(_scores(fit, {"x": xte}))
        for key in models:
            name, make, cond = MODELS[key]
            torch.manual_seed(seed)
            model = make()
            shape = (-1, 1, 8, 8) if isinstance(model, ConvVAE) else (-1, 64)
            tr = {"x": xtr.reshape(shape)} | ({"y": ytr} if cond else {})
            te = {"x": xte.reshape(shape)} | ({"y": yte} if cond else {})
            est = SVI(steps=steps, batch_size=BATCH, lr=LR, num_draws=2)
            fit = ppgen.fit(model, tr, est, seed=seed)
            rows.setdefault(name, []).append(_scores(fit, te))
            if key != "vae":  # the same network (same initial weights) by the hand-written loop
                torch.manual_seed(seed)
                model = make()
                hand_loop_model(model, tr, steps)
                fit = ppgen.fit(model, tr, SVI(steps=0, num_draws=2))
                rows.setdefault(_hand_name(name), []).append(_scores(fit, te))
    out = []
    hand = np.array(rows["hand-written loop, VAE"]).T
    for name, vals in rows.items():
        e, iw = np.array(vals).T
        # paired by seed: the same initial networks (torch.manual_seed(seed)); each zoo model
        # against the same network by the hand loop, the MLP VAE against the MLP hand loop
        own = rows.get(_hand_name(name)) if name.startswith("ppgen ") else vals
        d = e - (np.array(own).T[0] if own is not None else hand[0])
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        out.append(
            (name, e.mean(), e.max() - e.min(), iw.mean(), iw.max() - iw.min(), d.mean(), se)
        )
    return out


def _hand_name(name: str) -> str:
    return name.replace("ppgen ", "hand-written loop, ")


def _scores(fit, data) -> tuple[float, float]:
    e = elbo(fit, data, num_particles=10)
    iw = float(iwae_log_likelihood(fit, data, num_particles=50, chunk=50).mean())
    return e, iw


def quality_table(a, models, xtr, xte, ytr, yte) -> list[str]:
    """The quality section: test ELBO / IWAE of every model against its hand-loop twin."""
    lines = [
        f"\nQuality after {a.quality_steps} steps, mean over {a.seeds} seed(s) (spread = "
        "max - min), test split of 297 digits, nats per digit:\n",
        "| model | test ELBO (10 draws) | spread | test IWAE K=50 | spread "
        "| ELBO − the same network by the hand loop, paired by seed: mean ± s.e. |",
        "|---|---|---|---|---|---|",
    ]
    for name, e, de, iw, diw, d, se in quality(
        xtr, xte, ytr, yte, a.quality_steps, a.seeds, models
    ):
        lines.append(
            f"| {name} | {e:.2f} | {de:.2f} | {iw:.2f} | {diw:.2f} | {d:+.2f} ± {se:.2f} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quality-steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS), help=f"subset of {list(MODELS)}")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.steps, a.quality_steps, a.seeds = 1, 100, 200, 1
    xtr, xte, ytr, yte = digits()
    lines = [
        f"\n## VAE on digits ({datetime.date.today()}, torch {torch.__version__}, 1 thread, "
        f"batch {BATCH}, Adam lr {LR})\n",
        *machine(),
        "",
    ]
    if not a.no_speed:
        rates = speed(xtr, a.steps, a.reps)
        hand = rates["hand-written torch loop (Adam default)"]
        lines += [
            f"Speed, {a.reps} interleaved reps x {a.steps} steps (steps 20..end timed):\n",
            "| path | steps/s (median) | same-run ratio to hand loop: median (min..max) |",
            "|---|---|---|",
        ]
        for name, r in rates.items():
            ratios = [v / h for v, h in zip(r, hand)]
            lines.append(
                f"| {name} | {statistics.median(r):.1f} | {statistics.median(ratios):.2f}x "
                f"({min(ratios):.2f}..{max(ratios):.2f}) |"
            )
    models = [m for m in a.models.split(",") if m]
    if not a.no_quality:
        lines += quality_table(a, models, xtr, xte, ytr, yte)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
