"""ELBO objectives by name on either backend: trace, mean-field, graph, enum, Renyi / IWAE."""

from __future__ import annotations

from typing import Any, Literal

from ppgen.errors import EstimatorError

__all__ = ["ELBOS", "ElboName", "make_elbo"]

ElboName = Literal["trace", "meanfield", "graph", "enum", "renyi", "iwae"]

ELBOS: dict[str, str] = {
    "trace": "Trace_ELBO",
    "meanfield": "TraceMeanField_ELBO",
    "graph": "TraceGraph_ELBO",
    "enum": "TraceEnum_ELBO",
    "renyi": "RenyiELBO",
    "iwae": "RenyiELBO",
}


def make_elbo(
    name: str | Any,
    backend: str,
    *,
    num_particles: int = 1,
    vectorize_particles: bool = True,
    alpha: float = 0.0,
    max_plate_nesting: int | None = None,
) -> Any:
    """The backend's ELBO object for ``name``.

    ``"iwae"`` is the importance-weighted bound
    :math:`\\mathbb{E}\\log \\frac1K\\sum_k p(x, z_k)/q(z_k)`, i.e. Rényi's bound at
    :math:`\\alpha = 0`; ``"renyi"`` uses ``alpha``. Both need ``num_particles >= 2``.

    References:
        Burda et al., Importance Weighted Autoencoders, arXiv:1509.00519.
        Li & Turner, Rényi Divergence Variational Inference, arXiv:1602.02311.

    Example:
        >>> type(make_elbo("iwae", "pyro", num_particles=8)).__name__
        'RenyiELBO'
    """
    if not isinstance(name, str):
        return name  # an ELBO object the user built
    key = name.lower()
    if key not in ELBOS:
        raise EstimatorError(f"Unknown `elbo={name!r}`. Valid names: {sorted(ELBOS)}.")
    if key in ("renyi", "iwae") and num_particles < 2:
        raise EstimatorError(
            f"`elbo={name!r}` averages importance weights over particles and needs "
            f"`num_particles >= 2`; got {num_particles}."
        )
    if key == "iwae":
        alpha = 0.0
    cls_name = ELBOS[key]
    if backend == "pyro":
        import pyro.infer as infer

        cls = getattr(infer, cls_name)
        kw: dict[str, Any] = {"num_particles": num_particles}
        if num_particles > 1:
            kw["vectorize_particles"] = vectorize_particles
        if max_plate_nesting is not None:
            kw["max_plate_nesting"] = max_plate_nesting
        if cls_name == "RenyiELBO":
            kw["alpha"] = alpha
        if cls_name == "TraceEnum_ELBO":
            kw["strict_enumeration_warning"] = True
        return cls(**kw)
    import numpyro.infer as ninfer

    cls = getattr(ninfer, cls_name)
    if cls_name == "RenyiELBO":
        return cls(alpha=alpha, num_particles=num_particles)
    if cls_name == "TraceEnum_ELBO":
        try:
            import funsor  # noqa: F401
        except ImportError as e:
            raise EstimatorError("elbo='enum' on NumPyro needs funsor: pip install funsor") from e
        kw = {"num_particles": num_particles}
        if max_plate_nesting is not None:
            kw["max_plate_nesting"] = max_plate_nesting
        return cls(**kw)
    return cls(num_particles=num_particles, vectorize_particles=vectorize_particles)
