"""Argument checks and error messages shared by both backends' differentiable operations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError, ProgramError

PARAM_SEPARATORS = "$./_"
"""Characters after which a parameter name continues a module prefix (``enc$$$weight``)."""


def _listing(names: Any) -> str:
    names = list(names)
    return ", ".join(f"`{n}`" for n in names) if names else "(none)"


_WRAPPERS = ("Independent", "ExpandedDistribution", "MaskedDistribution", "ScaledDistribution")


@dataclass(frozen=True)
class Fault:
    """The first site at fault in a run of a program: ``kind`` is ``"proposal"`` (the guide's
    value is outside the model site's support), ``"nan"`` (a NaN parameter, value or factor)
    or ``"parameter"`` (a parameter outside its constraint); ``detail`` says which, with a
    value; ``factor`` marks a ``factor`` site."""

    site: str
    kind: str
    detail: str
    factor: bool = False


def dist_name(fn: Any) -> str:
    """A distribution's own name (``HalfNormal``), under ``.to_event``/``.expand``/``.mask``."""
    while type(fn).__name__ in _WRAPPERS and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).__name__


def show_value(x: Any) -> str:
    """A short display of a value: a number, or the first entries of an array."""
    a = np.asarray(x, dtype=float).reshape(-1)
    if a.size == 1:
        return f"{a[0]:.6g}"
    return str([round(float(v), 6) for v in a[:4]]) + (" ..." if a.size > 4 else "")


def proposal_fault(site: str, guide_fn: Any, model_fn: Any, value: Any, ok: Any) -> Fault | None:
    """A :class:`Fault` when a guide's finite ``value`` for ``site`` fails the model's support
    check ``ok`` (a boolean array, maybe reduced over event dims); ``None`` otherwise."""
    ok, v = np.asarray(ok).astype(bool), np.asarray(value, dtype=float)
    if ok.all() or not np.isfinite(v).all():
        return None
    bad = np.argwhere(~ok)
    shown = v[tuple(bad[0])] if ok.ndim and v.ndim >= ok.ndim else v
    return Fault(
        site,
        "proposal",
        f"the guide's {dist_name(guide_fn)} proposed {show_value(shown)} for it, outside the "
        f"support {model_fn.support} of the model's {dist_name(model_fn)}",
    )


def first_line(err: BaseException) -> str:
    """An error's first line, with the values it announces (torch's "found invalid values:")."""
    lines = [ln.strip() for ln in str(err).strip().splitlines()]
    if not lines:
        return type(err).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def check_site_names(
    names: Any, valid: Any, *, argument: str, op: str, kinds: str = "sites"
) -> None:
    """Raise :class:`ProgramError` naming the entries of ``names`` that are not in ``valid``."""
    valid = list(valid)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ProgramError(
            f"`{op}`: `{argument}` names {_listing(unknown)}, which the program does not have. "
            f"Its {kinds} are {_listing(valid)}; check the spelling or the program's arguments."
        )


def missing_latents_error(missing: list[str], *, given: list[str], op: str) -> ProgramError:
    """The error for latent sites that have no value (they would otherwise be sampled)."""
    return ProgramError(
        f"`{op}`: latent site(s) {_listing(missing)} have no value; `values` gives "
        f"{_listing(given)}. A log joint needs every latent: add them to `values` "
        "(constrained space), or pass them as data if they are observed."
    )


def check_score_site(name: str, kinds: Mapping[str, str], *, discrete: bool, op: str) -> None:
    """``name`` must be an observed, continuous sample site (``kinds``: site -> kind)."""
    observed = [n for n, k in kinds.items() if k == "observed"]
    if name not in kinds:
        raise ProgramError(
            f"`{op}`: `site={name!r}` is not a sample site of the program. Its observed sites "
            f"are {_listing(observed)}."
        )
    if kinds[name] != "observed":
        raise ProgramError(
            f"`{op}`: `site={name!r}` is latent, but the score ∇ₓ log p(x) is taken at an "
            f"observed value. Pass its value as data, or use one of {_listing(observed)}."
        )
    if discrete:
        raise ProgramError(
            f"`{op}`: `site={name!r}` has a discrete distribution, which has no score "
            "∇ₓ log p(x). Use a continuous site (or a dequantised one)."
        )


def check_rng(backend: str, seed: int | None, rng_key: Any, *, op: str) -> None:
    """Pyro draws from torch's RNG (``seed``); NumPyro needs one of ``rng_key`` or ``seed``."""
    if backend == "pyro" and rng_key is not None:
        raise EstimatorError(
            f"`{op}`: `rng_key` is a NumPyro (JAX) argument; the Pyro backend draws from "
            "torch's RNG. Pass `seed=` (an int) instead, or None for the global RNG."
        )
    if backend == "numpyro" and (rng_key is None) == (seed is None):
        raise EstimatorError(
            f"`{op}`: the NumPyro backend needs exactly one of `rng_key` (a "
            f"`jax.random.PRNGKey`) or `seed` (an int); got rng_key={rng_key!r}, seed={seed!r}."
        )


def matches_prefix(name: str, prefix: str | None) -> bool:
    """Whether parameter ``name`` belongs to the module (or group) ``prefix``.

    ``name`` matches when it equals ``prefix`` or continues it after a separator (one of
    ``$ . / _``), so ``"enc"`` matches ``"enc$$$weight"`` and ``"enc$params"`` but not
    ``"encoder$$$weight"``; a prefix that itself ends in a separator matches plainly.

    Example:
        >>> [matches_prefix(n, "enc") for n in ("enc$$$weight", "encoder$$$weight", "enc")]
        [True, False, True]
    """
    if prefix is None:
        return True
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    return not rest or prefix[-1:] in PARAM_SEPARATORS or rest[0] in PARAM_SEPARATORS


def select_params(params: Mapping[str, Any], prefix: str | None, *, where: str) -> dict[str, Any]:
    """The entries of ``params`` whose names match ``prefix`` (all when ``prefix`` is None)."""
    if prefix is not None and not isinstance(prefix, str):
        raise EstimatorError(
            f"`prefix` must be a module name (str) or None; got {type(prefix).__name__}."
        )
    out = {k: v for k, v in params.items() if matches_prefix(k, prefix)}
    if prefix is not None and not out:
        groups = list(dict.fromkeys(k.split("$", 1)[0] for k in params))
        raise ProgramError(
            f"`prefix={prefix!r}` matches no parameter in {where}; its modules/parameters are "
            f"{_listing(groups)}. Run the program once (so `pyro.module` / `numpyro.param` "
            "register them) or use one of those names."
        )
    return out
