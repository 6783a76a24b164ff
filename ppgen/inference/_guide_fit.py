"""What the SVI engines of both backends share: the latent sites a guide covers and its Fit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.result import Fit

if TYPE_CHECKING:
    from ppgen.inference._base import Estimator, FitContext

__all__ = ["guide_latents", "guide_fit"]


def guide_latents(ctx: FitContext) -> list[str]:
    """Latent sites a guide draws: every latent except those summed out by enumeration."""
    return [n for n in ctx.info.latent if not ctx.info.sites[n].enumerate]


def guide_fit(
    est: Estimator,
    ctx: FitContext,
    history: dict[str, list[float]],
    params: dict[str, np.ndarray],
    state: Any,
    sampler: Callable[[int, int], dict[str, np.ndarray]],
    diagnostics: dict[str, Any],
    point_mass: bool = False,
) -> Fit:
    """The :class:`Fit` of a guide-based estimator: ``est.num_draws`` guide draws as one chain.

    A ``point_mass`` guide (``AutoDelta``: MAP) has one value per site, so the fit holds that
    one draw (chain 1, draw 1), not ``num_draws`` identical copies that would pass for a
    posterior sample with no spread.
    """
    n = 1 if point_mass else est.num_draws
    flat = sampler(n, ctx.seed + 1) if guide_latents(ctx) else {}
    draws = ctx.with_deterministic({k: v[None] for k, v in flat.items()})
    return Fit(
        program=ctx.program,
        estimator=est,
        info=ctx.info,
        data=ctx.data_np,
        draws=draws,
        params=params,
        history=history,
        seed=ctx.seed,
        device=ctx.device,
        param_state=state,
        posterior_sampler=sampler,
        diagnostics=diagnostics,
    )
