"""Energy models (issue 14): contrastive-divergence speed against hand-written loops, RBM
test log-likelihoods beside the zoo's likelihood models, and AIS accuracy against its cost.

Usage, from the repository root:

    python -m benchmarks.bench_ebm [--speed] [--quality] [--ais] [--quick]
        [--steps N] [--ebm-steps N] [--reps R] [--rbm-steps N] [--torchebm-path DIR]
    python -m benchmarks.bench_ebm --mnist PATH [--mnist-steps N] [--mnist-betas N]

(no part flag: the first three parts). ``--quick`` runs every part at a tiny size (the smoke test):
the numbers are then meaningless, only the layout is.

1. Speed (steps/s, same run; each repetition runs ppgen and its baselines back to back,
   ppgen first in even repetitions and last in odd ones, so a machine whose speed drifts
   favours neither; the ratio is the median over repetitions of ppgen's steps/s over the
   baseline's in the same repetition, with the lowest and highest; goal >= 0.95, against
   torchebm >= 1.0). Timed by a callback clock after ``WARM`` warm-up steps, as
   ``bench_gan`` does.

   a. PCD-1 on ``RBM(64, 64)`` (visible biases at the base rate) on the binarised digits,
      batch 100, block-Gibbs negatives from 100 persistent chains, fused Adam:
      ``ppgen.fit(rbm, data, ContrastiveDivergence(1, persistent=True, ...))`` against the
      hand-written torch loop of the same updates (a copy of the same RBM, minibatches by a
      permutation, ``h ~ p(h|v)``, ``v ~ p(v|h)`` with ``torch.bernoulli``, the surrogate
      ``F(v).mean() - F(v_neg).mean()``, ``loss.item()`` every step).
   b. CD with a replay buffer of Langevin negatives on ``EBM((2,), (64, 64))`` (an MLP
      energy) on the ring of 8: buffer 4096 restarted from uniform noise with probability
      0.05, k = 10 Langevin steps (step 0.02, noise scale 0.035), batch 256, ``alpha`` 0.1,
      against the hand-written torch loop of the same updates, twice: with the Langevin
      gradient as reference code writes it (``grad(E(v).sum(), v)``) and with the ones given
      (``grad(E(v), v, ones)``, no sum node: what ppgen's sampler does).
   c. The same EBM and sampler in torchebm (``ContrastiveDivergence(persistent=True)`` with
      ``LangevinDynamics``; its step size is ppgen's / 2, the same update), when torchebm
      imports (``--torchebm-path`` is put first on ``sys.path``); else a row says why not.
      torchebm's buffer is FIFO with stratified picks and jittered restarts: the same work
      per step (k gradient steps on 256 chains, two energy passes, one Adam step).
   d. The same EBM as a NumPyro program (``numpyro.param`` weights, pure ``jnp`` energy,
      ``Unnormalized`` site) fit with ``backend="numpyro"`` against a raw JAX/optax loop:
      one ``jax.jit`` step (Langevin by ``lax.scan``, the Adam update), losses kept as
      device arrays and read at the end.
   e. Lockstep (torch cases a and b): within one ppgen fit a callback runs one hand step
      after each ppgen step and times both (``benchmarks._machine.Lockstep``); the ratio of
      the median step times. On a VM whose speed drifts between runs seconds apart (paired
      ratios of separate runs spread over 0.8-1.3 on 2026-12-02), this resolves a 5 %
      difference: both sides run under the same machine state, each after the other's work.

2. Quality: test log-likelihood (nats per digit) on the binarised digits' held-out split:
   RBMs with 16 hidden units (exact log Z) and 64 (AIS log Z, base-rate start, with its
   standard error) by CD-1, CD-10 and PCD-1 (Adam, batch 100), beside the zoo's
   ``BernoulliMixture`` (SVI; ``evaluate``'s ``log_lik_per_datum``), ``MADE`` (MLE; exact)
   and ``VAE`` (SVI; IWAE bound with 1000 particles).

3. AIS: for one PCD-trained 16-hidden RBM (exact log Z known), the AIS error (mean and
   spread over seeds), its reported standard error and the wall time against the number of
   temperatures.

4. MNIST (only with ``--mnist PATH``, a folder of LeCun's IDX files or a Keras ``mnist.npz``;
   never run in CI, which has no copy): Salakhutdinov & Murray's (2008) setting, an
   ``RBM(784, 500)`` trained by CD-25 on the 60,000 training digits binarised stochastically,
   log Z by AIS (``--mnist-betas`` temperatures, 14,500 in the paper, 100 chains from the
   base-rate model) and the test digits' mean log-likelihood against their -86.3 nats.
   ``--quick`` with ``--mnist`` runs 20 hidden units, CD-2, a few steps (the smoke test's
   stand-in files).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

torch.set_num_threads(1)

import pyro  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import Clock, Lockstep, machine, step_rate  # noqa: E402
from ppgen.data.builtin import digits  # noqa: E402
from ppgen.data.modes2d import ring8  # noqa: E402
from ppgen.distributions import Unnormalized  # noqa: E402
from ppgen.inference import ContrastiveDivergence  # noqa: E402
from ppgen.inference.samplers import Langevin  # noqa: E402
from ppgen.models import EBM, RBM  # noqa: E402

WARM = 20
#: the deep EBM's settings: Langevin step and noise scale, k, buffer, batch, alpha, reinit
STEP, NOISE, K, BUFFER, BATCH, ALPHA, REINIT = 0.02, 0.035, 10, 4096, 256, 0.1, 0.05
RBM_BATCH, LR = 100, 1e-3
MNIST_LR = 1e-3


# ----------------------------------------------------------------------------- 1a. RBM PCD-1
def in_order(runs: dict[str, Callable[[], float]], hand_first: bool) -> dict[str, float]:
    """Run the timed ``runs`` (ppgen's first, unless ``hand_first``: the baselines first)."""
    names = list(runs)
    if hand_first:
        names = names[1:] + names[:1]
    return {k: runs[k]() for k in names}


def rbm_case(steps: int, seed: int, x: np.ndarray, hand_first: bool = False) -> dict[str, float]:
    """Steps/s of ppgen's PCD-1 and of the hand loop, from copies of the same RBM."""
    torch.manual_seed(seed)
    rbm0 = RBM(64, 64).init_visible_bias(x.mean(0))

    def run_ppgen() -> float:
        pyro.clear_param_store()
        est = ContrastiveDivergence(
            1, persistent=True, lr=LR, optim="adam", steps=steps, batch_size=RBM_BATCH
        )
        clock = Clock()
        ppgen.fit(copy.deepcopy(rbm0), {"x": x}, est, seed=seed, progress=False, callbacks=[clock])
        return clock.rate

    return in_order(
        {"ppgen": run_ppgen, "hand": lambda: rbm_hand_loop(copy.deepcopy(rbm0), steps, x, seed)},
        hand_first,
    )


def lockstep_case(
    steps: int, ebm_steps: int, seed: int, x: np.ndarray, ring: np.ndarray
) -> dict[str, float]:
    """ppgen's step against the hand loop's, alternating step by step within one ppgen fit
    (:class:`~benchmarks._machine.Lockstep`): RBM PCD-1 and the deep EBM (both hand
    versions); each the ratio of the median step times."""
    torch.manual_seed(seed)
    rbm0 = RBM(64, 64).init_visible_bias(x.mean(0))
    ebm0 = EBM((2,), (64, 64))
    out = {}
    cases = {
        "rbm": (rbm0, x, steps, lambda: rbm_hand_step(copy.deepcopy(rbm0), x, seed)),
        "ebm": (ebm0, ring, ebm_steps, lambda: ebm_hand_step(copy.deepcopy(ebm0.net), ring, seed)),
        "ebm, ones": (
            ebm0,
            ring,
            ebm_steps,
            lambda: ebm_hand_step(copy.deepcopy(ebm0.net), ring, seed, ones=True),
        ),
    }
    for name, (model, data, n, hand) in cases.items():
        pyro.clear_param_store()
        if name == "rbm":
            est = ContrastiveDivergence(
                1, persistent=True, lr=LR, optim="adam", steps=n, batch_size=RBM_BATCH
            )
        else:
            est = ebm_estimator(n)
        lock = Lockstep(hand())
        fit_data = {"x": data}
        ppgen.fit(copy.deepcopy(model), fit_data, est, seed=seed, progress=False, callbacks=[lock])
        out[name] = lock.ratio
    return out


def rbm_hand_loop(rbm: RBM, steps: int, x: np.ndarray, seed: int) -> float:
    """Steps/s of :func:`rbm_hand_step` run ``steps`` times."""
    return step_rate(rbm_hand_step(rbm, x, seed), steps, WARM)


def rbm_hand_step(rbm: RBM, x: np.ndarray, seed: int) -> Callable[[], float]:
    """PCD-1 as a torch user writes it: the RBM's tensors, fused Adam, one ``.item()``; one
    call is one step."""
    W, b, c = rbm.W, rbm.vbias, rbm.hbias
    opt = torch.optim.Adam([W, b, c], LR, fused=True)
    xt = torch.as_tensor(x)
    torch.manual_seed(seed)
    chains = xt[torch.randint(len(xt), (RBM_BATCH,))].clone()

    def free_energy(v: torch.Tensor) -> torch.Tensor:
        return -(v @ b) - F.softplus(F.linear(v, W, c)).sum(-1)

    rng = np.random.default_rng(seed)
    perm, pos, hist = rng.permutation(len(x)), 0, []

    def step() -> float:
        nonlocal perm, pos, chains
        if pos + RBM_BATCH > len(x):
            perm, pos = rng.permutation(len(x)), 0
        v = xt[torch.as_tensor(perm[pos : pos + RBM_BATCH])]
        pos += RBM_BATCH
        with torch.no_grad():
            h = torch.bernoulli(torch.sigmoid(F.linear(chains, W, c)))
            chains = torch.bernoulli(torch.sigmoid(F.linear(h, W.T, b)))
        loss = free_energy(v).mean() - free_energy(chains).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(loss.item())
        return hist[-1]

    return step


# ----------------------------------------------------------------------------- 1b-c. deep EBM
def ebm_estimator(steps: int) -> ContrastiveDivergence:
    return ContrastiveDivergence(
        k=K,
        persistent=True,
        buffer_size=BUFFER,
        reinit=REINIT,
        sampler=Langevin(STEP, noise_scale=NOISE),
        alpha=ALPHA,
        lr=LR,
        steps=steps,
        batch_size=BATCH,
    )


def ebm_case(
    steps: int, seed: int, x: np.ndarray, tebm: object, hand_first: bool = False
) -> dict[str, float]:
    """Steps/s of ppgen, the hand loop (as reference code writes it, and with the gradient's
    ones given) and (when it imports) torchebm on the same MLP energy."""
    torch.manual_seed(seed)
    ebm0 = EBM((2,), (64, 64))

    def run_ppgen() -> float:
        pyro.clear_param_store()
        clock = Clock()
        ppgen.fit(
            copy.deepcopy(ebm0),
            {"x": x},
            ebm_estimator(steps),
            seed=seed,
            progress=False,
            callbacks=[clock],
        )
        return clock.rate

    runs = {
        "ppgen": run_ppgen,
        "hand": lambda: ebm_hand_loop(copy.deepcopy(ebm0.net), steps, x, seed),
        "hand, ones": lambda: ebm_hand_loop(copy.deepcopy(ebm0.net), steps, x, seed, ones=True),
    }
    if tebm is not None:
        runs["torchebm"] = lambda: torchebm_loop(tebm, copy.deepcopy(ebm0.net), steps, x, seed)
    return in_order(runs, hand_first)


def ebm_hand_loop(
    net: torch.nn.Module, steps: int, x: np.ndarray, seed: int, ones: bool = False
) -> float:
    """Steps/s of :func:`ebm_hand_step` run ``steps`` times."""
    return step_rate(ebm_hand_step(net, x, seed, ones), steps, WARM)


def ebm_hand_step(
    net: torch.nn.Module, x: np.ndarray, seed: int, ones: bool = False
) -> Callable[[], float]:
    """Replay-buffer Langevin CD as a torch user writes it: the Langevin gradient as
    ``grad(E(v).sum(), v)`` (IGEBM's and JEM's reference code), or with ``ones=True`` as
    ``grad(E(v), v, ones)`` (no sum node; what ppgen's sampler does). One call is one step."""
    opt = torch.optim.Adam(net.parameters(), LR, fused=True)
    xt = torch.as_tensor(x)
    lo, hi = xt.min(0).values, xt.max(0).values
    torch.manual_seed(seed)
    buffer = lo + (hi - lo) * torch.rand(BUFFER, 2)
    noise_sd = NOISE * math.sqrt(STEP)
    one = torch.ones(BATCH, 1)
    rng = np.random.default_rng(seed)
    perm, pos, hist = rng.permutation(len(x)), 0, []

    def step() -> float:
        nonlocal perm, pos
        if pos + BATCH > len(x):
            perm, pos = rng.permutation(len(x)), 0
        real = xt[torch.as_tensor(perm[pos : pos + BATCH])]
        pos += BATCH
        idx = torch.randint(BUFFER, (BATCH,))
        fresh = torch.rand(BATCH) < REINIT
        v = torch.where(fresh[:, None], lo + (hi - lo) * torch.rand(BATCH, 2), buffer[idx])
        for _ in range(K):
            v.requires_grad_(True)
            e = net(v)
            (g,) = torch.autograd.grad(e, v, one) if ones else torch.autograd.grad(e.sum(), v)
            v = (v.detach() - (STEP / 2) * g + noise_sd * torch.randn_like(v)).detach()
        buffer[idx] = v
        e_data, e_neg = net(real).squeeze(-1), net(v).squeeze(-1)
        loss = e_data.mean() - e_neg.mean() + ALPHA * ((e_data**2).mean() + (e_neg**2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(loss.item())
        return hist[-1]

    return step


def load_torchebm(path: str | None) -> tuple[object, str]:
    """torchebm's modules, or None and why not."""
    if path:
        sys.path.insert(0, path)
    try:
        import torchebm
        from torchebm.core import BaseModel
        from torchebm.losses import ContrastiveDivergence as TCD
        from torchebm.samplers import LangevinDynamics
    except Exception as e:  # not installed, or an API this script does not know
        return None, f"{type(e).__name__}: {e}"
    return (torchebm, BaseModel, TCD, LangevinDynamics), getattr(torchebm, "__version__", "?")


def torchebm_loop(tebm: object, net: torch.nn.Module, steps: int, x: np.ndarray, seed: int):
    """The same energy, sampler and loss in torchebm's ContrastiveDivergence."""
    _, BaseModel, TCD, LangevinDynamics = tebm

    class Energy(BaseModel):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.net(v).squeeze(-1)

    model = Energy(net)
    # torchebm: x - eta grad + sqrt(2 eta) s eps; ppgen: x - h/2 grad + s sqrt(h) eps
    sampler = LangevinDynamics(model, step_size=STEP / 2, noise_scale=NOISE, device="cpu")
    loss_fn = TCD(
        model,
        sampler,
        k_steps=K,
        persistent=True,
        buffer_size=BUFFER,
        init_steps=0,
        new_sample_ratio=REINIT,
        energy_reg_weight=ALPHA,
        device=torch.device("cpu"),
    )
    opt = torch.optim.Adam(net.parameters(), LR, fused=True)
    xt = torch.as_tensor(x)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    perm, pos, hist = rng.permutation(len(x)), 0, []
    for step in range(steps):
        if step == WARM:
            t = time.perf_counter()
        if pos + BATCH > len(x):
            perm, pos = rng.permutation(len(x)), 0
        real = xt[torch.as_tensor(perm[pos : pos + BATCH])]
        pos += BATCH
        loss, _ = loss_fn(real)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(loss.item())
    return (steps - WARM) / (time.perf_counter() - t)


# ----------------------------------------------------------------------------- 1d. NumPyro
def jax_case(steps: int, seed: int, x: np.ndarray, hand_first: bool = False) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpyro

    torch.manual_seed(seed)  # the same initial MLP as torch's, transposed
    layers = [m for m in EBM((2,), (64, 64)).net if isinstance(m, torch.nn.Linear)]
    init = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in layers]

    def mlp(p, v):
        for i, (w, b) in enumerate(p):
            v = v @ w + b
            if i < len(p) - 1:
                v = jax.nn.silu(v)
        return v[..., 0]

    def program(x=None):
        p = [
            (numpyro.param(f"w{i}", jnp.asarray(w)), numpyro.param(f"b{i}", jnp.asarray(b)))
            for i, (w, b) in enumerate(init)
        ]
        with numpyro.plate("data", len(x)):
            numpyro.sample("x", Unnormalized(lambda v: mlp(p, v), (2,)), obs=x)

    def run_ppgen() -> float:
        clock = Clock()
        ppgen.fit(
            program,
            {"x": x},
            ebm_estimator(steps),
            seed=seed,
            backend="numpyro",
            progress=False,
            callbacks=[clock],
        )
        return clock.rate

    raw = lambda: raw_jax(init, mlp, steps, seed, x)  # noqa: E731
    return in_order({"ppgen": run_ppgen, "raw jax": raw}, hand_first)


def raw_jax(init: list, mlp: Callable, steps: int, seed: int, x: np.ndarray) -> float:
    """The same replay-buffer CD as one ``jax.jit`` step (Langevin by ``lax.scan``, optax's
    Adam), losses kept on the device and read at the end; steps/s."""
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.adam(LR)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in init]
    lo, hi = jnp.asarray(x.min(0)), jnp.asarray(x.max(0))
    key, kb = jax.random.split(jax.random.PRNGKey(seed))
    buffer = lo + (hi - lo) * jax.random.uniform(kb, (BUFFER, 2))
    state = (params, tx.init(params), buffer, key)
    grad_x = jax.grad(lambda p, v: mlp(p, v).sum(), argnums=1)
    noise_sd = NOISE * math.sqrt(STEP)

    @jax.jit
    def step(state, real):
        p, opt, buf, key = state
        key, k_idx, k_re, k_new, k_run = jax.random.split(key, 5)
        idx = jax.random.randint(k_idx, (BATCH,), 0, BUFFER)
        fresh = jax.random.uniform(k_re, (BATCH,)) < REINIT
        new = lo + (hi - lo) * jax.random.uniform(k_new, (BATCH, 2))
        v = jnp.where(fresh[:, None], new, buf[idx])

        def move(v, k):
            v = v - (STEP / 2) * grad_x(p, v) + noise_sd * jax.random.normal(k, v.shape)
            return v, None

        v, _ = jax.lax.scan(move, v, jax.random.split(k_run, K))

        def loss_fn(p):
            ed, en = mlp(p, real), mlp(p, v)
            return ed.mean() - en.mean() + ALPHA * ((ed**2).mean() + (en**2).mean())

        loss, g = jax.value_and_grad(loss_fn)(p)
        u, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, u), opt, buf.at[idx].set(v), key), loss

    xj = jnp.asarray(x)
    rng = np.random.default_rng(seed)
    perm, pos, hist = rng.permutation(len(x)), 0, []
    for i in range(steps):
        if i == WARM:
            jax.block_until_ready(hist[-1])
            t = time.perf_counter()
        if pos + BATCH > len(x):
            perm, pos = rng.permutation(len(x)), 0
        state, loss = step(state, xj[perm[pos : pos + BATCH]])
        pos += BATCH
        hist.append(loss)
    losses = np.asarray(jax.device_get(hist))  # read at the end
    rate = (steps - WARM) / (time.perf_counter() - t)
    assert np.isfinite(losses).all()
    return rate


