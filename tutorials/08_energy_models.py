"""Tutorial 8: energy models -- an RBM by CD-1 and PCD with exact and AIS log Z, a deep EBM, a
score-matched energy.

Run from the repository root:
    python tutorials/08_energy_models.py [--tiny] [--out DIR]
(``--tiny`` takes well under a minute; the defaults a few minutes on one CPU thread).

An energy program's observed site is ``Unnormalized(energy, event_shape)``: the density is
known only up to its normaliser, ``log p(x) = -energy(x) - log Z``. SVI, NUTS and MLE refuse
such programs; the contrastive estimators fit them.

1. An RBM on binarised digits (``ppgen.models.RBM``: its free energy sums out the hidden
   units) by CD-1 and by persistent CD, at equal steps. With 16 hidden units ``log Z`` is
   exact (2^16 terms); annealed importance sampling (AIS) estimates it too, with its standard
   error. Once ``log Z`` is known the fit has a test log-likelihood, next to a Bernoulli
   mixture fit by SVI on the same split. Samples come from block-Gibbs chains.
2. A deep EBM (an MLP energy) on the ring of 8 Gaussians by PCD with a replay buffer of
   Langevin samples (Du & Mordatch 2019); its Langevin samples, scored by mode coverage.
3. The same energy network fit by sliced score matching on a mixture 0.8 N((5,5), I) +
   0.2 N((-5,-5), I); the learned score is close to the true one, yet plain Langevin from
   noise gives the wrong mode weights (Song & Ermon 2019): the score says nothing about the
   far-apart modes' relative mass.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def fit_rbms(steps: int, betas: int, out: Path) -> dict:
    import matplotlib.pyplot as plt
    import torch

    import ppgen
    from ppgen.analysis import evaluate, log_partition
    from ppgen.analysis.latent import image_grid
    from ppgen.data.builtin import digits
    from ppgen.inference import SVI, ContrastiveDivergence
    from ppgen.models import RBM, BernoulliMixture

    train, test = digits("train", binarize=True), digits("test", binarize=True)
    res: dict = {}
    for name, persistent in (("CD-1", False), ("PCD", True)):
        torch.manual_seed(0)
        est = ContrastiveDivergence(1, persistent, lr=0.01, steps=steps, batch_size=100)
        fit = ppgen.fit(RBM(64, 16), train, est, seed=0)
        exact = log_partition(fit, "exact")
        ais = log_partition(fit, "ais", data=train, num_chains=100, num_betas=betas)
        test_ll = float(fit.log_likelihood(test)["x"].mean())  # with the last log Z: AIS's
        res[name] = {"exact": exact.value, "ais": ais.value, "se": ais.stderr, "test": test_ll}
        print(
            f"RBM {name:4s}: log Z exact {exact.value:.2f}, AIS {ais.value:.2f} +- "
            f"{ais.stderr:.2f}; test log-likelihood {test_ll:.2f} nats per digit"
        )
        res[f"{name} fit"] = fit
    mix = ppgen.fit(BernoulliMixture(10), train, SVI(steps=steps, lr=0.05, num_draws=100), seed=0)
    res["mixture"] = float(evaluate(mix, test).as_dict()["metrics"]["log_lik_per_datum"])
    print(f"Bernoulli mixture (10 components, SVI): {res['mixture']:.2f} nats per digit")
    rows = {"x": train["x"][:64]}  # 64 chains: one data set of 64 rows
    samples = res["PCD fit"].sample(1, seed=0, data=rows)["x"][0]  # Gibbs chains from noise
    plt.imsave(out / "rbm_samples.png", image_grid(samples.reshape(-1, 8, 8)), cmap="gray")
    return res


def fit_ring(steps: int, out: Path) -> dict:
    import matplotlib.pyplot as plt
    import torch

    import ppgen
    from ppgen.analysis.sample_quality import mode_coverage
    from ppgen.data.modes2d import mode_spec, ring8
    from ppgen.inference import ContrastiveDivergence
    from ppgen.inference.samplers import Langevin
    from ppgen.models import EBM

    x = ring8(4096, seed=0)
    langevin = Langevin(0.02, noise_scale=0.035)  # gradient step 0.01, noise 0.005
    est = ContrastiveDivergence(
        k=20,
        persistent=True,
        buffer_size=4096,
        sampler=langevin,
        alpha=0.1,
        lr=1e-3,
        steps=steps,
        batch_size=256,
        sample_sampler=langevin,
        sample_steps=200,
    )
    torch.manual_seed(0)
    fit = ppgen.fit(EBM((2,), (64, 64)), {"x": x}, est, seed=0)
    s = fit.sample(1, seed=0)["x"][0][:2000]
    centres, sigma = mode_spec("ring8")
    cov = mode_coverage(s, centres, sigma)
    print(f"deep EBM on the ring: {cov.modes_covered}/8 modes covered by Langevin samples")
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x[:2000, 0], x[:2000, 1], s=2, alpha=0.3, label="data")
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.3, label="Langevin samples")
    ax.legend(loc="upper right")
    fig.savefig(out / "ebm_ring.png", dpi=80)
    plt.close(fig)
    return {"modes": cov.modes_covered}


def fit_score(steps: int, out: Path) -> dict:
    import torch

    import ppgen
    from ppgen.data.toy2d import two_gaussians
    from ppgen.inference import ScoreMatching
    from ppgen.inference.samplers import Langevin
    from ppgen.models import EBM

    x = two_gaussians(2000)
    torch.manual_seed(0)
    model = EBM((2,), (64, 64))
    est = ScoreMatching(
        "sliced",
        lr=2e-3,
        steps=steps,
        batch_size=512,
        sample_sampler=Langevin(0.05),
        sample_steps=1000,
    )
    fit = ppgen.fit(model, {"x": x}, est, seed=0)
    s = fit.sample(1, seed=0)["x"][0]  # Langevin chains from uniform noise over the data
    weight = float((s.sum(1) > 0).mean())
    print(f"score matching: Langevin samples put {weight:.2f} on the heavy mode (truth 0.80)")
    return {"weight": weight}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    ap.add_argument("--out", default="runs/tutorial08", help="output directory for PNGs")
    a = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rbm_steps, ring_steps, score_steps = (200, 60, 100) if a.tiny else (3000, 1000, 1500)
    betas = 1000 if a.tiny else 3000
    res = {"rbm": fit_rbms(rbm_steps, betas, out), "ring": fit_ring(ring_steps, out)}
    res["score"] = fit_score(score_steps, out)
    res["paths"] = sorted(str(p) for p in out.glob("*.png"))
    print("wrote", ", ".join(Path(p).name for p in res["paths"]))
    return res


if __name__ == "__main__":
    main()
