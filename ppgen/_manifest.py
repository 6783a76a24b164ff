"""A saved run's manifest: the files it lists (sha256, arrays), its checked fields, its device."""

from __future__ import annotations

import functools
import hashlib
import inspect
import numbers
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.errors import CheckpointError, EstimatorError
from ppgen.inference.optim import FULL_BATCH_OPTIMIZERS, OPTIMIZERS

__all__ = [
    "FORMAT_VERSION",
    "write_arrays",
    "record_file",
    "read_arrays",
    "read_checked",
    "check_manifest",
    "build_estimator",
    "resolve_device",
    "check_program",
    "program_sites",
    "guide_record",
    "passed_guide",
    "describe_guide",
    "guide_label",
    "guide_remedy",
]

FORMAT_VERSION = 2
"""Run format written by this ppgen. 1: the files and manifest fields; 2: 1 plus the manifest's
``files`` section (sha256, size and arrays of every data file), verified at load."""

_RESTORE = "Restore the run from a backup, or fit and save it again."


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_arrays(path: Path, arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``arrays`` as safetensors to ``path``; return its manifest record.

    The record holds the file's sha256, its size in bytes and each array's shape and dtype.
    The bytes are those of ``safetensors.numpy.save_file`` (format 1 wrote the same).
    """
    from safetensors.numpy import save

    clean = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        clean[k] = a if a.flags.c_contiguous else a.copy(order="C")
    blob = save(clean)
    with open(path, "wb") as f:
        f.write(blob)
    record = record_bytes(blob)
    record["arrays"] = {
        k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in clean.items()
    }
    return record


def _describe(a: np.ndarray) -> dict[str, Any]:
    return {"shape": list(a.shape), "dtype": a.dtype.name}


def record_bytes(blob: bytes) -> dict[str, Any]:
    """The manifest record of a file holding ``blob``: sha256 and size."""
    return {"sha256": _sha256(blob), "bytes": len(blob)}


def record_file(path: Path) -> dict[str, Any]:
    """The manifest record (sha256, size) of a file already written."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": size}


def read_checked(run: Path, name: str, files: Mapping[str, Any] | None) -> bytes | None:
    """The bytes of ``run/name``, checked against the manifest's record of it.

    ``files`` is the manifest's ``files`` section (``None`` for a format-1 run: nothing is
    checked and a missing file gives ``None``). A listed file that is missing or whose bytes do
    not match its sha256, and a file the manifest does not list, raise
    :class:`~ppgen.errors.CheckpointError` naming the file; an unlisted missing file is ``None``.
    """
    file = run / name
    if files is None:
        return file.read_bytes() if file.is_file() else None
    record = files.get(name)
    if record is None:
        if file.exists():
            raise CheckpointError(
                f"`{file}` is not listed in `{run / 'manifest.json'}`: it was not written with "
                "this run (copied in from another one?), so the saved run is damaged. Remove "
                "the file if it does not belong to the run; otherwise restore the run from a "
                "backup, or fit and save it again."
            )
        return None
    if not file.is_file():
        raise CheckpointError(
            f"`{file}` is missing, but `{run / 'manifest.json'}` lists it: the saved run is "
            f"damaged. {_RESTORE}"
        )
    blob = file.read_bytes()
    if not isinstance(record, Mapping) or record_bytes(blob) != {
        "sha256": record.get("sha256"),
        "bytes": record.get("bytes"),
    }:
        expected = record.get("bytes") if isinstance(record, Mapping) else None
        raise CheckpointError(
            f"Refusing to load `{file}`: its bytes do not match the sha256 checksum recorded in "
            f"`{run / 'manifest.json'}` ({len(blob)} bytes, {expected} recorded): it was "
            f"truncated, edited or replaced by another run's file, so the saved run is damaged. "
            f"{_RESTORE}"
        )
    return blob


