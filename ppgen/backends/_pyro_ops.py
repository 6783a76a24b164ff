"""Pyro (torch) differentiable operations: log joint, simulation, data score, module params."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger

from ppgen.backends._checks import (
    check_rng,
    check_score_site,
    check_site_names,
    missing_latents_error,
    select_params,
)
from ppgen.backends._pyro_trace import Uncondition

__all__ = ["log_joint", "simulate", "score", "module_params", "seeded"]


class _MissingLatent(Exception):
    """Raised by :class:`_RequireValues` before a latent without a value would be sampled."""


class _RequireValues(Messenger):
    """Refuse to sample: every latent must have been given a value by an inner handler."""

    def _pyro_sample(self, msg: dict) -> None:
        if msg["is_observed"] or msg["value"] is not None or _is_subsample(msg["fn"]):
            return
        raise _MissingLatent(msg["name"])


def _is_subsample(fn: Any) -> bool:
    return type(fn).__name__ == "_Subsample"


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Draw from torch's RNG seeded with ``seed``, leaving the global RNG state as it was.

    ``seed=None`` uses (and advances) the global RNG. CUDA generators are forked only when CUDA
    is already initialised, so a CPU run never initialises CUDA.
    """
    if seed is None:
        yield
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(int(seed))
        if cuda:
            torch.cuda.manual_seed_all(int(seed))
        yield


def _as_tensors(values: Mapping[str, Any] | None) -> dict[str, Any]:
    if not values:
        return {}
    return {k: v if torch.is_tensor(v) else torch.as_tensor(v) for k, v in values.items()}


def _with_params(fn: Callable, params: Mapping[str, Any] | None) -> Callable:
    return poutine.substitute(fn, data=_as_tensors(params)) if params else fn


def _sample_names(tr: Any, *, observed: bool | None = None) -> list[str]:
    return [
        n
        for n, s in tr.nodes.items()
        if s["type"] == "sample"
        and not _is_subsample(s["fn"])
        and (observed is None or bool(s["is_observed"]) == observed)
    ]


