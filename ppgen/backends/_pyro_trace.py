"""Pyro handlers for running user programs, their sites (:func:`sites_of`), and the
diagnosis of a run that failed.

torch's argument validation raises ``ValueError("Expected parameter scale ... of distribution
Normal(...)")`` without the site; :func:`find_fault` re-runs the program (and its guide) with
validation off and names the first site at fault: a guide's proposal outside the model site's
support, a NaN parameter or factor, or a parameter outside its constraint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from ppgen.backends._base import Plate, Site
from ppgen.backends._checks import Fault, dist_name, proposal_fault, show_value
from ppgen.distributions import density_kind

__all__ = ["ObsAsFloat", "Uncondition", "sites_of", "find_fault", "fault_message"]


class ObsAsFloat(Messenger):
    """Cast integer/bool observations (and Python numbers) to torch's default float dtype.

    Users hand ppgen integer counts and 0/1 labels as numpy ints; torch's Bernoulli and Poisson
    ``log_prob`` need floating values (Categorical casts back to long itself). A Python number
    given as the observation of a scalar site becomes a 0-d tensor. Covariates used as indices
    are untouched: only values at observed sample sites are cast.
    """

    def _pyro_sample(self, msg: dict) -> None:
        v = msg["value"]
        if not msg["is_observed"]:
            return
        if isinstance(v, int | float) and not isinstance(v, bool):
            msg["value"] = torch.tensor(float(v), dtype=torch.get_default_dtype())
        elif torch.is_tensor(v) and not v.is_floating_point():
            msg["value"] = v.to(torch.get_default_dtype())


class Uncondition(Messenger):
    """Sample observed sites afresh (posterior/prior predictive); keep deterministic sites.

    Pyro's ``poutine.uncondition`` also turns ``pyro.deterministic`` sites into samples of a
    ``Delta`` whose event covers the plate dims, which then get broadcast a second time.
    """

    def _pyro_sample(self, msg: dict) -> None:
        if msg["is_observed"] and not msg["infer"].get("_deterministic"):
            msg["is_observed"] = False
            msg["infer"]["was_observed"] = True
            msg["value"] = None
            msg["done"] = False


def sites_of(tr: Any) -> list[Site]:
    """The :class:`Site` of every sample and param node of a Pyro trace, in execution order."""
    sites = []
    for name, s in tr.nodes.items():
        if s["type"] == "sample":
            fn_ = s["fn"]
            kind = "observed" if s["is_observed"] else "latent"
            if type(fn_).__name__ == "_Subsample":
                continue
            if s["infer"].get("_deterministic"):
                kind = "deterministic"
            plates = tuple(
                Plate(
                    f.name,
                    int(f.full_size or f.size),
                    int(f.dim) if f.dim is not None else 0,
                    int(f.size) if f.full_size and f.full_size != f.size else None,
                )
                for f in s["cond_indep_stack"]
                # sequential plates (`for i in plate(...)`) only when they subsample: the
                # program is then refused before any work (`check_subsampling`)
                if f.vectorized or (f.full_size and f.full_size != f.size)
            )
            batch, event = tuple(fn_.batch_shape), tuple(fn_.event_shape)
            if kind == "deterministic":  # Delta(value, event_dim=value.ndim): all batch
                batch, event = tuple(s["value"].shape), ()
            sites.append(
                Site(
                    name=name,
                    kind=kind,
                    shape=tuple(np.shape(s["value"])),
                    batch_shape=batch,
                    event_shape=event,
                    dist=type(_base(fn_)).__name__,
                    support=str(fn_.support),
                    discrete=bool(fn_.support.is_discrete),
                    enumerate=s["infer"].get("enumerate"),
                    plates=plates,
                    fn=fn_,
                    value=s["value"],
                    infer=dict(s["infer"]),
                    density=density_kind(fn_),
                )
            )
        elif s["type"] == "param":
            v = s["value"]
            sites.append(Site(name=name, kind="param", shape=tuple(v.shape), value=v))
    return sites


def _base(fn: Any) -> Any:
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def _chain(fn: Any) -> list[Any]:
    out = [fn]
    while hasattr(out[-1], "base_dist"):
        out.append(out[-1].base_dist)
    return out


def _show(x: torch.Tensor) -> str:
    return show_value(x.detach().cpu().numpy())


def _first_bad(value: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """An entry (or event) of ``value`` where the boolean ``ok`` (maybe event-reduced) fails."""
    bad = ~ok.bool()
    if bad.dim() == 0:
        return value
    idx = tuple(int(i) for i in bad.nonzero()[0])
    return value[idx] if value.dim() >= len(idx) else value


def _bad_parameter(fn: Any) -> tuple[str, str, torch.Tensor, bool] | None:
    """``(name, constraint, example, is_nan)`` of a parameter of ``fn`` (or of a distribution
    it wraps or transforms) outside its constraint."""
    for d in _chain(fn):
        for name, c in getattr(d, "arg_constraints", {}).items():
            if constraints.is_dependent(c):
                continue
            if name not in d.__dict__ and isinstance(getattr(type(d), name, None), lazy_property):
                continue  # a lazy parameter never given (e.g. logits of Bernoulli(probs=...))
            try:
                v = getattr(d, name, None)
            except Exception:  # a property that cannot be computed from broken arguments
                continue
            if not torch.is_tensor(v) or not v.is_floating_point():
                continue
            if torch.isnan(v).any():
                return name, str(c), v[torch.isnan(v)][0], True
            ok = c.check(v)
            if not ok.all():
                return name, str(c), _first_bad(v, ok), False
    return None


def _sample_sites(tr: Any) -> list[tuple[str, dict]]:
    return [
        (n, s)
        for n, s in tr.nodes.items()
        if s["type"] == "sample" and type(s["fn"]).__name__ != "_Subsample"
    ]


def _faults(mtr: Any, gtr: Any | None) -> Fault | None:
    dist = dist_name
    if gtr is not None:  # the guide's proposals against the model sites' supports
        for name, s in _sample_sites(mtr):
            g = gtr.nodes.get(name)
            if s["is_observed"] or g is None or g["type"] != "sample":
                continue
            v = g["value"]
            if torch.is_tensor(v) and v.is_floating_point() and torch.isnan(v).any():
                return Fault(name, "nan", f"the guide's {dist(g['fn'])} proposed NaN for it")
            ok = s["fn"].support.check(v)
            fault = proposal_fault(name, g["fn"], s["fn"], v.detach().cpu(), ok.cpu())
            if fault is not None:
                return fault
    for tr, who in ((gtr, "the guide's"), (mtr, "its")):
        for name, s in _sample_sites(tr) if tr is not None else ():
            bad = _bad_parameter(s["fn"])
            if bad is None:
                continue
            pname, c, example, nan = bad
            factor = type(_base(s["fn"])).__name__ == "Unit"
            what = f"parameter `{pname}` of {who} {dist(s['fn'])}"
            if nan:
                return Fault(name, "nan", f"{what} is NaN", factor)
            return Fault(name, "parameter", f"{what} is {_show(example)}, outside {c}", factor)
    for tr in (mtr, gtr):
        for name, s in _sample_sites(tr) if tr is not None else ():
            lp = s["fn"].log_prob(s["value"])
            if torch.isnan(lp).any():
                return Fault(name, "nan", f"its log-density ({dist(s['fn'])}) is NaN")
    return None


def find_fault(
    model: Callable, kwargs: Mapping[str, Any], guide: Callable | None = None
) -> Fault | None:
    """Run ``guide`` (if given) and ``model`` replayed on it, with validation off, and return
    the first site at fault, or ``None`` (none found, or the diagnosis itself failed).

    The caller chooses the random state (re-running a failed step needs that step's draws)
    and the param store (a scratch one for validation, the live one for a training step).
    """
    try:
        with torch.no_grad(), pyro.validation_enabled(False):
            gtr = poutine.trace(guide).get_trace(**kwargs) if guide is not None else None
            run = poutine.replay(model, trace=gtr) if gtr is not None else model
            mtr = poutine.trace(run).get_trace(**kwargs)
            return _faults(mtr, gtr)
    except Exception:  # a broken program can break its diagnosis too
        return None


def fault_message(fault: Fault, when: str) -> str:
    """One sentence naming the site and what is wrong at it, ``when`` it happened."""
    if fault.factor:
        return (
            f"Factor `{fault.site}` is NaN {when}: check the expression passed to `factor` (a "
            "log of a negative number? 0/0? inf - inf?) and the data it uses."
        )
    return f"Site `{fault.site}`: {fault.detail} {when}."
