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
) -> Fit:
    """The :class:`Fit` of a guide-based estimator: ``est.num_draws`` guide draws as one chain."""
    flat = sampler(est.num_draws, ctx.seed + 1) if guide_latents(ctx) else {}
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