def speed(args: argparse.Namespace) -> None:
    tebm, why = load_torchebm(args.torchebm_path)
    print(
        f"\n## speed: RBM steps={args.steps}, EBM steps={args.ebm_steps}, reps={args.reps} "
        f"(each repetition runs ppgen and its baselines back to back, ppgen first in even "
        f"repetitions and last in odd ones; timed after {WARM} warm-up steps). Steps/s: the "
        "medians; ratio: the median of the repetitions' paired ratios, [lowest, highest]"
    )
    print(f"{'case':<52}{'ppgen':>10}{'baseline':>10}{'ratio':>8}  range")
    x = digits("train", binarize=True)["x"]
    ring = ring8(8192, seed=0)
    rbm_runs, ebm_runs, jax_runs = [], [], []
    for seed in range(args.reps):  # interleaved: one of each per repetition
        hand_first = seed % 2 == 1
        rbm_runs.append(rbm_case(args.steps, seed, x, hand_first))
        ebm_runs.append(ebm_case(args.ebm_steps, seed, ring, tebm, hand_first))
        jax_runs.append(jax_case(args.ebm_steps, seed, ring, hand_first))

    def paired(name: str, runs: list[dict[str, float]], base: str) -> None:
        ratios = [r["ppgen"] / r[base] for r in runs]
        a, b = (statistics.median(r[k] for r in runs) for k in ("ppgen", base))
        mid, lo, hi = statistics.median(ratios), min(ratios), max(ratios)
        print(f"{name:<52}{a:>10.1f}{b:>10.1f}{mid:>8.2f}  [{lo:.2f}, {hi:.2f}]")

    paired("torch RBM(64,64) PCD-1 gibbs vs hand", rbm_runs, "hand")
    paired("torch EBM langevin replay vs hand", ebm_runs, "hand")
    paired("torch EBM langevin replay vs hand, grad with ones", ebm_runs, "hand, ones")
    if tebm is not None:
        paired(f"torch EBM langevin replay vs torchebm {why}", ebm_runs, "torchebm")
    else:
        print(f"torch EBM langevin replay vs torchebm: skipped ({why})")
    paired("numpyro EBM langevin replay vs raw jax", jax_runs, "raw jax")

    print(
        f"\n## speed in lockstep: one ppgen step, then one hand step, alternating within one "
        f"fit ({args.steps} RBM steps, {args.ebm_steps} EBM steps; {args.reps} repetitions). "
        "Ratio: the median hand step over the median ppgen step (loop, batching and callback "
        "dispatch included), the median over repetitions, [lowest, highest]"
    )
    print(f"{'case':<52}{'ratio':>8}  range")
    locks = [lockstep_case(args.steps, args.ebm_steps, s, x, ring) for s in range(args.reps)]
    for key, name in (
        ("rbm", "torch RBM(64,64) PCD-1 gibbs vs hand"),
        ("ebm", "torch EBM langevin replay vs hand"),
        ("ebm, ones", "torch EBM langevin replay vs hand, grad with ones"),
    ):
        r = [lk[key] for lk in locks]
        print(f"{name:<52}{statistics.median(r):>8.2f}  [{min(r):.2f}, {max(r):.2f}]")


