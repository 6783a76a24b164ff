"""Pyro HMC/NUTS kernels that record per-transition sample statistics for ``MCMC``."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["stats_kernel", "mcmc_health", "health_message"]


def stats_kernel(base: type) -> type:
    """Subclass a Pyro HMC/NUTS kernel to record per-transition statistics."""

    class Recording(base):  # type: ignore[misc, valid-type]
        _ppgen_fixed_steps: int | None = None

        if hasattr(base, "num_steps"):

            @property
            def num_steps(self) -> int:
                # Pyro derives the count from a trajectory length fixed at construction, so
                # step-size adaptation changes it; a fixed count stays fixed
                if self._ppgen_fixed_steps is not None:
                    return self._ppgen_fixed_steps
                return base.num_steps.fget(self)

        def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None:
            self._ppgen_stats: list[dict[str, Any]] = []
            super().setup(warmup_steps, *args, **kwargs)

        def _sample_r(self, name: str) -> Any:
            r, r_unscaled = super()._sample_r(name)
            _, pe, _ = self._fetch_from_cache()
            self._ppgen_energy = float(self._kinetic_energy(r_unscaled) + pe)
            self._ppgen_steps = 0
            return r, r_unscaled

        def _build_basetree(self, *args: Any, **kwargs: Any) -> Any:
            self._ppgen_steps += 1
            return super()._build_basetree(*args, **kwargs)

        def sample(self, params: Any) -> Any:
            n_div = len(self._divergences)
            mean_old = self._mean_accept_prob
            self._ppgen_energy = float("nan")
            self._ppgen_steps = 0
            step_size = float(self.step_size)
            z = super().sample(params)
            if self._t > self._warmup_steps:
                n = self._t - self._warmup_steps
                # recovered from Pyro's running mean; clip the rounding of n*a - (n-1)*b
                acc = min(max(n * self._mean_accept_prob - (n - 1) * mean_old, 0.0), 1.0)
                steps = self._ppgen_steps if hasattr(self, "_max_tree_depth") else self.num_steps
                _, pe, _ = self._fetch_from_cache()
                self._ppgen_stats.append(
                    {
                        "diverging": len(self._divergences) > n_div,
                        "energy": self._ppgen_energy,
                        "step_size": step_size,
                        "n_steps": steps,
                        "tree_depth": int(np.ceil(np.log2(steps + 1))),
                        "acceptance_rate": float(acc),
                        "lp": -float(pe) if pe is not None else float("nan"),
                    }
                )
            return z

    Recording.__name__ = base.__name__
    return Recording


# ---------------------------------------------------------------------------- health checks
RHAT_MAX = 1.01
"""R-hat above this flags a site (Vehtari et al. 2021, as ArviZ and PyMC)."""

ESS_PER_CHAIN = 100
"""Bulk or tail ESS below this many per chain flags a site (PyMC's rule)."""


def _component(site: str, shape: tuple[int, ...], flat: int) -> str:
    if not shape:
        return site
    return f"{site}[{', '.join(str(int(i)) for i in np.unravel_index(flat, shape))}]"


def _extreme(per_site: dict[str, np.ndarray], worst: str) -> tuple[float | None, str | None]:
    """The max (or min) over every finite scalar component, and the component that holds it."""
    best: tuple[float, str] | None = None
    for site, v in per_site.items():
        v = np.asarray(v, dtype=float)
        finite = np.isfinite(v)
        if not finite.any():
            continue
        flat = np.where(finite, v, -np.inf if worst == "max" else np.inf).ravel()
        i = int(np.argmax(flat) if worst == "max" else np.argmin(flat))
        if best is None or (flat[i] > best[0] if worst == "max" else flat[i] < best[0]):
            best = (float(flat[i]), _component(site, v.shape, i))
    return (None, None) if best is None else best


def _arviz_stat(draws: dict[str, np.ndarray], fn: str, **kw: Any) -> dict[str, np.ndarray]:
    """``arviz.<fn>`` of every site, per scalar component; ArviZ's own chatter silenced."""
    import logging
    import warnings

    with warnings.catch_warnings():
        # its 1.0 announcement, "more chains than draws", 0/0 of a constant component
        warnings.simplefilter("ignore")
        import arviz as az

        log = logging.getLogger("arviz")
        level, log.level = log.level, logging.ERROR  # "Shape validation failed"
        try:
            ds = az.convert_to_dataset({k: np.asarray(v, dtype=float) for k, v in draws.items()})
            out = getattr(az, fn)(ds, **kw)
        finally:
            log.setLevel(level)
    return {k: np.asarray(out[k].values) for k in draws}


def mcmc_health(
    draws: dict[str, np.ndarray],
    sample_stats: dict[str, np.ndarray],
    *,
    max_tree_depth: int | None = None,
    target_accept: float | None = None,
) -> dict[str, Any]:
    """Convergence and sampler-health diagnostics of MCMC draws, with what to do about each.

    ``draws`` maps latent sites to arrays shaped ``(chain, draw, *site_shape)``;
    ``sample_stats`` holds ArviZ-named per-transition statistics shaped ``(chain, draw)``
    (``diverging``; ``tree_depth`` when ``max_tree_depth`` is given). Returns:

    - ``divergences`` (total) and ``divergences_per_chain``;
    - ``max_tree_depth_hits``: transitions whose tree reached ``max_tree_depth`` (the
      trajectory was cut before it turned; Stan's and PyMC's count), ``None`` without a
      ``max_tree_depth`` (HMC);
    - ``rhat_max`` (rank-normalised split R-hat, :func:`arviz.rhat`; ``None`` with one chain,
      where R-hat is undefined, or fewer than 4 draws) and ``rhat_max_site``;
    - ``ess_bulk_min`` / ``ess_tail_min`` (:func:`arviz.ess`, ``method="bulk"``/``"tail"``;
      ``None`` under 4 draws) and their ``..._site``;
    - ``stuck_chains``: chains in which a site never moved (all its components; single
      components constant by construction, like a Cholesky factor's fixed entries, are not);
    - ``health_warnings``: one sentence per problem, with the counts and what to do. A problem
      is any divergence, any tree-depth hit, R-hat > 1.01, bulk or tail ESS < 100 per chain
      (``100 * num_chains``, as PyMC), or a stuck chain. Empty when all is well.

    Max and min are over every scalar component of every site; ``..._site`` names the
    component (``"beta[1, 0]"``). Counts are of the kept (thinned) transitions.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> mu = rng.normal(size=(2, 500)) + np.array([[0.0], [3.0]])  # chains disagree
        >>> stats = {"diverging": np.zeros((2, 500), bool)}
        >>> h = mcmc_health({"mu": mu}, stats)
        >>> round(h["rhat_max"], 2), h["rhat_max_site"], h["divergences"]
        (1.75, 'mu', 0)
        >>> print(h["health_warnings"][0][:36])
        R-hat 1.75 > 1.01 for site 'mu': the
    """
    div = np.asarray(sample_stats["diverging"], dtype=bool)
    num_chains, num_draws = div.shape
    total = div.size
    out: dict[str, Any] = {
        "divergences": int(div.sum()),
        "divergences_per_chain": [int(n) for n in div.sum(axis=1)],
        "max_tree_depth_hits": None,
        "rhat_max": None,
        "rhat_max_site": None,
        "ess_bulk_min": None,
        "ess_bulk_min_site": None,
        "ess_tail_min": None,
        "ess_tail_min_site": None,
        "stuck_chains": [],
    }
    problems: list[str] = []
    if out["divergences"]:
        per = ", ".join(f"chain {c}: {n}" for c, n in enumerate(out["divergences_per_chain"]))
        ta = f" (now {target_accept:g}, e.g. {0.95 if target_accept < 0.95 else 0.99})"
        problems.append(
            f"{out['divergences']} of {total} transitions diverged ({per}): the draws are biased "
            "where the posterior is strongly curved. Raise target_accept"
            + (ta if target_accept is not None else " (e.g. 0.95)")
            + " or reparameterise the model (e.g. non-centred hierarchical priors)."
        )
    if max_tree_depth is not None and "tree_depth" in sample_stats:
        hits = int((np.asarray(sample_stats["tree_depth"]) >= max_tree_depth).sum())
        out["max_tree_depth_hits"] = hits
        if hits:
            problems.append(
                f"{hits} of {total} transitions hit max_tree_depth={max_tree_depth}: their "
                "trajectories were cut before they turned, so the chains explore slowly. Raise "
                f"max_tree_depth (e.g. {max_tree_depth + 2}), or rescale/reparameterise the model "
                "(dense_mass=True for strongly correlated latents)."
            )
    draws = {k: np.asarray(v) for k, v in draws.items() if np.asarray(v).size}
    if num_draws >= 2:
        for c in range(num_chains):
            # a whole site frozen: a stuck sampler freezes every coordinate, whereas single
            # components may be constant by construction (a Cholesky factor's fixed entries)
            frozen = [k for k, v in draws.items() if (np.ptp(v[c], axis=0) == 0).all()]
            if frozen:
                out["stuck_chains"].append(c)
                problems.append(
                    f"chain {c} never moved for site {frozen[0]!r} (all {num_draws} draws "
                    "equal): the sampler is stuck. Try another init_strategy (a dict of "
                    "sensible values) or seed, and check the model's support."
                )
    if draws and num_draws >= 4:
        if num_chains >= 2:
            out["rhat_max"], out["rhat_max_site"] = _extreme(_arviz_stat(draws, "rhat"), "max")
        for kind in ("bulk", "tail"):
            ess = _arviz_stat(draws, "ess", method=kind)
            out[f"ess_{kind}_min"], out[f"ess_{kind}_min_site"] = _extreme(ess, "min")
    if out["rhat_max"] is not None and out["rhat_max"] > RHAT_MAX:
        problems.append(
            f"R-hat {out['rhat_max']:.2f} > {RHAT_MAX} for site {out['rhat_max_site']!r}: the "
            "chains disagree. Run longer chains (more num_warmup and num_samples), and check "
            "for several modes or a bad start."
        )
    floor = ESS_PER_CHAIN * num_chains
    for kind, what in (("bulk", "means and medians"), ("tail", "quantiles and intervals")):
        ess = out[f"ess_{kind}_min"]
        if ess is not None and ess < floor:
            problems.append(
                f"{kind} ESS {ess:.0f} < {ESS_PER_CHAIN} per chain ({floor} for {num_chains} "
                f"chain{'s' if num_chains > 1 else ''}) for site {out[f'ess_{kind}_min_site']!r}: "
                f"its {what} are unreliable. Draw more samples (num_samples) or reparameterise."
            )
    out["health_warnings"] = problems
    return out


def health_message(name: str, health: dict[str, Any], num_chains: int, num_draws: int) -> str:
    """One warning text of every problem :func:`mcmc_health` found.

    Example:
        >>> h = {"health_warnings": ["R-hat 1.20 > 1.01 for site 'mu': ..."]}
        >>> print(health_message("NUTS", h, 2, 100))
        NUTS: 1 sampling problem in 2 chains x 100 draws (details in fit.diagnostics):
        - R-hat 1.20 > 1.01 for site 'mu': ...
    """
    probs = health["health_warnings"]
    head = (
        f"{name}: {len(probs)} sampling problem{'s' if len(probs) > 1 else ''} in {num_chains} "
        f"chain{'s' if num_chains > 1 else ''} x {num_draws} draws (details in fit.diagnostics):"
    )
    return "\n- ".join([head, *probs])