def read_arrays(run: Path, name: str, files: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """The arrays of safetensors file ``run/name`` (empty when absent and not listed), checked
    against the manifest (:func:`read_checked`, then names, shapes and dtypes)."""
    from safetensors.numpy import load

    blob = read_checked(run, name, files)
    if blob is None:
        return {}
    try:
        arrays = load(blob)
    except Exception as e:
        raise CheckpointError(
            f"Refusing to load `{run / name}`: not a valid safetensors file ({type(e).__name__}). "
            "ppgen never unpickles files from a saved run."
        ) from e
    expected = (files or {}).get(name, {}).get("arrays")
    if expected is not None:
        got = {k: _describe(a) for k, a in arrays.items()}
        if got != expected:
            diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            raise CheckpointError(
                f"`{run / name}` holds arrays that differ from those `{run / 'manifest.json'}` "
                f"records (names, shapes or dtypes of {diff}): the saved run is damaged. "
                f"{_RESTORE}"
            )
    return arrays


def _is_version(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


def check_manifest(run: Path, manifest: Any) -> Mapping[str, Any] | None:
    """Check a manifest's fields; return its ``files`` section (``None`` for format 1).

    Raises :class:`~ppgen.errors.CheckpointError` for a manifest that is not a ppgen run's, a
    missing or invalid ``format_version``, a newer format than this ppgen reads (upgrade), or a
    missing ``backend`` / ``estimator`` name or settings. A format-1 run loads with a
    ``UserWarning``: it has no checksums, and saving it again upgrades it.
    """
    where = f"`{run / 'manifest.json'}`"
    if not isinstance(manifest, dict) or manifest.get("format") != "ppgen-run":
        raise CheckpointError(
            f"`{run}` is not a saved ppgen run ({where} has no `format: ppgen-run`). Pass the "
            "directory written by Fit.save or `ppgen fit --out`."
        )
    version = manifest.get("format_version")
    if not _is_version(version):
        what = "has no `format_version`" if version is None else f"has `format_version` {version!r}"
        raise CheckpointError(
            f"{where} {what} (expected a run format number, 1 to {FORMAT_VERSION}): the manifest "
            f"is damaged. {_RESTORE}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"`{run}` was saved by a newer ppgen (run format {version}; this ppgen reads formats "
            f"1 to {FORMAT_VERSION}). Upgrade ppgen (`pip install -U ppgen`) to load it."
        )
    est = manifest.get("estimator")
    missing = [
        key
        for key, ok in (
            ("backend", manifest.get("backend") in ("pyro", "numpyro")),
            ("estimator", isinstance(est, dict)),
            ("estimator.name", isinstance(est, dict) and isinstance(est.get("name"), str)),
            ("estimator.settings", isinstance(est, dict) and isinstance(est.get("settings"), dict)),
        )
        if not ok
    ]
    if missing:
        raise CheckpointError(
            f"{where} lacks a valid `{missing[0]}` (the backend, and the estimator's name and "
            "settings, say how the run was fitted): the manifest is damaged. " + _RESTORE
        )
    if version == 1:
        warnings.warn(
            f"`{run}` was saved in run format 1, which records no checksums: its files are "
            f"loaded unverified. Save it again (`ppgen.load(path, program).save(path)`) to "
            f"upgrade it to format {FORMAT_VERSION}.",
            UserWarning,
            stacklevel=3,
        )
        return None
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(
            f"{where} (run format {version}) has no `files` section listing the run's files and "
            f"their checksums: the manifest is damaged. {_RESTORE}"
        )
    bad = [k for k in files if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", k)]
    if bad:
        raise CheckpointError(
            f"{where} lists files {bad} that are not plain names inside the run directory: the "
            f"manifest is damaged or was crafted. {_RESTORE}"
        )
    return files


def resolve_device(run: Path, manifest: Mapping[str, Any], backend: str) -> str | None:
    """The device to load onto: the saved one, or the CPU (with a ``UserWarning``) when this
    machine lacks it (a run fitted on ``cuda`` loaded on a CPU-only machine)."""
    from ppgen.fit import check_device

    device = manifest.get("device")
    if device is None:
        return None
    kind, _, idx = device.partition(":") if isinstance(device, str) else ("", "", "")
    if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()):
        raise CheckpointError(
            f"`{run / 'manifest.json'}` has `device` {device!r} (expected 'cpu', 'cuda' or "
            "'cuda:N'): the manifest is damaged. Set it to 'cpu' there, or restore the run "
            "from a backup."
        )
    try:
        return check_device(device, backend)
    except EstimatorError as e:
        warnings.warn(
            f"`{run}` was fitted on `{device}`, which this machine does not have ({e}); loading "
            "it onto the CPU instead (draws and parameters are the same; pass `device=` to "
            "ppgen.fit on a GPU machine to refit there).",
            UserWarning,
            stacklevel=3,
        )
        return check_device("cpu", backend)


_SITE_KINDS = ("latent", "deterministic", "param")


def program_sites(info: Any) -> dict[str, dict[str, Any]]:
    """The manifest's record of a program's sites: kind and shape of each latent,
    deterministic and ``param`` site (what :func:`check_program` compares at load)."""
    return {
        n: {"kind": s.kind, "shape": [int(d) for d in s.shape]}
        for n, s in info.sites.items()
        if s.kind in _SITE_KINDS
    }


def _core(shape: Any) -> tuple[int, ...]:
    """A shape without leading size-1 axes (a vectorised backend may add some to draws)."""
    shape = tuple(int(d) for d in shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _label(n: str, kind: str) -> str:
    return f"param `{n}`" if kind == "param" else f"`{n}`"


def check_program(
    run: Path, manifest: Mapping[str, Any], info: Any, params: Mapping[str, np.ndarray]
) -> None:
    """Refuse a program whose sites differ from those the run was fitted with, naming each
    site that is missing, extra, of another kind or of another shape.

    Format 2 records the sites (:func:`program_sites`); for a format-1 run the shapes of its
    draws and params are compared with the program's sites of the same names.
    """
    prog = program_sites(info)
    saved = manifest.get("sites")
    shape = list
    if not isinstance(saved, dict):  # format 1: what the draws and params say
        draws = manifest.get("draws") or {}
        saved = {k: {"kind": "latent", "shape": v[2:]} for k, v in draws.items() if k in prog}
        saved.update(
            {k: {"kind": "param", "shape": v.shape} for k, v in params.items() if k in prog}
        )
        prog = {k: {**v, "kind": saved[k]["kind"]} for k, v in prog.items() if k in saved}
        shape = _core
    lines = []
    for n in sorted(set(saved) & set(prog)):
        k1, s1 = saved[n]["kind"], tuple(saved[n]["shape"])
        k2, s2 = prog[n]["kind"], tuple(prog[n]["shape"])
        if k1 != k2:
            lines.append(f"`{n}`: a {k1} site in the run, a {k2} site in the program")
        elif shape(s1) != shape(s2):
            lines.append(f"{_label(n, k1)}: saved shape {s1}, program {s2}")
    missing = [_label(n, saved[n]["kind"]) for n in sorted(set(saved) - set(prog))]
    extra = [_label(n, prog[n]["kind"]) for n in sorted(set(prog) - set(saved))]
    if missing:
        lines.append("in the run but not in the program: " + ", ".join(missing))
    if extra:
        lines.append("in the program but not in the run: " + ", ".join(extra))
    if lines:
        raise CheckpointError(
            f"`{run}` was fitted with a different program than the one passed to load: "
            + "; ".join(lines)
            + ". Load it with the program (model code and constructor arguments) it was fitted "
            "with."
        )


def describe_guide(guide: Any) -> dict[str, str]:
    """What a guide the user wrote is, by name only: ``{"function": "my_guide"}`` for a
    function (or method, or ``functools.partial`` of one), ``{"class": "AutoDiagonalNormal"}``
    for a guide object (or a class). Nothing else of it is recorded: a run never holds code."""
    fn = guide.func if isinstance(guide, functools.partial) else guide
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return {"function": str(getattr(fn, "__name__", "guide"))}
    if isinstance(fn, type):
        return {"class": fn.__name__}
    return {"class": type(fn).__name__}


def passed_guide(program: Any) -> Any:
    """The guide a :class:`~ppgen.program.Program` carries because the user gave it one
    (``ppgen.fit(..., guide=g)``, ``Program(model, g)``), or ``None``: no guide, or the one
    the model object declares itself (its ``.guide``, which the program takes by default)."""
    guide = getattr(program, "user_guide", None)
    obj = getattr(program, "obj", None)
    own = None if obj is None or inspect.isfunction(obj) else getattr(obj, "guide", None)
    if guide is None or guide is own:
        return None
    if inspect.ismethod(guide) and inspect.ismethod(own):  # a bound method is made anew
        if guide.__self__ is own.__self__ and guide.__func__ is own.__func__:
            return None
    return guide


def guide_record(fit: Any) -> dict[str, Any] | None:
    """The manifest's record of the guide a fit used (``None``: its estimator uses no guide
    that load rebuilds, e.g. NUTS, or a GAN's InfoGAN/ALI guide, which load does not need).

    - ``{"kind": "builtin", "class": "AutoNormal"}``: an autoguide the estimator builds from
      its settings (``SVI(guide="normal")``, the default; MLE's ``AutoDelta``); no ``class``
      for an estimator's own internal guide (MLE's empty guide of a program without latents).
    - ``{"kind": "program", ...}``: the guide the model object declares (its ``.guide``),
      which load takes from the program again.
    - ``{"kind": "user", "class": "AutoDiagonalNormal", "passed": "fit"}`` (or
      ``"function": "my_guide"``): a guide the user passed to ``ppgen.fit(guide=)`` /
      ``Program(model, guide)`` (``"passed": "fit"``) or to the estimator (``SVI(guide=)``,
      ``"passed": "estimator"``). Only its name is recorded; load asks for the guide itself.
    """
    from types import SimpleNamespace

    from ppgen.inference.guides.auto import guide_class_name

    est, prog = fit.estimator, fit.program
    spec_of = getattr(est, "_guide_spec", None)
    if spec_of is None:
        return None
    spec = spec_of(SimpleNamespace(program=prog, info=fit.info))
    try:
        name = guide_class_name(spec)
    except EstimatorError:  # pragma: no cover - validated when the estimator was built
        name = None
    if name is not None:
        return {"kind": "builtin", "class": name}
    if prog.guide is not None and spec is prog.guide:
        passed = passed_guide(prog)
        if passed is None:
            return {"kind": "program", **describe_guide(prog.user_guide)}
        return {"kind": "user", **describe_guide(passed), "passed": "fit"}
    if spec is not None and spec is getattr(est, "guide", None):
        return {"kind": "user", **describe_guide(spec), "passed": "estimator"}
    return {"kind": "builtin"}


def guide_label(record: Mapping[str, Any]) -> str:
    """How an error names the user's guide a record describes (its class or function)."""
    if "function" in record:
        return f"your own guide function `{record['function']}`"
    return f"your own guide `{record.get('class', 'guide')}`"


def guide_remedy(record: Mapping[str, Any]) -> str:
    """The load call that passes the guide a record names."""
    if "function" in record:
        return f"`ppgen.load(path, model, guide={record['function']})`"
    return f"`ppgen.load(path, model, guide={record.get('class', 'Guide')}(model))`"


def _guide_setting(v: Any) -> bool:
    """Whether an estimator's saved ``guide`` setting names a guide the estimator can build
    again (an autoguide name or class name): a user's guide is recorded by name only."""
    from ppgen.inference.guides.auto import guide_class_name

    if v is None:
        return True
    try:
        return isinstance(v, str) and guide_class_name(v) is not None
    except EstimatorError:
        return False


def build_estimator(path: Path, manifest: dict[str, Any], guide: Any = None) -> Any:
    """The estimator the manifest names, built from its saved settings (or a
    :class:`~ppgen.errors.CheckpointError` saying why it cannot be).

    A run fitted with the user's own guide passed to the estimator (``SVI(guide=my_guide)``:
    the manifest's ``guide`` record says ``"passed": "estimator"``) gets ``guide``, the one
    passed to load, in its place; the saved setting (the guide's name) is never used.
    """
    from ppgen.inference._base import REGISTRY

    name = manifest["estimator"]["name"]
    cls = REGISTRY.get(name)
    if cls is None:
        raise CheckpointError(
            f"`{path}` used estimator {name!r}, which is not registered in this ppgen (known: "
            f"{', '.join(sorted(REGISTRY))}). Import the package that defines it before "
            "loading, or load with the ppgen version that saved the run."
        )
    settings = manifest["estimator"]["settings"]
    sig = inspect.signature(cls.__init__).parameters
    record = manifest.get("guide")
    user = isinstance(record, dict) and record.get("kind") == "user"
    kwargs = {
        k: v
        for k, v in settings.items()
        if k in sig and (k != "guide" or (not user and _guide_setting(v)))
    }
    if user and guide is not None and record.get("passed") == "estimator" and "guide" in sig:
        kwargs["guide"] = guide
    if "steps" in kwargs and kwargs.get("epochs") is not None:
        kwargs.pop("steps")
    optim = kwargs.get("optim")
    if isinstance(optim, str) and optim.lower() not in OPTIMIZERS + FULL_BATCH_OPTIMIZERS:
        # an optimiser object ppgen has no name for (its class name was saved): a loaded fit
        # never optimises (resuming reads the checkpoint), so the default stands in for it
        kwargs.pop("optim")
    try:
        return cls(**kwargs)
    except Exception as e:
        raise CheckpointError(
            f"`{path}` was fitted with {cls.__name__} (`method={name!r}`), but "
            f"{cls.__name__}(**{kwargs!r}) fails with the saved settings: "
            f"{type(e).__name__}: {str(e).rstrip('.')}. Fix `estimator.settings` in "
            f"{path / 'manifest.json'} "
            "(or load with the ppgen version that saved it), or refit and save again."
        ) from e