# ----------------------------------------------------------------------------- 2. quality
def train_rbm(hidden: int, k: int, persistent: bool, steps: int, train: dict, seed: int = 0):
    torch.manual_seed(seed)
    pyro.clear_param_store()
    rbm = RBM(64, hidden).init_visible_bias(train["x"].mean(0))
    est = ContrastiveDivergence(
        k, persistent, lr=LR * 5, optim="adam", steps=steps, batch_size=RBM_BATCH
    )
    return ppgen.fit(rbm, train, est, seed=seed, progress=False)


def quality(args: argparse.Namespace) -> None:
    from ppgen.analysis import log_partition, rbm_log_likelihood
    from ppgen.analysis.latent import iwae_log_likelihood
    from ppgen.inference import MLE, SVI
    from ppgen.models import MADE, VAE, BernoulliMixture

    train, test = digits("train", binarize=True), digits("test", binarize=True)
    s, chains, betas, particles = args.rbm_steps, args.ais_chains, args.ais_betas, args.particles
    print(
        f"\n## quality: binarised digits, {len(train['x'])} train / {len(test['x'])} test rows; "
        f"test log-likelihood in nats per digit. RBMs: Adam lr {LR * 5:g}, batch {RBM_BATCH}, "
        f"{s} steps, visible biases at the base rate; 64 hidden: AIS {chains} chains x {betas} "
        f"temperatures from the base-rate model. Mixture, MADE, VAE: {args.other_steps} steps "
        f"(mixture: {args.draws} posterior draws)."
    )
    print(f"{'model':<40}{'estimator':<14}{'log Z':<22}{'test nats':>10}{'s':>7}")
    for hidden in (16, 64):
        for name, k, persistent in (("CD-1", 1, False), ("CD-10", 10, False), ("PCD-1", 1, True)):
            t = time.perf_counter()
            fit = train_rbm(hidden, k, persistent, s, train)
            if hidden <= 20:
                lz = log_partition(fit, "exact")
                how = f"exact {lz.value:.2f}"
            else:
                lz = log_partition(fit, "ais", data=train, num_chains=chains, num_betas=betas)
                how = f"AIS {lz.value:.2f} +- {lz.stderr:.2f}"
            ll = float(rbm_log_likelihood(fit, test["x"], lz).mean())
            dt = time.perf_counter() - t
            print(f"{f'RBM(64, {hidden})':<40}{name:<14}{how:<22}{ll:>10.2f}{dt:>7.1f}")
    n = args.other_steps
    t = time.perf_counter()
    mix = ppgen.fit(
        BernoulliMixture(10),
        train,
        SVI(steps=n, lr=0.05, num_draws=args.draws),
        seed=0,
        progress=False,
    )
    ll = float(ppgen.evaluate(mix, test, num_samples=args.draws)["log_lik_per_datum"])
    dt = time.perf_counter() - t
    print(f"{'BernoulliMixture(10)':<40}{'SVI':<14}{'(normalised)':<22}{ll:>10.2f}{dt:>7.1f}")
    t = time.perf_counter()
    torch.manual_seed(0)
    made = ppgen.fit(
        MADE(64, hidden_features=256),
        train,
        MLE(steps=n, lr=1e-3, batch_size=RBM_BATCH),
        seed=0,
        progress=False,
    )
    ll = float(ppgen.evaluate(made, test)["log_lik_per_datum"])
    dt = time.perf_counter() - t
    print(f"{'MADE(64, hidden 256 x 2)':<40}{'MLE':<14}{'(normalised)':<22}{ll:>10.2f}{dt:>7.1f}")
    t = time.perf_counter()
    torch.manual_seed(0)
    vae = ppgen.fit(
        VAE(64, 16, (256, 256)),
        train,
        SVI(steps=n, lr=1e-3, batch_size=RBM_BATCH),
        seed=0,
        progress=False,
    )
    ll = float(iwae_log_likelihood(vae, test, num_particles=particles).mean())
    dt = time.perf_counter() - t
    label = f"IWAE K={particles}"
    print(f"{'VAE(64, z 16, hidden 256 x 2)':<40}{'SVI':<14}{label:<22}{ll:>10.2f}{dt:>7.1f}")


