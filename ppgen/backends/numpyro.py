"""NumPyro (JAX) backend: tracing, devices, predictive sampling, pointwise log-likelihood."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.primitives import Messenger

from ppgen.backends import _numpyro_ops as _ops
from ppgen.backends import _numpyro_weights
from ppgen.backends import _pointwise as _pw
from ppgen.backends._base import BackendOps, Plate, ScaleBox, Site
from ppgen.backends._data import (
    Conversions,
    empty_inputs_error,
    lossy_error,
    lossy_float,
    lossy_int,
    nan_factor_error,
)
from ppgen.backends._pointwise import LogLikelihood
from ppgen.distributions import density_kind
from ppgen.errors import PPGenError

_X64 = (
    "`jax.config.update('jax_enable_x64', True)` at the start of the script (before any JAX "
    "array is made)"
)


def _lossy(key: str, a: np.ndarray) -> str | None:
    """What converting ``data[key]`` to JAX's dtype for it would lose (64-bit mode off)."""
    if jax.config.x64_enabled:
        return None
    if a.dtype.kind == "f":
        fix = f", or enable 64-bit JAX: {_X64}"
        return lossy_float(key, a, "float32", float(np.finfo(np.float32).max), fix)
    target = jax.dtypes.canonicalize_dtype(a.dtype)
    if a.dtype.kind in "iu" and target != a.dtype:
        why = "JAX holds integers in 32 bits while its 64-bit mode is off"
        return lossy_int(key, a, target, why, f"Enable 64-bit JAX with {_X64}, or rescale them.")
    return None
    if a.dtype.kind == "f":
        fix = ", or " + _X64[0].lower() + _X64[1 : -len(", or rescale the values.")]
        return lossy_float(key, a, "float32", float(np.finfo(np.float32).max), fix)
    target = jax.dtypes.canonicalize_dtype(a.dtype)
    if a.dtype.kind in "iu" and target != a.dtype:
        why = "JAX holds integers in 32 bits while its 64-bit mode is off"
        return lossy_int(key, a, target, why, _X64)
    return None


def _dist_name(fn: Any) -> str:
    base = fn
    while hasattr(base, "base_dist"):
        base = base.base_dist
    return type(base).__name__


