"""Tutorial 6: GANs are programs too -- an implicit program fit adversarially, three losses.

Run from the repository root:
    python tutorials/06_gans.py [--tiny] [--steps N] [--digits-steps N] [--out DIR]
(``--tiny`` takes well under a minute; the defaults a few minutes on one CPU thread).

1. The program: noise ``z ~ N(0, I)``, a generator network registered with ``pyro.module``,
   and the observed site ``x ~ Implicit(G(z))`` -- a value with no density. SVI, NUTS and MLE
   refuse it (they need a density); ``Adversarial`` fits it.
2. The same program fit with three losses (non-saturating, WGAN-GP, hinge) on PacGAN's ring
   of 8 Gaussians; mode coverage and high-quality rate (PacGAN's protocol) and kernel MMD to
   held-out data; scatter plots and the losses of both networks per step.
3. Conditional digits: ``ConditionalGAN`` gets the labels ``y`` with the images; the labels
   reach the generator through the program and the critic as its second input. A digits
   classifier trained by ppgen labels the generated images; a grid of samples per class.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def program_for(hidden: int):
    """A user's GAN: a torch generator inside a Pyro program, ``Implicit`` observed site."""
    import pyro
    import pyro.distributions as dist
    import torch

    from ppgen.distributions import Implicit

    net = torch.nn.Sequential(
        torch.nn.Linear(2, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 2),
    )

    def gan(x=None):
        g = pyro.module("generator", net)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", Implicit(g(z), event_dim=1), obs=x)

    return gan


def fit_ring(losses, steps, hidden, n_eval) -> dict:
    import ppgen
    from ppgen.analysis.metrics import mmd, mode_coverage
    from ppgen.data.modes2d import mode_spec, ring8
    from ppgen.inference import Adversarial

    x, held_out = ring8(8192, seed=0), ring8(n_eval, seed=1)
    centres, sigma = mode_spec("ring8")
    res = {"data": held_out, "samples": {}, "coverage": {}, "mmd": {}, "history": {}}
    for loss in losses:
        gan = program_for(hidden)
        untrained = ppgen.fit(gan, {"x": x}, Adversarial(loss=loss, steps=0))
        before = untrained.sample(1, data={"x": held_out})["x"][0]
        settings = {"lr": 1e-3, "batch_size": 256, "steps": steps}
        if loss == "wgan-gp":
            settings.update(lr_g=5e-4, betas=(0.5, 0.9))
        fit = ppgen.fit(gan, {"x": x}, Adversarial(loss=loss, **settings), seed=0)
        s = fit.sample(1, data={"x": held_out})["x"][0]
        res["samples"][loss] = s
        res["coverage"][loss] = mode_coverage(s, centres, sigma).as_dict()
        res["mmd"][loss] = (mmd(before, held_out), mmd(s, held_out))
        res["history"][loss] = fit.history
        cov = res["coverage"][loss]
        print(
            f"{loss:>8}: modes {cov['modes_covered']}/8, high quality "
            f"{cov['high_quality_rate']:.1%}, MMD^2 {res['mmd'][loss][0]:.4f} -> "
            f"{res['mmd'][loss][1]:.4f}"
        )
    return res


def plot_ring(res: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    losses = list(res["samples"])
    fig, axes = plt.subplots(2, len(losses), figsize=(3.2 * len(losses), 6), squeeze=False)
    for j, loss in enumerate(losses):
        ax = axes[0, j]
        ax.scatter(*res["data"].T, s=2, c="0.7", label="data")
        ax.scatter(*res["samples"][loss].T, s=2, c="C3", label="generated")
        cov = res["coverage"][loss]
        ax.set_title(f"{loss}: {cov['modes_covered']}/8, HQ {cov['high_quality_rate']:.0%}")
        ax.set_xlim(-1.5, 1.5)
        ax.set_ylim(-1.5, 1.5)
        ax = axes[1, j]
        for key in ("loss_d", "loss_g"):
            ax.plot(res["history"][loss][key], lw=0.6, label=key)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def fit_digits(steps: int, out: Path) -> dict:
    import matplotlib.pyplot as plt

    import ppgen
    from ppgen.analysis.sample_quality import DigitsFeatures, digits_split
    from ppgen.inference import Adversarial
    from ppgen.models import ConditionalGAN

    x, y, _, _ = digits_split()
    images = (x.reshape(-1, 64) / 8.0 - 1.0).astype(np.float32)  # 0..16 -> [-1, 1]
    gan = ConditionalGAN(64, num_classes=10, z_dim=16, hidden_features=(128, 128), output="tanh")
    fit = ppgen.fit(
        gan,
        {"x": images, "y": y.astype(np.int64)},
        Adversarial(loss="ns", lr=1e-3, batch_size=128, steps=steps),
        seed=0,
    )
    want = np.repeat(np.arange(10), 10)
    gen = fit.sample(1, data={"y": want})["x"][0]
    pixels = (gen + 1.0) * 8.0  # back to the 0..16 scale the classifier reads
    accuracy = float((DigitsFeatures.default().predict(pixels) == want).mean())
    fig, axes = plt.subplots(10, 10, figsize=(6, 6))
    for ax, img in zip(axes.flat, pixels, strict=True):
        ax.imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        ax.axis("off")
    fig.suptitle(f"ConditionalGAN, one row per class; classifier agrees {accuracy:.0%}")
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"digits: the classifier labels {accuracy:.0%} of the samples with the asked class")
    return {"accuracy": accuracy}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    ap.add_argument("--steps", type=int, default=3000, help="steps per ring fit")
    ap.add_argument("--digits-steps", type=int, default=3000, help="steps of the digits GAN")
    ap.add_argument("--out", default="runs/tutorial06", help="output directory for PNGs")
    a = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    steps, hidden, n_eval = (300, 32, 1000) if a.tiny else (a.steps, 128, 2500)
    res = fit_ring(("ns", "wgan-gp", "hinge"), steps, hidden, n_eval)
    plot_ring(res, out / "ring.png")
    res["digits"] = fit_digits(60 if a.tiny else a.digits_steps, out / "digits.png")
    res["paths"] = sorted(str(p) for p in out.glob("*.png"))
    print("wrote", ", ".join(Path(p).name for p in res["paths"]))
    return res


if __name__ == "__main__":
    main()
