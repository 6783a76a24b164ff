"""Tutorial 1: one program, four estimators, one ArviZ comparison.

The eight-schools model is written once (``ppgen.models.EightSchools``, backend-neutral).
We fit it with NUTS on Pyro, NUTS on NumPyro, SVI with a mean-field Normal guide and SVI with
a full-rank Normal guide — changing only ``method=`` (and ``backend=``) — then hand every fit
to ArviZ: ``az.compare`` ranks them by LOO and ``az.plot_forest`` shows the posteriors.

Run:  python tutorials/01_swap_estimators.py [--tiny] [--out runs/tutorial01]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="runs/tutorial01", help="output directory for PNGs")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")

    import arviz as az
    import matplotlib.pyplot as plt

    import ppgen
    from ppgen.inference import NUTS, SVI
    from ppgen.models import EightSchools

    data = ppgen.data.load("eight_schools")
    model = EightSchools()  # non-centred; written once with pyroapi
    n = 100 if args.tiny else 1000
    steps = 600 if args.tiny else 5000
    runs = {
        "nuts_pyro": dict(method=NUTS(num_samples=n, num_warmup=n, num_chains=2), backend="pyro"),
        "nuts_numpyro": dict(
            method=NUTS(num_samples=n, num_warmup=n, num_chains=2), backend="numpyro"
        ),
        "svi_normal": dict(method=SVI(guide="normal", steps=steps, lr=0.03, num_draws=2 * n)),
        "svi_mvn": dict(method=SVI(guide="mvn", steps=steps, lr=0.03, num_draws=2 * n)),
    }
    idatas = {}
    for name, kw in runs.items():
        t0 = time.perf_counter()
        fit = ppgen.fit(model, data, **kw, seed=0)
        idatas[name] = fit.to_arviz()
        mu, tau = fit.draws["mu"], fit.draws["tau"]
        print(
            f"{name:13s} {time.perf_counter() - t0:6.1f}s  mu {mu.mean():5.2f} ± {mu.std():4.2f}"
            f"  tau {tau.mean():5.2f} ± {tau.std():4.2f}"
        )

    with warnings.catch_warnings():
        # eight data points: a few high Pareto-k values are expected and ArviZ says so
        warnings.simplefilter("ignore", UserWarning)
        table = az.compare(idatas)
    print(table[["rank", "elpd_loo", "p_loo", "se", "weight"]].to_string())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    axes = az.plot_forest(
        list(idatas.values()),
        model_names=list(idatas),
        var_names=["mu", "tau"],
        combined=True,
        figsize=(7, 4),
    )
    axes[0].figure.savefig(out / "forest.png", dpi=100, bbox_inches="tight")
    plt.close("all")
    print(f"wrote {out / 'forest.png'}")
    return {"compare": table, "idatas": idatas}


if __name__ == "__main__":
    main()
