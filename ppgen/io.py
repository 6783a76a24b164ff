"""Safe, atomic persistence: write to a temp file then rename; load without executing code."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppgen.errors import CheckpointError

__all__ = ["atomic_write", "atomic_dir", "save_tree", "load_tree", "write_json", "read_json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` (same directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; files should follow the umask
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_dir(path: str | os.PathLike, fill: Callable[[Path], None]) -> None:
    """Fill a fresh sibling temp directory, then swap it in for ``path``.

    An existing ``path`` is replaced only after the new one is complete, so an interrupted
    save never leaves a half-written run behind.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise CheckpointError(f"`{path}` is an existing file; refusing to replace it by a run.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    mask = _umask()
    os.chmod(tmp, 0o777 & ~mask)
    try:
        fill(tmp)
        for f in tmp.rglob("*"):  # writers that make 0600 files (safetensors) follow the umask
            if f.is_file():
                os.chmod(f, 0o666 & ~mask)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _to_safe(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        a = np.array(obj)
        return {"__ndarray__": torch.from_numpy(a.reshape(-1).copy()).reshape(a.shape)}
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_safe(v) for v in obj)
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):  # jax arrays
        return _to_safe(np.asarray(obj))
    return obj


def _from_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_from_safe(v) for v in obj)
    return obj


def save_tree(path: str | os.PathLike, tree: Any) -> None:
    """Save a nested dict/list of tensors, numpy arrays and plain values, atomically."""
    safe = _to_safe(tree)
    atomic_write(path, lambda tmp: torch.save(safe, tmp))


def load_tree(path: str | os.PathLike) -> Any:
    """Load what :func:`save_tree` wrote. Never unpickles arbitrary objects.

    Raises :class:`~ppgen.errors.CheckpointError` for a missing file or one holding anything
    but tensors, arrays and plain containers (e.g. a crafted pickle).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"No checkpoint at `{path}`.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError for unsafe content
        raise CheckpointError(
            f"Refusing to load `{path}`: it is not a plain tensor/array file ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). ppgen never unpickles arbitrary "
            "objects; re-create the run with ppgen."
        ) from e
    return _from_safe(obj)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically."""

    def w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)

    atomic_write(path, w)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file that ppgen wrote (a run's manifest or history, a checkpoint's).

    A missing file, or one that is not valid UTF-8 JSON (truncated, edited), raises
    :class:`~ppgen.errors.CheckpointError` naming the file and where parsing stopped.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "manifest.json"
        >>> _ = f.write_text('{"format": "ppgen-run", "format_v')
        >>> try:
        ...     read_json(f)
        ... except CheckpointError as e:
        ...     print("manifest.json" in str(e), "not valid JSON" in str(e))
        True True
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"`{path}` does not exist: not a saved ppgen run?")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"line {e.lineno} column {e.colno}: {e.msg}" if hasattr(e, "lineno") else str(e)
        raise CheckpointError(
            f"`{path}` is not valid JSON ({where}): the file is truncated or was edited, so "
            "the saved run or checkpoint holding it is damaged. Restore it from a backup, or "
            "re-create it (for a run: fit and save it again)."
        ) from e
