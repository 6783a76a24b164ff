"""Backend-neutral site analysis shared by the Pyro and NumPyro ``Amortized`` guides."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ppgen.errors import ProgramError


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
