"""What the first run of a program on the data refuses, for both backends, before any work.

A backend converts the user's numpy data to its own arrays (``BackendOps.native``): float64 to
float32 (torch's default dtype; JAX without 64-bit mode) and, on JAX without 64-bit mode, int64
to int32. Finite values beyond float32's range would become ``inf`` and large counts would wrap
around (3000000000 becomes -1294967296), so a fit would fail far from the cause or, for
wrapped integers, answer wrongly. :func:`lossy_float` / :func:`lossy_int` describe such a
conversion; the backend keeps the description with the array it made (:class:`Conversions`)
and its ``trace`` (the first run of the program on the data) refuses it, naming the observed
site the array feeds and the data key.

The same run also refuses empty data that the program cannot run on
(:func:`empty_inputs_error`) and a ``factor`` that is NaN at every draw of the latents
(:func:`nan_factor_error`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ppgen.backends._checks import first_line
from ppgen.errors import DataError, ProgramError

__all__ = [
    "Conversions",
    "lossy_float",
    "lossy_int",
    "lossy_error",
    "empty_inputs_error",
    "nan_factor_error",
]


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0]) if mask.ndim else ()


def lossy_float(key: str, a: np.ndarray, dtype: str, max_value: float, fix: str) -> str | None:
    """Why ``data[key]`` cannot become ``dtype`` (finite values beyond ``±max_value``), or None."""
    if a.dtype.kind != "f" or a.size == 0 or np.finfo(a.dtype).max <= max_value:
        return None
    with np.errstate(invalid="ignore"):
        big = np.abs(a) > max_value
    if not big.any():
        return None
    at = _first(big)
    return (
        f"`data[{key!r}]` holds {int(big.sum())} finite value(s) beyond {dtype}'s range "
        f"(±{max_value:.3g}), e.g. {float(a[at]):.6g} at index {at}; the backend computes in "
        f"{dtype}, where they would become inf. Rescale the data (divide by a constant, or "
        f"model it in log units){fix}."
    )


def lossy_int(key: str, a: np.ndarray, target: np.dtype, why: str, fix: str) -> str | None:
    """Why ``data[key]`` cannot become the integer dtype ``target`` (it would wrap), or None."""
    if a.dtype.kind not in "iu" or a.size == 0 or np.can_cast(a.dtype, target):
        return None
    info = np.iinfo(target)
    out = (a > info.max) | (a < info.min)
    if not out.any():
        return None
    at = _first(out)
    v = int(a[at])
    wrapped = int(np.asarray(a[at]).astype(target))
    return (
        f"`data[{key!r}]` holds {int(out.sum())} integer(s) outside {np.dtype(target).name}'s "
        f"range [{info.min}, {info.max}], e.g. {v} at index {at}, and {why}: converted they "
        f"would wrap around ({v} would become {wrapped}). {fix}"
    )


class Conversions:
    """The lossy conversions of a backend's last ``native`` call, by the array each one made.

    ``native`` converts anyway (other callers hand it data already validated) and records what
    it lost; ``trace`` asks :meth:`among` whether its arguments hold such an array. An array is
    found by identity (the one ``native`` returned), never by key, so a record cannot be
    mistaken for another call's data.
    """

    def __init__(self) -> None:
        self._made: dict[int, tuple[Any, str, str]] = {}

    def record(self, notes: Sequence[tuple[str, Any, str]]) -> None:
        """Replace the records with ``notes``: ``(key, array made, description)`` triples."""
        self._made = {id(arr): (arr, key, note) for key, arr, note in notes}

    def among(self, kwargs: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
        """The recorded ``(key, array, description)`` of the arrays that are in ``kwargs``."""
        found = []
        for v in kwargs.values():
            rec = self._made.get(id(v))
            if rec is not None and rec[0] is v:
                found.append((rec[1], rec[0], rec[2]))
        return found


def lossy_error(lossy: Sequence[tuple[str, Any, str]], sites: Sequence[Any] | None) -> DataError:
    """The error for a lossy conversion: the observed site the array feeds (when the program ran
    and one did) or the program argument, then what is wrong and what to do."""
    key, arr, note = lossy[0]
    users = []
    for s in sites or ():
        if s.kind != "observed":
            continue
        if s.value is arr or s.infer.get("_obs_id") == id(arr):
            users.append(s.name)
    if not users:
        users = [s.name for s in sites or () if s.kind == "observed" and s.name == key]
    subject = f"Observed site `{users[0]}` (data key {key!r})" if users else f"Argument `{key}`"
    return DataError(f"{subject}: {note}")


def empty_inputs_error(kwargs: Mapping[str, Any], failure: BaseException) -> DataError | None:
    """When running the program failed and some data array is empty: a DataError naming it."""
    empty = [
        (k, tuple(v.shape))
        for k, v in kwargs.items()
        if getattr(v, "shape", None) is not None and 0 in tuple(v.shape)
    ]
    if not empty:
        return None
    key, shape = empty[0]
    first = f"{type(failure).__name__}: {first_line(failure)}"
    return DataError(
        f"`data[{key!r}]` is empty (shape {shape}), and running the program on it failed "
        f"({first}). Every observed site needs at least one value: pass non-empty "
        f"data for `{key}` (an empty observation would leave only the prior to fit)."
    )


FACTOR_DRAWS = 5
"""How many prior draws a ``factor`` must be NaN at before the first run refuses it."""


def _nan_factor(site: Any) -> bool:
    return site.dist == "Unit" and bool(np.isnan(np.asarray(site.fn.log_factor)).any())


def nan_factor_error(
    sites: Sequence[Any], retrace: Callable[[int], Sequence[Any]], seed: int
) -> ProgramError | None:
    """A ``factor`` that is NaN at the run ``sites`` came from (seed ``seed``) and at each of
    :data:`FACTOR_DRAWS` - 1 further runs ``retrace(seed + k)`` (mod ``2**32``): a
    ProgramError naming it.

    A factor NaN at only some draws of the latents is left to the sampler (a region it
    rejects); one NaN at every draw, usually through the data, stops every estimator.
    """
    nan = [s.name for s in sites if _nan_factor(s)]
    for k in range(1, FACTOR_DRAWS):
        if not nan:
            return None
        try:
            again = {s.name: s for s in retrace((seed + k) % 2**32)}
        except Exception:  # the first run worked; a failing re-run is not this check's business
            return None
        nan = [n for n in nan if n in again and _nan_factor(again[n])]
    if not nan:
        return None
    return ProgramError(
        f"Factor `{nan[0]}` is NaN when the program runs on the data, at each of "
        f"{FACTOR_DRAWS} draws of the latent sites from their priors (seeds {seed} to "
        f"{seed + FACTOR_DRAWS - 1}), so no sampler or guide can start (NumPyro would say "
        "'Cannot find valid initial parameters'). Check the expression passed to `factor` (a "
        "log of a negative number? 0/0? inf - inf?) and the data it uses."
    )
