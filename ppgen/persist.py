"""Saving and loading runs: a directory written atomically, loaded without executing code."""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppgen._manifest import (
    FORMAT_VERSION,
    build_estimator,
    check_manifest,
    check_program,
    describe_guide,
    guide_label,
    guide_record,
    guide_remedy,
    passed_guide,
    program_sites,
    read_arrays,
    read_checked,
    record_file,
    resolve_device,
    write_arrays,
)
from ppgen.errors import CheckpointError, PPGenError
from ppgen.io import atomic_dir, read_json
from ppgen.result import Fit

__all__ = ["save_fit", "load", "verify_run", "check_run_target", "is_run", "FORMAT_VERSION"]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("ppgen", "torch", "pyro-ppl", "numpyro", "jax", "arviz", "numpy", "nflows"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


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
    ``history.json``, ``local_draws.safetensors`` (the first draws of local latents a fit
    keeps apart, :attr:`~ppgen.result.Fit.local_draws`; only when there are some),
    ``buffers.safetensors`` (buffers of the program's torch module, e.g.
    batch-norm running statistics, which live outside Pyro's param store) and
    ``inference_data.nc`` (the ``to_arviz()`` result as netCDF: the groups the fit can build),
    and one ``aux_<name>.safetensors`` per entry of ``fit.auxiliary`` (estimator state beyond
    the model, e.g. a discriminator; ``fit.auxiliary_settings`` go into the manifest). The
    manifest records the program's kind (explicit, implicit or energy), and under ``guide``
    which guide a guide-based fit (SVI, MLE) used: ``{"kind": "builtin", "class":
    "AutoNormal"}``, the model object's own (``"program"``), or the user's own (``"user"``,
    with its class or function name only, never its code: load asks for the guide itself).

    Run format 2 (``FORMAT_VERSION``; format 1 before it): the manifest's ``files`` section
    records, for every other file, its sha256 and size in bytes and, for safetensors files,
    each array's shape and dtype; :func:`load` verifies them, so a deleted, truncated, edited
    or swapped file is refused by name. The array and netCDF files are byte-for-byte those
    format 1 wrote. Format-1 runs still load (unverified, with a ``UserWarning``); loading one and
    saving it again upgrades it. An older ppgen refuses format 2 and says to upgrade.
    """
    from ppgen.io import write_json

    path = check_run_target(path)
    est = fit.estimator
    scalars = {
        k: v for k, v in fit.data.items() if v is None or isinstance(v, bool | int | float | str)
    }
    arrays = {k: v for k, v in fit.data.items() if isinstance(v, np.ndarray)}
    static = {
        k: describe_static(v) for k, v in fit.data.items() if k not in scalars and k not in arrays
    }
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
        "data_static": static,
        "diagnostics": {
            k: v
            for k, v in fit.diagnostics.items()
            if isinstance(v, int | float | str | bool) or k == "log_partition"
        },
        "draws": {k: list(v.shape) for k, v in fit.draws.items()},
        "program_kind": fit.info.kind,
        "sites": program_sites(fit.info),
        "auxiliary": _auxiliary_manifest(fit),
        "guide": guide_record(fit),
    }
    idata = fit.to_arviz()

    def fill(tmp: Path) -> None:
        files: dict[str, Any] = {}

        def arrays_file(name: str, values: dict[str, Any]) -> None:
            files[name] = write_arrays(tmp / name, values)

        write_json(tmp / "history.json", fit.history)
        files["history.json"] = record_file(tmp / "history.json")
        arrays_file("params.safetensors", fit.params)
        arrays_file("draws.safetensors", fit.draws)
        if fit.local_draws:
            arrays_file("local_draws.safetensors", fit.local_draws)
        arrays_file("sample_stats.safetensors", fit.sample_stats)
        arrays_file("data.safetensors", arrays)
        state = fit.param_state
        if state is not None:
            raw = state["params"] if "params" in state and "constraints" in state else state
            arrays_file(
                "state.safetensors", {k: fit.program.ops.to_numpy(v) for k, v in raw.items()}
            )
        buffers = _module_buffers(fit.program)
        if buffers:
            arrays_file("buffers.safetensors", buffers)
        for aux_name, aux_arrays in fit.auxiliary.items():
            arrays_file(f"aux_{aux_name}.safetensors", aux_arrays)
        idata.to_netcdf(str(tmp / "inference_data.nc"))
        files["inference_data.nc"] = record_file(tmp / "inference_data.nc")
        write_json(tmp / "manifest.json", {**manifest, "files": files})  # last: lists the rest

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


def _load_guide(path: Path, manifest: Mapping[str, Any], program: Any, guide: Any) -> Any:
    """The user's guide to fit into the loaded run, checked against the manifest's record of
    the guide the run was fitted with (before any work): a run fitted with the user's own guide
    needs it (``guide=``, or ``Program(model, guide)``), and ``guide=`` is refused for a run
    whose guide load rebuilds itself. Runs saved before guides were recorded take ``guide=``
    as given."""
    if "guide" not in manifest:
        return guide
    record = manifest["guide"]
    est = manifest["estimator"]
    fitted_by = f"{est.get('class', est['name'])} (`method={est['name']!r}`)"
    if record is not None and (
        not isinstance(record, dict)
        or record.get("kind") not in ("builtin", "program", "user")
        or not all(isinstance(record.get(k, ""), str) for k in ("class", "function", "passed"))
    ):
        raise CheckpointError(
            f"`{path / 'manifest.json'}` has `guide` {record!r} (expected null or a record "
            'such as {"kind": "builtin", "class": "AutoNormal"}): the manifest is damaged. '
            "Restore the run from a backup, or fit and save it again."
        )
    if record is not None and record["kind"] == "user":
        from ppgen.program import Program

        supplied = guide
        if supplied is None and isinstance(program, Program):
            supplied = passed_guide(program)
        if supplied is None:
            raise CheckpointError(
                f"`{path}` was fitted with {guide_label(record)}, which a saved run does not "
                "hold (only its name: loading never executes code from a run). Pass it: "
                f"{guide_remedy(record)}, with the same code and constructor arguments as when "
                "it was fitted."
            )
        return supplied
    if guide is None:
        return None
    if record is None:
        what = f"was fitted by {fitted_by}, which has no guide for load to restore"
    elif record["kind"] == "program":
        name = record.get("function") or record.get("class") or "guide"
        what = (
            f"was fitted with the program's own guide (`{name}` of the model object), which "
            "load takes from the program you pass"
        )
    elif record.get("class"):
        what = (
            f"was fitted with the built-in guide `{record['class']}` of {fitted_by}, which "
            "load rebuilds from the manifest"
        )
    else:
        what = f"was fitted by {fitted_by} with its own internal guide, which load rebuilds"
    raise CheckpointError(
        f"`{path}` {what}; `guide=` is only for runs fitted with your own guide "
        "(`ppgen.fit(..., guide=...)`). Load it without `guide=`: "
        "`ppgen.load(path, model)`."
    )


def describe_static(value: Any) -> str:
    """What a program argument that is neither an array nor a number is, in words (the manifest
    records this, never the value: a saved run holds no code and no pickles).

    Example:
        >>> import argparse
        >>> describe_static(len), describe_static(argparse.Namespace(k=2))
        ('function `len`', 'Namespace object')
    """
    if callable(value) and hasattr(value, "__qualname__"):
        return f"function `{value.__qualname__}`"
    return f"{type(value).__name__} object"


def _static_arguments(
    path: Path, manifest: Mapping[str, Any], static: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The program arguments a run could not hold (functions, objects), given again to load,
    checked against the manifest's record of them before any work."""
    recorded = dict(manifest.get("data_static") or {})
    static = dict(static or {})
    if not isinstance(static, dict) or not all(isinstance(k, str) for k in static):
        raise CheckpointError("`static` must be a dict mapping argument names to values.")
    unknown = sorted(k for k in static if k not in recorded)
    if unknown:
        saved = "; it recorded none" if not recorded else f" (it recorded {sorted(recorded)})"
        raise CheckpointError(
            f"`static` names argument(s) {unknown} that `{path}` did not record as unsaved "
            f"program arguments{saved}: arrays and numbers come back from the run itself. Drop "
            "them from `static`."
        )
    missing = [k for k in recorded if k not in static]
    if missing:
        shown = ", ".join(f"`{k}` ({recorded[k]})" for k in missing)
        example = ", ".join(f"{k!r}: ..." for k in missing)
        raise CheckpointError(
            f"`{path}` was fitted with program argument(s) {shown} that are neither arrays nor "
            "numbers; a saved run holds arrays, numbers and settings, never code or pickled "
            f"objects, so load needs them again: `ppgen.load(path, program, static={{{example}}})` "
            "with the values the fit was given."
        )
    return static


def load(
    path: str | Path, program: Any, guide: Any = None, *, static: Mapping[str, Any] | None = None
) -> Fit:
    """Load a run saved by :meth:`Fit.save` for ``program`` (the same model code).

    Nothing in the directory is executed: arrays come from safetensors, settings from JSON,
    and the program is the one you pass. Returns a :class:`~ppgen.result.Fit` whose
    ``predict``/``log_likelihood``/``to_arviz`` give the same results as the saved fit.

    ``guide``: the guide of a run fitted with your own guide (``ppgen.fit(model, data,
    SVI(...), guide=AutoDiagonalNormal(model))``, a guide function, or ``SVI(guide=...)``):
    the same guide (code and constructor arguments; a fresh object is fine). The manifest
    records only its class or function name, so such a run is refused without it, naming the
    guide and this remedy; ``guide=`` for a run whose guide load rebuilds itself (a built-in
    autoguide, the model object's own guide, or an estimator without a guide) is refused too.
    The saved parameters are put into the guide (a guide whose parameters differ from the
    saved ones is refused, naming them), and the loaded fit's draws, ``predict``,
    ``sample_posterior`` and ``guide`` are those of the saved fit.
    ``static``: the program's arguments that are neither arrays nor numbers (a function such
    as ``conditioned_model(model, sigma, y)``'s ``model``, an ``argparse.Namespace`` of
    settings), which a run records by name and kind only: pass the values the fit was given,
    ``static={"model": model}``; a missing or unknown name is refused, naming them.
    Auxiliary state comes back in ``fit.auxiliary``/``fit.auxiliary_settings``; an estimator
    with a ``restore_auxiliary(fit, name, arrays, settings)`` method gets each entry too.

    Every file read is checked against the manifest (:func:`verify_run`). A
    :class:`~ppgen.errors.CheckpointError` names what is wrong and what to do: a damaged run
    (a missing, truncated, edited or swapped file; invalid JSON; a missing or unknown
    ``format_version``, ``backend`` or ``estimator``), a run saved by a newer ppgen (upgrade),
    or a program that differs from the fitted one (the sites whose names or shapes differ).
    A run fitted on a CUDA device loads onto the CPU, with a ``UserWarning``, on a machine
    without one.

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
    from ppgen.inference._base import FitContext
    from ppgen.program import Program

    path = Path(path)
    manifest = read_json(path / "manifest.json")
    files = check_manifest(path, manifest)
    user_guide = _load_guide(path, manifest, program, guide)
    record = manifest.get("guide") or {}
    to_estimator = record.get("kind") == "user" and record.get("passed") == "estimator"
    est = build_estimator(path, manifest, guide=user_guide if to_estimator else None)
    backend = manifest["backend"]
    device = resolve_device(path, manifest, backend)
    prog = Program(program, None if to_estimator else user_guide, backend=backend)
    data = dict(read_arrays(path, "data.safetensors", files))
    data.update(manifest.get("data_scalars", {}))
    data.update(_static_arguments(path, manifest, static))
    try:
        native, info = prog.validate(data, device, manifest.get("seed", 0))
    except CheckpointError:
        raise
    except PPGenError as e:
        raise CheckpointError(
            f"The program passed to load does not accept the data saved with `{path}`: "
            f"{type(e).__name__}: {str(e).rstrip('.')}. Load the run with the program it was "
            "fitted with."
        ) from e
    saved_kind = manifest.get("program_kind")
    if saved_kind is not None and info.kind != saved_kind:
        raise CheckpointError(
            f"`{path}` holds a fit of an {saved_kind} program, but the program passed to load is "
            f"{info.kind} (observed sites: "
            + ", ".join(f"`{n}` ({info.sites[n].dist})" for n in info.observed)
            + "). Load it with the program it was fitted with."
        )
    params = read_arrays(path, "params.safetensors", files)
    check_program(path, manifest, info, params)
    aux = manifest.get("auxiliary") or {}
    aux_settings = {
        _check_aux_name(k, "in the manifest"): dict(v)
        for k, v in (aux.get("settings") or {}).items()
    }
    aux_arrays = {}
    for k in aux.get("arrays") or []:
        name = f"aux_{_check_aux_name(k, 'in the manifest')}.safetensors"
        if not (path / name).exists():
            raise CheckpointError(
                f"`{path}` lists auxiliary state {k!r} in its manifest, but `{name}` is "
                "missing; the run is incomplete. Save the fit again."
            )
        aux_arrays[k] = read_arrays(path, name, files)
    if files is not None:
        read_checked(path, "history.json", files)
    fit = Fit(
        program=prog,
        estimator=est,
        info=info,
        data=prog.check_values(data),
        draws=read_arrays(path, "draws.safetensors", files),
        local_draws=read_arrays(path, "local_draws.safetensors", files),
        params=params,
        history=read_json(path / "history.json"),
        diagnostics=manifest.get("diagnostics", {}),
        sample_stats=read_arrays(path, "sample_stats.safetensors", files),
        seed=manifest.get("seed", 0),
        device=device,
        auxiliary=aux_arrays,
        auxiliary_settings=aux_settings,
    )
    state = read_arrays(path, "state.safetensors", files)
    if state and hasattr(est, "restore"):
        ctx = FitContext(
            program=prog, info=info, data=native, data_np=fit.data, seed=fit.seed, device=device
        )
        if record.get("kind") == "user":  # what a parameter mismatch says to do
            passed = describe_guide(user_guide)
            ctx.extra["restore_hint"] = (
                f"The run was fitted with {guide_label(record)}; the guide passed to load is "
                f"{guide_label(passed).replace('your own guide', 'a guide')}. Pass the guide the "
                f"run was fitted with (the same code and constructor arguments): "
                f"{guide_remedy(record)}."
            )
        try:
            with prog.ops.device_context(device):
                est.restore(ctx, fit, state)
        except (RuntimeError, ValueError, KeyError, IndexError) as e:
            if isinstance(e, PPGenError):
                raise
            raise CheckpointError(
                f"Restoring the saved parameters of `{path}` into the program passed to load "
                f"failed ({type(e).__name__}: {e}): the program differs from the one that was "
                "fitted. Load the run with the program (model code and constructor arguments) "
                "it was fitted with."
            ) from e
    buffers = read_arrays(path, "buffers.safetensors", files)
    if buffers:
        _restore_buffers(prog, buffers)
    if hasattr(est, "restore_auxiliary"):
        for k in sorted(set(aux_arrays) | set(aux_settings)):
            est.restore_auxiliary(fit, k, aux_arrays.get(k, {}), aux_settings.get(k, {}))
    return fit


def verify_run(path: str | Path) -> dict[str, Any]:
    """Check every file of the run at ``path`` against its manifest; return the manifest.

    :func:`load` checks the files it reads; this checks them all, ``inference_data.nc``
    included (what ``ppgen summary`` reads). A missing, truncated, edited or swapped file
    raises :class:`~ppgen.errors.CheckpointError` naming it. A format-1 run has no checksums
    (a ``UserWarning`` says so) and only its manifest is checked.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist, ppgen, tempfile
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> run = tempfile.mkdtemp() + "/run"
        >>> ppgen.fit(model, {"x": np.zeros(())}, ppgen.inference.SVI(steps=2)).save(run)
        >>> sorted(verify_run(run)["files"])[:2]
        ['data.safetensors', 'draws.safetensors']
    """
    path = Path(path)
    manifest = read_json(path / "manifest.json")
    files = check_manifest(path, manifest)
    for name in sorted(files or {}):
        if name.endswith(".safetensors"):
            read_arrays(path, name, files)
        else:
            read_checked(path, name, files)
    for p in sorted(path.glob("*.safetensors")) if files is not None else []:
        read_checked(path, p.name, files)  # unlisted files are refused by name
    return manifest


Fit.writer = save_fit  # Fit.save writes through this module (result.py does not import it)
