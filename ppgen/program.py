"""Program: a Pyro or NumPyro callable (or zoo model) plus what one trace tells about its sites."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppgen.backends import BACKENDS, BackendOps, Plate, Site, get_backend, use_backend
from ppgen.errors import DataError, ProgramError

__all__ = ["Program", "ProgramInfo"]


@dataclass
class ProgramInfo:
    """Sites of a program traced on some data.

    ``obs_keys`` maps each data key that feeds an observed site to the site's name.
    """

    sites: dict[str, Site]
    obs_keys: dict[str, str] = field(default_factory=dict)

    @property
    def observed(self) -> list[str]:
        return [n for n, s in self.sites.items() if s.kind == "observed"]

    @property
    def latent(self) -> list[str]:
        return [n for n, s in self.sites.items() if s.kind == "latent"]

    @property
    def params(self) -> list[str]:
        return [n for n, s in self.sites.items() if s.kind == "param"]

    @property
    def discrete_latent(self) -> list[str]:
        return [n for n in self.latent if self.sites[n].discrete]

    @property
    def plates(self) -> dict[str, Plate]:
        out: dict[str, Plate] = {}
        for s in self.sites.values():
            for p in s.plates:
                out.setdefault(p.name, p)
        return out

    @property
    def max_plate_nesting(self) -> int:
        dims = [-p.dim for s in self.sites.values() for p in s.plates]
        return max(dims, default=0)


def _module_backend(obj: Any) -> str | None:
    """Which PPL a global of the user's function refers to, if any."""
    try:
        from pyroapi.dispatch import GenericModule

        if isinstance(obj, GenericModule):
            return "neutral"
    except ImportError:  # pragma: no cover - pyro-api is a core dependency
        pass
    mod = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", "")
    if not isinstance(mod, str):
        return None
    root = mod.split(".")[0]
    if root == "numpyro":
        return "numpyro"
    if root == "pyro":
        return "pyro"
    if root == "pyroapi":
        return "neutral"
    return None


def detect_backend(fn: Callable) -> str | None:
    """Guess a callable's backend from the modules its code refers to.

    Returns ``"pyro"``, ``"numpyro"``, ``"neutral"`` (written against ``pyroapi``) or ``None``.
    """
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    found = set()
    globs = getattr(fn, "__globals__", {})
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    for name in code.co_names + code.co_freevars:
        if name in cells:
            try:
                obj = cells[name].cell_contents
            except ValueError:
                continue
        elif name in globs:
            obj = globs[name]
        else:
            continue
        b = _module_backend(obj)
        if b:
            found.add(b)
    if "neutral" in found:
        return "neutral"
    if len(found) == 1:
        return found.pop()
    return None


