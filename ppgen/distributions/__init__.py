"""ppgen's distributions: ``Implicit`` (no density) and ``Unnormalized`` (energy), both backends."""

from ppgen.distributions._base import KINDS, density_kind
from ppgen.distributions._dispatch import Implicit, Unnormalized

__all__ = ["Implicit", "Unnormalized", "density_kind", "KINDS"]