# ----------------------------------------------------------------------------- 4. MNIST
#: Salakhutdinov & Murray (2008), Table 2: CD-25 RBM with 500 hidden units, AIS test nats
SM_CD25_500 = -86.3


def mnist(args: argparse.Namespace) -> None:
    from ppgen.analysis import log_partition, rbm_log_likelihood
    from ppgen.data.mnist import load_mnist

    train = load_mnist(args.mnist, "train", binarize="stochastic", seed=0)
    test = load_mnist(args.mnist, "test", binarize="stochastic", seed=1)
    hidden, k = (20, 2) if args.quick else (500, 25)
    steps, betas, chains = args.mnist_steps, args.mnist_betas, args.ais_chains
    print(
        f"\n## MNIST (not run in CI): {len(train['x'])} train / {len(test['x'])} test digits, "
        f"binarised stochastically; RBM(784, {hidden}) by CD-{k}, Adam lr {MNIST_LR:g}, batch "
        f"{RBM_BATCH}, {steps} steps; AIS {chains} chains x {betas} temperatures"
    )
    t = time.perf_counter()
    torch.manual_seed(0)
    pyro.clear_param_store()
    rbm = RBM(784, hidden).init_visible_bias(train["x"].mean(0))
    est = ContrastiveDivergence(k, lr=MNIST_LR, optim="adam", steps=steps, batch_size=RBM_BATCH)
    fit = ppgen.fit(rbm, train, est, seed=0, progress=False)
    lz = log_partition(fit, "ais", data=train, num_chains=chains, num_betas=betas)
    ll = float(rbm_log_likelihood(fit, test["x"], lz).mean())
    print(f"{'model':<28}{'log Z (AIS)':<22}{'test nats':>10}{'S&M 2008':>10}{'s':>7}")
    how = f"{lz.value:.2f} +- {lz.stderr:.2f}"
    dt = time.perf_counter() - t
    print(f"{f'RBM(784, {hidden}) CD-{k}':<28}{how:<22}{ll:>10.2f}{SM_CD25_500:>10.1f}{dt:>7.1f}")


