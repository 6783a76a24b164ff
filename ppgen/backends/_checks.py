"""Argument checks and error messages shared by both backends' differentiable operations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ppgen.errors import EstimatorError, ProgramError

PARAM_SEPARATORS = "$./_"
"""Characters after which a parameter name continues a module prefix (``enc$$$weight``)."""


def _listing(names: Any) -> str:
    names = list(names)
    return ", ".join(f"`{n}`" for n in names) if names else "(none)"


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
