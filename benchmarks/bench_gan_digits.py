"""Sample quality on scikit-learn's 8x8 digits: zoo GANs beside a VAE and a flow, by FCD.

Usage, from the repository root:
python -m benchmarks.bench_gan_digits [--smoke] [--steps N] [--wgan-steps N] [--vae-steps N]
[--flow-steps N]

Every model is fitted by ppgen on the training split of
:func:`ppgen.analysis.sample_quality.digits_split` (1,198 digits, 0..16 levels) and draws
``--samples`` images, scored by :func:`~ppgen.analysis.sample_quality.frechet_classifier_distance`
(FCD: the Fréchet distance in the 64 penultimate features of ppgen's digits classifier,
:class:`~ppgen.analysis.sample_quality.DigitsFeatures`) against the 599 held-out digits:

* ``DCGAN`` (Pyro, ``Adversarial(loss="ns")``, Adam 2e-4, betas (0.5, 0.999)), images in [-1, 1];
* ``DCGAN, WGAN-GP``: the same networks, ``loss="wgan-gp"`` (n_critic 5, Adam 1e-4, (0, 0.9));
* ``GAN, WGAN-GP, NumPyro``: the MLP GAN (2x256, tanh) on flattened images, on NumPyro;
* ``VAE`` (SVI, Gaussian likelihood on [0, 1], 2x256, z=16): decoder means of prior draws;
* ``MAF`` (``FlowModel("maf")``, MLE) on uniformly dequantised, logit-transformed pixels;
* the floor: the training split itself; the ceiling: uniform noise on [0, 16].

Wall time is the fit plus the sampling. GAN steps count generator updates.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.analysis.sample_quality import (  # noqa: E402
    DigitsFeatures,
    digits_split,
    frechet_classifier_distance,
)
from ppgen.inference import MLE, SVI, Adversarial  # noqa: E402
from ppgen.models import DCGAN, GAN, VAE  # noqa: E402
from ppgen.models.flows import FlowModel  # noqa: E402

ALPHA = 0.05  # logit transform of the flow: logit(ALPHA + (1 - 2 ALPHA) u)


def dcgan(a, x: np.ndarray, loss: str) -> np.ndarray:
    img = (x / 8.0 - 1.0).reshape(-1, 1, 8, 8).astype(np.float32)
    model = DCGAN((1, 8, 8), z_dim=32, channels=a.channels)
    lr = 1e-4 if loss == "wgan-gp" else 2e-4
    steps = a.wgan_steps if loss == "wgan-gp" else a.steps
    est = Adversarial(loss=loss, steps=steps, lr=lr, batch_size=a.batch)
    fit = ppgen.fit(model, {"x": img}, est, seed=a.seed)
    out = np.asarray(fit.sample(1, data={"x": np.zeros((a.samples, 1, 8, 8), np.float32)})["x"])
    return (out[0].reshape(-1, 64) + 1.0) * 8.0


def mlp_gan_numpyro(a, x: np.ndarray) -> np.ndarray:
    flat = (x / 8.0 - 1.0).astype(np.float32)
    h = (a.hidden, a.hidden)
    model = GAN(64, z_dim=32, hidden_features=h, output="tanh", backend="numpyro")
    est = Adversarial(loss="wgan-gp", steps=a.mlp_steps, lr=1e-4, batch_size=a.batch, hidden=h)
    fit = ppgen.fit(model, {"x": flat}, est, seed=a.seed)
    out = np.asarray(fit.sample(1, data={"x": np.zeros((a.samples, 64), np.float32)})["x"])
    return (out[0] + 1.0) * 8.0


def vae(a, x: np.ndarray) -> np.ndarray:
    model = VAE(64, 16, hidden_features=(a.hidden, a.hidden), likelihood="gaussian")
    est = SVI(steps=a.vae_steps, batch_size=a.batch, lr=1e-3, num_draws=1)
    ppgen.fit(model, {"x": (x / 16.0).astype(np.float32)}, est, seed=a.seed)
    return model.sample(a.samples, mean=True).numpy() * 16.0


def maf(a, x: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(a.seed)
    u = (x + rng.uniform(size=x.shape)) / 17.0
    p = ALPHA + (1 - 2 * ALPHA) * u
    y = np.log(p) - np.log1p(-p)
    model = FlowModel("maf", 64, hidden_features=a.hidden)
    est = MLE(steps=a.flow_steps, batch_size=a.batch, lr=1e-3)
    ppgen.fit(model, {"x": y.astype(np.float32)}, est, seed=a.seed)
    s = model.sample(a.samples).numpy().astype(np.float64)
    u = (1.0 / (1.0 + np.exp(-s)) - ALPHA) / (1 - 2 * ALPHA)
    return np.clip(u * 17.0, 0.0, 16.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few steps of each: a run-through")
    ap.add_argument("--steps", type=int, default=2000, help="DCGAN (ns) generator updates")
    ap.add_argument("--wgan-steps", type=int, default=1000, help="DCGAN WGAN-GP generator updates")
    ap.add_argument("--mlp-steps", type=int, default=2000, help="MLP GAN WGAN-GP generator updates")
    ap.add_argument("--vae-steps", type=int, default=3000, help="VAE steps")
    ap.add_argument("--flow-steps", type=int, default=1000, help="MAF steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=32, help="DCGAN width")
    ap.add_argument("--hidden", type=int, default=256, help="MLP widths (GAN, VAE, MAF)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.smoke:
        a.steps = a.wgan_steps = a.mlp_steps = a.vae_steps = a.flow_steps = 3
        a.channels, a.hidden, a.samples = 4, 16, 200

    t0 = time.perf_counter()
    net = DigitsFeatures.default()
    x_train, _, x_test, _ = digits_split()
    t_net = time.perf_counter() - t0
    models: list[tuple[str, str, Callable[[], np.ndarray]]] = [
        ("training split (floor)", "-", lambda: x_train),
        ("DCGAN, ns", "Pyro", lambda: dcgan(a, x_train, "ns")),
        ("DCGAN, WGAN-GP", "Pyro", lambda: dcgan(a, x_train, "wgan-gp")),
        ("MLP GAN, WGAN-GP", "NumPyro", lambda: mlp_gan_numpyro(a, x_train)),
        ("VAE (decoder means)", "Pyro", lambda: vae(a, x_train)),
        ("MAF flow", "Pyro", lambda: maf(a, x_train)),
        (
            "uniform noise (ceiling)",
            "-",
            lambda: np.random.default_rng(a.seed).uniform(0, 16, (a.samples, 64)),
        ),
    ]
    rows = []
    for name, backend, make in models:
        t = time.perf_counter()
        images = np.asarray(make(), dtype=np.float64)
        wall = time.perf_counter() - t
        assert images.shape[1:] == (64,) and np.all(np.isfinite(images)), (name, images.shape)
        fcd = frechet_classifier_distance(images, x_test, net)
        rows.append((name, backend, fcd, wall))
        print(f"# {name}: FCD {fcd:.3f} ({wall:.1f} s)", flush=True)

    print("\n".join(machine()))
    print(
        f"\nDigits FCD vs the {len(x_test)} held-out digits ({a.samples} samples; classifier "
        f"accuracy {net.accuracy:.3f}, trained in {t_net:.1f} s); steps: DCGAN {a.steps}, DCGAN "
        f"WGAN-GP {a.wgan_steps} (x5 critic), MLP GAN {a.mlp_steps} (x5 critic), VAE "
        f"{a.vae_steps}, MAF {a.flow_steps}; batch {a.batch}, DCGAN channels {a.channels}, MLP "
        f"widths {a.hidden}, seed {a.seed}\n"
    )
    print("| model | backend | FCD | wall s |")
    print("|---|---|---|---|")
    for name, backend, fcd, wall in rows:
        print(f"| {name} | {backend} | {fcd:.3f} | {wall:.1f} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
