"""VAE-GAN against the VAE on scikit-learn's digits: the classifier Fréchet distance of samples.

Usage, from the repository root: python -m benchmarks.bench_vaegan [--steps N] [--seeds S]

Both models are the zoo's (``ppgen.models.VAEGAN`` with ``method="vaegan"``; ``VAE`` with a
continuous-Bernoulli likelihood by SVI, samples = decoder means), z = 16, MLPs 256 x 2, Adam
lr 1e-3, batch 128, the same steps, on the 1500 training digits scaled to [0, 1]. Samples (as
many as the 297 test digits) are scored by
:func:`~ppgen.analysis.sample_quality.frechet_classifier_distance` against the held-out
digits of :class:`~ppgen.analysis.sample_quality.DigitsFeatures` (lower is better); the
untrained VAE-GAN is the reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

torch.set_num_threads(1)

import ppgen  # noqa: E402
from benchmarks._machine import machine  # noqa: E402
from ppgen.analysis.sample_quality import DigitsFeatures, frechet_classifier_distance  # noqa: E402
from ppgen.data.builtin import digits  # noqa: E402
from ppgen.inference import SVI, VAEGAN  # noqa: E402
from ppgen.models import VAE  # noqa: E402
from ppgen.models import VAEGAN as VAEGANModel  # noqa: E402


def run(steps: int, seed: int) -> dict[str, float]:
    train, test = digits("train"), digits("test")
    held_out = DigitsFeatures.default().test_images
    out = {}
    for name in ("untrained", "VAE-GAN", "VAE"):
        torch.manual_seed(seed)
        t = time.perf_counter()
        if name == "VAE":
            model = VAE(64, 16, (256, 256), likelihood="cbernoulli")
            ppgen.fit(model, train, SVI(steps=steps, lr=1e-3, batch_size=128), seed=seed)
            with torch.no_grad():
                x = model.sample(len(test["x"])).numpy()
        else:
            est = VAEGAN(steps=0 if name == "untrained" else steps, lr=1e-3, batch_size=128)
            fit = ppgen.fit(VAEGANModel(64, 16), train, est, seed=seed)
            x = fit.sample(1, data=test)["x"][0]
        out[name] = frechet_classifier_distance(x * 16, held_out)
        out[name + " s"] = time.perf_counter() - t
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args(argv)
    print("\n".join(machine()))
    print(f"## VAE-GAN vs VAE on digits: FCD of samples ({a.steps} steps, {a.seeds} seeds)")
    rows = [run(a.steps, s) for s in range(a.seeds)]
    print(f"{'model':<12}{'FCD mean':>10}{'sd':>8}{'s/fit':>8}")
    for name in ("untrained", "VAE-GAN", "VAE"):
        vals = [r[name] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        secs = statistics.mean(r[name + " s"] for r in rows)
        print(f"{name:<12}{statistics.mean(vals):>10.2f}{sd:>8.2f}{secs:>8.1f}")


if __name__ == "__main__":
    main()
