"""Saving and loading runs: a directory written atomically, loaded without executing code."""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.errors import CheckpointError
from ppgen.io import atomic_dir, read_json
from ppgen.result import Fit

__all__ = ["save_fit", "load", "check_run_target", "is_run", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ppgen", "torch", "pyro-ppl", "numpyro", "jax", "arviz", "numpy", "nflows"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _save_arrays(path: Path, arrays: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    clean = {k: np.asarray(v).copy(order="C") for k, v in arrays.items()}
    save_file(clean, str(path))


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.exists():
        return {}
    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(
            f"Refusing to load `{path}`: not a valid safetensors file ({type(e).__name__}). "
            "ppgen never unpickles files from a saved run."
        ) from e


def _check_aux_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise CheckpointError(
            f"Auxiliary state name {name!r} ({where}) must be a safe file name: letters, digits, "
            "`_` and `-` only (it becomes `aux_<name>.safetensors`). Rename it."
        )
    return name


def _auxiliary_manifest(fit: Fit) -> dict[str, Any]:
    """Names of the auxiliary array sets and every auxiliary settings dict, checked."""
    for name in (*fit.auxiliary, *fit.auxiliary_settings):
        _check_aux_name(name, "in fit.auxiliary / fit.auxiliary_settings")
    try:
        json.dumps(fit.auxiliary_settings)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"`fit.auxiliary_settings` must be JSON-able (str, numbers, bools, lists, dicts): {e}. "
            "Store arrays in `fit.auxiliary` instead."
        ) from e
    return {"arrays": sorted(fit.auxiliary), "settings": fit.auxiliary_settings}


