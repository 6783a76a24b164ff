"""Backend-neutral site analysis shared by the Pyro and NumPyro ``Amortized`` guides."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from ppgen.errors import ProgramError

__all__ = ["data_plate", "find_plate", "split_latents"]


def find_plate(
    observed: Sequence[dict],
    frames: Callable[[dict], Iterable[Any]],
    plate_name: str | None,
    library: Literal["pyro", "numpyro"],
) -> Any:
    """The data plate's frame: the plate holding every observed site.

    ``frames(site)`` lists a trace site's plate frames (each with ``name`` and ``size``). The
    frame named ``plate_name`` when given, else the largest common one; every problem is a
    :class:`~ppgen.errors.ProgramError` (``library`` names the ``plate`` of its example).
    """
    if not observed:
        raise ProgramError("The model has no observed sites for this data to encode.")
    common: dict[str, Any] | None = None
    for s in observed:
        fr = {f.name: f for f in frames(s)}
        common = fr if common is None else {k: v for k, v in common.items() if k in fr}
    common = common or {}
    if plate_name is not None:
        if plate_name not in common:
            raise ProgramError(
                f"`plate={plate_name!r}` does not hold every observed site; plates "
                f"holding them: {sorted(common)}."
            )
        return common[plate_name]
    if not common:
        raise ProgramError(
            "No plate holds every observed site; `Amortized` needs the observations in a "
            f"data plate, e.g. `with {library}.plate('data', len(x))`."
        )
    return max(common.values(), key=lambda f: f.size)


def split_latents(
    latent: Sequence[dict],
    plate: Any,
    family: str,
    frame_names: Callable[[dict], list[str]],
    strict_frames: bool,
) -> tuple[dict[str, tuple[int, ...]], list[dict]]:
    """Split the program's latent trace sites into local ones (in the data ``plate``) and
    global ones, checking each local site can be encoded.

    Returns ``({local site: event shape}, [global sites])``; every problem is a
    :class:`~ppgen.errors.ProgramError` naming the site. With ``strict_frames`` a local site must
    sit in the data plate alone (the Pyro trace's vectorised frames).
    """
    local, glob = [], []
    for s in latent:
        if (s.get("infer") or {}).get("enumerate"):
            raise ProgramError(
                f"Site `{s['name']}` is marked for enumeration; `Amortized` covers "
                "continuous latents only. Write a guide for the discrete part."
            )
        (local if plate.name in frame_names(s) else glob).append(s)
    if not local:
        raise ProgramError(
            f"No latent site sits in the data plate `{plate.name}`; `Amortized` encodes "
            "per-datum latents. Use an autoguide (e.g. guide='normal') for this program."
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for s in local:
        fn = s["fn"]
        alone = frame_names(s) == [plate.name] if strict_frames else True
        if not alone or tuple(fn.batch_shape) != (plate.size,):
            raise ProgramError(
                f"Local latent `{s['name']}` has batch shape {tuple(fn.batch_shape)}; "
                f"`Amortized` needs batch shape ({plate.size},) from plate `{plate.name}` "
                "alone (put per-datum vectors in `.to_event(1)`)."
            )
        if fn.support.is_discrete:
            raise ProgramError(f"Local latent `{s['name']}` is discrete; write a guide.")
        shape = tuple(fn.event_shape)
        if len(shape) != 1 and family != "normal":
            raise ProgramError(
                f"Local latent `{s['name']}` has event shape {shape}; family "
                f"{family!r} needs a vector latent (use family='normal' or "
                "`.to_event(1)` on a vector)."
            )
        shapes[s["name"]] = shape
    return shapes, glob


def data_plate(
    tr: Mapping[str, Any],
    data: Mapping[str, Any],
    plate_name: str | None,
    family: str,
    inputs: Sequence[str] | None,
) -> tuple[Any, dict[str, tuple[int, ...]], list[dict], list[str]]:
    """What an encoder needs of a NumPyro trace: the data plate's frame, the local latents
    ``{site: event shape}``, the global latent sites, and the data keys to encode
    (``inputs``, or the observed sites in the plate), all checked (the twin of the Pyro
    guides' :func:`~ppgen.inference.guides.amortized.trace_data_plate`)."""
    sites = [s for s in tr.values() if s["type"] == "sample"]
    observed = [s for s in sites if s["is_observed"]]
    plate = find_plate(observed, lambda s: s["cond_indep_stack"], plate_name, "numpyro")
    latent = [s for s in sites if not s["is_observed"]]
    locals_, glob = split_latents(
        latent,
        plate,
        family,
        lambda s: [f.name for f in s["cond_indep_stack"]],
        strict_frames=False,
    )
    if inputs is None:
        ids = {id(v): k for k, v in data.items()}
        inputs = [
            ids.get(id(s["value"]), s["name"])
            for s in observed
            if plate.name in [f.name for f in s["cond_indep_stack"]]
        ]
    missing = [k for k in inputs if k not in data]
    if missing:
        raise ProgramError(
            f"Encoder input(s) {missing} are not data keys; pass `inputs=` with the data "
            f"keys to encode (data keys: {sorted(data)})."
        )
    return plate, locals_, glob, list(inputs)
