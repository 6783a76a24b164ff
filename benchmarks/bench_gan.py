"""Adversarial fits against hand-written GAN loops, in the same run (steps per second).

Usage, from the repository root: python -m benchmarks.bench_gan [--steps N] [--reps R]

1. Torch: ``ppgen.fit(program, method=Adversarial(...))`` on a user's plain Pyro program (a
   ``pyro.module`` MLP generator, ``Implicit`` observed site) against the hand-written loop a
   PyTorch user writes: the same generator and critic (deep copies of the same initial
   weights), the same loss, batch size and Adam settings, two fused Adam optimisers, one
   generator pass per step (the critic sees it detached, the generator update reuses it), the
   critic frozen during the generator's backward pass, and both losses read with ``.item()``
   every step (ppgen keeps them in ``fit.history``). And against the raw library: the same
   loop drawing each fake batch from the user's Pyro program (``poutine.trace`` of
   ``poutine.uncondition(program)``), which isolates ppgen's own overhead from Pyro's. And
   ppgen on the same program written as a user's class that declares ``simulate_sites``
   (:mod:`ppgen.capabilities`: the generator on ``torch.randn``, checked against the program
   before training) against the hand loop: Pyro's per-site cost taken out the supported way.
2. JAX: ppgen on a NumPyro program (generator from ``numpyro.param`` weights) against a raw
   JAX/optax loop: the same MLPs as pure functions, one ``jax.jit`` step, two optax Adams,
   losses kept as device arrays and read at the end.

Both on the ring of 8 Gaussians (radius 1, sigma 0.01), batch 256, generator and critic MLPs
2 -> 128 -> 128, for ``ns`` and ``wgan-gp`` (n_critic 5). Torch also on scikit-learn's 8x8
digits (``dcgan``): the zoo DCGAN's layers written as a user's own torch modules (generator
with batch norm, z 32, 32 channels; conv critic), batch 64. Repetitions are interleaved; the
ratio is ppgen's steps/s over the baseline's (the goal is >= 0.95).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

torch.set_num_threads(1)

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import Clock, machine  # noqa: E402
from ppgen.data.modes2d import ring8  # noqa: E402
from ppgen.distributions import Implicit  # noqa: E402
from ppgen.inference import Adversarial  # noqa: E402
from ppgen.inference._adversarial_torch import gradient_penalty  # noqa: E402
from ppgen.nn import Critic  # noqa: E402

H, B, WARM = (128, 128), 256, 20


def mlp_g() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(2, H[0]),
        torch.nn.ReLU(),
        torch.nn.Linear(H[0], H[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(H[1], 2),
    )


def conv_g(z_dim: int = 32, k: int = 32) -> torch.nn.Module:
    """A DCGAN generator for 8x8 images, as a user writes it (the zoo's DCGAN's layers)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(z_dim, 2 * k * 2 * 2),
        nn.Unflatten(-1, (2 * k, 2, 2)),
        nn.BatchNorm2d(2 * k),
        nn.ReLU(),
        nn.ConvTranspose2d(2 * k, k, 4, 2, 1),
        nn.BatchNorm2d(k),
        nn.ReLU(),
        nn.ConvTranspose2d(k, 1, 4, 2, 1),
        nn.Tanh(),
    )


def conv_d(k: int = 32) -> torch.nn.Module:
    """The matching convolutional critic: one number per image."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, k, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(k, 2 * k, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(2 * k * 2 * 2, 1),
        nn.Flatten(0),
    )


#: the torch rows: (ppgen variant, baseline): ppgen on the plain program against pure torch (G
#: on noise) and against the same loop drawing from the Pyro program; ppgen on the program
#: declaring ``simulate_sites`` against pure torch
TORCH_ROWS = (("ppgen", "hand"), ("ppgen", "pyro loop"), ("ppgen declared", "hand"))
JAX_ROWS = (("ppgen", "raw jax"),)

#: the torch cases: generator and critic constructors, noise size, batch size
TORCH_CASES = {"ring": (mlp_g, lambda: Critic(2, H), 2, B), "dcgan": (conv_g, conv_d, 32, 64)}


def digits_images() -> np.ndarray:
    """scikit-learn's 1,797 8x8 digits as (N, 1, 8, 8) images in [-1, 1]."""
    from sklearn.datasets import load_digits

    x = load_digits().images.astype(np.float32) / 8.0 - 1.0
    return x[:, None]