def is_run(path: str | Path) -> bool:
    """Whether directory ``path`` holds a run saved by ppgen (its manifest says so)."""
    try:
        manifest = read_json(Path(path) / "manifest.json")
    except (CheckpointError, OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == "ppgen-run"


def check_run_target(path: str | Path) -> Path:
    """Refuse, before anything is written or fitted, a run path whose contents would be lost.

    A run may be saved to a new path, an empty directory, or a previous ppgen run (which it
    replaces). An existing file, or a directory holding anything but a ppgen run, is refused
    with a :class:`~ppgen.errors.CheckpointError` naming the path.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "thesis.tex").write_text("x")
        1
        >>> try:
        ...     check_run_target(d)
        ... except CheckpointError as e:
        ...     print(str(e).split(";")[0].endswith("is not a ppgen run"))
        True
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise CheckpointError(
            f"`{path}` is an existing file, not a run directory; ppgen will not replace it. "
            "Save the run under another path (a new or empty directory, or a previous run)."
        )
    if path.is_dir() and any(path.iterdir()) and not is_run(path):
        entries = sorted(p.name for p in path.iterdir())
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise CheckpointError(
            f"`{path}` is a directory that is not a ppgen run; saving there would replace its "
            f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({shown}). Save the run "
            "under a new or empty directory, or under a previous run to replace it."
        )
    return path


def save_fit(fit: Fit, path: str | Path) -> None:
    """Write ``fit`` to directory ``path``: manifest, params, draws, data, InferenceData.

    The directory is assembled beside ``path`` and renamed into place, so an interrupted save
    never leaves a half-written run; an existing run at ``path`` is replaced only when the new
    one is complete.

    Files: ``manifest.json`` (ppgen/backend/library versions, estimator and settings, seed),
    ``params.safetensors`` (fitted params), ``state.safetensors`` (the backend's raw
    parameter state, for exact predictions), ``draws.safetensors`` and ``data.safetensors``,
    ``history.json``, ``buffers.safetensors`` (buffers of the program's torch module, e.g.
    batch-norm running statistics, which live outside Pyro's param store) and
    ``inference_data.nc`` (the ``to_arviz()`` result as netCDF: the groups the fit can build),
    and one ``aux_<name>.safetensors`` per entry of ``fit.auxiliary`` (estimator state beyond
    the model, e.g. a discriminator; ``fit.auxiliary_settings`` go into the manifest). The
    manifest records the program's kind (explicit, implicit or energy).
    """
    from ppgen.io import write_json

    path = check_run_target(path)
    est = fit.estimator
    scalars = {
        k: v for k, v in fit.data.items() if v is None or isinstance(v, bool | int | float | str)
    }
    arrays = {k: v for k, v in fit.data.items() if isinstance(v, np.ndarray)}
    manifest = {
        "format": "ppgen-run",
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "versions": _versions(),
        "backend": fit.backend,
        "estimator": {
            "name": est.name,
            "class": type(est).__name__,
            "settings": est.settings(),
        },
        "seed": fit.seed,
        "device": fit.device,
        "program": getattr(fit.program.raw_model, "__qualname__", type(fit.program.obj).__name__),
        "data_scalars": scalars,
        "diagnostics": {
            k: v for k, v in fit.diagnostics.items() if isinstance(v, int | float | str | bool)
        },
        "draws": {k: list(v.shape) for k, v in fit.draws.items()},
        "program_kind": fit.info.kind,
        "auxiliary": _auxiliary_manifest(fit),
    }
    idata = fit.to_arviz()

    def fill(tmp: Path) -> None:
        write_json(tmp / "manifest.json", manifest)
        write_json(tmp / "history.json", fit.history)
        _save_arrays(tmp / "params.safetensors", fit.params)
        _save_arrays(tmp / "draws.safetensors", fit.draws)
        _save_arrays(tmp / "sample_stats.safetensors", fit.sample_stats)
        _save_arrays(tmp / "data.safetensors", arrays)
        state = fit.param_state
        if state is not None:
            raw = state["params"] if "params" in state and "constraints" in state else state
            _save_arrays(
                tmp / "state.safetensors",
                {k: fit.program.ops.to_numpy(v) for k, v in raw.items()},
            )
        buffers = _module_buffers(fit.program)
        if buffers:
            _save_arrays(tmp / "buffers.safetensors", buffers)
        for aux_name, aux_arrays in fit.auxiliary.items():
            _save_arrays(tmp / f"aux_{aux_name}.safetensors", aux_arrays)
        idata.to_netcdf(str(tmp / "inference_data.nc"))

    atomic_dir(path, fill)


def _module_buffers(program: Any) -> dict[str, np.ndarray]:
    """Buffers of the program's torch module (batch-norm running statistics...): state that
    lives outside Pyro's param store but changes the model's outputs."""
    module = program.module
    if module is None or not hasattr(module, "named_buffers"):
        return {}
    return {k: v.detach().cpu().numpy() for k, v in module.named_buffers() if v is not None}


def _restore_buffers(program: Any, buffers: dict[str, np.ndarray]) -> None:
    import torch

    module = program.module
    own = dict(module.named_buffers()) if module is not None else {}
    unknown = sorted(set(buffers) - set(own))
    if unknown:
        raise CheckpointError(
            f"The saved run has module buffers {unknown} that the program's module lacks; "
            "load it with the same model class and constructor arguments."
        )
    with torch.no_grad():
        for k, v in buffers.items():
            own[k].copy_(torch.as_tensor(v, dtype=own[k].dtype))


def load(path: str | Path, program: Any) -> Fit:
    """Load a run saved by :meth:`Fit.save` for ``program`` (the same model code).

    Nothing in the directory is executed: arrays come from safetensors, settings from JSON,
    and the program is the one you pass. Returns a :class:`~ppgen.result.Fit` whose
    ``predict``/``log_likelihood``/``to_arviz`` give the same results as the saved fit.
    Auxiliary state comes back in ``fit.auxiliary``/``fit.auxiliary_settings``; an estimator
    with a ``restore_auxiliary(fit, name, arrays, settings)`` method gets each entry too.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen, tempfile
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("obs", 5):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> fit = ppgen.fit(model, {"x": np.zeros(5)}, ppgen.inference.SVI(steps=10))
        >>> d = tempfile.mkdtemp()
        >>> fit.save(d + "/run")
        >>> again = ppgen.load(d + "/run", model)
        >>> bool(np.array_equal(again.draws["mu"], fit.draws["mu"]))
        True
    """
    from ppgen.inference._base import REGISTRY, FitContext
    from ppgen.program import Program

    path = Path(path)
    manifest = read_json(path / "manifest.json")
    if manifest.get("format") != "ppgen-run":
        raise CheckpointError(f"`{path}` is not a saved ppgen run (manifest has no ppgen format).")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"`{path}` was saved by a newer ppgen (format {manifest['format_version']}); upgrade."
        )
    name = manifest["estimator"]["name"]
    cls = REGISTRY.get(name)
    if cls is None:
        raise CheckpointError(f"`{path}` used estimator {name!r}, which is not registered.")
    settings = manifest["estimator"]["settings"]
    sig = inspect.signature(cls.__init__).parameters
    kwargs = {
        k: v
        for k, v in settings.items()
        if k in sig and (k != "guide" or v in (None,) or isinstance(v, str) and v.islower())
    }
    if "steps" in kwargs and kwargs.get("epochs") is not None:
        kwargs.pop("steps")
    try:
        est = cls(**kwargs)
    except Exception as e:
        raise CheckpointError(
            f"`{path}` was fitted with {cls.__name__} (`method={name!r}`), but "
            f"{cls.__name__}(**{kwargs!r}) fails with the saved settings: "
            f"{type(e).__name__}: {str(e).rstrip('.')}. Fix `estimator.settings` in "
            f"{path / 'manifest.json'} "
            "(or load with the ppgen version that saved it), or refit and save again."
        ) from e
    backend = manifest["backend"]
    prog = Program(program, backend=backend)
    data = dict(_load_arrays(path / "data.safetensors"))
    data.update(manifest.get("data_scalars", {}))
    device = manifest.get("device")
    native, info = prog.validate(data, device, manifest.get("seed", 0))
    saved_kind = manifest.get("program_kind")
    if saved_kind is not None and info.kind != saved_kind:
        raise CheckpointError(
            f"`{path}` holds a fit of an {saved_kind} program, but the program passed to load is "
            f"{info.kind} (observed sites: "
            + ", ".join(f"`{n}` ({info.sites[n].dist})" for n in info.observed)
            + "). Load it with the program it was fitted with."
        )
    aux = manifest.get("auxiliary") or {}
    aux_settings = {
        _check_aux_name(k, "in the manifest"): dict(v)
        for k, v in (aux.get("settings") or {}).items()
    }
    aux_arrays = {}
    for k in aux.get("arrays") or []:
        file = path / f"aux_{_check_aux_name(k, 'in the manifest')}.safetensors"
        if not file.exists():
            raise CheckpointError(
                f"`{path}` lists auxiliary state {k!r} in its manifest, but `{file.name}` is "
                "missing; the run is incomplete. Save the fit again."
            )
        aux_arrays[k] = _load_arrays(file)
    history = read_json(path / "history.json")
    fit = Fit(
        program=prog,
        estimator=est,
        info=info,
        data=prog.check_values(data),
        draws=_load_arrays(path / "draws.safetensors"),
        params=_load_arrays(path / "params.safetensors"),
        history=history,
        diagnostics=manifest.get("diagnostics", {}),
        sample_stats=_load_arrays(path / "sample_stats.safetensors"),
        seed=manifest.get("seed", 0),
        device=device,
        auxiliary=aux_arrays,
        auxiliary_settings=aux_settings,
    )
    state = _load_arrays(path / "state.safetensors")
    if state and hasattr(est, "restore"):
        ctx = FitContext(
            program=prog, info=info, data=native, data_np=fit.data, seed=fit.seed, device=device
        )
        with prog.ops.device_context(device):
            est.restore(ctx, fit, state)
    buffers = _load_arrays(path / "buffers.safetensors")
    if buffers:
        _restore_buffers(prog, buffers)
    if hasattr(est, "restore_auxiliary"):
        for k in sorted(set(aux_arrays) | set(aux_settings)):
            est.restore_auxiliary(fit, k, aux_arrays.get(k, {}), aux_settings.get(k, {}))
    return fit


Fit.writer = save_fit  # Fit.save writes through this module (result.py does not import it)
