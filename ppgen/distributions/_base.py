"""What ppgen's distributions share on both backends: kinds, messages, argument checks."""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "KINDS",
    "density_kind",
    "active_backend",
    "array_backend",
    "check_backend",
    "implicit_density_message",
    "energy_sampling_message",
]

KINDS = ("explicit", "implicit", "energy")


def density_kind(fn: Any) -> str:
    """What an observed site's distribution gives: ``"explicit"``, ``"implicit"`` or ``"energy"``.

    Reads the ``ppgen_kind`` class attribute of ``fn`` or of the distribution it wraps
    (``.base_dist`` of ``Independent``, ``MaskedDistribution``, ``ExpandedDistribution``...).
    A distribution with no such attribute anywhere has a normalised density: ``"explicit"``.

    Example:
        >>> import torch, pyro.distributions as dist
        >>> from ppgen.distributions import Implicit
        >>> density_kind(dist.Normal(0.0, 1.0))
        'explicit'
        >>> density_kind(Implicit(torch.zeros(3, 2)).to_event(1).mask(False))
        'implicit'
    """
    for _ in range(64):  # wrappers nest a few levels; a cycle must not hang
        if fn is None:
            break
        kind = getattr(type(fn), "ppgen_kind", None)
        if kind is not None:
            return kind
        try:
            fn = getattr(fn, "base_dist", None)
        except Exception:  # a property of a foreign distribution may raise
            break
    return "explicit"


def implicit_density_message(site: str | None = None) -> str:
    """Why an Implicit site has no ``log_prob``, and which estimators fit such programs."""
    where = f"Observed site `{site}` (Implicit)" if site else "An Implicit site"
    return (
        f"{where} has no density: an Implicit distribution is a generator's output, a value "
        "with no log_prob, so likelihood-based estimators (NUTS, HMC, SVI, MLE, Exact) and "
        "log-likelihoods do not apply. Fit implicit programs with adversarial estimators (a "
        "discriminator compares data with simulations: GANs; ALI/BiGAN when a guide encodes x)."
    )


def energy_sampling_message(site: str | None = None) -> str:
    """Why an Unnormalized site cannot be forward-simulated, and what samples it."""
    where = f"Observed site `{site}` (Unnormalized)" if site else "An Unnormalized site"
    return (
        f"{where} cannot be sampled by forward simulation: an energy model defines only "
        "log p(x) = -energy(x) - log Z, no sampler. Contrastive estimators draw its samples with "
        "MCMC samplers (Langevin, Gibbs); a fitted energy model samples through `fit.data_sampler`."
    )


def array_backend(value: Any) -> str | None:
    """``"pyro"`` for torch tensors, ``"numpyro"`` for JAX arrays (tracers too), else ``None``."""
    root = type(value).__module__.split(".")[0]
    if root == "torch":
        return "pyro"
    if root in ("jax", "jaxlib"):
        return "numpyro"
    return None


def active_backend() -> str:
    """The backend of the program running now: ``"pyro"`` or ``"numpyro"``.

    ppgen runs every program inside ``ppgen.backends.use_backend``, which points ``pyroapi``
    at the program's backend; outside ppgen (``pyroapi`` on its default, Pyro) a NumPyro
    program is recognised by NumPyro's handler stack being the only active one.
    """
    try:
        from pyroapi.dispatch import GenericModule

        current = str(GenericModule.current_backend.get("pyro", "pyro"))
    except ImportError:  # pragma: no cover - pyro-api is a core dependency
        current = "pyro"
    if current.startswith("numpyro"):
        return "numpyro"
    numpyro_prims = sys.modules.get("numpyro.primitives")
    pyro_runtime = sys.modules.get("pyro.poutine.runtime")
    numpyro_on = bool(getattr(numpyro_prims, "_PYRO_STACK", None))
    pyro_on = bool(getattr(pyro_runtime, "_PYRO_STACK", None))
    return "numpyro" if numpyro_on and not pyro_on else "pyro"


def check_backend(backend: str | None) -> None:
    if backend not in (None, "pyro", "numpyro"):
        from ppgen.errors import ProgramError

        raise ProgramError(f"`backend` must be 'pyro', 'numpyro' or None; got {backend!r}.")


def check_event_dim(event_dim: Any, ndim: int) -> int:
    """Validate ``event_dim`` of an Implicit value with ``ndim`` dims."""
    if isinstance(event_dim, bool) or not isinstance(event_dim, int) or not 0 <= event_dim <= ndim:
        from ppgen.errors import ProgramError

        raise ProgramError(
            f"`event_dim` of Implicit must be an int in [0, {ndim}] (the value has {ndim} dims); "
            f"got {event_dim!r}."
        )
    return event_dim


def check_energy(energy: Any, event_shape: Any, batch_shape: Any) -> tuple[tuple, tuple]:
    """Validate the arguments of Unnormalized; returns the shapes as int tuples."""
    from ppgen.errors import ProgramError

    if not callable(energy):
        raise ProgramError(
            f"`energy` of Unnormalized must be a callable x -> E(x); got {type(energy).__name__}."
        )
    out = []
    for name, shape in (("event_shape", event_shape), ("batch_shape", batch_shape)):
        try:
            t = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            t = None
        if t is None or any(s < 0 for s in t):
            raise ProgramError(
                f"`{name}` of Unnormalized must be a tuple of non-negative ints; got {shape!r}."
            )
        out.append(t)
    return out[0], out[1]
