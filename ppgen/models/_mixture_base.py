"""The mixture base class: enumerated assignments, responsibilities, relabelling, ArviZ dims."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.models._base import Model, array

__all__ = ["Mixture", "stick_breaking", "posterior_assignments", "pointwise_log_likelihood"]


def stick_breaking(v: Any) -> Any:
    r"""Mixture weights from stick proportions, :math:`w_k = v_k \prod_{j<k}(1 - v_j)`.

    ``v`` has shape ``(..., K - 1)``; the last weight takes the rest of the stick, so the
    result, shape ``(..., K)``, sums to one.

    Example:
        >>> import torch
        >>> stick_breaking(torch.tensor([0.5, 0.5])).tolist()
        [0.5, 0.25, 0.25]
    """
    if hasattr(v, "detach"):
        import torch as xp

        cat, cumprod = xp.cat, xp.cumprod
    elif isinstance(v, np.ndarray):
        xp, cat, cumprod = np, np.concatenate, np.cumprod  # type: ignore[assignment]
    else:
        import jax.numpy as xp  # type: ignore[no-redef]

        cat, cumprod = xp.concatenate, xp.cumprod
    one = xp.ones_like(v[..., :1])
    rest = cumprod(1 - v, -1)
    return cat([v, one], -1) * cat([one, rest], -1)


class Mixture(Model):
    r"""Base of the mixtures: :math:`z_i \sim \mathrm{Cat}(w)`, :math:`x_i \sim f(\theta_{z_i})`.

    Subclasses give the component priors (:meth:`component_priors`, run inside
    ``plate("component", K)``) and the component likelihood (:meth:`component`); weights have a
    symmetric Dirichlet prior, or a truncated stick-breaking prior (:class:`DPMixture`).
    The assignments ``z`` are enumerated, so NUTS and ``SVI(elbo="enum")`` sum them out and the
    pointwise log-likelihood is :math:`\log\sum_k w_k f(x_i\mid\theta_k)`.

    Label switching: the likelihood is invariant to permuting components, so posterior draws
    (several chains, or one chain that mixes) can swap labels. Summaries relabel each draw by
    the permutation that best matches a reference (Hungarian matching on ``label_site``,
    iterated to the mean; :func:`ppgen.analysis.metrics.relabel`).

    Arguments:
        K: number of components (the truncation level for :class:`DPMixture`).
        concentration: Dirichlet :math:`\alpha` of the weights.
    """

    label_site: str = "locs"
    family: str = ""

    def __init__(self, K: int = 3, concentration: float = 1.0):
        if not isinstance(K, int) or K < 1:
            raise ValueError(f"`K` must be a positive int; got {K!r}.")
        self.K = K
        self.concentration = concentration

    # -- pieces subclasses provide ------------------------------------------------------------
    def component_priors(self, d: int, like: Any) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def component(self, p: Mapping[str, Any], dist: Any) -> Any:  # pragma: no cover
        """The component distribution (event dim 1) for parameters ``p`` in module ``dist``."""
        raise NotImplementedError

    def init_params(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover

    @property
    def component_sites(self) -> list[str]:
        """Sites indexed by component (axis 0 of the site value), weights included."""
        return ["weights", *self._component_names]

    _component_names: tuple[str, ...] = ()

    # -- the program ---------------------------------------------------------------------------
    def mixture_weights(self, like: Any) -> Any:
        return pyro.sample("weights", dist.Dirichlet(array([self.concentration] * self.K, like)))

    def model(self, x: Any) -> Any:
        n, d = x.shape
        weights = self.mixture_weights(x)
        with pyro.plate("component", self.K):
            params = self.component_priors(d, x)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
            pyro.sample("x", self.component({k: v[z] for k, v in params.items()}, dist), obs=x)

    # -- initialisation ------------------------------------------------------------------------
    def init_values(self, x: Any, seed: int = 0) -> dict[str, np.ndarray]:
        """Starting values from k-means++ on ``x`` (for NUTS ``init_strategy`` or a guide).

        Mixture likelihoods are multimodal and a prior-median start puts every component at
        the same place, so SVI/MAP can stall with merged components; starting from k-means
        avoids that without changing the model.
        """
        from scipy.cluster.vq import kmeans2

        x = np.asarray(x, dtype=float)
        rng = np.random.default_rng(seed)
        _, labels = kmeans2(x, min(self.K, len(x)), minit="++", seed=rng)
        w = np.bincount(labels, minlength=self.K) + 0.5
        out = {"weights": (w / w.sum()).astype(np.float32)}
        out.update({k: v.astype(np.float32) for k, v in self.init_params(x, labels).items()})
        return out

    def guide_for(
        self, x: Any, kind: Literal["delta", "normal"] = "delta", backend: str = "pyro", **kw: Any
    ) -> Any:
        """An autoguide over the continuous latents started at :meth:`init_values`.

        Example:
            >>> import ppgen
            >>> from ppgen.data import load
            >>> x = load("blobs", n=60)["x"]
            >>> from ppgen.models import GaussianMixture
            >>> gmm = GaussianMixture(3)
            >>> fit = ppgen.fit(gmm, {"x": x}, ppgen.inference.SVI(
            ...     guide=gmm.guide_for(x), elbo="enum", steps=30, lr=0.05))
            >>> sorted(fit.params)[:2]
            ['AutoDelta.locs', 'AutoDelta.scales']
        """
        values = self.init_values(x, kw.pop("seed", 0))
        if backend == "pyro":
            import torch
            from pyro import poutine
            from pyro.infer import autoguide

            vals = {k: torch.as_tensor(v) for k, v in values.items()}
            blocked = poutine.block(self.model, hide=["z"])
            init = autoguide.initialization.init_to_value(values=vals)
        else:
            import jax.numpy as jnp
            from numpyro import handlers
            from numpyro.infer import autoguide, init_to_value

            vals = {k: jnp.asarray(v) for k, v in values.items()}
            blocked = handlers.block(self.model, hide=["z"])
            init = init_to_value(values=vals)
        if kind == "delta":
            return autoguide.AutoDelta(blocked, init_loc_fn=init, **kw)
        if kind == "normal":
            kw.setdefault("init_scale", 0.05)
            return autoguide.AutoNormal(blocked, init_loc_fn=init, **kw)
        raise ValueError(f"`kind` must be 'delta' or 'normal'; got {kind!r}.")

    # -- posterior quantities from a Fit -------------------------------------------------------
    def _flat_draws(self, fit: Any, relabel: bool) -> dict[str, np.ndarray]:
        draws = dict(fit.draws)
        if "weights" not in draws and "v" in draws:
            draws["weights"] = np.asarray(stick_breaking(np.asarray(draws["v"])))
        if relabel:
            from ppgen.analysis.metrics import relabel as _relabel

            sites = [s for s in self.component_sites if s in draws]
            draws, _ = _relabel(draws, sites, key=self.label_site)
        return {k: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for k, v in draws.items()}

    def _log_joint(self, fit: Any, x: Any, relabel: bool) -> tuple[Any, tuple[int, int]]:
        """:math:`\\log w_k + \\log f(x_i\\mid\\theta_k)` per draw, shape ``(S, N, K)``."""
        import pyro.distributions as tdist
        import torch

        c, d = np.shape(next(iter(fit.draws.values())))[:2]
        flat = self._flat_draws(fit, relabel)
        p = {
            k: torch.tensor(np.asarray(flat[k]), dtype=torch.float64) for k in self._component_names
        }
        xt = torch.as_tensor(np.asarray(fit.data["x"] if x is None else x), dtype=torch.float64)
        with torch.no_grad():
            lp = self.component(p, tdist).log_prob(xt[:, None, None])  # (N, S, K)
            logw = (
                torch.tensor(np.asarray(flat["weights"]), dtype=torch.float64)
                .clamp_min(1e-300)
                .log()
            )
            return (lp.permute(1, 0, 2) + logw[:, None]), (c, d)

    def pointwise_log_likelihood(self, fit: Any, x: Any = None) -> np.ndarray:
        r"""Marginal :math:`\log\sum_k w_k f(x_i\mid\theta_k)` per draw, ``(chain, draw, N)``."""
        lj, (c, d) = self._log_joint(fit, x, relabel=False)
        return lj.logsumexp(-1).numpy().reshape(c, d, -1)

    def posterior_assignments(self, fit: Any, x: Any = None, relabel: bool = True) -> np.ndarray:
        r"""Responsibilities :math:`E_{\theta\mid x}[p(z_i = k \mid x_i, \theta)]`, ``(N, K)``.

        Draws are relabelled first (``relabel=True``) so that averaging over draws does not
        mix up components that swapped labels.
        """
        lj, _ = self._log_joint(fit, x, relabel)
        return lj.softmax(-1).mean(0).numpy()

    def density(self, fit: Any, x: Any) -> np.ndarray:
        """Posterior mean density :math:`E[p(x\\mid\\theta)]` at points ``x`` (M, D), ``(M,)``."""
        return np.exp(self.pointwise_log_likelihood(fit, x)).reshape(-1, len(x)).mean(0)

    def to_arviz(self, fit: Any, **kw: Any) -> Any:
        """``fit.to_arviz`` with the marginal pointwise log-likelihood (for ``az.loo``/compare).

        Components get a ``component`` dim and data a ``data`` dim.
        """
        import arviz as az

        idata = fit.to_arviz(log_likelihood=False, **kw)
        ll = self.pointwise_log_likelihood(fit)
        idata.add_groups(
            log_likelihood=az.from_dict(
                log_likelihood={"x": ll}, dims={"x": ["data"]}
            ).log_likelihood
        )
        return idata


def _owner(fit: Any) -> Mixture:
    obj = fit.program.obj
    if not isinstance(obj, Mixture):
        raise TypeError(f"`fit` is not a fit of a ppgen mixture; its program is {obj!r}.")
    return obj


def posterior_assignments(fit: Any, x: Any = None, relabel: bool = True) -> np.ndarray:
    """Responsibilities ``(N, K)`` of a mixture fit; see :meth:`Mixture.posterior_assignments`."""
    return _owner(fit).posterior_assignments(fit, x, relabel)


def pointwise_log_likelihood(fit: Any, x: Any = None) -> np.ndarray:
    """Marginal log-likelihood per datum ``(chain, draw, N)`` of a mixture fit."""
    return _owner(fit).pointwise_log_likelihood(fit, x)
