"""Pyro (torch) backend: tracing, data placement, predictive sampling, pointwise log-likelihood."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger

from ppgen.backends import _pyro_ops as _ops
from ppgen.backends._base import BackendOps, Plate, ScaleBox, Site
from ppgen.backends._pyro_ops import activate_params
from ppgen.distributions import density_kind


class ObsAsFloat(Messenger):
    """Cast integer/bool observations to torch's default float dtype.

    Users hand ppgen integer counts and 0/1 labels as numpy ints; torch's Bernoulli and Poisson
    ``log_prob`` need floating values (Categorical casts back to long itself). Covariates used as
    indices are untouched: only values at observed sample sites are cast.
    """

    def _pyro_sample(self, msg: dict) -> None:
        v = msg["value"]
        if msg["is_observed"] and torch.is_tensor(v) and not v.is_floating_point():
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


def _dist_name(fn: Any) -> str:
    base = fn
    while hasattr(base, "base_dist"):
        base = base.base_dist
    return type(base).__name__


class PyroOps(BackendOps):
    """Pyro backend. Tensors live on ``device``; params in Pyro's global param store."""

    name = "pyro"

    def native(self, data: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
        out = {}
        for k, v in data.items():
            if torch.is_tensor(v):
                out[k] = v.to(device) if device is not None else v
            elif isinstance(v, np.ndarray | np.generic) or (
                isinstance(v, list | tuple) and v and isinstance(v[0], int | float)
            ):
                a = np.asarray(v)
                if a.dtype.kind == "f":
                    t = torch.as_tensor(a, dtype=torch.get_default_dtype())
                elif a.dtype.kind in "iu":
                    t = torch.as_tensor(a.astype(np.int64))
                elif a.dtype.kind == "b":
                    t = torch.as_tensor(a)
                else:
                    out[k] = v
                    continue
                out[k] = t.to(device) if device is not None else t
            else:
                out[k] = v
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        if torch.is_tensor(x):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    @contextlib.contextmanager
    def device_context(self, device: str | None) -> Iterator[None]:
        if device is None:
            yield
            return
        with torch.device(device):
            yield

    def seed_everything(self, seed: int) -> None:
        pyro.set_rng_seed(seed % 2**32)  # derived seeds (seed + k) wrap like NumPy's range

    def prepare(self, fn: Callable) -> Callable:
        return ObsAsFloat()(fn)

    def trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int = 0) -> list[Site]:
        # a scratch param store: stale params of an earlier fit (another shape) must not leak
        # into this trace, and this trace's params must not leak out
        with pyro.get_param_store().scope():
            tr = poutine.trace(fn).get_trace(**kwargs)
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
                    Plate(f.name, int(f.full_size or f.size), int(f.dim))
                    for f in s["cond_indep_stack"]
                    if f.vectorized
                )
                batch, event = tuple(fn_.batch_shape), tuple(fn_.event_shape)
                if kind == "deterministic":  # Delta(value, event_dim=value.ndim): all batch
                    batch, event = tuple(s["value"].shape), ()
                sites.append(
                    Site(
                        name=name,
                        kind=kind,
                        shape=tuple(s["value"].shape),
                        batch_shape=batch,
                        event_shape=event,
                        dist=_dist_name(fn_),
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

    def support_violations(self, site: Site) -> np.ndarray:
        value = site.value
        with torch.no_grad():
            ok = site.fn.support.check(value)
        return ~self.to_numpy(ok).astype(bool)

    def _samples_native(self, samples: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        dev = torch.get_default_device()
        return {
            k: torch.as_tensor(np.asarray(v), device=dev).to(
                torch.get_default_dtype() if np.asarray(v).dtype.kind == "f" else None
            )
            for k, v in samples.items()
        }

    @staticmethod
    def _reference(fn: Callable, kwargs: Mapping[str, Any]) -> tuple[Any, int]:
        """One plain trace: each site's shapes, and how many batch dims any site uses."""
        ref = poutine.trace(fn).get_trace(**kwargs)
        depth = 0
        for site in ref.nodes.values():
            if site["type"] == "sample" and hasattr(site["fn"], "batch_shape"):
                depth = max(depth, len(site["fn"].batch_shape))
                depth = max(depth, *(-f.dim for f in site["cond_indep_stack"] if f.vectorized), 0)
        return ref, depth

    def _vectorized(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        samples: Mapping[str, torch.Tensor],
        n: int,
        guide: Callable | None = None,
        enum: bool = False,
    ) -> tuple[Any, Any, int]:
        """Trace ``fn`` once for ``n`` sample vectors, with an outer plate left of every dim."""
        ref, depth = self._reference(fn, kwargs)
        if guide is not None:
            _, gdepth = self._reference(guide, kwargs)
            depth = max(depth, gdepth)
        if n == 1:  # one sample: run the program as written, no extra batch dim
            vec = poutine.messenger.Messenger()
            cond = {k: v[0] for k, v in samples.items()}
        else:
            vec = pyro.plate("_ppgen_samples", n, dim=-depth - 1)
            cond = {}
            for k, v in samples.items():
                site = ref.nodes.get(k)
                ev = len(site["fn"].event_shape) if site is not None and "fn" in site else 0
                nb = v.dim() - 1 - ev
                cond[k] = v.reshape((n,) + (1,) * max(0, depth - nb) + tuple(v.shape[1:]))
        if guide is not None:
            gtr = poutine.trace(vec(guide)).get_trace(**kwargs)
            for k, site in gtr.nodes.items():
                if site["type"] == "sample" and not site["is_observed"] and k in ref.nodes:
                    cond[k] = site["value"]
        model = vec(poutine.condition(fn, cond))
        if enum:
            model = poutine.enum(model, first_available_dim=-depth - 2)
        return poutine.trace(model).get_trace(**kwargs), ref, depth

    @staticmethod
    def _unvectorize(value: torch.Tensor, site: dict, n: int, depth: int) -> torch.Tensor:
        shape = tuple(site["value"].shape)
        nb = len(site["fn"].batch_shape) if "fn" in site else len(shape)
        nb = min(nb, len(shape))
        full = (n,) + (1,) * (depth - nb) + shape
        return torch.broadcast_to(value, full).reshape((n,) + shape)

    @staticmethod
    def _fallback(run: Callable, post: Mapping[str, torch.Tensor], n: int) -> dict:
        """Run ``run(samples, n)`` vectorised; if the program cannot broadcast over an extra
        sample dim (e.g. it indexes ``locs[z]`` without ``Vindex``), loop over samples."""
        try:
            return run(post, n)
        except (RuntimeError, ValueError, IndexError, NotImplementedError):
            parts = [run({k: v[i : i + 1] for k, v in post.items()}, 1) for i in range(n)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

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
        model = Uncondition()(fn) if uncondition else fn
        post = self._samples_native(samples) if samples else {}
        n = next(iter(post.values())).shape[0] if post else int(num_samples or 1)
        rng = torch.get_rng_state()
        pyro.set_rng_seed(seed % 2**32)
        try:
            if post:
                return self._fallback(
                    lambda p, m: self._predict_vec(model, kwargs, p, m, guide, return_sites),
                    post,
                    n,
                )
            try:
                return self._predict_vec(model, kwargs, post, n, guide, return_sites)
            except (RuntimeError, ValueError, IndexError, NotImplementedError):
                parts = [
                    self._predict_vec(model, kwargs, post, 1, guide, return_sites) for _ in range(n)
                ]
                return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        finally:
            torch.set_rng_state(rng)

    def _predict_vec(
        self,
        model: Callable,
        kwargs: Mapping[str, Any],
        post: Mapping[str, torch.Tensor],
        n: int,
        guide: Callable | None,
        return_sites: list[str] | None,
    ) -> dict[str, np.ndarray]:
        with torch.no_grad():
            tr, ref, depth = self._vectorized(model, kwargs, post, n, guide=guide)
            out = {}
            for name, site in tr.nodes.items():
                if site["type"] != "sample" or name not in ref.nodes or name.startswith("_"):
                    continue
                if return_sites is not None and name not in return_sites:
                    continue
                if return_sites is None and name in post:
                    continue
                if not hasattr(site["fn"], "batch_shape"):  # plate subsample sites
                    continue
                v = self._unvectorize(site["value"], ref.nodes[name], n, depth)
                out[name] = self.to_numpy(v)
        return out

    def log_likelihood(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        samples: Mapping[str, np.ndarray],
        shapes: Mapping[str, tuple[int, ...]],
        max_plate_nesting: int = 0,
    ) -> dict[str, np.ndarray]:
        """Pointwise log-densities, vectorised over samples with an outer plate.

        Discrete sites marked for enumeration are summed out per datum (each datum's own
        discrete latent, as in a mixture): ``log sum_k p(z=k) p(x | z=k)``.
        """
        post = self._samples_native(samples)
        n = next(iter(post.values())).shape[0] if post else 1
        return self._fallback(lambda p, m: self._loglik_vec(fn, kwargs, p, m, shapes), post, n)

    def _loglik_vec(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        post: Mapping[str, torch.Tensor],
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
    ) -> dict[str, np.ndarray]:
        with torch.no_grad():
            tr, ref, depth = self._vectorized(fn, kwargs, post, n, enum=True)
            enum_lp = None
            for site in tr.nodes.values():
                if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None:
                    lp = site["fn"].log_prob(site["value"])
                    enum_lp = lp if enum_lp is None else enum_lp + lp
            out = {}
            for name, shape in shapes.items():
                site = tr.nodes[name]
                lp = site["fn"].log_prob(site["value"])
                lead = lp.dim() - depth - 1
                if lead > 0 and enum_lp is not None:  # depends on enumerated values
                    lp = lp + enum_lp
                    lead = lp.dim() - depth - 1
                if lead > 0:
                    lp = torch.logsumexp(lp.reshape((-1,) + lp.shape[lead:]), 0)
                full = (n,) + (1,) * (depth - len(shape)) + tuple(shape)
                out[name] = self.to_numpy(torch.broadcast_to(lp, full).reshape((n,) + tuple(shape)))
        return out

    def scale_sites(self, fn: Callable, box: ScaleBox) -> Callable:
        return _ops.ScalePlate(box)(fn)

    def bind_params(self, model: Callable, params: Mapping[str, Any], param_state: Any) -> Callable:
        if param_state is not None:
            activate_params(param_state)
        return model

    # differentiable operations: implemented in _pyro_ops, documented on BackendOps

    def log_joint(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        values: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        return _ops.log_joint(ObsAsFloat()(fn), kwargs, values, params)

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
    ) -> dict[str, torch.Tensor]:
        return _ops.simulate(
            Uncondition()(fn),
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
    ) -> torch.Tensor:
        fn = ObsAsFloat()(fn)
        return _ops.score(fn, kwargs, site, params, values=values, seed=seed, rng_key=rng_key)

    def module_params(
        self, prefix: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return _ops.module_params(prefix, params)


OPS = PyroOps()
