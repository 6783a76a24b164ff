"""NumPyro (JAX) differentiable operations: log joint, simulation, data score, module params.

Each is a pure function of its array arguments (``values``, ``params``, ``rng_key``), so it
composes with ``jax.grad``, ``jax.jit`` and ``jax.vmap``; the checks run at trace time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.infer.util import log_density
from numpyro.primitives import Messenger

from ppgen.backends._checks import (
    Fault,
    check_rng,
    check_score_site,
    check_site_names,
    missing_latents_error,
    proposal_fault,
    select_params,
)
from ppgen.errors import EstimatorError

__all__ = [
    "log_joint",
    "simulate",
    "score",
    "module_params",
    "nonfinite_sites",
    "find_proposal_fault",
]


class _MissingLatent(Exception):
    """Raised by :class:`_RequireValues` before a latent without a value would be sampled."""


class _RequireValues(Messenger):
    """Refuse to sample: every latent must have been given a value by an inner handler."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and msg["value"] is None:
            raise _MissingLatent(msg["name"])


def _key(seed: int | None, rng_key: Any) -> Any:
    return rng_key if rng_key is not None else jax.random.PRNGKey(int(seed))


def _site_names(tr: Mapping[str, dict], *, observed: bool | None = None) -> list[str]:
    return [
        n
        for n, s in tr.items()
        if (s["type"] == "deterministic" and observed is None)
        or (s["type"] == "sample" and (observed is None or bool(s["is_observed"]) == observed))
    ]


def log_joint(
    fn: Callable,
    kwargs: Mapping[str, Any],
    values: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
) -> jax.Array:
    """``log p(x, z)`` with latents from ``values``; see :meth:`BackendOps.log_joint`."""
    values = dict(values)
    model = handlers.substitute(fn, data={**(params or {}), **values})
    try:
        lp, tr = log_density(_RequireValues(model), (), dict(kwargs), {})
    except _MissingLatent:
        seeded = handlers.seed(model, jax.random.PRNGKey(0))  # names every missing latent
        tr = handlers.trace(seeded).get_trace(**kwargs)
        missing = [n for n in _site_names(tr, observed=False) if n not in values]
        raise missing_latents_error(missing, given=list(values), op="log_joint") from None
    check_site_names(values, _site_names(tr), argument="values", op="log_joint")
    return lp


def simulate(
    fn: Callable,
    kwargs: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    *,
    sites: list[str] | None = None,
    seed: int | None = None,
    rng_key: Any = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, jax.Array]:
    """Run an unconditioned ``fn`` forward; see :meth:`BackendOps.simulate`.

    ``fn`` must already be wrapped so that observed sites are sampled (``Uncondition``).
    """
    check_rng("numpyro", seed, rng_key, op="simulate")
    values = dict(values or {})
    model = handlers.condition(fn, data=values) if values else fn
    model = handlers.substitute(model, data=dict(params)) if params else model
    tr = handlers.trace(handlers.seed(model, _key(seed, rng_key))).get_trace(**kwargs)
    names = _site_names(tr)
    check_site_names(values, names, argument="values", op="simulate")
    if sites is not None:
        check_site_names(sites, names, argument="sites", op="simulate")
    return {n: tr[n]["value"] for n in (names if sites is None else sites)}


def score(
    fn: Callable,
    kwargs: Mapping[str, Any],
    site: str,
    params: Mapping[str, Any] | None = None,
    *,
    values: Mapping[str, Any] | None = None,
    seed: int | None = 0,
    rng_key: Any = None,
) -> jax.Array:
    """``∇ₓ log p(x)`` at the observed value of ``site``; see :meth:`BackendOps.score`."""
    if rng_key is not None:
        seed = None
    check_rng("numpyro", seed, rng_key, op="score")
    values = dict(values or {})
    model = handlers.substitute(fn, data={**(params or {}), **values})
    tr = handlers.trace(handlers.seed(model, _key(seed, rng_key))).get_trace(**kwargs)
    samples = [n for n in _site_names(tr) if tr[n]["type"] == "sample"]
    kinds = {n: "observed" if tr[n]["is_observed"] else "latent" for n in samples}
    node = tr.get(site)
    discrete = node is not None and bool(getattr(node.get("fn"), "is_discrete", False))
    check_score_site(site, kinds, discrete=discrete, op="score")
    check_site_names(values, list(kinds), argument="values", op="score")
    x = jnp.asarray(node["value"])
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return jax.grad(lambda v: jnp.sum(node["fn"].log_prob(v)))(x)


