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
    "SyncTorchEngine",
    "start_run",
    "rng_state",
    "load_rng_state",
    "snapshot_params",
    "activate_params",
    "constrained_params",
    "load_unconstrained",
    "nonfinite_params",
]


def start_run(ctx: Any) -> str:
    """A fresh run of an engine: empty param store, seeded RNGs, the program's module moved
    to the fit's device (returned, ``"cpu"`` by default)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(ctx.seed)
    device = ctx.device or "cpu"
    if ctx.program.module is not None:
        ctx.program.module.to(device)
    return device


class SyncTorchEngine:
    """What a torch engine of the shared loop has in common: metrics read at once (no async
    dispatch), and a step cut short by Ctrl-C undone from ``self._rng_before`` (the RNG state
    the step started from) and ``self.optim``."""

    async_metrics = False
    _rng_before: torch.Tensor
    optim: Any

    def abort_step(self) -> None:
        """Undo the random draws of a step cut short by Ctrl-C before its update."""
        torch.set_rng_state(self._rng_before)
        self.optim.zero_grad()

    def rewind(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} reads metrics synchronously.")


def rng_state() -> dict[str, Any]:
    """torch's RNG state (and CUDA's, where present), for a checkpoint."""
    sd = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        sd["cuda_rng"] = torch.cuda.get_rng_state_all()
    return sd


def load_rng_state(sd: Mapping[str, Any]) -> None:
    """Put back the RNG state :func:`rng_state` saved (a resumed run draws the same numbers)."""
    torch.set_rng_state(sd["torch_rng"])
    if sd.get("cuda_rng"):
        torch.cuda.set_rng_state_all(sd["cuda_rng"])


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
