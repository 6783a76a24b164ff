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

from ppgen.backends._base import BackendOps, Plate, Site


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


class _RecordObsIds(Messenger):
    """Remember ``id`` of each observed value before any cast, to map data keys to sites."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, int] = {}

    def _pyro_sample(self, msg: dict) -> None:
        if msg["is_observed"]:
            self.ids[msg["name"]] = id(msg["value"])


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
        pyro.set_rng_seed(seed)

    def prepare(self, fn: Callable) -> Callable:
        return ObsAsFloat()(fn)

    def trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int = 0) -> list[Site]:
        rec = _RecordObsIds()
        tr = poutine.trace(ObsAsFloat()(rec(fn))).get_trace(**kwargs)
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
                sites.append(
                    Site(
                        name=name,
                        kind=kind,
                        shape=tuple(s["value"].shape),
                        batch_shape=tuple(fn_.batch_shape),
                        event_shape=tuple(fn_.event_shape),
                        dist=_dist_name(fn_),
                        support=str(fn_.support),
                        discrete=bool(fn_.support.is_discrete),
                        enumerate=s["infer"].get("enumerate"),
                        plates=plates,
                        fn=fn_,
                        value=s["value"],
                        infer=dict(s["infer"], _obs_id=rec.ids.get(name)),
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
        from pyro.infer import Predictive

        model = poutine.uncondition(fn) if uncondition else fn
        post = self._samples_native(samples) if samples else None
        rng = torch.get_rng_state()
        pyro.set_rng_seed(seed)
        try:
            with torch.no_grad():
                try:
                    pred = Predictive(
                        model,
                        posterior_samples=post,
                        num_samples=num_samples,
                        guide=guide,
                        return_sites=return_sites,
                        parallel=True,
                    )(**kwargs)
                except (RuntimeError, ValueError, IndexError, NotImplementedError):
                    pyro.set_rng_seed(seed)
                    pred = Predictive(
                        model,
                        posterior_samples=post,
                        num_samples=num_samples,
                        guide=guide,
                        return_sites=return_sites,
                        parallel=False,
                    )(**kwargs)
            # parallel Predictive pads sites with size-1 plate dims; restore the traced shapes
            ref = poutine.trace(model).get_trace(**kwargs).nodes
        finally:
            torch.set_rng_state(rng)
        out = {}
        for k, v in pred.items():
            v = self.to_numpy(v)
            if k in ref and torch.is_tensor(ref[k]["value"]):
                shape = (v.shape[0],) + tuple(ref[k]["value"].shape)
                if v.size == int(np.prod(shape)):
                    v = v.reshape(shape)
            out[k] = v
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
        from pyro.infer.enum import config_enumerate  # noqa: F401 - documents the convention

        post = self._samples_native(samples)
        s = next(iter(post.values())).shape[0] if post else 1
        mpn = max_plate_nesting
        with torch.no_grad():
            resh = {}
            for k, v in post.items():
                resh[k] = v.reshape((s,) + (1,) * max(0, mpn - len(v.shape[1:])) + v.shape[1:])
            vec = pyro.plate("_ppgen_samples", s, dim=-mpn - 1)
            model = poutine.enum(vec(poutine.condition(fn, resh)), first_available_dim=-mpn - 2)
            tr = poutine.trace(model).get_trace(**kwargs)
            enum_lp = None
            for site in tr.nodes.values():
                if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None:
                    lp = site["fn"].log_prob(site["value"])
                    enum_lp = lp if enum_lp is None else enum_lp + lp
            out = {}
            for name, shape in shapes.items():
                site = tr.nodes[name]
                lp = site["fn"].log_prob(site["value"])
                if enum_lp is not None and not (site["infer"].get("_enumerate_dim") is not None):
                    lp = lp + enum_lp
                lead = lp.dim() - mpn - 1
                if lead > 0:
                    lp = torch.logsumexp(lp.reshape((-1,) + lp.shape[lead:]), 0)
                lp = lp.expand((s,) + lp.shape[1:]).reshape((s,) + (-1,))
                n = int(np.prod(shape)) if shape else 1
                if lp.shape[1] != n:
                    lp = lp.expand(s, n) if lp.shape[1] == 1 else lp
                out[name] = self.to_numpy(lp.reshape((s,) + tuple(shape)))
        return out


OPS = PyroOps()
