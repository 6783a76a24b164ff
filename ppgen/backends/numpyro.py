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
from ppgen.distributions import density_kind


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

    def native(self, data: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
        dev = jax_device(device)
        out = {}
        for k, v in data.items():
            if isinstance(v, np.ndarray | np.generic | jax.Array) or (
                isinstance(v, list | tuple) and v and isinstance(v[0], int | float)
            ):
                a = np.asarray(v)
                if a.dtype.kind == "f" and a.dtype != np.float32 and not jax.config.x64_enabled:
                    a = a.astype(np.float32)
                out[k] = jax.device_put(a, dev) if dev is not None else jnp.asarray(a)
            elif hasattr(v, "detach"):  # a torch tensor handed to a NumPyro program
                out[k] = jnp.asarray(v.detach().cpu().numpy())
            else:
                out[k] = v
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

        out = jax.vmap(one)(post)
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
