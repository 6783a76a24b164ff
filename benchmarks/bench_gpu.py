"""ppgen against the raw library on one device, and the CPU -> device speedup, in the same run.

Usage, from the repository root: python -m benchmarks.bench_gpu [--device cuda] [--quick]
(``benchmarks/gpu.sh`` runs it with the GPU tests; ``--device cpu --quick`` is the suite's
smoke test, so the script cannot rot while no GPU is lent).

Cases (steps/s over the steps after the first 20, which hold compilation and warm-up; each
fit's own setup and post-processing are outside the timed window):

- ``vae``: the zoo ``VAE`` (64 -> 256 -> 8, Bernoulli) on binarised digits, batch 256:
  ``ppgen.fit(..., SVI)`` against raw Pyro ``SVI`` on the same module's model and guide.
- ``maf``: ``MAFModel(2, 64, 5 transforms)`` on 10,000 moons, batch 512: ``ppgen.fit(..., MLE)``
  against nflows' ``MaskedAutoregressiveFlow`` with a plain torch Adam loop.
- ``gan``: the zoo ``GAN`` (2-D, 2 x 128) on the ring of 8, batch 256, non-saturating loss:
  ``ppgen.fit(..., Adversarial)`` against a hand-written torch loop with MLPs of the same widths.
- ``nuts``: eight schools (non-centred) as a NumPyro program, 500 warm-up + 500 draws:
  ``ppgen.fit(..., NUTS)`` against raw ``numpyro.infer.MCMC`` (transitions/s of the whole run).

With ``--device`` other than ``cpu`` every case also runs on the CPU, and the table adds the
CPU -> device speedup of ppgen.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402

WARM = 20


class StepClock:
    """A ppgen callback: the time of step ``WARM`` and of the last step."""

    def __init__(self) -> None:
        self.t: dict[int, float] = {}

    def __call__(self, step: int, metrics: dict) -> None:
        if step == WARM or step not in self.t:
            self.t[step] = time.perf_counter()

    def rate(self) -> float:
        last = max(self.t)
        return (last - WARM) / (self.t[last] - self.t[WARM])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _loop_rate(step: Callable[[], None], steps: int, device: str) -> float:
    for _ in range(WARM):
        step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps - WARM):
        step()
    _sync(device)
    return (steps - WARM) / (time.perf_counter() - t)


# ----------------------------------------------------------------------------- vae
def vae_case(device: str, steps: int) -> tuple[float, float]:
    import pyro
    from sklearn.datasets import load_digits

    from ppgen.inference import SVI
    from ppgen.models import VAE

    x = (load_digits().data > 7).astype(np.float32)
    clock = StepClock()
    torch.manual_seed(0)
    model = VAE(64, 8, hidden_features=(256,), likelihood="bernoulli")
    est = SVI(steps=steps, batch_size=256, num_draws=1, lr=1e-3)
    ppgen.fit(model, {"x": x}, est, device=None if device == "cpu" else device, callbacks=[clock])
    ours = clock.rate()

    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(64, 8, hidden_features=(256,), likelihood="bernoulli").to(device)
    xs = torch.tensor(x, device=device)
    svi = pyro.infer.SVI(
        vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO()
    )
    gen = torch.Generator(device="cpu").manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, len(xs), (256,), generator=gen).to(device)
        with pyro.poutine.scale(scale=len(xs) / 256):
            svi.step(x=xs[idx])

    with torch.device(device):
        raw = _loop_rate(step, steps, device)
    return ours, raw


# ----------------------------------------------------------------------------- maf
def maf_case(device: str, steps: int) -> tuple[float, float]:
    import nflows.flows

    from ppgen.inference import MLE
    from ppgen.models import MAFModel

    x = ppgen.data.load("moons", n=10_000, seed=0)["x"].astype(np.float32)
    clock = StepClock()
    torch.manual_seed(0)
    est = MLE(steps=steps, batch_size=512, lr=1e-3, check_convergence=False)
    model = MAFModel(2, hidden_features=64, num_transforms=5)
    ppgen.fit(model, {"x": x}, est, device=None if device == "cpu" else device, callbacks=[clock])
    ours = clock.rate()

    torch.manual_seed(0)
    flow = nflows.flows.MaskedAutoregressiveFlow(2, 64, 5, 2).to(device)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    xs = torch.tensor(x, device=device)

    def step() -> None:
        idx = torch.randint(0, len(xs), (512,), device=device)
        opt.zero_grad()
        loss = -flow.log_prob(xs[idx]).mean()
        loss.backward()
        opt.step()

    return ours, _loop_rate(step, steps, device)


# ----------------------------------------------------------------------------- gan
def gan_case(device: str, steps: int) -> tuple[float, float]:
    import torch.nn as nn
    import torch.nn.functional as F

    from ppgen.inference import Adversarial
    from ppgen.models import GAN

    x = ppgen.data.load("ring8", n=10_000, seed=0)["x"].astype(np.float32)
    clock = StepClock()
    torch.manual_seed(0)
    est = Adversarial(steps=steps, batch_size=256, loss="ns")
    gan = GAN(2, z_dim=2, hidden_features=(128, 128))
    ppgen.fit(gan, {"x": x}, est, device=None if device == "cpu" else device, callbacks=[clock])
    ours = clock.rate()

    def mlp(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(i, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, o)
        ).to(device)

    torch.manual_seed(0)
    g, d = mlp(2, 2), mlp(2, 1)
    og = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    xs = torch.tensor(x, device=device)

    def step() -> None:
        real = xs[torch.randint(0, len(xs), (256,), device=device)]
        fake = g(torch.randn(256, 2, device=device))
        od.zero_grad()
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        loss_d.backward()
        od.step()
        og.zero_grad()
        F.softplus(-d(fake)).mean().backward()
        og.step()

    return ours, _loop_rate(step, steps, device)


# ----------------------------------------------------------------------------- nuts
def schools(J, sigma, y=None):
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)


def nuts_case(device: str, steps: int) -> tuple[float, float]:
    import jax
    from numpyro.infer import MCMC
    from numpyro.infer import NUTS as RawNUTS

    from ppgen.inference import NUTS

    data = {
        "J": 8,
        "sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18]),
        "y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
    }
    n = steps // 2
    dev = None if device == "cpu" else device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ESS of short chains is not the point here
        ppgen.fit(schools, data, NUTS(10, 10), device=dev, backend="numpyro")  # compile
        t = time.perf_counter()
        ppgen.fit(schools, data, NUTS(n, n), device=dev, seed=1, backend="numpyro")
        ours = 2 * n / (time.perf_counter() - t)
    platform = "gpu" if device.startswith("cuda") else "cpu"
    with jax.default_device(jax.devices(platform)[0]):
        mcmc = MCMC(RawNUTS(schools), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.PRNGKey(0), **data)
        mcmc = MCMC(RawNUTS(schools), num_warmup=n, num_samples=n, progress_bar=False)
        t = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(1), **data)
        mcmc.get_samples()["mu"].block_until_ready()
        raw = 2 * n / (time.perf_counter() - t)
    return ours, raw


CASES = {"vae": vae_case, "maf": maf_case, "gan": gan_case, "nuts": nuts_case}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--steps", type=int, default=1000, help="steps per case (NUTS: transitions)")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--quick", action="store_true", help="smoke size: 40 steps")
    a = ap.parse_args(argv)
    steps = 40 if a.quick else a.steps
    torch.set_num_threads(1)
    print("\n".join(machine()), flush=True)
    if a.device.startswith("cuda"):
        print(f"- device: {torch.cuda.get_device_name(torch.device(a.device))}", flush=True)
    devices = [a.device] if a.device == "cpu" else [a.device, "cpu"]
    print("\n| case | device | ppgen steps/s | raw steps/s | ppgen / raw |")
    print("|---|---|---|---|---|")
    rows = []
    for name in a.cases:
        for dev in devices:
            ours, raw = CASES[name](dev, steps)
            rows.append({"case": name, "device": dev, "ppgen": ours, "raw": raw})
            print(f"| {name} | {dev} | {ours:.1f} | {raw:.1f} | {ours / raw:.2f} |", flush=True)
    if len(devices) > 1:
        print(f"\n| case | ppgen {devices[0]} / cpu | raw {devices[0]} / cpu |\n|---|---|---|")
        for name in a.cases:
            on, off = (
                next(r for r in rows if r["case"] == name and r["device"] == d) for d in devices
            )
            print(f"| {name} | {on['ppgen'] / off['ppgen']:.2f} | {on['raw'] / off['raw']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
