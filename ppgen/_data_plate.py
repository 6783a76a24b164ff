"""The data plate of a program: the plate over the data points, read from one trace.

Shared by the training loop (the plate minibatches subsample, ``ppgen.inference._loop``) and by
:func:`ppgen.evaluate` (the plate a per-datum bound splits over). Below both: it knows only a
:class:`~ppgen.program.ProgramInfo` and the data's shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ppgen.backends import Plate
    from ppgen.program import ProgramInfo

__all__ = [
    "array_shape",
    "observed_axis",
    "plate_candidates",
    "outer_leading",
    "describe_plate",
    "data_plate",
]


def array_shape(v: Any) -> tuple[int, ...]:
    """The shape of an array of any backend (``()`` for a scalar or a non-array)."""
    shape = getattr(v, "shape", None)
    return tuple(int(n) for n in shape) if shape is not None else ()


def observed_axis(info: ProgramInfo, key: str, shape: tuple[int, ...], plate: Any) -> int | None:
    """The axis of observed array ``data[key]`` that ``plate`` indexes, by the trace: the
    plate's (negative) ``dim`` counted from the end of the site's batch shape; ``None`` where
    the site is outside the plate or its value broadcasts along it (no axis of the plate's
    size there)."""
    site = info.sites[info.obs_keys[key]]
    if all(p.name != plate.name for p in site.plates):
        return None
    axis = len(shape) - site.event_dim + plate.dim
    return axis if 0 <= axis < len(shape) and shape[axis] == plate.size else None


def describe_plate(plate: Any, axes: Mapping[str, int]) -> str:
    """```name` (size N, dim d; indexes axis a of `x`)``, for messages."""
    where = ", ".join(f"axis {a} of `{k}`" for k, a in axes.items())
    return f"`{plate.name}` (size {plate.size}, dim {plate.dim}" + (
        f"; indexes {where})" if where else ")"
    )


def plate_candidates(info: ProgramInfo, data: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The plates that hold every observed site and index an axis of the observed data:
    plate name -> ``{data key: axis}``, innermost dim first. When some have size > 1, plates
    of size 1 are left out."""
    plates = info.plates
    common = None
    for o in info.observed:
        names = {p.name for p in info.sites[o].plates}
        common = names if common is None else common & names
    obs = {k: array_shape(data[k]) for k in info.obs_keys if k in data}
    cands: dict[str, dict[str, int]] = {}
    for n in sorted(common or (), key=lambda n: plates[n].dim):
        p = plates[n]
        if obs:
            found = {k: observed_axis(info, k, s, p) for k, s in obs.items()}
            axes = {k: a for k, a in found.items() if a is not None}
        else:  # no observed site is fed by a data key as it is: any array with the plate's size
            axes = {
                k: array_shape(v).index(p.size) for k, v in data.items() if p.size in array_shape(v)
            }
        if axes:
            cands[n] = axes
    if len(cands) > 1 and any(plates[n].size > 1 for n in cands):
        cands = {n: a for n, a in cands.items() if plates[n].size > 1}
    return cands


def outer_leading(info: ProgramInfo, cands: Mapping[str, Mapping[str, int]]) -> str | None:
    """The candidate plate that strictly holds the others' sites and indexes axis 0 of the
    observed arrays, if there is one (a VAE's data plate around its pixel plate)."""
    held = {
        n: {s.name for s in info.sites.values() if any(p.name == n for p in s.plates)}
        for n in cands
    }
    for n, axes in cands.items():
        others = [held[m] for m in cands if m != n]
        if all(h < held[n] for h in others) and all(a == 0 for a in axes.values()):
            return n
    return None


def data_plate(info: ProgramInfo, data: Mapping[str, Any]) -> tuple[Plate | None, str]:
    """``(plate, "")``: the one plate over the data points (as minibatching finds it, see
    :func:`plate_candidates` and :func:`outer_leading`), or ``(None, why)`` when there is none
    or several that cannot be told apart.

    Example:
        >>> import numpy as np, pyro, pyro.distributions as dist
        >>> from ppgen import Program
        >>> def model(x=None):
        ...     with pyro.plate("data", x.shape[0], dim=-2):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         with pyro.plate("pixels", x.shape[1], dim=-1):
        ...             pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> x = np.zeros((5, 3))
        >>> data_plate(Program(model).inspect({"x": x}), {"x": x})[0].name
        'data'
    """
    cands = plate_candidates(info, data)
    if not cands:
        return None, (
            "no plate holds every observed site and indexes an axis of the observed data "
            "(put the observations in a plate over the data, e.g. `with plate('data', len(x))`)"
        )
    if len(cands) > 1:
        outer = outer_leading(info, cands)
        if outer is None:
            listed = "; ".join(describe_plate(info.plates[n], a) for n, a in cands.items())
            return None, (
                f"{len(cands)} plates hold every observed site and index the observed data "
                f"({listed}); which one spans the data points cannot be told from the program"
            )
        return info.plates[outer], ""
    return info.plates[next(iter(cands))], ""
