"""Pyro helpers shared by the optimisation estimators: param-store snapshots and optimisers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger

from ppgen.errors import EstimatorError

__all__ = [
    "ScalePlate",
    "ScaleBox",
    "snapshot_params",
    "activate_params",
    "constrained_params",
    "load_unconstrained",
    "make_pyro_optim",
    "nonfinite_params",
]


class ScalePlate(Messenger):
    """Weight every sample site inside plate ``name`` by ``box.scale`` (``N / B`` for a batch).

    This is exactly what a subsampled ``pyro.plate`` does, applied to a plate the user wrote
    over the full data: the model sees the batch, the ELBO stays an unbiased full-data estimate.
    Model and guide each get their own messenger sharing one ``box`` (a messenger instance
    cannot be installed twice, and an autoguide runs the model inside the guide).
    """

    def __init__(self, name: str, box: Any) -> None:
        super().__init__()
        self.name, self.box = name, box

    def _process_message(self, msg: dict) -> None:
        scale = self.box.scale
        if msg["type"] == "sample" and scale != 1.0:
            if any(f.name == self.name for f in msg["cond_indep_stack"]):
                msg["scale"] = scale * msg["scale"]


class ScaleBox:
    """The current minibatch scale, shared by the model's and the guide's :class:`ScalePlate`."""

    def __init__(self, name: str) -> None:
        self.name, self.scale = name, 1.0

    def __call__(self, fn: Callable) -> Callable:
        return ScalePlate(self.name, self)(fn)


def snapshot_params() -> dict[str, Any]:
    """A detached copy of Pyro's param store (unconstrained values and constraints)."""
    ps = pyro.get_param_store()
    state = ps.get_state()
    return {
        "params": {k: v.detach().clone() for k, v in state["params"].items()},
        "constraints": dict(state["constraints"]),
    }


def activate_params(snapshot: Mapping[str, Any]) -> None:
    """Make ``snapshot`` the content of Pyro's param store (fresh leaf tensors)."""
    ps = pyro.get_param_store()
    ps.clear()
    ps.set_state(
        {
            "params": {
                k: v.detach().clone().requires_grad_(v.is_floating_point())
                for k, v in snapshot["params"].items()
            },
            "constraints": dict(snapshot["constraints"]),
        }
    )


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


def make_pyro_optim(
    optim: str | Any, lr: float, lr_decay: float | None, steps: int, clip_norm: float | None
) -> Any:
    """A Pyro optimiser by name (``adam``, ``clipped_adam``, ``sgd``, ``rmsprop``, ``adagrad``).

    ``lr_decay`` is the total factor the learning rate shrinks by over ``steps`` (exponential).
    """
    from pyro.optim import PyroOptim
    from pyro.optim.lr_scheduler import PyroLRScheduler

    if isinstance(optim, PyroOptim | PyroLRScheduler):
        return optim
    names = {
        "adam": torch.optim.Adam,
        "clipped_adam": None,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }
    if not isinstance(optim, str) or optim.lower() not in names:
        raise EstimatorError(
            f"Unknown `optim={optim!r}`. Valid names: {sorted(names)}, or a pyro.optim optimiser."
        )
    key = optim.lower()
    if key == "clipped_adam":
        args = {"lr": lr, "clip_norm": clip_norm or 10.0}
        if lr_decay:
            args["lrd"] = lr_decay ** (1.0 / max(steps, 1))
        return pyro.optim.ClippedAdam(args)
    cls = names[key]
    clip = {"clip_norm": clip_norm} if clip_norm else None
    if lr_decay:
        return pyro.optim.ExponentialLR(
            {
                "optimizer": cls,
                "optim_args": {"lr": lr},
                "gamma": lr_decay ** (1.0 / max(steps, 1)),
            },
            clip_args=clip,
        )
    return PyroOptim(cls, {"lr": lr}, clip_args=clip)
