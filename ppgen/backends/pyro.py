"""Pyro (torch) backend: tracing, data placement, predictive sampling, pointwise log-likelihood."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pyro
import pyro.poutine as poutine
import torch

from ppgen.backends import _pointwise as _pw
from ppgen.backends import _pyro_ops as _ops
from ppgen.backends import _pyro_weights
from ppgen.backends._base import BackendOps, ScaleBox, Site
from ppgen.backends._checks import first_line
from ppgen.backends._data import (
    Conversions,
    empty_inputs_error,
    lossy_error,
    lossy_float,
    lossy_int,
)
from ppgen.backends._pointwise import LogLikelihood
from ppgen.backends._pyro_ops import activate_params, seeded
from ppgen.backends._pyro_trace import (
    ObsAsFloat,
    Uncondition,
    fault_message,
    find_fault,
    sites_of,
)
from ppgen.backends._pyro_vmap import _masked, vmap_log_likelihood, vmap_predictive
from ppgen.errors import PPGenError, ProgramError

__all__ = ["PyroOps", "OPS", "ObsAsFloat", "Uncondition", "activate_params"]

_FLOAT64 = ", or compute in float64: call `torch.set_default_dtype(torch.float64)` before fitting"


class PyroOps(BackendOps):
    """Pyro backend. Tensors live on ``device``; params in Pyro's global param store."""

    name = "pyro"

    def __init__(self) -> None:
        self.conversions = Conversions()

    def native(self, data: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
        out, lossy = {}, []
        dtype = torch.get_default_dtype()
        for k, v in data.items():
            if torch.is_tensor(v):
                out[k] = v.to(device) if device is not None else v
            elif isinstance(v, np.ndarray | np.generic) or (
                isinstance(v, list | tuple) and v and isinstance(v[0], int | float)
            ):
                a = np.asarray(v)
                if a.dtype.kind == "f":
                    note = lossy_float(
                        k, a, str(dtype).split(".")[-1], torch.finfo(dtype).max, _FLOAT64
                    )
                    t = torch.as_tensor(a, dtype=dtype)
                elif a.dtype.kind in "iu":
                    why = "torch holds integer data as int64"
                    note = lossy_int(k, a, np.int64, why, "Rescale the counts.")
                    t = torch.as_tensor(a.astype(np.int64))
                elif a.dtype.kind == "b":
                    note, t = None, torch.as_tensor(a)
                else:
                    out[k] = v
                    continue
                out[k] = t.to(device) if device is not None else t
                if note:
                    lossy.append((k, out[k], note))
            else:
                out[k] = v
        self.conversions.record(lossy)
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        if torch.is_tensor(x):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    @contextlib.contextmanager
    def device_context(self, device: str | None) -> Iterator[None]:
        # torch.device(...) as a context is a function mode that every torch call goes
        # through in Python (~3 us each): entered only when it changes the default device
        if device is None or torch.device(device) == torch.get_default_device():
            yield
            return
        with torch.device(device):
            yield

    def seed_everything(self, seed: int) -> None:
        pyro.set_rng_seed(seed % 2**32)  # derived seeds (seed + k) wrap like NumPy's range

    def prepare(self, fn: Callable) -> Callable:
        return ObsAsFloat()(fn)

    def trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int = 0) -> list[Site]:
        """Run ``fn`` once (draws seeded with ``seed``; the global RNG is left as it was).

        Data that :meth:`native` could not convert exactly are refused here, naming the site
        they feed; a run that fails on empty data or on an invalid distribution parameter is
        refused naming the data key or the site (:func:`find_fault`).
        """
        lossy = self.conversions.among(kwargs)
        # a scratch param store: stale params of an earlier fit (another shape) must not leak
        # into this trace, and this trace's params must not leak out
        try:
            with pyro.get_param_store().scope(), seeded(seed):
                tr = poutine.trace(fn).get_trace(**kwargs)
        except PPGenError:
            raise
        except Exception as e:
            err = lossy_error(lossy, None) if lossy else empty_inputs_error(kwargs, e)
            if err is None and isinstance(e, ValueError):
                with pyro.get_param_store().scope(), seeded(seed):
                    fault = find_fault(fn, kwargs)
                if fault is not None:
                    msg = fault_message(
                        fault,
                        "when the program runs on the data (latent "
                        f"sites drawn from their priors, seed {seed})",
                    )
                    err = ProgramError(f"{msg} (Pyro said: {first_line(e)})")
            if err is None:
                raise
            raise err from e
        sites = sites_of(tr)
        if lossy:
            raise lossy_error(lossy, sites)
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
    def _fallback(
        run: Callable,
        post: Mapping[str, torch.Tensor],
        n: int,
        vmapped: Callable | None = None,
    ) -> dict:
        """Run ``run(samples, n)`` vectorised (an outer plate over the samples). A program that
        cannot broadcast over an extra sample dim (``X @ w``; ``locs[z]`` without ``Vindex``)
        runs under ``torch.func.vmap`` (``vmapped(samples)``, see ``_pyro_vmap``), which sees
        each sample with the program's own shapes; one that vmap cannot run either (Python
        control flow on tensor values, ``.item()``) is looped over sample by sample."""
        errors = (RuntimeError, ValueError, IndexError, NotImplementedError)
        try:
            return run(post, n)
        except PPGenError:  # a refusal (CapabilityError is a NotImplementedError too)
            raise
        except errors:
            pass
        if vmapped is not None and n > 1:
            try:
                return vmapped(post)
            except PPGenError:
                raise
            except errors:
                pass
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
                    None if guide else lambda p: vmap_predictive(model, kwargs, p, return_sites),
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
    ) -> LogLikelihood:
        """Pointwise log-likelihood per sample: a :class:`LogLikelihood` (see ``_pointwise``).

        Plain programs: vectorised over the samples with an outer plate (``torch.func.vmap``,
        then a per-draw loop, for programs that do not broadcast); masked-out elements are 0.
        Enumerated discrete latents (``infer={"enumerate": "parallel"}``) are summed out
        exactly by tensor variable elimination (``pyro.ops.contract``), per unit of the
        observed sites they link: one entry per datum for a mixture, one per sequence (the
        forward-algorithm marginal, as a variable named after the first observed site) for an
        HMM inside ``plate("sequences")``. Refuses (:class:`~ppgen.errors.CapabilityError`)
        what it cannot compute exactly, before computing anything. A density estimated with
        random numbers (FFJORD's Hutchinson trace) draws them seeded with 0, leaving the global
        RNG as it was: the same fit and data give the same numbers.
        """
        with seeded(0):
            return self._log_likelihood(fn, kwargs, samples, shapes)

    def _log_likelihood(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        samples: Mapping[str, np.ndarray],
        shapes: Mapping[str, tuple[int, ...]],
    ) -> LogLikelihood:
        post = self._samples_native(samples)
        n = next(iter(post.values())).shape[0] if post else 1
        first = {k: v[:1] for k, v in post.items()}
        plan = self._loglik_plan(fn, kwargs, first, shapes)
        if not plan.groups:
            values = self._fallback(
                lambda p, m: self._loglik_vec(fn, kwargs, p, m, shapes),
                post,
                n,
                lambda p: vmap_log_likelihood(fn, kwargs, p, shapes),
            )
        else:  # vmap cannot enumerate: the plate path, else draw by draw
            values = self._fallback(
                lambda p, m: self._loglik_enum(fn, kwargs, p, m, plan), post, n, None
            )
        return LogLikelihood({k: values[k] for k in plan.units}, plan.units)

    def _loglik_plan(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        first: Mapping[str, torch.Tensor],
        shapes: Mapping[str, tuple[int, ...]],
    ) -> _pw.Plan:
        """What each log-likelihood variable is, from one run with the first draw."""
        with torch.no_grad():
            cond = {k: v[0] for k, v in first.items()}
            tr = poutine.trace(poutine.condition(fn, cond)).get_trace(**kwargs)
            plates, enum, seq = {}, [], []
            for name, site in tr.nodes.items():
                if site["type"] != "sample" or not hasattr(site["fn"], "batch_shape"):
                    continue
                stack = [f for f in site["cond_indep_stack"] if f.vectorized]
                stack.sort(key=lambda f: f.dim)
                plates[name] = tuple((f.name, int(f.full_size or f.size)) for f in stack)
                how = site["infer"].get("enumerate")
                if site["is_observed"] or name in cond or how is None:
                    continue
                (seq if how == "sequential" else enum).append(name)
            if seq:
                raise _pw.sequential_error(seq)
            asked = [n for n in enum if n in shapes]
            if asked:
                raise _pw.enumerated_requested_error(asked)
            if not enum:
                return _pw.Plan(plain=list(shapes), units=_pw.plain_units(shapes, plates))
            tr, _, depth = self._vectorized(fn, kwargs, first, 1, enum=True)
            factors = {
                name: {k: f[k] for k in ("site", "kind", "vars", "plates")}
                for name, f in self._enum_factors(tr, set(first), depth).items()
            }
        return _pw.make_plan(factors, shapes, plates)

    @staticmethod
    def _enum_factors(tr: Any, latents: set[str], depth: int) -> dict[str, dict]:
        """Each sample site's log-factor of an enum-traced run: its kind, its enumeration
        symbols (``vars``), its plates and, packed for ``pyro.ops.contract``, ``log_prob``
        (masked; enumerated sites unmasked, as ``TraceEnum_ELBO`` does)."""
        from pyro.ops.packed import pack

        tr.symbolize_dims()
        out = {}
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or not hasattr(site["fn"], "batch_shape"):
                continue
            if name.startswith("_ppgen"):
                continue
            enumerated = site["infer"].get("_enumerate_dim") is not None
            observed = site["is_observed"] and name not in latents
            kind = "enumerated" if enumerated else "observed" if observed else "latent"
            lp = site["fn"].log_prob(site["value"])
            if kind != "enumerated":
                lp = _masked(lp, site["mask"])
            d2s = site["infer"].get("_dim_to_symbol", {})
            lead = lp.dim() - depth - 1  # dims left of the sample plate: enumeration dims
            syms = set()
            for i in range(max(lead, 0)):
                if lp.shape[i] > 1:
                    dim = i - lp.dim()
                    if dim not in d2s:
                        raise _pw.contraction_error([name], [], f"an undeclared batch dim {dim}")
                    syms.add(d2s[dim])
            out[name] = {
                "site": name,
                "kind": kind,
                "vars": syms,
                "plates": {
                    (f.name, int(f.full_size or f.size), int(f.dim))
                    for f in site["cond_indep_stack"]
                    if f.vectorized and f.name != "_ppgen_samples"
                },
                "ordinal": frozenset(
                    tr.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized
                ),
                "lp": lp,
                "pack": lambda v, d2s=d2s: pack(v, d2s),
            }
        return out

    def _loglik_enum(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        post: Mapping[str, torch.Tensor],
        n: int,
        plan: _pw.Plan,
    ) -> dict[str, np.ndarray]:
        from collections import OrderedDict

        from pyro.ops.contract import contract_to_tensor
        from pyro.ops.packed import unpack

        with torch.no_grad():
            tr, _, depth = self._vectorized(fn, kwargs, post, n, enum=True)
            factors = self._enum_factors(tr, set(post), depth)
            out = {}
            for name in plan.plain:
                f = factors.get(name)
                site = tr.nodes[name]
                lp = f["lp"] if f is not None else site["fn"].log_prob(site["value"])
                out[name] = self._to_unit(lp, n, depth, plan.units[name].shape, None)
            for name, g in plan.groups.items():
                tree: OrderedDict = OrderedDict()
                sum_dims: set[str] = set()
                for k in g["factors"]:
                    f = factors[k]
                    try:
                        term = f["pack"](f["lp"])
                    except ValueError as e:
                        raise _pw.contraction_error(g["sites"], g["enumerated"], e) from e
                    tree.setdefault(f["ordinal"], []).append(term)
                    sum_dims |= f["vars"]
                target = {tr.plate_to_symbol[p[0]] for p in g["plates"]}
                if n > 1:
                    target.add(tr.plate_to_symbol["_ppgen_samples"])
                try:
                    res = contract_to_tensor(tree, sum_dims, target_ordinal=frozenset(target))
                except (ValueError, AssertionError, NotImplementedError) as e:
                    raise _pw.contraction_error(g["sites"], g["enumerated"], e) from e
                lp = unpack(res, tr.symbol_to_dim)
                out[name] = self._to_unit(lp, n, depth, plan.units[name].shape, g["plates"])
        return out

    def _to_unit(
        self,
        lp: torch.Tensor,
        n: int,
        depth: int,
        shape: tuple[int, ...],
        plates: tuple | None,
    ) -> np.ndarray:
        """``lp`` (sample plate at dim ``-depth - 1``) as ``(n, *shape)``: ``plates`` ``(name,
        size, dim)`` index the entries; ``None``: ``shape`` is right-aligned batch shape."""
        if plates is None:
            full = (n,) + (1,) * (depth - len(shape)) + tuple(shape)
        else:
            sizes = [n] + [1] * depth
            for _, size, dim in plates:
                sizes[depth + 1 + dim] = size
            full = tuple(sizes)
        lp = lp.reshape((1,) * max(0, depth + 1 - lp.dim()) + tuple(lp.shape))
        return self.to_numpy(torch.broadcast_to(lp, full).reshape((n,) + tuple(shape)))

    def _loglik_vec(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        post: Mapping[str, torch.Tensor],
        n: int,
        shapes: Mapping[str, tuple[int, ...]],
    ) -> dict[str, np.ndarray]:
        with torch.no_grad():
            tr, ref, depth = self._vectorized(fn, kwargs, post, n)
            out = {}
            for name, shape in shapes.items():
                site = tr.nodes[name]
                lp = _masked(site["fn"].log_prob(site["value"]), site["mask"])
                out[name] = self._to_unit(lp, n, depth, tuple(shape), None)
        return out

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
        return _pyro_weights.local_log_weights(
            model, guide, kwargs, plate, num_particles, seed, max_values
        )

    def autoguide_name(self, guide: Any) -> str | None:
        from pyro.infer.autoguide import AutoGuide

        guide = inspect.unwrap(guide)
        return type(guide).__name__ if isinstance(guide, AutoGuide) else None

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

    def simulator(self, fn: Callable, sites: list[str]) -> Callable[..., dict[str, torch.Tensor]]:
        return _ops.simulator(fn, sites)

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
