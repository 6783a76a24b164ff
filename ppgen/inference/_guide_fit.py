"""What the SVI engines of both backends share: the latent sites a guide covers and its Fit."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.result import Fit, chunk_seed

if TYPE_CHECKING:
    from ppgen.inference._base import Estimator, FitContext

__all__ = ["guide_latents", "guide_fit", "local_sites", "density_guide", "LOCAL_DRAW_VALUES"]

LOCAL_DRAW_VALUES = 2**23
"""Values (about 32 MiB in float32) a fit keeps of one local latent's draws by default."""


def guide_latents(ctx: FitContext) -> list[str]:
    """Latent sites a guide draws: every latent except those summed out by enumeration."""
    return [n for n in ctx.info.latent if not ctx.info.sites[n].enumerate]


def local_sites(ctx: FitContext) -> list[str]:
    """Latent sites with one value per datum: those in a plate that holds an observed site."""
    info = ctx.info
    data_plates = {p.name for o in info.observed for p in info.sites[o].plates}
    return [n for n in info.latent if {p.name for p in info.sites[n].plates} & data_plates]


def density_guide(ctx: FitContext, guide: Any, point_mass: bool) -> Any:
    """``guide`` when it is a density q(z | x) over latents (``fit.guide``), else ``None``: a
    point-mass guide (MAP) and the empty guide of a program without latents (MLE) are not."""
    return guide if guide is not None and not point_mass and guide_latents(ctx) else None


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def local_draw_count(est: Estimator, ctx: FitContext, n: int) -> int:
    """How many of ``n`` draws to keep of each local latent: ``est.local_draws`` when set,
    else as many as fit in :data:`LOCAL_DRAW_VALUES` values for the largest local site."""
    local = [s for s in local_sites(ctx) if s in guide_latents(ctx)]
    if not local or n <= 1:
        return n
    cap = getattr(est, "local_draws", None)
    if cap is None:
        largest = max(_size(ctx.info.sites[s].shape) for s in local)
        cap = max(1, LOCAL_DRAW_VALUES // max(largest, 1))
    return min(n, int(cap))


def _chunked_draws(
    ctx: FitContext,
    sampler: Callable[[int, int], dict[str, np.ndarray]],
    n: int,
    k: int,
    base: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``n`` guide draws made ``k`` at a time (chunk ``j`` from seed ``chunk_seed(base, j)``):
    every draw of the global latents, and the first ``k`` draws of each local latent (and of
    each deterministic site too large to keep whole). Chunk ``j`` can be made again exactly
    (:meth:`Fit.latent_chunks`), so passes over all draws never hold them all at once."""
    local = set(local_sites(ctx))
    whole: dict[str, list[np.ndarray]] = {}
    first: dict[str, np.ndarray] = {}
    for j in range(math.ceil(n / k)):
        part = sampler(min(k, n - j * k), chunk_seed(base, j))
        part = ctx.with_deterministic({name: v[None] for name, v in part.items()})
        for name, v in part.items():
            v = v[0]
            site = ctx.info.sites.get(name)
            latent = site is not None and site.kind == "latent"
            if name not in local and (latent or v[0].size * n <= LOCAL_DRAW_VALUES):
                whole.setdefault(name, []).append(v)
            elif j == 0:
                first[name] = v[None]
    return {name: np.concatenate(vs)[None] for name, vs in whole.items()}, first


def guide_fit(
    est: Estimator,
    ctx: FitContext,
    history: dict[str, list[float]],
    params: dict[str, np.ndarray],
    state: Any,
    sampler: Callable[[int, int], dict[str, np.ndarray]],
    diagnostics: dict[str, Any],
    point_mass: bool = False,
    guide: Callable | None = None,
) -> Fit:
    """The :class:`Fit` of a guide-based estimator: ``est.num_draws`` guide draws as one chain.

    A ``point_mass`` guide (``AutoDelta``: MAP) has one value per site, so the fit holds that
    one draw (chain 1, draw 1), not ``num_draws`` identical copies that would pass for a
    posterior sample with no spread.

    Local latents (one value per datum, e.g. a VAE's codes) keep ``est.local_draws`` draws
    (default: as many as fit in :data:`LOCAL_DRAW_VALUES` values per site) in
    ``fit.local_draws``; global latents keep all ``num_draws`` in ``fit.draws``. The draws
    are then made in chunks whose seeds ``fit.diagnostics`` records (``local_draws``,
    ``draw_seed``), so log-likelihood and predictive passes remake every draw exactly.

    ``guide``: the fitted guide program, kept as ``fit.guide`` (held-out ELBO and IWAE bounds
    in :func:`ppgen.evaluate`) when it is a density (:func:`density_guide`).
    """
    n = 1 if point_mass else est.num_draws
    local: dict[str, np.ndarray] = {}
    k = local_draw_count(est, ctx, n)
    if not guide_latents(ctx):
        draws: dict[str, np.ndarray] = {}
    elif k < n:
        base = ctx.seed + 1
        draws, local = _chunked_draws(ctx, sampler, n, k, base)
        diagnostics = {**diagnostics, "local_draws": k, "draw_seed": base, "num_draws": n}
    else:
        flat = sampler(n, ctx.seed + 1)
        draws = ctx.with_deterministic({name: v[None] for name, v in flat.items()})
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
        local_draws=local,
        guide=density_guide(ctx, guide, point_mass),
    )
