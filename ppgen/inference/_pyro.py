"""Pyro helpers of the optimisation estimators: param-store snapshots and NaN diagnosis."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from ppgen.backends.pyro import activate_params
from ppgen.errors import EstimatorError

__all__ = [
    "snapshot_params",
    "activate_params",
    "constrained_params",
    "load_unconstrained",
    "nonfinite_params",
]


def snapshot_params() -> dict[str, Any]:
    """A detached copy of Pyro's param store (unconstrained values and constraints)."""
    ps = pyro.get_param_store()
    state = ps.get_state()
    return {
        "params": {k: v.detach().clone() for k, v in state["params"].items()},
        "constraints": dict(state["constraints"]),
    }


def constrained_params() -> dict[str, np.ndarray]:
    """Current constrained param values as numpy (``Fit.params``)."""
    ps = pyro.get_param_store()
    return {k: v.detach().cpu().numpy() for k, v in ps.items()}


def load_unconstrained(values: Mapping[str, Any]) -> None:
    """Overwrite existing params' unconstrained values in place (resume / load)."""
    ps = pyro.get_param_store()
    params = ps.get_state()["params"]
    missing = [k for k in values if k not in params]
    if missing:
        raise EstimatorError(
            f"Saved parameters {missing} do not exist in the rebuilt program. Was the run saved "
            "from a different program?"
        )
    with torch.no_grad():
        for k, v in values.items():
            params[k].copy_(torch.as_tensor(v, device=params[k].device))


def nonfinite_params() -> list[str]:
    ps = pyro.get_param_store()
    return [k for k, v in ps.items() if not torch.isfinite(v).all()]


def nonfinite_log_prob_sites(
    model: Callable, guide: Callable, kwargs: Mapping[str, Any]
) -> list[str]:
    """Sites whose log-density is NaN/inf for a guide draw (to name where a loss broke)."""
    try:
        with torch.no_grad():
            gtr = poutine.trace(guide).get_trace(**kwargs)
            mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(**kwargs)
            bad = []
            for tr in (mtr, gtr):
                for name, s in tr.nodes.items():
                    if s["type"] == "sample":
                        lp = s["fn"].log_prob(s["value"])
                        if not torch.isfinite(lp).all() and name not in bad:
                            bad.append(name)
            return bad
    except Exception:  # a broken state can break the diagnosis too
        return []
