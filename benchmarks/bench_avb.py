"""AVB against SVI (diagonal, IAF and NSF guides) and NUTS, on one program each, same run.

Usage, from the repository root:
python -m benchmarks.bench_avb [--steps N] [--speed] [--amortized] [--smoke]

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

``--amortized``: per-datum posteriors with two modes, :math:`z_n \\sim N(0, 1)`,
:math:`x_n \\sim N(z_n^2, 0.5^2)` (128 data; each posterior is symmetric about 0 with modes
at :math:`\\pm\\sqrt{x_n}`, computed exactly on a grid). Amortised AVB (an
``ImplicitAmortized`` encoder) against SVI with ``Amortized`` encoders (diagonal Normal and
``family="flow"``), same steps: for the data with :math:`x_n > 1` (clearly two modes), the
mean deviation of each datum's share of positive draws from the exact 0.5 (0: both modes
weighted right; 0.5: one mode only) and the mean error of :math:`E|z_n|`.

``--speed``: steps/s of ppgen's AVB on the eight-schools program (the zoo's ``EightSchools``,
which declares the ``log_joint_terms`` capability, and the same program as a user's plain
function, run per particle through ``torch.func.vmap``) against the same algorithm
written by hand in torch (same networks, particles and critic updates; the log density coded
directly over all particles; two fused Adams), three interleaved repetitions of 1,000 steps;
then the same in lockstep (one ppgen step, one hand step, alternating within one fit; the ratio
of the median step times), which resolves a few per cent on a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

torch.set_num_threads(1)

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine, step_rate  # noqa: E402
from ppgen.analysis.metrics import c2st  # noqa: E402
from ppgen.data import load  # noqa: E402
from ppgen.errors import NonFiniteError  # noqa: E402
from ppgen.inference import (  # noqa: E402
    AVB,
    NUTS,
    SVI,
    Amortized,
    FlowGuide,
    ImplicitAmortized,
)
from ppgen.models.hierarchical import EightSchools  # noqa: E402

WARM = 20  # steps before the clock starts


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


def hand_avb(steps: int, particles: int, n_critic: int, noise: int, seed: int) -> float:
    """Steps/s of :func:`hand_avb_step` run ``steps`` times (timed after ``WARM``)."""
    return step_rate(hand_avb_step(particles, n_critic, noise, seed), steps, WARM)


def hand_avb_step(particles: int, n_critic: int, noise: int, seed: int) -> Callable[[], None]:
    """AVB (adaptive contrast) written by hand for eight schools, one call per step: the same
    guide and critic MLPs, particles and critic updates as ppgen's defaults, the log density
    coded directly in torch over all particles at once, two fused Adams."""
    from torch.nn import functional as F

    from ppgen.nn import Critic, mlp_layers

    torch.manual_seed(seed)
    d = load("eight_schools")
    y, sigma = (
        torch.tensor(d["y"], dtype=torch.float32),
        torch.tensor(d["sigma"], dtype=torch.float32),
    )
    g, t = mlp_layers([noise, 64, 64, 10]), Critic(10, (64, 64))
    opt_g = torch.optim.Adam(g.parameters(), 1e-3, fused=True)
    opt_t = torch.optim.Adam(t.parameters(), 1e-3, fused=True)
    # the distributions built without argument checks (what a tuned loop does)
    quiet = {"validate_args": False}
    half_cauchy, normal5 = dist.HalfCauchy(5.0, **quiet), dist.Normal(0.0, 5.0, **quiet)
    std_normal = dist.Normal(0.0, 1.0, **quiet)

    def log_joint(u: torch.Tensor) -> torch.Tensor:
        mu, log_tau, eta = u[:, 0], u[:, 1], u[:, 2:]
        tau = log_tau.exp()
        prior = normal5.log_prob(mu) + half_cauchy.log_prob(tau) + log_tau
        prior = prior + std_normal.log_prob(eta).sum(-1)
        theta = mu[:, None] + tau[:, None] * eta
        return prior + dist.Normal(theta, sigma, **quiet).log_prob(y).sum(-1)

    def step() -> None:
        u = g(torch.randn(particles, noise))
        loc, scale = u.mean(0).detach(), u.std(0).detach() + 1e-6
        q_in = (u - loc) / scale
        for _ in range(n_critic):
            lt = F.softplus(-t(q_in.detach())).mean() + F.softplus(t(torch.randn_like(u))).mean()
            opt_t.zero_grad()
            lt.backward()
            opt_t.step()
        for p in t.parameters():
            p.requires_grad_(False)
        log_r = dist.Normal(loc, scale).log_prob(u).sum(-1)
        elbo = (log_joint(u) - log_r - t(q_in)).mean()
        opt_g.zero_grad()
        (-elbo).backward()
        for p in t.parameters():
            p.requires_grad_(True)
        opt_g.step()
        lt.item(), elbo.item()

    return step


def schools(sigma, y=None):  # the user's own program: no capability declared
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", len(sigma)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        return pyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)


def speed(steps: int, reps: int) -> None:
    """ppgen's AVB on the eight-schools program vs :func:`hand_avb`: separate runs (three per
    repetition, the median of each), then in lockstep (one ppgen step, one hand step,
    alternating within one fit: :class:`~benchmarks._machine.Lockstep`)."""
    import statistics

    from benchmarks._machine import Clock, Lockstep

    rates, locks = [], []
    for rep in range(reps):
        row = []
        for prog in (EightSchools(), schools):
            clock = Clock()
            est = AVB(steps=steps, lr_decay=None)
            ppgen.fit(prog, load("eight_schools"), est, seed=rep, callbacks=[clock])
            row.append(clock.rate)
        rates.append((*row, hand_avb(steps, est.particles, est.n_critic, 16, rep)))
        lock_row = []
        for prog in (EightSchools(), schools):
            est = AVB(steps=steps, lr_decay=None)
            lock = Lockstep(hand_avb_step(est.particles, est.n_critic, 16, rep))
            ppgen.fit(prog, load("eight_schools"), est, seed=rep, callbacks=[lock])
            lock_row.append(lock.ratio)
        locks.append(lock_row)
    a, p, b = (statistics.median(r[i] for r in rates) for i in range(3))
    print(
        f"speed, eight schools: ppgen AVB {a:.1f} steps/s (zoo model declaring "
        f"log_joint_terms), {p:.1f} (a plain program, run per particle by vmap), hand loop "
        f"{b:.1f}; ratios {a / b:.2f} and {p / b:.2f}"
    )
    z, u = ([r[i] for r in locks] for i in range(2))
    print(
        f"speed in lockstep (the median hand step over the median ppgen step, median over "
        f"{reps} repetitions [lowest, highest]): zoo model {statistics.median(z):.2f} "
        f"[{min(z):.2f}, {max(z):.2f}], plain program {statistics.median(u):.2f} "
        f"[{min(u):.2f}, {max(u):.2f}]"
    )


def problems(smoke: bool) -> list[tuple[str, object, dict, list[str]]]:
    y = np.zeros(4 if not smoke else 2, np.float32)
    return [
        ("eight schools", EightSchools(), load("eight_schools"), ["mu", "tau", "eta"]),
        ("banana", banana, {"y": y}, ["a", "b"]),
    ]


def squared(x=None):
    with pyro.plate("data", len(x)):
        # a 1-vector per datum (the flow encoder needs a vector latent)
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))[..., 0]
        pyro.sample("x", dist.Normal(z * z, 0.5), obs=x)


def amortized(steps: int) -> None:
    """Two-mode per-datum posteriors: amortised AVB against amortised SVI encoders."""
    rng = np.random.default_rng(0)
    n = 128
    x = (rng.normal(size=n) ** 2 + 0.5 * rng.normal(size=n)).astype(np.float32)
    grid = np.linspace(-4.0, 4.0, 2001)
    lp = -0.5 * grid[None] ** 2 - 0.5 * ((x[:, None] - grid[None] ** 2) / 0.5) ** 2
    w = np.exp(lp - lp.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    e_abs = (w * np.abs(grid)).sum(1)
    two = x > 1.0
    print(f"amortized: x ~ N(z^2, 0.5^2), {n} data ({two.sum()} with x > 1), steps={steps}")
    print(f"{'method':<26}{'seconds':>9}{'|P(z>0)-0.5|':>14}{'E|z| error':>12}")
    methods = {
        "AVB ImplicitAmortized": AVB(
            ImplicitAmortized(hidden_features=(64, 64)), steps=steps, lr=3e-3, num_draws=400
        ),
        "SVI Amortized diagonal": SVI(
            guide=Amortized(hidden_features=(64, 64)), steps=steps, lr=3e-3, num_draws=400
        ),
        "SVI Amortized flow": SVI(
            guide=Amortized(family="flow", hidden_features=(64, 64)),
            steps=steps,
            lr=3e-3,
            num_draws=400,
        ),
    }
    for name, est in methods.items():
        t = time.perf_counter()
        fit = ppgen.fit(squared, {"x": x}, est, seed=0)
        sec = time.perf_counter() - t
        z = np.asarray(fit.local_draws.get("z", fit.draws.get("z"))).reshape(-1, n)
        dev = np.abs((z > 0).mean(0) - 0.5)[two].mean()
        err = np.abs(np.abs(z).mean(0) - e_abs)[two].mean()
        print(f"{name:<26}{sec:>9.1f}{dev:>14.3f}{err:>12.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--draws", type=int, default=2000, help="draws per method for c2st")
    ap.add_argument("--smoke", action="store_true", help="tiny: the banana, few steps and draws")
    ap.add_argument("--speed", action="store_true", help="only the steps/s comparison")
    ap.add_argument("--only", default="", help="run only the programs whose name has this")
    ap.add_argument("--amortized", action="store_true", help="only the two-mode encoder case")
    args = ap.parse_args()
    if args.amortized or args.smoke:
        if args.amortized:
            print("\n".join(machine()))
        amortized(20 if args.smoke else args.steps)
        if args.amortized:
            return
    if args.speed or args.smoke:
        print("\n".join(machine()))
        speed(40 if args.smoke else 1000, 1 if args.smoke else 3)
        if args.speed:
            return
    steps, n, warm = (30, 200, 50) if args.smoke else (args.steps, args.draws, 1000)
    iters = 20 if args.smoke else 1000
    if not args.smoke:
        print("\n".join(machine()))
    print(f"steps={steps} draws={n} (c2st vs NUTS, 5-fold MLP; 0.5 is ideal)")
    print(f"{'program':<15}{'method':<22}{'seconds':>9}{'c2st':>8}")
    for label, prog, data, sites in problems(args.smoke):
        if args.only not in label or (args.smoke and label != "banana"):
            continue
        t = time.perf_counter()
        ref = ppgen.fit(prog, data, NUTS(num_samples=n, num_warmup=warm, num_chains=2), seed=1)
        ref_s = time.perf_counter() - t
        ref_x = flat(ref.draws, sites, 2 * n)
        print(f"{label:<15}{'NUTS (reference)':<22}{ref_s:>9.1f}{'':>8}", flush=True)
        fn = getattr(prog, "model", prog)  # a zoo model's program, or the function
        methods = {
            "AVB (adaptive)": AVB(steps=steps, num_draws=n),
            "SVI diagonal": SVI(guide="diagonal", steps=steps, lr=0.01, num_draws=n),
            "SVI IAF flow": SVI(guide=FlowGuide(fn, "iaf"), steps=steps, lr=2e-3, num_draws=n),
            "SVI NSF flow": SVI(guide=FlowGuide(fn, "nsf"), steps=steps, lr=2e-3, num_draws=n),
        }
        for name, est in methods.items():
            t = time.perf_counter()
            try:
                fit = ppgen.fit(prog, data, est, seed=0)
            except NonFiniteError as e:  # reported, not hidden: the method failed here
                print(f"{label:<15}{name:<22}{'diverged':>9}  ({str(e)[:60]}...)", flush=True)
                continue
            sec = time.perf_counter() - t
            pick = np.random.default_rng(0).permutation(len(ref_x))[:n]
            acc = c2st(flat(fit.draws, sites, n), ref_x[pick], max_iter=iters)
            print(f"{label:<15}{name:<22}{sec:>9.1f}{acc:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
