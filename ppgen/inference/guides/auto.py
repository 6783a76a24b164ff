"""Guide factories: autoguides by name on either backend, or the user's own guide callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from ppgen.errors import EstimatorError

__all__ = ["AUTOGUIDES", "GuideName", "make_guide"]

GuideName = Literal["normal", "diagonal", "mvn", "lowrank", "laplace", "delta", "iaf"]

#: short name -> autoguide class name (the same on Pyro and NumPyro)
AUTOGUIDES: dict[str, str] = {
    "normal": "AutoNormal",
    "diagonal": "AutoDiagonalNormal",
    "mvn": "AutoMultivariateNormal",
    "lowrank": "AutoLowRankMultivariateNormal",
    "laplace": "AutoLaplaceApproximation",
    "delta": "AutoDelta",
    "map": "AutoDelta",
    "iaf": "AutoIAFNormal",
}


def _autoguide_module(backend: str) -> Any:
    if backend == "pyro":
        import pyro.infer.autoguide as m
    else:
        import numpyro.infer.autoguide as m
    return m


def guide_class_name(spec: Any) -> str | None:
    """Autoguide class name for a name/alias/class, or ``None`` for a user callable."""
    if isinstance(spec, str):
        key = spec.lower()
        if key in AUTOGUIDES:
            return AUTOGUIDES[key]
        by_class = {v.lower(): v for v in AUTOGUIDES.values()}
        if key in by_class:
            return by_class[key]
        raise EstimatorError(
            f"Unknown guide {spec!r}. Valid names: {sorted(AUTOGUIDES)} (or the autoguide class "
            "names, e.g. 'AutoNormal'), an autoguide class, or your own guide callable."
        )
    if isinstance(spec, type) and spec.__name__.startswith("Auto"):
        return spec.__name__
    return None


def make_guide(
    spec: Any,
    model: Callable,
    backend: str,
    *,
    hide: list[str] | None = None,
    init_scale: float | None = None,
    **kwargs: Any,
) -> Callable:
    """Build a guide for ``model`` on ``backend``.

    Arguments:
        spec: a short name (``"normal"``, ``"diagonal"``, ``"mvn"``, ``"lowrank"``,
            ``"laplace"``, ``"delta"``, ``"iaf"``), an autoguide class name or class, or a guide
            callable (returned unchanged).
        model: the (prepared) model callable.
        backend: ``"pyro"`` or ``"numpyro"``.
        hide: sites the autoguide must not cover (enumerated discrete latents).
        init_scale: initial scale of Normal-family autoguides.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("mu", dist.Normal(0.0, 1.0))
        >>> type(make_guide("normal", model, "pyro")).__name__
        'AutoNormal'
    """
    name = guide_class_name(spec)
    if name is None:
        if not callable(spec):
            raise EstimatorError(
                f"`guide` must be an autoguide name/class or a callable; got {type(spec).__name__}."
            )
        return spec
    mod = _autoguide_module(backend)
    cls = spec if isinstance(spec, type) else getattr(mod, name)
    if hide:
        if backend == "pyro":
            import pyro.poutine as poutine

            model = poutine.block(model, hide=hide)
        else:
            from numpyro import handlers

            model = handlers.block(model, hide=hide)
    if init_scale is not None and name in (
        "AutoNormal",
        "AutoDiagonalNormal",
        "AutoMultivariateNormal",
        "AutoLowRankMultivariateNormal",
    ):
        kwargs.setdefault("init_scale", init_scale)
    return cls(model, **kwargs)