# ----------------------------------------------------------------------------- 3. AIS
def ais(args: argparse.Namespace) -> None:
    from ppgen.analysis import log_partition

    train = digits("train", binarize=True)
    fit = train_rbm(16, 1, True, args.rbm_steps, train)
    exact = log_partition(fit, "exact").value
    seeds = range(args.ais_seeds)
    print(
        f"\n## AIS: RBM(64, 16) by PCD-1 ({args.rbm_steps} steps), exact log Z {exact:.3f}; "
        f"{args.ais_chains} chains from the base-rate model, seeds 0-{args.ais_seeds - 1}"
    )
    print(f"{'temperatures':<14}{'error mean':>12}{'error sd':>10}{'stderr':>9}{'s/run':>8}")
    for betas in args.betas:
        err, se, secs = [], [], []
        for seed in seeds:
            t = time.perf_counter()
            lz = log_partition(
                fit, "ais", data=train, num_chains=args.ais_chains, num_betas=betas, seed=seed
            )
            secs.append(time.perf_counter() - t)
            err.append(lz.value - exact)
            se.append(lz.stderr)
        sd = statistics.stdev(err) if len(err) > 1 else 0.0
        print(
            f"{betas:<14}{statistics.mean(err):>12.3f}{sd:>10.3f}{statistics.mean(se):>9.3f}"
            f"{statistics.mean(secs):>8.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true", help="part 1: steps/s against baselines")
    ap.add_argument("--quality", action="store_true", help="part 2: test log-likelihoods")
    ap.add_argument("--ais", action="store_true", help="part 3: AIS error and cost")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    ap.add_argument("--steps", type=int, default=2000, help="RBM steps per speed run")
    ap.add_argument("--ebm-steps", type=int, default=400, help="deep-EBM steps per speed run")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rbm-steps", type=int, default=6000, help="RBM training steps (quality)")
    ap.add_argument("--other-steps", type=int, default=3000, help="mixture / MADE / VAE steps")
    ap.add_argument("--ais-chains", type=int, default=100)
    ap.add_argument("--ais-betas", type=int, default=10000, help="AIS temperatures (quality)")
    ap.add_argument("--particles", type=int, default=1000, help="IWAE particles (VAE)")
    ap.add_argument("--draws", type=int, default=200, help="posterior draws (mixture)")
    ap.add_argument("--ais-seeds", type=int, default=5)
    ap.add_argument("--betas", type=int, nargs="*", default=[100, 300, 1000, 3000, 10000])
    ap.add_argument("--torchebm-path", default=None, help="a directory holding torchebm")
    ap.add_argument("--mnist", default=None, help="part 4: MNIST IDX folder or mnist.npz")
    ap.add_argument("--mnist-steps", type=int, default=30000, help="CD-25 steps (50 epochs)")
    ap.add_argument("--mnist-betas", type=int, default=14500, help="AIS temperatures (MNIST)")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.ebm_steps, args.reps = 40, 30, 1
        args.rbm_steps, args.other_steps, args.ais_betas, args.particles = 60, 30, 100, 20
        args.ais_seeds, args.betas, args.ais_chains, args.draws = 2, [20, 50], 20, 5
        args.mnist_steps, args.mnist_betas = 20, 50
    everything = not (args.speed or args.quality or args.ais or args.mnist)
    print("\n".join(machine()))
    print("command: python -m benchmarks.bench_ebm " + " ".join(sys.argv[1:]))
    parts = ((args.speed, speed), (args.quality, quality), (args.ais, ais), (args.mnist, mnist))
    for flag, part in parts:
        if flag or (everything and part is not mnist):  # MNIST only when a path is given
            t = time.perf_counter()
            part(args)
            print(f"({part.__name__}: {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
