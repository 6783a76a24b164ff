"""What both backends check before computing per-datum importance weights of a local guide.

``local_log_weights`` (see :meth:`ppgen.backends.BackendOps.local_log_weights`) splits
:math:`\\log w = \\log p(x, z) - \\log q(z \\mid x)` over the data plate. That is exact only when
every sample site of the model and of the guide sits in that plate: a site outside it (a global
latent, a guide's joint latent vector, a hyper-prior) contributes one term to all data at once,
which no per-datum bound can share out. Those, and what else the weights cannot be computed
for, are refused here with :class:`~ppgen.errors.CapabilityError` naming the site.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ppgen.errors import CapabilityError

__all__ = ["WeightSite", "check_local", "chunk_size", "PARTICLE_PLATE"]

#: the name of the outer plate over the particles
PARTICLE_PLATE = "_ppgen_particles"


@dataclass(frozen=True)
class WeightSite:
    """One sample site of the model's or the guide's trace, as the checks see it.

    ``role``: ``"model"`` or ``"guide"``; ``plates``: the names of its plates; ``point_mass``:
    its distribution is a ``Delta`` (no density to speak of); ``enumerated``: it is summed out
    by enumeration.
    """

    name: str
    role: str
    observed: bool
    plates: tuple[str, ...]
    point_mass: bool = False
    enumerated: bool = False


def check_local(sites: Iterable[WeightSite], plate: str) -> None:
    """Refuse, naming the site, what a per-datum importance weight cannot be computed for."""
    sites = list(sites)
    model = [s for s in sites if s.role == "model"]
    guide = [s for s in sites if s.role == "guide"]
    enumerated = [s.name for s in sites if s.enumerated]
    if enumerated:
        raise CapabilityError(
            f"the site(s) {enumerated} are marked for enumeration; per-datum importance "
            "weights with enumerated discrete latents are not supported"
        )
    if not any(plate in s.plates for s in model):
        raise CapabilityError(f"no sample site of the model is in the data plate `{plate}`")
    drawn = {s.name for s in guide}
    missing = [s.name for s in model if not s.observed and s.name not in drawn]
    if missing:
        raise CapabilityError(
            f"the guide does not draw the latent site(s) {missing}: q(z | x) must cover "
            "every latent of the model"
        )
    for role, what in (("model", "latent"), ("guide", "latent"), ("model", "observed")):
        outside = [
            s.name
            for s in sites
            if s.role == role
            and plate not in s.plates
            and (s.observed if what == "observed" else not s.observed)
        ]
        if outside:
            whose = "the guide's" if role == "guide" else f"the model's {what}"
            raise CapabilityError(
                f"{whose} site(s) {outside} lie outside the data plate `{plate}` (global): "
                "their term belongs to all data at once, so the bound does not split per datum"
            )
    if guide and all(s.point_mass for s in guide):
        raise CapabilityError(
            "the guide is a point mass (Delta sites "
            f"{[s.name for s in guide]}): log q is not a density, so log p(x, z) - log q(z | x) "
            "bounds nothing"
        )


def chunk_size(num_particles: int, values_per_particle: int, max_values: int) -> int:
    """How many particles to draw at once so a chunk holds about ``max_values`` values.

    Example:
        >>> chunk_size(100, 1000, 10**5), chunk_size(100, 10**6, 10**5), chunk_size(3, 1, 10)
        (100, 1, 3)
    """
    per = max(int(values_per_particle), 1)
    return max(1, min(int(num_particles), int(max_values) // per))
