"""Zoo model base: a program object with ``.model(**data)``, and backend-neutral helpers."""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["Model", "deterministic", "current_backend", "array"]


def current_backend() -> str:
    """``"pyro"`` or ``"numpyro"``: where ``pyroapi``'s generic modules point right now."""
    from pyroapi.dispatch import GenericModule

    return "numpyro" if GenericModule.current_backend["pyro"].startswith("numpyro") else "pyro"


def deterministic(name: str, value: Any) -> Any:
    """Record a deterministic site on whichever backend runs the program.

    Example:
        >>> import pyro, torch
        >>> tr = pyro.poutine.trace(lambda: deterministic("y", torch.ones(2))).get_trace()
        >>> tr.nodes["y"]["infer"]["_deterministic"]
        True
    """
    if current_backend() == "numpyro":
        import numpyro

        return numpyro.deterministic(name, value)
    import pyro

    return pyro.deterministic(name, value)


def array(value: Any, like: Any = None) -> Any:
    """A float array of the running backend (torch tensor or jax array), placed like ``like``."""
    if current_backend() == "numpyro":
        import jax.numpy as jnp

        return jnp.asarray(value, dtype=jnp.float32)
    import torch

    device = like.device if like is not None and hasattr(like, "device") else None
    return torch.as_tensor(value, dtype=torch.get_default_dtype(), device=device)


class Model:
    """Base of zoo models: a program object ppgen can fit with any estimator.

    Subclasses implement ``model(self, **data)`` with ``pyroapi`` primitives
    (``from pyroapi import pyro, distributions as dist``) so the same definition runs on Pyro
    and on NumPyro (``backend = "neutral"``); models that own torch networks set
    ``backend = "pyro"`` and also derive from ``torch.nn.Module``.
    """

    backend: ClassVar[str] = "neutral"

    def model(self, **data: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