def module_params(
    prefix: str | None = None, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Entries of a NumPyro params dict by name prefix; see :meth:`BackendOps.module_params`."""
    if params is None:
        raise EstimatorError(
            "`module_params`: NumPyro keeps no global parameter store, so `params` is required: "
            "pass the flat dict of parameter values, e.g. `svi.get_params(state)`."
        )
    return select_params(params, prefix, where="`params`")


class ScalePlate(Messenger):
    """NumPyro twin of :class:`ppgen.backends._pyro_ops.ScalePlate`."""

    def __init__(self, fn: Callable, box: Any) -> None:
        super().__init__(fn)
        self.box = box

    def process_message(self, msg: dict) -> None:
        scale = self.box.scale
        if msg["type"] == "sample" and scale != 1.0:
            if any(f.name == self.box.name for f in msg["cond_indep_stack"]):
                s = msg.get("scale")
                msg["scale"] = scale if s is None else scale * s


def nonfinite_sites(
    model: Callable,
    kwargs: Mapping[str, Any],
    guide: Callable | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[str]:
    """Sample sites whose log-density is NaN/inf for one draw (to name where a loss broke).

    Latents come from ``guide`` (with ``params`` substituted) when given, else from their
    priors; the model is replayed on them. Returns ``[]`` if the diagnosis itself fails.
    """
    import numpyro

    try:
        key = jax.random.PRNGKey(seed)
        sub = (lambda f: handlers.substitute(f, data=dict(params))) if params else (lambda f: f)
        gtr = {}
        with numpyro.validation_enabled(False):  # see the values, not a validation error
            if guide is not None:
                gtr = handlers.trace(handlers.seed(sub(guide), key)).get_trace(**kwargs)
            run = handlers.replay(sub(model), trace=gtr)
            mtr = handlers.trace(handlers.seed(run, key)).get_trace(**kwargs)
        bad: list[str] = []
        for tr in (mtr, gtr):
            for name, s in tr.items():
                if s["type"] != "sample" or name in bad:
                    continue
                if not bool(jnp.isfinite(s["fn"].log_prob(s["value"])).all()):
                    bad.append(name)
        return bad
    except Exception:  # a broken state can break the diagnosis too
        return []


def find_proposal_fault(
    model: Callable,
    guide: Callable,
    params: Mapping[str, Any],
    kwargs: Mapping[str, Any],
    seeds: Any = range(5),
) -> Fault | None:
    """The first latent site for which ``guide`` (with ``params``) proposes a value outside the
    model site's support, over a few draws (``seeds``); ``None`` if none does or the
    diagnosis fails. NumPyro does not validate, so such a proposal shows up as a NaN loss."""
    import numpyro

    try:
        model, guide = (handlers.substitute(f, data=dict(params)) for f in (model, guide))
        with numpyro.validation_enabled(False):  # see the proposal, not a validation error
            return _first_proposal_fault(model, guide, kwargs, seeds)
    except Exception:  # a broken state can break the diagnosis too
        return None


def _first_proposal_fault(
    model: Callable, guide: Callable, kwargs: Mapping[str, Any], seeds: Any
) -> Fault | None:
    for seed in seeds:
        key = jax.random.PRNGKey(seed)
        gtr = handlers.trace(handlers.seed(guide, key)).get_trace(**kwargs)
        run = handlers.replay(model, trace=gtr)
        mtr = handlers.trace(handlers.seed(run, key)).get_trace(**kwargs)
        for name, s in mtr.items():
            g = gtr.get(name)
            if s["type"] != "sample" or s["is_observed"] or g is None:
                continue
            ok = s["fn"].support(g["value"])
            fault = proposal_fault(name, g["fn"], s["fn"], g["value"], ok)
            if fault is not None:
                return fault
    return None