class Uncondition(Messenger):
    """Turn observed sample sites into latent ones, so predictive sampling draws them."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg.get("is_observed"):
            msg["is_observed"] = False
            msg["value"] = None
            msg["infer"] = dict(msg.get("infer") or {}, _was_observed=True)


def jax_device(device: str | None) -> Any:
    """Map ``"cpu"``, ``"cuda"``, ``"cuda:1"`` to a JAX device (``None`` keeps JAX's default)."""
    if device is None:
        return None
    kind, _, idx = device.partition(":")
    platform = {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu", "tpu": "tpu"}.get(kind)
    if platform is None:
        raise ValueError(f"`device` must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    try:
        devices = jax.devices(platform)
    except RuntimeError as e:
        raise ValueError(
            f"`device={device!r}` but JAX has no {platform} device. Install the GPU extra "
            "(pip install 'ppgen[gpu]') or use device='cpu'."
        ) from e
    i = int(idx or 0)
    if i >= len(devices):
        raise ValueError(
            f"`device={device!r}` but JAX sees only {len(devices)} {platform} device(s)."
        )
    return devices[i]


def _plate(frame: Any, tr: Mapping[str, Any]) -> Plate:
    """A NumPyro plate frame as a :class:`Plate`: the frame holds the subsample size, the
    plate's own trace node its full size."""
    node = tr.get(frame.name) or {}
    args = (node.get("args") or ()) if node.get("type") == "plate" else ()
    size = int(args[0]) if args and args[0] is not None else int(frame.size)
    sub = int(frame.size) if size != int(frame.size) else None
    return Plate(frame.name, size, int(frame.dim), sub)


class NumPyroOps(BackendOps):
    """NumPyro backend: arrays are ``jax.Array`` placed with ``jax.default_device``."""

    name = "numpyro"

    def __init__(self) -> None:
        self.conversions = Conversions()

    def native(self, data: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
        dev = jax_device(device)
        out, lossy = {}, []
        for k, v in data.items():
            if isinstance(v, np.ndarray | np.generic | jax.Array) or (
                isinstance(v, list | tuple) and v and isinstance(v[0], int | float)
            ):
                a = np.asarray(v)
                note = _lossy(k, a)
                if a.dtype.kind == "f" and a.dtype != np.float32 and not jax.config.x64_enabled:
                    with np.errstate(over="ignore"):
                        a = a.astype(np.float32)
                elif note:  # convert explicitly: jnp.asarray would warn, then wrap anyway
                    a = a.astype(jax.dtypes.canonicalize_dtype(a.dtype))
                out[k] = jax.device_put(a, dev) if dev is not None else jnp.asarray(a)
                if note:
                    lossy.append((k, out[k], note))
            elif hasattr(v, "detach"):  # a torch tensor handed to a NumPyro program
                out[k] = jnp.asarray(v.detach().cpu().numpy())
            else:
                out[k] = v
        self.conversions.record(lossy)
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    @contextlib.contextmanager
    def device_context(self, device: str | None) -> Iterator[None]:
        dev = jax_device(device)
        if dev is None:
            yield
            return
        with jax.default_device(dev):
            yield

    def prepare(self, fn: Callable) -> Callable:
        return fn

    def trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int = 0) -> list[Site]:
        """Run ``fn`` once with draws from ``PRNGKey(seed)`` and return its sites.

        Data that :meth:`native` could not convert exactly are refused here, naming the site
        they feed; so is a run that fails on empty data (naming the key) and a ``factor``
        that is NaN whatever the latent draws (:func:`nan_factor_error`).
        """
        lossy = self.conversions.among(kwargs)
        try:
            sites = self._trace(fn, kwargs, seed)
        except PPGenError:
            raise
        except Exception as e:
            err = lossy_error(lossy, None) if lossy else empty_inputs_error(kwargs, e)
            if err is None:
                raise
            raise err from e
        if lossy:
            raise lossy_error(lossy, sites)
        err = nan_factor_error(sites, lambda s: self._trace(fn, kwargs, s), seed)
        if err is not None:
            raise err
        return sites

    def _trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int) -> list[Site]:
        tr = handlers.trace(handlers.seed(fn, jax.random.PRNGKey(seed))).get_trace(**kwargs)
        sites = []
        for name, s in tr.items():
            if s["type"] == "sample":
                fn_ = s["fn"]
                plates = tuple(_plate(f, tr) for f in s["cond_indep_stack"])
                kind = "observed" if s["is_observed"] else "latent"
                sites.append(
                    Site(
                        name=name,
                        kind=kind,
                        shape=tuple(jnp.shape(s["value"])),
                        batch_shape=tuple(fn_.batch_shape),
                        event_shape=tuple(fn_.event_shape),
                        dist=_dist_name(fn_),
                        support=str(fn_.support).replace("numpyro.distributions.constraints.", ""),
                        discrete=bool(getattr(fn_, "is_discrete", False)),
                        enumerate=(s.get("infer") or {}).get("enumerate"),
                        plates=plates,
                        fn=fn_,
                        value=s["value"],
                        infer=dict(s.get("infer") or {}, _obs_id=id(s["value"])),
                        density=density_kind(fn_),
                    )
                )
            elif s["type"] == "param":
                v = s["value"]
                # a network's parameters (stax, flax: a pytree) have no one shape
                shape = tuple(jnp.shape(v)) if isinstance(v, jax.Array | np.ndarray) else ()
                sites.append(Site(name=name, kind="param", shape=shape, value=v))
            elif s["type"] == "deterministic":
                v = s["value"]
                sites.append(Site(name=name, kind="deterministic", shape=tuple(jnp.shape(v))))
        return sites

    def support_violations(self, site: Site) -> np.ndarray:
        ok = site.fn.support(site.value)
        return ~np.asarray(ok).astype(bool)

    def predictive(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        *,
        samples: Mapping[str, np.ndarray] | None = None,
        num_samples: int | None = None,
        guide: Callable | None = None,
        return_sites: list[str] | None = None,
        uncondition: bool = True,
        seed: int = 0,
        max_plate_nesting: int = 0,
    ) -> dict[str, np.ndarray]:
        from numpyro.infer import Predictive

        model = Uncondition(fn) if uncondition else fn
        post = {k: jnp.asarray(v) for k, v in samples.items()} if samples else None
        pred = Predictive(
            model,
            posterior_samples=post,
            num_samples=num_samples,
            guide=guide,
            return_sites=return_sites,
        )(jax.random.PRNGKey(seed), **kwargs)
        return {k: np.asarray(v) for k, v in pred.items()}

    def log_likelihood(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        samples: Mapping[str, np.ndarray],
        shapes: Mapping[str, tuple[int, ...]],
        max_plate_nesting: int = 0,
    ) -> LogLikelihood:
        """Pointwise log-likelihood per sample, ``jax.vmap``-ed: a :class:`LogLikelihood`.

        Masked-out elements (``handlers.mask``) are 0. Enumerated discrete latents
        (``infer={"enumerate": "parallel"}``, ``numpyro.contrib.funsor.config_enumerate``)
        are summed out exactly with ``funsor``'s sum-product (as NumPyro's enumerated
        log-density does, ``scan`` time axes included), per unit of the observed sites they
        link (see ``ppgen.backends._pointwise``): one entry per datum for a mixture, one per
        sequence for an HMM written with ``scan`` (named after the scan's observed site).
        Refuses (:class:`~ppgen.errors.CapabilityError`) what it cannot compute exactly.
        """
        post = {k: jnp.asarray(v) for k, v in samples.items()}
        first = {k: v[0] for k, v in post.items()}
        key = jax.random.PRNGKey(0)
        ref = handlers.trace(handlers.seed(handlers.substitute(fn, data=first), key)).get_trace(
            **kwargs
        )
        depth = max([len(s["fn"].batch_shape) for s in ref.values() if s["type"] == "sample"] + [0])
        plates, enum, seq = {}, [], []
        for n, s in ref.items():
            if s["type"] != "sample":
                continue
            stack = sorted((f for f in s["cond_indep_stack"] if f.dim is not None), key=_dim)
            plates[n] = tuple((f.name, int(f.size)) for f in stack)
            how = (s.get("infer") or {}).get("enumerate")
            if s["is_observed"] or n in first or how is None:
                continue
            (seq if how == "sequential" else enum).append(n)
        if seq:
            raise _pw.sequential_error(seq)
        if any(n in shapes for n in enum):
            raise _pw.enumerated_requested_error([n for n in enum if n in shapes])
        if not enum:
            plan = _pw.Plan(plain=list(shapes), units=_pw.plain_units(shapes, plates))
        else:
            tr = _enum_trace(fn, kwargs, first, depth)
            plan = _pw.make_plan(_enum_factors(tr, set(enum)), shapes, plates)

        def one(sample: dict) -> dict:
            out = {}
            if plan.plain:  # sites no enumerated latent reaches: their own log-density
                model = handlers.seed(handlers.substitute(fn, data=sample), key)
                tr = handlers.trace(model).get_trace(**kwargs)
                for n in plan.plain:
                    lp = tr[n]["fn"].log_prob(tr[n]["value"])
                    shape = shapes[n]
                    lp = jnp.broadcast_to(lp, (1,) * (depth - len(shape)) + shape)
                    out[n] = lp.reshape(shape)
            if plan.groups:
                tr = _enum_trace(fn, kwargs, sample, depth)
                for n, g in plan.groups.items():
                    out[n] = _group_log_lik(tr, g, set(enum)).reshape(plan.units[n].shape)
            return out

        out = jax.jit(jax.vmap(one))(post)  # one XLA program, not one per primitive
        return LogLikelihood({n: np.asarray(out[n]) for n in plan.units}, plan.units)

    def local_log_weights(
        self,
        model: Callable,
        guide: Callable,
        kwargs: Mapping[str, Any],
        *,
        plate: str,
        num_particles: int,
        seed: int = 0,
        max_values: int = 2**24,
    ) -> np.ndarray:
        return _numpyro_weights.local_log_weights(
            model, guide, kwargs, plate, num_particles, seed, max_values
        )

    def autoguide_name(self, guide: Any) -> str | None:
        from numpyro.infer.autoguide import AutoGuide

        for _ in range(32):  # handlers hold what they wrap as `.fn`, functools as __wrapped__
            if isinstance(guide, AutoGuide):
                return type(guide).__name__
            guide = getattr(guide, "fn", None) or getattr(guide, "__wrapped__", None)
            if guide is None:
                break
        return None

    def scale_sites(self, fn: Callable, box: ScaleBox) -> Callable:
        def scaled(*args: Any, **kwargs: Any) -> Any:
            with _ops.ScalePlate(None, box):
                return fn(*args, **kwargs)

        return scaled

    def bind_params(self, model: Callable, params: Mapping[str, Any], param_state: Any) -> Callable:
        return handlers.substitute(model, data=dict(params)) if params else model

    # differentiable operations: implemented in _numpyro_ops, documented on BackendOps

    def log_joint(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        values: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> jax.Array:
        return _ops.log_joint(fn, kwargs, values, params)

    def simulate(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        values: Mapping[str, Any] | None = None,
        *,
        sites: list[str] | None = None,
        seed: int | None = None,
        rng_key: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, jax.Array]:
        return _ops.simulate(
            Uncondition(fn),
            kwargs,
            values,
            sites=sites,
            seed=seed,
            rng_key=rng_key,
            params=params,
        )

    def score(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        site: str,
        params: Mapping[str, Any] | None = None,
        *,
        values: Mapping[str, Any] | None = None,
        seed: int | None = 0,
        rng_key: Any = None,
    ) -> jax.Array:
        return _ops.score(fn, kwargs, site, params, values=values, seed=seed, rng_key=rng_key)

    def module_params(
        self, prefix: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return _ops.module_params(prefix, params)


def _dim(frame: Any) -> int:
    return int(frame.dim)


def _enum_trace(fn: Callable, kwargs: Mapping[str, Any], sample: Mapping, depth: int) -> Any:
    """A run of ``fn`` with ``sample`` substituted and its enumerated sites enumerated
    (``numpyro.contrib.funsor``: each site's ``dim_to_name`` names its dims)."""
    from numpyro.contrib.funsor import enum
    from numpyro.contrib.funsor.enum_messenger import trace as packed_trace
    from numpyro.contrib.funsor.infer_util import plate_to_enum_plate

    model = handlers.seed(handlers.substitute(fn, data=dict(sample)), jax.random.PRNGKey(0))
    with plate_to_enum_plate():
        return packed_trace(enum(model, first_available_dim=-depth - 1)).get_trace(**kwargs)


def _base_name(name: str) -> str:
    from numpyro.contrib.funsor.infer_util import _get_shift, _shift_name

    return _shift_name(name, -_get_shift(name))


def _enum_factors(tr: Any, enum: set[str]) -> dict[str, dict]:
    """Per sample site of an enum trace (``_PREV_`` copies of ``scan`` included): its user site,
    kind, the enumerated variables its log-density touches and its plates."""
    out = {}
    for name, s in tr.items():
        if s["type"] != "sample":
            continue
        base = _base_name(name)
        kind = "enumerated" if base in enum else "observed" if s["is_observed"] else "latent"
        frames = [f for f in s["cond_indep_stack"] if f.dim is not None]
        names = {f.name for f in frames}
        d2n = s["infer"].get("dim_to_name") or {}
        out[name] = {
            "site": base,
            "kind": kind,
            "vars": {v for v in d2n.values() if v not in names and not v.startswith("_time")},
            "plates": {(f.name, int(f.size), int(f.dim)) for f in frames},
        }
    return out


def _group_log_lik(tr: Any, group: dict, enum: set[str]) -> jax.Array:
    """The group's observed sites' log-likelihood with its enumerated latents summed out and
    every plate but the unit's eliminated, as ``numpyro.contrib.funsor``'s enumerated
    log-density (``_enum_log_density``) computes the total; shape: the unit plates' sizes."""
    from collections import OrderedDict, defaultdict

    import funsor
    from numpyro.contrib.funsor.infer_util import _get_shift, compute_markov_factors
    from numpyro.distributions import MaskedDistribution

    log_factors, sum_vars, prod_vars = [], set(), set()
    time_to_factors, time_to_init = defaultdict(list), defaultdict(frozenset)
    history = 0
    for name in group["factors"]:
        s = tr[name]
        fn_ = s["fn"]
        if _base_name(name) in enum:  # a distribution summed over its values is 1: no mask
            while isinstance(fn_, MaskedDistribution):
                fn_ = fn_.base_dist
            sum_vars.add(name)
        if s.get("intermediates"):
            lp = fn_.log_prob(s["value"], s["intermediates"])
        else:
            lp = fn_.log_prob(s["value"])
        d2n = s["infer"]["dim_to_name"]
        if all(d == 1 for d in jnp.shape(lp)) and d2n == OrderedDict():
            lp = lp.squeeze()
        factor = funsor.to_funsor(lp, output=funsor.Real, dim_to_name=d2n)
        prod_vars |= {f.name for f in s["cond_indep_stack"] if f.dim is not None}
        time = None
        for dim, nm in d2n.items():
            if nm.startswith("_time"):
                time = funsor.Variable(nm, funsor.Bint[jnp.shape(lp)[dim]])
                history = max(history, max(_get_shift(v) for v in d2n.values()))
                if history == 0:
                    log_factors.append(factor)
                    prod_vars.add(nm)
                else:
                    time_to_factors[time].append(factor)
                time_to_init[time] |= frozenset(v for v in d2n.values() if v.startswith("_PREV_"))
                break
        if time is None:
            log_factors.append(factor)
    markov = defaultdict(frozenset)
    for time, init in time_to_init.items():
        for var in init:
            d2n = tr[_base_name(var)]["infer"]["dim_to_name"]
            if var in d2n.values():
                markov[time] |= frozenset(d2n.values())
    ops = funsor.ops
    if time_to_factors:
        log_factors += compute_markov_factors(
            time_to_factors,
            time_to_init,
            markov,
            frozenset(sum_vars),
            frozenset(prod_vars),
            history,
            ops.logaddexp,
            ops.add,
        )
    unit = [p[0] for p in group["plates"]]
    with funsor.interpretations.lazy:
        lazy = funsor.sum_product.sum_product(
            ops.logaddexp,
            ops.add,
            log_factors,
            eliminate=frozenset((sum_vars | prod_vars) - set(unit)),
            plates=frozenset(prod_vars),
        )
    result = funsor.optimizer.apply_optimizer(lazy)
    extra = set(result.inputs) - set(unit)
    if extra:
        raise _pw.contraction_error(group["sites"], group["enumerated"], f"left {sorted(extra)}")
    name_to_dim = {p: i - len(unit) for i, p in enumerate(unit)}
    value = funsor.to_data(result, name_to_dim=name_to_dim)
    value = jnp.reshape(value, (1,) * (len(unit) - jnp.ndim(value)) + jnp.shape(value))
    return jnp.broadcast_to(value, tuple(p[1] for p in group["plates"]))


OPS = NumPyroOps()
del numpyro
