"""Backends: the only place that knows torch vs JAX specifics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ppgen.backends._base import BackendOps, Plate, Site

__all__ = ["BackendOps", "Plate", "Site", "get_backend", "use_backend", "BACKENDS"]

BACKENDS = ("pyro", "numpyro")


def get_backend(name: str) -> BackendOps:
    """Return the operations object of backend ``name`` (``"pyro"`` or ``"numpyro"``)."""
    if name == "pyro":
        from ppgen.backends.pyro import OPS

        return OPS
    if name == "numpyro":
        from ppgen.backends.numpyro import OPS

        return OPS
    raise ValueError(f"`backend` must be one of {BACKENDS}; got {name!r}.")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Route ``pyroapi``'s generic modules to ``name`` (no seeding, unlike ``pyro_backend``).

    Programs written against ``pyroapi`` (``from pyroapi import pyro, distributions as dist``)
    run on either backend inside this context.
    """
    from pyroapi.dispatch import _ALIASES, GenericModule

    alias = "numpy" if name == "numpyro" else name
    new = _ALIASES[alias]
    old = {k: GenericModule.current_backend[k] for k in new}
    GenericModule.current_backend.update(new)
    try:
        yield
    finally:
        GenericModule.current_backend.update(old)
