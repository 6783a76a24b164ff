"""Program: a Pyro or NumPyro callable (or zoo model) plus what one trace tells about its sites."""

from __future__ import annotations

import functools
import inspect
import numbers
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ppgen import _validate
from ppgen.backends import BACKENDS, BackendOps, Plate, Site, get_backend, use_backend
from ppgen.errors import DataError, EstimatorError, ProgramError

__all__ = ["Program", "ProgramInfo", "check_seed"]

#: the largest seed: NumPy's (and so Pyro's ``set_rng_seed``) range is ``[0, 2**32 - 1]``
SEED_MAX = 2**32 - 1


def check_seed(seed: object) -> int:
    """``seed`` as an int in NumPy's range ``[0, 2**32 - 1]``, else an :class:`EstimatorError`.

    The same range on both backends, so a seed that works on one works on the other.

    Example:
        >>> check_seed(7)
        7
        >>> check_seed(-1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ppgen.errors.EstimatorError: `seed` must be an int in [0, 2**32 - 1] ...
    """
    if (
        isinstance(seed, bool)
        or not isinstance(seed, numbers.Integral)
        or not 0 <= seed <= SEED_MAX
    ):
        raise EstimatorError(
            f"`seed` must be an int in [0, 2**32 - 1] (NumPy's seed range); got {seed!r}. Pass a "
            "non-negative int, e.g. seed=0, or `seed % 2**32` for a larger one."
        )
    return int(seed)


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

    @property
    def kind(self) -> str:
        """``"explicit"`` (every observed site has a density), ``"implicit"`` (an observed site
        is ``Implicit``: no density), ``"energy"`` (an observed site is ``Unnormalized``) or
        ``"unobserved"`` (no observed site for this data: the target is the joint density of
        the latent sites, e.g. a prior-only program such as Neal's funnel).

        Estimators declare the kinds they fit (``Estimator.kinds``); an unobserved program is
        fitted by NUTS/HMC (its joint density) and ``Prior`` (forward draws)."""
        if not self.observed:
            return "unobserved"
        for kind in ("implicit", "energy"):
            if self.sites_of_kind(kind):
                return kind
        return "explicit"

    def sites_of_kind(self, kind: str) -> list[str]:
        """The observed sites whose distribution is of ``kind`` (see :attr:`kind`)."""
        return [n for n in self.observed if self.sites[n].density == kind]


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
        _validate.check_keys(self.signature, data)

    @staticmethod
    def check_values(data: Mapping[str, Any]) -> dict[str, Any]:
        """Convert array-likes to numpy and reject NaN/inf and non-numeric arrays."""
        return _validate.check_values(data)

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
        seed = check_seed(seed)
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
        _validate.check_subsampling(list(info.sites.values()))
        _validate.check_observed(info, self.ops)
        _validate.check_kinds(info)

    def _check_guide(self, info: ProgramInfo, guide_sites: list[Site]) -> None:
        _validate.check_subsampling(guide_sites, "guide")
        _validate.check_guide(info, guide_sites)