def torch_case(
    loss: str, steps: int, x: np.ndarray, seed: int, case: str = "ring"
) -> dict[str, float]:
    """Steps/s of ppgen (on the program; on the program declaring ``simulate_sites``), the
    hand loop and the raw Pyro loop, from the same initial networks."""
    make_g, make_d, z_dim, batch = TORCH_CASES[case]
    torch.manual_seed(seed)
    g0, d0 = make_g(), make_d()
    betas = (0.0, 0.9) if loss == "wgan-gp" else (0.5, 0.999)
    g = copy.deepcopy(g0)
    event = x.ndim - 1

    def program(x=None):
        net = pyro.module("G", g)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(z_dim), 1.0).to_event(1))
            pyro.sample("x", Implicit(net(z), event), obs=x)

    est = Adversarial(copy.deepcopy(d0), loss, lr=1e-3, betas=betas, batch_size=batch, steps=steps)
    clock = Clock()
    ppgen.fit(program, {"x": x}, est, seed=seed, callbacks=[clock])

    # the same program as a user's class that also declares `simulate_sites` (torch alone)
    class Declared:
        def __init__(self) -> None:
            self.g = copy.deepcopy(g0)

        def model(self, x=None):
            net = pyro.module("G", self.g)
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(torch.zeros(z_dim), 1.0).to_event(1))
                pyro.sample("x", Implicit(net(z), event), obs=x)

        def simulate_sites(self, sites, x=None):
            return {"x": self.g(torch.randn(len(x), z_dim))}

    pyro.clear_param_store()
    est = Adversarial(copy.deepcopy(d0), loss, lr=1e-3, betas=betas, batch_size=batch, steps=steps)
    declared = Clock()
    ppgen.fit(Declared(), {"x": x}, est, seed=seed, callbacks=[declared])

    hand = hand_loop(copy.deepcopy(g0), copy.deepcopy(d0), loss, steps, x, seed, z_dim, batch)
    # the raw library: the same loop drawing each fake batch from the same Pyro program, as a
    # Pyro user writes it (a trace of the unconditioned program)
    g = copy.deepcopy(g0)
    pyro.clear_param_store()

    def pyro_draw(real: torch.Tensor, g_net: torch.nn.Module) -> torch.Tensor:
        tr = pyro.poutine.trace(pyro.poutine.uncondition(program)).get_trace(x=real)
        return tr.nodes["x"]["value"]

    raw = hand_loop(g, copy.deepcopy(d0), loss, steps, x, seed, z_dim, batch, pyro_draw)
    return {
        "ppgen": clock.rate,
        "hand": hand,
        "pyro loop": raw,
        "ppgen declared": declared.rate,
    }


def hand_loop(
    g: torch.nn.Module,
    d: torch.nn.Module,
    loss: str,
    steps: int,
    x: np.ndarray,
    seed: int,
    z_dim: int,
    batch: int,
    draw: object = None,
) -> float:
    """Steps/s of the hand-written loop; ``draw(real, g)`` makes a fake batch (default G(noise))."""
    n_critic = 5 if loss == "wgan-gp" else 1
    betas = (0.0, 0.9) if loss == "wgan-gp" else (0.5, 0.999)
    if draw is None:

        def draw(real: torch.Tensor, g_net: torch.nn.Module) -> torch.Tensor:
            return g_net(torch.randn(len(real), z_dim))

    opt_g = torch.optim.Adam(g.parameters(), 1e-3, betas=betas, fused=True)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3, betas=betas, fused=True)
    xt = torch.as_tensor(x)
    rng = np.random.default_rng(seed)
    perm, pos, hist = rng.permutation(len(x)), 0, []
    for step in range(steps):
        if step == WARM:
            t = time.perf_counter()
        if pos + batch > len(x):
            perm, pos = rng.permutation(len(x)), 0
        real = xt[torch.as_tensor(perm[pos : pos + batch])]
        pos += batch
        for i in range(n_critic):
            if i == n_critic - 1:
                fake = draw(real, g)
                fd = fake.detach()
            else:
                with torch.no_grad():
                    fd = draw(real, g)
            dr, df = d(real), d(fd)
            if loss == "ns":
                ld = F.softplus(-dr).mean() + F.softplus(df).mean()
            else:
                ld = df.mean() - dr.mean() + 10.0 * gradient_penalty(d, real, fd)
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
        for p in d.parameters():
            p.requires_grad_(False)
        df = d(fake)
        lg = F.softplus(-df).mean() if loss == "ns" else -df.mean()
        opt_g.zero_grad()
        lg.backward()
        for p in d.parameters():
            p.requires_grad_(True)
        opt_g.step()
        hist.append((ld.item(), lg.item()))
    return (steps - WARM) / (time.perf_counter() - t)


