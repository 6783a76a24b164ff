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
from ppgen.backends._base import BackendOps, Plate, ScaleBox, Site
from ppgen.backends._data import (
    Conversions,
    empty_inputs_error,
    lossy_error,
    lossy_float,
    lossy_int,
    nan_factor_error,
)
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
                plates = tuple(
                    Plate(f.name, int(f.size), int(f.dim)) for f in s["cond_indep_stack"]
                )
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
                sites.append(Site(name=name, kind="param", shape=tuple(jnp.shape(v)), value=v))
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
    ) -> dict[str, np.ndarray]:
        """Pointwise log-densities of ``shapes``' sites, ``jax.vmap``-ed over the samples.

        Sites marked ``infer={"enumerate": "parallel"}`` are summed out per datum, as on Pyro.
        """
        post = {k: jnp.asarray(v) for k, v in samples.items()}
        names = list(shapes)
        ref = handlers.trace(handlers.seed(fn, jax.random.PRNGKey(0))).get_trace(**kwargs)
        depth = max([len(s["fn"].batch_shape) for s in ref.values() if s["type"] == "sample"] + [0])
        enumerated = [
            n
            for n, s in ref.items()
            if s["type"] == "sample" and (s.get("infer") or {}).get("enumerate") == "parallel"
        ]

        def one(sample: dict) -> dict:
            model = handlers.substitute(fn, data=sample)
            if enumerated:
                from numpyro.contrib.funsor import enum

                model = enum(model, first_available_dim=-depth - 1)
            tr = handlers.trace(handlers.seed(model, jax.random.PRNGKey(0))).get_trace(**kwargs)
            enum_lp = None
            for n in enumerated:
                lp = tr[n]["fn"].log_prob(tr[n]["value"])
                enum_lp = lp if enum_lp is None else enum_lp + lp
            out = {}
            for n in names:
                lp = tr[n]["fn"].log_prob(tr[n]["value"])
                lead = jnp.ndim(lp) - depth
                if lead > 0 and enum_lp is not None:
                    lp = lp + enum_lp
                    lead = jnp.ndim(lp) - depth
                if lead > 0:
                    lp = jax.scipy.special.logsumexp(lp.reshape((-1,) + lp.shape[lead:]), 0)
                out[n] = jnp.broadcast_to(lp, (1,) * (depth - len(shapes[n])) + shapes[n]).reshape(
                    shapes[n]
                )
            return out

        out = jax.jit(jax.vmap(one))(post)  # one XLA program, not one per primitive
        return {n: np.asarray(out[n]) for n in names}

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


OPS = NumPyroOps()
del numpyro
