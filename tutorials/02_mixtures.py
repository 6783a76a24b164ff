"""Tutorial 2: Gaussian mixtures by NUTS, enumerated SVI and a Dirichlet process; choosing K.

Three well-separated blobs (``ppgen.data.load("blobs")``). The component assignments of
``GaussianMixture`` are marked for enumeration, so

* NUTS (NumPyro backend) samples only the weights, locations and scales: the assignments are
  summed out of the likelihood, :math:`p(x_i) = \\sum_k w_k N(x_i \\mid \\mu_k, \\sigma_k)`;
* SVI with ``elbo="enum"`` sums them out exactly inside the ELBO (guide over the continuous
  latents only, started at k-means);
* a truncated stick-breaking ``DPMixture`` lets the data choose how many components are used.

K is chosen among {2, 3, 4} by ``az.compare`` over PSIS-LOO of the NUTS fits. The models'
``to_arviz(fit)`` stores the *marginal* pointwise log-likelihood, which is what LOO needs (the
per-assignment one would be wrong). The fitted posterior mean densities are drawn as contours
over the data in ``DIR/mixtures.png``.

Run:  python tutorials/02_mixtures.py [--tiny] [--out runs/tutorial02]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


def _contours(ax, model, fit, x, title):
    import numpy as np

    lo, hi = x.min(0) - 2.0, x.max(0) + 2.0
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 70), np.linspace(lo[1], hi[1], 70))
    grid = np.stack([g0.ravel(), g1.ravel()], 1)
    dens = model.density(fit, grid).reshape(g0.shape)
    ax.scatter(x[:, 0], x[:, 1], s=6, c="0.4", alpha=0.6)
    ax.contour(g0, g1, dens, levels=8, cmap="viridis")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="runs/tutorial02", help="output directory for PNGs")
    args = parser.parse_args(argv)

    import arviz as az
    import torch

    torch.set_num_threads(1)  # small models: threads only add overhead (and fight neighbours)
    import matplotlib.pyplot as plt
    import numpy as np

    import ppgen
    from ppgen.inference import NUTS, SVI
    from ppgen.models.mixture import DPMixture, GaussianMixture

    data = ppgen.data.load("blobs", n=120, seed=2)
    x = data["x"]
    n_draws = 60 if args.tiny else 1000
    steps = 200 if args.tiny else 2000

    def svi_fit(model):  # enumerated SVI, guide over the continuous latents from k-means
        guide = model.guide_for(x, "normal")
        est = SVI(guide=guide, elbo="enum", steps=steps, lr=0.05, num_draws=200)
        return ppgen.fit(model, {"x": x}, est, backend="pyro", seed=0)

    def nuts_fit(model):  # NumPyro NUTS; the assignments are summed out of the density
        est = NUTS(num_samples=n_draws, num_warmup=n_draws, init_strategy=model.init_values(x))
        return ppgen.fit(model, {"x": x}, est, backend="numpyro", seed=0)

    # 1. K = 2, 3, 4 compared by PSIS-LOO on the marginal log-likelihood ------------------
    # (NUTS fits; with --tiny the cheaper enumerated-SVI posterior approximations)
    how = "svi" if args.tiny else "nuts"
    idatas, fits, models = {}, {}, {}
    for K in (2, 3, 4):
        t0 = time.perf_counter()
        models[K] = GaussianMixture(K)
        fits[K] = (svi_fit if args.tiny else nuts_fit)(models[K])
        idatas[f"K={K}"] = models[K].to_arviz(fits[K], posterior_predictive=False)
        w = np.sort(np.asarray(fits[K].draws["weights"]).mean((0, 1)))[::-1].round(2)
        print(f"{how} K={K}: {time.perf_counter() - t0:5.1f}s  weights {w.tolist()}")
    with warnings.catch_warnings():
        # with a surplus component a few high Pareto-k values can occur; ArviZ warns about them
        warnings.simplefilter("ignore", UserWarning)
        table = az.compare(idatas, ic="loo")
    print(table[["rank", "elpd_loo", "p_loo", "elpd_diff", "dse", "weight"]].to_string())
    # the simplest K whose elpd is within max(1, one standard error) of the best (parsimony)
    ok = [k for k in table.index if table.loc[k, "elpd_diff"] <= max(table.loc[k, "dse"], 1.0)]
    chosen = min(int(k.split("=")[1]) for k in ok)
    print(f"chosen K = {chosen}")

    # 2. the chosen K by NUTS and by SVI with elbo="enum" --------------------------------
    gmm = models[chosen]
    t0 = time.perf_counter()
    nuts = fits[chosen] if how == "nuts" else nuts_fit(gmm)
    svi = fits[chosen] if how == "svi" else svi_fit(gmm)
    for name, f in (("NUTS", nuts), ("SVI enum", svi)):
        locs = np.asarray(f.draws["locs"]).mean((0, 1))
        print(f"{name} K={chosen} locs {np.round(locs.astype(float), 2).tolist()}")
    print(f"   ({time.perf_counter() - t0:5.1f}s)")

    # 3. Dirichlet-process mixture: the data choose the number of occupied components -----
    dp = DPMixture(6, alpha=0.5)
    t0 = time.perf_counter()
    dp_fit = svi_fit(dp)
    occupied = dp.num_occupied(dp_fit, min_size=3)
    w = np.sort(np.asarray(dp_fit.draws["weights"]).mean((0, 1)))[::-1].round(3)
    print(f"DP mixture: {time.perf_counter() - t0:5.1f}s  occupied {occupied}  weights {w}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    _contours(axes[0], gmm, nuts, x, f"NUTS, K={chosen} (chosen by LOO)")
    _contours(axes[1], gmm, svi, x, f"SVI elbo='enum', K={chosen}")
    _contours(axes[2], dp, dp_fit, x, f"DP mixture (truncation 6): {occupied} occupied")
    fig.tight_layout()
    fig.savefig(out / "mixtures.png", dpi=90)
    plt.close("all")
    print(f"wrote {out / 'mixtures.png'}")
    return {"compare": table, "chosen": chosen, "occupied": occupied}


if __name__ == "__main__":
    main()