def log_joint(
    fn: Callable,
    kwargs: Mapping[str, Any],
    values: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """``log p(x, z)`` with latents from ``values``; see :meth:`BackendOps.log_joint`."""
    values = _as_tensors(values)
    model = _with_params(poutine.condition(fn, data=values), params)
    try:
        tr = poutine.trace(_RequireValues()(model)).get_trace(**kwargs)
    except _MissingLatent:
        with seeded(0):  # a throwaway run that names every missing latent at once
            tr = poutine.trace(model).get_trace(**kwargs)
        missing = [n for n in _sample_names(tr, observed=False) if n not in values]
        raise missing_latents_error(missing, given=list(values), op="log_joint") from None
    check_site_names(values, _sample_names(tr), argument="values", op="log_joint")
    # the sum of Trace.log_prob_sum, without its re-raising of every ValueError as a plain one
    # (ppgen's errors, e.g. an Implicit site's ImplicitDensityError, must keep their class)
    total = torch.zeros(())
    for s in tr.nodes.values():
        if s["type"] == "sample":
            lp = s["fn"].log_prob(s["value"], *s["args"], **s["kwargs"])
            total = total + scale_and_mask(lp, s["scale"], s["mask"]).sum()
    return total


def simulate(
    fn: Callable,
    kwargs: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    *,
    sites: list[str] | None = None,
    seed: int | None = None,
    rng_key: Any = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Run an unconditioned ``fn`` forward; see :meth:`BackendOps.simulate`.

    ``fn`` must already be wrapped so that observed sites are sampled (``Uncondition``).
    """
    check_rng("pyro", seed, rng_key, op="simulate")
    values = _as_tensors(values)
    model = _with_params(poutine.condition(fn, data=values) if values else fn, params)
    with seeded(seed):
        tr = poutine.trace(model).get_trace(**kwargs)
    names = _sample_names(tr)
    check_site_names(values, names, argument="values", op="simulate")
    if sites is not None:
        check_site_names(sites, names, argument="sites", op="simulate")
    return {n: tr.nodes[n]["value"] for n in (names if sites is None else sites)}


VALIDATE_EVERY = 64  # simulator(): argument checks on one step in this many


class _Draw(Uncondition):
    """Draw observed sites afresh (``Uncondition``) and keep the values of ``sites``.

    The per-step form of :func:`simulate`: no trace is built and no names are checked.
    """

    def __init__(self, sites: list[str]) -> None:
        super().__init__()
        self.sites = frozenset(sites)
        self.values: dict[str, torch.Tensor] = {}

    def _pyro_post_sample(self, msg: dict) -> None:
        if msg["name"] in self.sites:
            self.values[msg["name"]] = msg["value"]


def simulator(fn: Callable, sites: list[str]) -> Callable[..., dict[str, torch.Tensor]]:
    """``simulate(Uncondition(fn), kwargs, sites=sites)`` as a per-step function.

    The first call is a full :func:`simulate` (site names checked); later calls without
    ``values``/``seed``/``params`` run ``fn`` under one :class:`_Draw` handler, with Pyro's
    distribution argument checks on one call in :data:`VALIDATE_EVERY` (they cost about a
    third of a small generator's program; a parameter that leaves its support is still
    refused within that many steps, and non-finite values by the fit's NaN guard).
    """
    calls = 0

    def run(kwargs: Mapping[str, Any], **options: Any) -> dict[str, torch.Tensor]:
        nonlocal calls
        calls += 1
        if calls == 1 or any(v is not None for v in options.values()):
            return simulate(Uncondition()(fn), kwargs, sites=sites, **options)
        draw = _Draw(sites)
        skip = calls % VALIDATE_EVERY
        with pyro.validation_enabled(False) if skip else contextlib.nullcontext(), draw:
            fn(**kwargs)
        return {n: draw.values[n] for n in sites}

    return run


def score(
    fn: Callable,
    kwargs: Mapping[str, Any],
    site: str,
    params: Mapping[str, Any] | None = None,
    *,
    values: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    rng_key: Any = None,
) -> torch.Tensor:
    """``∇ₓ log p(x)`` at the observed value of ``site``; see :meth:`BackendOps.score`."""
    check_rng("pyro", seed, rng_key, op="score")
    values = _as_tensors(values)
    model = _with_params(poutine.condition(fn, data=values) if values else fn, params)
    with seeded(seed):
        tr = poutine.trace(model).get_trace(**kwargs)
    observed = set(_sample_names(tr, observed=True)) - set(values)
    node = tr.nodes.get(site)
    kinds = {n: "observed" if n in observed else "latent" for n in _sample_names(tr)}
    discrete = node is not None and node["type"] == "sample" and node["fn"].support.is_discrete
    check_score_site(site, kinds, discrete=bool(discrete), op="score")
    check_site_names(values, list(kinds), argument="values", op="score")
    x = node["value"]
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(node["fn"].log_prob(x).sum(), x, create_graph=True)
    return grad


def module_params(
    prefix: str | None = None, params: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """Param-store leaves by name prefix; see :meth:`BackendOps.module_params`."""
    if params is not None:
        return select_params(params, prefix, where="`params`")
    store = dict(pyro.get_param_store().named_parameters())
    return select_params(store, prefix, where="Pyro's param store")


def activate_params(snapshot: Mapping[str, Any]) -> None:
    """Make a snapshot ``{"params": unconstrained, "constraints": ...}`` Pyro's param store."""
    store = pyro.get_param_store()
    store.clear()
    raw = snapshot["params"]
    fresh = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in raw.items()}
    store.set_state({"params": fresh, "constraints": dict(snapshot["constraints"])})


class ScalePlate(Messenger):
    """Weight every sample site inside plate ``box.name`` by ``box.scale`` (``N / B``).

    This is what a subsampled ``pyro.plate`` does, applied to a plate the user wrote over the
    full data. Model and guide each get their own messenger sharing one ``box`` (a messenger
    instance cannot be installed twice, and an autoguide runs the model inside the guide).
    """

    def __init__(self, box: Any) -> None:
        super().__init__()
        self.box = box

    def _process_message(self, msg: dict) -> None:
        scale = self.box.scale
        if msg["type"] == "sample" and scale != 1.0:
            if any(f.name == self.box.name for f in msg["cond_indep_stack"]):
                msg["scale"] = scale * msg["scale"]
