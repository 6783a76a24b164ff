"""The backend interface: everything that differs between Pyro (torch) and NumPyro (JAX)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Plate:
    """A plate a site sits in: ``name``, full ``size`` and batch ``dim`` (negative)."""

    name: str
    size: int
    dim: int


@dataclass
class Site:
    """What one trace tells about a site of the program.

    ``kind`` is ``"observed"``, ``"latent"``, ``"param"`` or ``"deterministic"``.
    ``value`` is the traced value (native array), ``fn`` the distribution (sample sites).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    batch_shape: tuple[int, ...] = ()
    event_shape: tuple[int, ...] = ()
    dist: str = ""
    support: str = ""
    discrete: bool = False
    enumerate: str | None = None
    plates: tuple[Plate, ...] = ()
    fn: Any = field(default=None, repr=False)
    value: Any = field(default=None, repr=False)
    infer: dict = field(default_factory=dict, repr=False)

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)


class BackendOps(ABC):
    """Operations ppgen needs from a PPL backend. One instance per backend."""

    name: str

    @abstractmethod
    def native(self, data: Mapping[str, Any], device: str | None = None) -> dict[str, Any]:
        """Convert numpy / python values to the backend's arrays on ``device``."""

    @abstractmethod
    def to_numpy(self, x: Any) -> np.ndarray:
        """Convert a backend array to numpy (on the host)."""

    @abstractmethod
    def trace(self, fn: Callable, kwargs: Mapping[str, Any], seed: int = 0) -> list[Site]:
        """Run ``fn(**kwargs)`` once under a trace and return its sites in execution order."""

    @abstractmethod
    def support_violations(self, site: Site) -> np.ndarray:
        """Boolean numpy mask of the entries of an observed site's value outside its support."""

    @abstractmethod
    def predictive(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        *,
        samples: Mapping[str, np.ndarray] | None = None,
        num_samples: int | None = None,
        guide: Callable | None = None,
        return_sites: list[str] | None = None,
        uncondition: bool = True,
        seed: int = 0,
        max_plate_nesting: int = 0,
    ) -> dict[str, np.ndarray]:
        """Sample sites of ``fn`` with latents fixed to ``samples`` (flat, leading axis S)."""

    @abstractmethod
    def log_likelihood(
        self,
        fn: Callable,
        kwargs: Mapping[str, Any],
        samples: Mapping[str, np.ndarray],
        shapes: Mapping[str, tuple[int, ...]],
        max_plate_nesting: int = 0,
    ) -> dict[str, np.ndarray]:
        """Pointwise log-density of each site in ``shapes`` (name -> batch shape) per sample.

        Returns ``{site: array (S, *batch_shape)}``; event dims are summed by the distribution.
        """

    def seed_everything(self, seed: int) -> None:  # noqa: B027 - optional hook
        """Seed the backend's global RNGs (Pyro: torch/numpy/random)."""
