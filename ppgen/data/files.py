"""Data files for the command line and scripts: built-in names, ``.csv`` and ``.npz`` files."""

from __future__ import annotations

import csv
import inspect
import io
import sys
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.errors import DataError

__all__ = ["load_data"]


def _arguments(model: Any) -> dict[str, bool]:
    """The model's keyword arguments, each mapped to whether it is required (``model``: a
    program function, an object with a ``.model`` method, or the class of one)."""
    fn = model.model if callable(getattr(model, "model", None)) else model
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return {}
    if inspect.isclass(model) and params:  # a zoo class, before it is built: drop `self`
        params = params[1:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default is p.empty for p in params if p.kind in kinds}


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    try:  # utf-8-sig: a spreadsheet's byte-order mark must not stick to the first column name
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"`--data` {str(path)!r} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
            f"{e.start}). Save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`, or "
            "'CSV UTF-8' in a spreadsheet)."
        ) from e
    header = [h.strip() for h in next(csv.reader(io.StringIO(text)), [])]
    if not header or len(set(header)) != len(header):
        raise DataError(f"`--data` {str(path)!r}: the first row must hold unique column names.")
    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2, dtype=float)
    except ValueError as e:
        raise DataError(f"`--data` {str(path)!r}: every value must be a number ({e}).") from e
    if values.shape[0] == 0 or values.shape[1] != len(header):
        raise DataError(
            f"`--data` {str(path)!r}: expected rows of {len(header)} numbers under the header; "
            f"got an array of shape {values.shape}."
        )
    return header, values


def _csv_data(
    path: Path, arguments: dict[str, bool], x_cols: list[str] | None, y_col: str | None
) -> dict[str, Any]:
    header, values = _read_csv(path)
    col = {name: values[:, i] for i, name in enumerate(header)}
    where = f"{str(path)!r} (columns {header})"
    for opt, names in (("--x-cols", x_cols or []), ("--y-col", [y_col] if y_col else [])):
        missing = [n for n in names if n not in col]
        if missing:
            raise DataError(f"`{opt}` names column(s) {missing} that are not in {where}.")
    data: dict[str, Any] = {}
    used: set[str] = set()
    if y_col and "y" not in arguments:
        raise DataError(
            f"`--y-col` needs a model with a `y` argument; its arguments are {list(arguments)}."
        )
    if "y" in arguments:
        target = y_col or "y"
        if target not in col:
            raise DataError(
                f"No column `{target}` for the model's target argument `y` in {where}. Add it "
                "or name the target column with --y-col."
            )
        data["y"], used = col[target], {target}
    for name in arguments:
        if name not in data and name in col and name not in (x_cols or []):
            data[name] = col[name]
            used.add(name)
    matrix = next((n for n in ("X", "x") if n in arguments and n not in data), None)
    if x_cols and matrix is None:
        raise DataError(
            f"`--x-cols` needs a model with an `X` or `x` argument; it has {list(arguments)}."
        )
    if matrix is not None:
        cols = x_cols or [h for h in header if h not in used]
        if cols:
            data[matrix] = np.stack([col[h] for h in cols], axis=1)
            used.update(cols)
    missing = [n for n, required in arguments.items() if required and n not in data]
    if missing:
        raise DataError(
            f"No column for the model's argument(s) {[f'`{n}`' for n in missing]} in {where}. "
            "Name the columns after the arguments, or pass an .npz file."
        )
    ignored = [h for h in header if h not in used]
    if ignored:
        print(f"note: ignoring column(s) {ignored} of {path}", file=sys.stderr)
    return data


def _option_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def dataset_options(spec: str) -> dict[str, Any]:
    """The loader options of ``--data NAME:key=value,...``, checked against the loader of
    built-in dataset ``NAME`` (a :class:`~ppgen.errors.DataError` names a bad one); numbers
    and ``true``/``false`` are converted.

    Example:
        >>> dataset_options("digits_binary:split=test")
        {'split': 'test'}
        >>> dataset_options("moons:n=500,seed=3")
        {'n': 500, 'seed': 3}
    """
    from ppgen.data import DATASETS

    name, _, text = spec.partition(":")
    if name not in DATASETS:
        raise DataError(f"`--data {spec}`: {name!r} is not a built-in dataset {sorted(DATASETS)}.")
    params = inspect.signature(DATASETS[name]).parameters
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    out: dict[str, Any] = {}
    for pair in filter(None, text.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or (key not in params and not open_kwargs):
            raise DataError(
                f"`--data {spec}`: {pair!r} is not an option of {name} (give key=value with key "
                f"one of {sorted(k for k in params if not k.startswith('_'))})."
            )
        out[key] = _option_value(value)
    return out


def load_data(
    spec: str,
    model: Any,
    x_cols: Sequence[str] | None = None,
    y_col: str | None = None,
) -> dict[str, Any]:
    """``--data``: a built-in dataset name, a ``.csv`` file or a ``.npz`` file, as a data dict.

    A built-in name may carry its loader's options, ``NAME:key=value,key=value``
    (:func:`dataset_options`): ``digits_binary:split=test``, ``moons:n=500,seed=3``.

    CSV: the header row holds names. Columns named like the model's arguments feed them; the
    model's ``y`` argument takes column ``y`` (or ``--y-col``); a remaining matrix argument
    (``X`` of the regressions, ``x`` of the mixture) takes the other columns (or ``--x-cols``)
    as an ``(N, D)`` array. Values are read as floats. NPZ: loaded with
    ``allow_pickle=False``; each key is an argument name (0-d arrays become scalars).

    Example:
        >>> from ppgen.models import EightSchools
        >>> sorted(load_data("eight_schools", EightSchools()))
        ['sigma', 'y']
    """
    from ppgen.data import DATASETS, load

    path = Path(spec)
    if spec in DATASETS and not path.exists():
        return load(spec)
    name, sep, options = spec.partition(":")
    if sep and name in DATASETS and not path.exists():
        return load(name, **dataset_options(spec))
    if path.suffix.lower() not in (".csv", ".npz"):
        raise DataError(
            f"`--data {spec!r}` is neither a built-in dataset ({sorted(DATASETS)}) nor a .csv or "
            ".npz file."
        )
    if not path.is_file():
        raise DataError(f"`--data` file {spec!r} does not exist.")
    if path.suffix.lower() == ".npz":
        try:
            # our own handle: np.load leaks the one it opens when the zip is unreadable
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                return {k: f[k].item() if f[k].ndim == 0 else f[k] for k in f.files}
        except ValueError as e:
            raise DataError(f"`--data` {spec!r} is not a plain .npz of numeric arrays: {e}") from e
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(
                f"`--data` {spec!r} is not a readable .npz file, truncated or corrupt "
                f"({type(e).__name__}: {e}). Write it again, e.g. with numpy.savez."
            ) from e
    x = list(x_cols) if x_cols else None
    return _csv_data(path, _arguments(model), x, y_col)