def jax_case(loss: str, steps: int, x: np.ndarray, seed: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    import optax

    from ppgen.inference._adversarial_jax import gradient_penalty_jax
    from ppgen.nn_jax import mlp, mlp_critic

    n_critic = 5 if loss == "wgan-gp" else 1
    b1, b2 = (0.0, 0.9) if loss == "wgan-gp" else (0.5, 0.999)

    def program(x=None):
        with numpyro.plate("data", len(x)):
            z = numpyro.sample("z", ndist.Normal(jnp.zeros(2), 1.0).to_event(1))
            numpyro.sample("x", Implicit(mlp("G", z, H, 2), 1), obs=x)

    est = Adversarial(None, loss, lr=1e-3, betas=(b1, b2), hidden=H, batch_size=B, steps=steps)
    clock = Clock()
    ppgen.fit(program, {"x": x}, est, seed=seed, callbacks=[clock])

    g_init, g_apply = mlp_critic(2, H, [])  # the same MLP shape for the generator (2 outputs)
    sizes = [2, *H, 2]

    def g_params(key):
        out = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            key, kw, kb = jax.random.split(key, 3)
            bound = 1 / np.sqrt(a)
            out.append(
                (
                    jax.random.uniform(kw, (a, b), minval=-bound, maxval=bound),
                    jax.random.uniform(kb, (b,), minval=-bound, maxval=bound),
                )
            )
        return out

    def gen(p, z):
        for i, (w, b) in enumerate(p):
            z = z @ w + b
            if i < len(p) - 1:
                z = jax.nn.relu(z)
        return z

    tx_g, tx_d = optax.adam(1e-3, b1=b1, b2=b2), optax.adam(1e-3, b1=b1, b2=b2)
    key = jax.random.PRNGKey(seed)
    key, k1, k2 = jax.random.split(key, 3)
    g, d = g_params(k1), g_init(k2)
    state = (g, d, tx_g.init(g), tx_d.init(d), key)

    @jax.jit
    def step(state, real):
        g, d, og, od, key = state
        for _ in range(n_critic):
            key, kz, kgp = jax.random.split(key, 3)
            fake = jax.lax.stop_gradient(gen(g, jax.random.normal(kz, (B, 2))))

            def ld(p, fake=fake, kgp=kgp):
                dr, df = g_apply(p, real), g_apply(p, fake)
                if loss == "ns":
                    return jax.nn.softplus(-dr).mean() + jax.nn.softplus(df).mean()
                return (
                    df.mean() - dr.mean() + 10.0 * gradient_penalty_jax(g_apply, p, real, fake, kgp)
                )

            lv, gr = jax.value_and_grad(ld)(d)
            u, od = tx_d.update(gr, od, d)
            d = optax.apply_updates(d, u)

        def lgf(p):
            df = g_apply(d, gen(p, jax.random.normal(kz, (B, 2))))
            return jax.nn.softplus(-df).mean() if loss == "ns" else -df.mean()

        lg, gr = jax.value_and_grad(lgf)(g)
        u, og = tx_g.update(gr, og, g)
        return (optax.apply_updates(g, u), d, og, od, key), (lv, lg)

    xj = jnp.asarray(x)
    rng = np.random.default_rng(seed)
    perm, pos, hist = rng.permutation(len(x)), 0, []
    for i in range(steps):
        if i == WARM:
            jax.block_until_ready(hist[-1])
            t = time.perf_counter()
        if pos + B > len(x):
            perm, pos = rng.permutation(len(x)), 0
        state, m = step(state, xj[perm[pos : pos + B]])
        pos += B
        hist.append(m)
    jax.block_until_ready(hist[-1])
    return {"ppgen": clock.rate, "raw jax": (steps - WARM) / (time.perf_counter() - t)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", nargs="*", default=["torch", "dcgan", "jax"], help="torch dcgan jax")
    args = ap.parse_args()
    print("\n".join(machine()))
    print(f"steps={args.steps} reps={args.reps} (interleaved; median steps/s)")
    print(f"{'case':<40}{'ppgen':>10}{'baseline':>10}{'ratio':>8}")
    ring = ring8(8192)
    cases = {
        "torch": ("torch", lambda loss, s, seed: torch_case(loss, s, ring, seed), TORCH_ROWS),
        "dcgan": (
            "torch dcgan",
            lambda loss, s, seed: torch_case(loss, s, digits_images(), seed, "dcgan"),
            TORCH_ROWS,
        ),
        "jax": ("jax", lambda loss, s, seed: jax_case(loss, s, ring, seed), JAX_ROWS),
    }
    for key in args.cases:
        label, case, rows = cases[key]
        for loss in ("ns", "wgan-gp"):
            runs = [case(loss, args.steps, seed) for seed in range(args.reps)]
            for variant, base in rows:
                a = statistics.median(r[variant] for r in runs)
                b = statistics.median(r[base] for r in runs)
                name = f"{label} {loss}{variant[5:]} vs {base}"
                print(f"{name:<40}{a:>10.1f}{b:>10.1f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()