class Program:
    """A generative model written as a Pyro or NumPyro program, ready for any estimator.

    ``model`` is a callable taking data as keyword arguments (observed sites use ``obs=``),
    or a zoo model object with a ``.model(**data)`` method (and optionally ``.guide``).
    The backend is detected from the modules the code uses; a program written against
    ``pyroapi`` is *backend-neutral* and runs on either (``backend=`` picks; default Pyro).

    Arguments:
        model: the program.
        guide: an optional guide program (same signature as ``model``).
        backend: ``"pyro"`` or ``"numpyro"``; required only when detection is ambiguous.

    Example:
        >>> import pyro, pyro.distributions as dist, numpy as np
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        ...     with pyro.plate("data", 3):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> prog = Program(model)
        >>> prog.backend
        'pyro'
        >>> info = prog.inspect({"x": np.array([0.1, -0.3, 0.5])})
        >>> info.observed, info.latent
        (['x'], ['mu'])
    """

    def __init__(
        self,
        model: Callable | Any,
        guide: Callable | None = None,
        *,
        backend: str | None = None,
    ) -> None:
        if isinstance(model, Program):
            guide = guide if guide is not None else model.user_guide
            backend = backend or model.backend
            model = model.obj
        self.obj = model
        if callable(getattr(model, "model", None)) and not inspect.isfunction(model):
            fn = model.model
            guide = guide if guide is not None else getattr(model, "guide", None)
            declared = getattr(model, "backend", None)
        elif callable(model):
            fn = model
            declared = None
        else:
            raise ProgramError(
                f"`model` must be a callable Pyro/NumPyro program or a zoo model with a "
                f"`.model(**data)` method; got {type(model).__name__}."
            )
        self.raw_model = fn
        self.user_guide = guide
        detected = declared or detect_backend(fn)
        self.neutral = detected == "neutral"
        if backend is not None and backend not in BACKENDS:
            raise ProgramError(f"`backend` must be one of {BACKENDS}; got {backend!r}.")
        if backend is None:
            backend = "pyro" if detected in (None, "neutral") else detected
        elif detected in ("pyro", "numpyro") and backend != detected:
            raise ProgramError(
                f"`backend={backend!r}` but the program is written in {detected}. Only programs "
                "written against `pyroapi` (backend-neutral) can run on either backend."
            )
        self.backend: str = backend
        self.ops: BackendOps = get_backend(backend)
        self.model = self._wrap(fn)
        if guide is not None and hasattr(guide, "for_backend"):  # e.g. Amortized()
            if hasattr(guide, "bind") and getattr(guide, "_model", 1) is None:
                guide.bind(self.model)
            guide = guide.for_backend(backend)  # its JAX twin on NumPyro
        self.guide = self._wrap(guide) if callable(guide) else None
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError):  # pragma: no cover - builtins
            self.signature = None

    def with_backend(self, backend: str) -> Program:
        """The same program on another backend (backend-neutral programs only)."""
        return Program(self.obj, self.user_guide, backend=backend)

    @property
    def module(self) -> Any:
        """The zoo model object when it is a ``torch.nn.Module`` (moves with ``device=``)."""
        try:
            import torch

            return self.obj if isinstance(self.obj, torch.nn.Module) else None
        except ImportError:  # pragma: no cover
            return None

    def _wrap(self, fn: Callable) -> Callable:
        backend = self.backend
        ops = self.ops
        inner = ops.prepare(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with use_backend(backend):
                return inner(*args, **kwargs)

        return run

    # ------------------------------------------------------------------ data checks
    def check_keys(self, data: Mapping[str, Any]) -> None:
        """Unknown or missing keyword arguments, named, before anything runs."""
        if not isinstance(data, Mapping):
            raise DataError(
                f"`data` must be a dict mapping the program's argument names to arrays; "
                f"got {type(data).__name__}."
            )
        for k in data:
            if not isinstance(k, str):
                raise DataError(f"`data` keys must be strings (argument names); got {k!r}.")
        if self.signature is None:
            return
        params = self.signature.parameters
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        names = [
            n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not accepts_any:
            unknown = [k for k in data if k not in names]
            if unknown:
                raise DataError(
                    f"`data` has key(s) {unknown} that the program does not take; its arguments "
                    f"are {names}. Rename the key(s) to match the model's keyword arguments."
                )
        missing = [
            n for n in names if params[n].default is inspect.Parameter.empty and n not in data
        ]
        if missing:
            raise DataError(
                f"`data` is missing required argument(s) {missing} of the program. "
                f"Pass them in `data`, e.g. data={{{missing[0]!r}: ...}}."
            )

    @staticmethod
    def check_values(data: Mapping[str, Any]) -> dict[str, Any]:
        """Convert array-likes to numpy and reject NaN/inf and non-numeric arrays."""
        out: dict[str, Any] = {}
        for k, v in data.items():
            if v is None or isinstance(v, bool | int | float | str):
                out[k] = v
                continue
            if hasattr(v, "detach"):
                a = v.detach().cpu().numpy()
            elif hasattr(v, "__array__") or isinstance(v, list | tuple):
                try:
                    a = np.asarray(v)
                except ValueError as e:
                    raise DataError(f"`data[{k!r}]` is not a rectangular array: {e}") from e
            else:
                out[k] = v
                continue
            if a.dtype.kind not in "biuf":
                raise DataError(
                    f"`data[{k!r}]` must be numeric (bool, int or float); got dtype {a.dtype}. "
                    "Encode categories as integer ids."
                )
            if a.dtype.kind == "f":
                bad = ~np.isfinite(a)
                if bad.any():
                    first = tuple(int(i) for i in np.argwhere(bad)[0])
                    what = "NaN" if np.isnan(a[first]) else "inf"
                    raise DataError(
                        f"`data[{k!r}]` has {int(bad.sum())} non-finite value(s) ({what} first at "
                        f"index {first}). Drop or impute them before fitting, or mask the "
                        "likelihood with `poutine.mask` / `numpyro.handlers.mask`."
                    )
            out[k] = a
        return out

    # ------------------------------------------------------------------ tracing
    def trace(self, native: Mapping[str, Any], seed: int = 0, guide: bool = False) -> list[Site]:
        fn = self.guide if guide else self.model
        which = "guide" if guide else "model"
        try:
            return self.ops.trace(fn, native, seed=seed)
        except (DataError, ProgramError):
            raise
        except Exception as e:  # a user program can raise anything while tracing
            msg = str(e)
            if "Multiple sample sites named" in msg or "must have unique names" in msg:
                raise ProgramError(
                    f"The {which} has two sample sites with one name: {msg.strip()} Give every "
                    "`sample` site a unique name (e.g. f'z_{i}' in loops)."
                ) from e
            raise ProgramError(
                f"Running the {which} on the data failed: {type(e).__name__}: {msg.strip()}"
            ) from e

    def inspect(self, data: Mapping[str, Any], seed: int = 0) -> ProgramInfo:
        """Validate ``data`` and trace the program once; see :meth:`validate`."""
        return self.validate(data, seed=seed)[1]

    def validate(
        self, data: Mapping[str, Any], device: str | None = None, seed: int = 0
    ) -> tuple[dict[str, Any], ProgramInfo]:
        """Check ``data`` against the program's sites before any work starts.

        Returns the data converted to the backend's arrays and the :class:`ProgramInfo`.
        Raises :class:`~ppgen.errors.DataError` naming the key/site for missing or unknown
        keys, NaN/inf, shape mismatches with plates, and values outside a distribution's support;
        :class:`~ppgen.errors.ProgramError` for malformed programs.
        """
        self.check_keys(data)
        clean = self.check_values(data)
        native = self.ops.native(clean, device)
        with self.ops.device_context(device):
            sites = self.trace(native, seed)
            info = self._info(sites, native)
            self._check_observed(info)
            if self.guide is not None:
                self._check_guide(info, self.trace(native, seed, guide=True))
        return native, info

    def _info(self, sites: list[Site], native: Mapping[str, Any]) -> ProgramInfo:
        by_name: dict[str, Site] = {}
        for s in sites:
            if s.name in by_name and s.kind != "param":
                raise ProgramError(
                    f"Site `{s.name}` appears twice in the program. Give every site a unique name."
                )
            by_name[s.name] = s
        ids = {id(v): k for k, v in native.items() if v is not None}
        obs_keys = {}
        for s in by_name.values():
            if s.kind == "observed":
                key = ids.get(s.infer.get("_obs_id")) or self._key_by_value(s, native)
                if key is None and s.name in native:
                    key = s.name
                if key is not None:
                    obs_keys[key] = s.name
        return ProgramInfo(sites=by_name, obs_keys=obs_keys)

    def _key_by_value(self, site: Site, native: Mapping[str, Any]) -> str | None:
        """The data key whose array equals an observed value (Pyro casts ints to float)."""
        value = self.ops.to_numpy(site.value)
        for k, v in native.items():
            if getattr(v, "shape", None) == value.shape:
                if np.array_equal(self.ops.to_numpy(v).astype(value.dtype), value):
                    return k
        return None

    def _check_observed(self, info: ProgramInfo) -> None:
        for name in info.observed:
            s = info.sites[name]
            full = s.batch_shape + s.event_shape
            shape = s.shape
            if len(shape) < len(s.event_shape) or shape[len(shape) - len(s.event_shape) :] != (
                s.event_shape
            ):
                raise DataError(
                    f"Observed site `{name}`: the data's trailing shape must equal the "
                    f"distribution's event shape {s.event_shape}; got data of shape {shape}. "
                    "Reshape the data or use `.to_event(...)` on the distribution."
                )
            for p in s.plates:
                axis = len(shape) - s.event_dim + p.dim
                if axis < 0 or shape[axis] != p.size:
                    got = shape[axis] if axis >= 0 else "nothing"
                    raise DataError(
                        f"Observed site `{name}` sits in plate `{p.name}` of size {p.size} (dim "
                        f"{p.dim}), but its data has {got} along that dim (data shape {shape}). "
                        f"Make the plate size match the data, e.g. plate({p.name!r}, len(x))."
                    )
            try:
                np.broadcast_shapes(shape, full)
            except ValueError:
                raise DataError(
                    f"Observed site `{name}`: data of shape {shape} does not broadcast with the "
                    f"distribution's shape {full}."
                ) from None
            bad = self.ops.support_violations(s)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
                val = np.atleast_1d(self.ops.to_numpy(s.value))
                try:
                    shown = val[idx[: val.ndim]] if val.ndim else val
                except IndexError:
                    shown = "?"
                raise DataError(
                    f"Observed site `{name}` ({s.dist}) needs values in support `{s.support}`; "
                    f"got {int(bad.sum())} value(s) outside it (e.g. {shown!s} at index {idx}). "
                    "Fix the data or choose a likelihood whose support covers it."
                )

    def _check_guide(self, info: ProgramInfo, guide_sites: list[Site]) -> None:
        gs = {s.name: s for s in guide_sites if s.kind != "param"}
        for name in info.latent:
            s = info.sites[name]
            if name not in gs:
                if s.enumerate in ("parallel", "sequential"):
                    continue
                raise ProgramError(
                    f"Latent site `{name}` of the model is missing from the guide. Add "
                    f"`sample({name!r}, ...)` to the guide, or mark it for enumeration with "
                    "infer={'enumerate': 'parallel'} and use elbo='enum'."
                )
            g = gs[name]
            if g.shape != s.shape:
                raise ProgramError(
                    f"Site `{name}` has shape {s.shape} in the model but {g.shape} in the guide. "
                    "Make the guide's distribution (and its plates) match the model's."
                )
        extra = [n for n, g in gs.items() if g.kind == "latent" and n not in info.sites]
        if extra:
            raise ProgramError(
                f"The guide samples site(s) {extra} that the model does not have. Remove them "
                "from the guide or give them the model's names."
            )
        for n in gs:
            if n in info.sites and info.sites[n].kind == "observed":
                raise ProgramError(
                    f"The guide samples `{n}`, which is an observed site of the model. Guides "
                    "sample latent sites only."
                )
