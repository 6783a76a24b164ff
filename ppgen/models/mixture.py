"""Finite and Dirichlet-process mixtures with enumerated (summed-out) assignments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.models._base import Model, array, deterministic

__all__ = [
    "Mixture",
    "GaussianMixture",
    "StudentTMixture",
    "PoissonMixture",
    "BernoulliMixture",
    "DPMixture",
    "posterior_assignments",
    "pointwise_log_likelihood",
    "stick_breaking",
]


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


class GaussianMixture(Mixture):
    r"""A K-component Gaussian mixture with diagonal or full covariances.

    .. math:: w \sim \mathrm{Dir}(\alpha 1_K),\; \mu_k \sim N(0, s^2 I),\;
              \sigma_{kd} \sim \mathrm{LogNormal}(0, 1),\;
              L_k \sim \mathrm{LKJCholesky}(\eta)\ (\text{full}),\;
              z_i \sim \mathrm{Cat}(w),\; x_i \sim N(\mu_{z_i}, \Sigma_{z_i})

    with :math:`\Sigma_k = \mathrm{diag}\,\sigma_k^2` (``"diag"``) or
    :math:`\mathrm{diag}(\sigma_k) L_k L_k^\top \mathrm{diag}(\sigma_k)` (``"full"``).
    The assignments ``z`` are marked ``infer={"enumerate": "parallel"}``: SVI with
    ``elbo="enum"`` and NUTS sum them out exactly, so only the continuous parameters are
    sampled or fitted, and the pointwise log-likelihood is the marginal
    :math:`\log\sum_k w_k N(x_i\mid\mu_k,\Sigma_k)`.

    References:
        Bishop, *Pattern Recognition and Machine Learning*, ch. 9.
        Lewandowski, Kurowicka & Joe (2009), LKJ correlation prior.

    Arguments:
        K: number of components; ``concentration``: Dirichlet α; ``loc_scale``: prior scale s;
        ``covariance``: ``"diag"`` or ``"full"``; ``eta``: LKJ concentration.

    Data: ``x`` (N, D).

    Example:
        >>> import ppgen
        >>> from ppgen.data import load
        >>> data = load("blobs", n=60)
        >>> fit = ppgen.fit(GaussianMixture(3), data,
        ...                 ppgen.inference.SVI(guide="delta", elbo="enum", steps=50))
        >>> fit.draws["locs"].shape
        (1, 1000, 3, 2)
    """

    family = "gaussian"

    def __init__(
        self,
        K: int = 3,
        concentration: float = 1.0,
        loc_scale: float = 10.0,
        covariance: Literal["diag", "full"] = "diag",
        eta: float = 2.0,
    ):
        super().__init__(K, concentration)
        if covariance not in ("diag", "full"):
            raise ValueError(f"`covariance` must be 'diag' or 'full'; got {covariance!r}.")
        self.loc_scale = loc_scale
        self.covariance = covariance
        self.eta = eta
        self._component_names = ("locs", "scales") + (("corr_chol",) * (covariance == "full"))

    def component_priors(self, d: int, like: Any) -> dict[str, Any]:
        out = {
            "locs": pyro.sample("locs", dist.Normal(0.0, self.loc_scale).expand([d]).to_event(1)),
            "scales": pyro.sample("scales", dist.LogNormal(0.0, 1.0).expand([d]).to_event(1)),
        }
        if self.covariance == "full":
            out["corr_chol"] = pyro.sample("corr_chol", dist.LKJCholesky(d, self.eta))
        return out

    def component(self, p: Mapping[str, Any], dist: Any) -> Any:
        if self.covariance == "diag":
            return dist.Normal(p["locs"], p["scales"]).to_event(1)
        tril = p["scales"][..., :, None] * p["corr_chol"]
        return dist.MultivariateNormal(p["locs"], scale_tril=tril)

    def init_params(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        d = x.shape[1]
        locs, scales, chol = [], [], []
        for k in range(self.K):
            xk = x[labels == k]
            xk = xk if len(xk) > d else x
            locs.append(xk.mean(0))
            scales.append(np.maximum(xk.std(0), 1e-2))
            corr = np.corrcoef(xk.T).reshape(d, d) if d > 1 else np.ones((1, 1))
            chol.append(np.linalg.cholesky(0.9 * np.nan_to_num(corr) + 0.1 * np.eye(d)))
        out = {"locs": np.stack(locs), "scales": np.stack(scales)}
        if self.covariance == "full":
            out["corr_chol"] = np.stack(chol)
        return out

    def covariances(self, fit: Any, relabel: bool = True) -> np.ndarray:
        """Posterior mean covariance matrices, ``(K, D, D)``."""
        flat = self._flat_draws(fit, relabel)
        s = flat["scales"]
        if self.covariance == "diag":
            return (np.einsum("ski,ij->skij", s**2, np.eye(s.shape[-1]))).mean(0)
        tril = s[..., :, None] * flat["corr_chol"]
        return np.einsum("skij,sklj->skil", tril, tril).mean(0)


class StudentTMixture(GaussianMixture):
    r"""Mixture of diagonal Student-t components, robust to outliers.

    .. math:: x_i \sim \prod_d t_\nu(\mu_{z_i d}, \sigma_{z_i d})

    with the priors of :class:`GaussianMixture` (``covariance="diag"``) and fixed degrees of
    freedom ``df`` (:math:`\nu`).

    Example:
        >>> import numpy as np, ppgen
        >>> x = np.random.default_rng(0).standard_t(3, size=(40, 1)) + [[0.0], [8.0]] * 20
        >>> fit = ppgen.fit(StudentTMixture(2, df=3.0), {"x": x},
        ...                 ppgen.inference.SVI(guide="delta", elbo="enum", steps=20))
        >>> fit.draws["locs"].shape
        (1, 1000, 2, 1)
    """

    family = "studentt"

    def __init__(self, K: int = 3, df: float = 4.0, concentration: float = 1.0, loc_scale=10.0):
        super().__init__(K, concentration, loc_scale)
        self.df = df

    def component(self, p: Mapping[str, Any], dist: Any) -> Any:
        return dist.StudentT(self.df, p["locs"], p["scales"]).to_event(1)


class PoissonMixture(Mixture):
    r"""Mixture of independent Poisson counts.

    .. math:: \lambda_{kd} \sim \mathrm{Gamma}(a, b),\; x_{id} \mid z_i \sim
              \mathrm{Poisson}(\lambda_{z_i d})

    Data: ``x`` (N, D) non-negative integer counts (negative or fractional counts fail
    validation with a :class:`~ppgen.errors.DataError` naming ``x``).

    Example:
        >>> import numpy as np, ppgen
        >>> x = np.random.default_rng(0).poisson([[2.0], [20.0]] * 20)
        >>> fit = ppgen.fit(PoissonMixture(2), {"x": x},
        ...                 ppgen.inference.SVI(guide="delta", elbo="enum", steps=20))
        >>> fit.draws["rates"].shape
        (1, 1000, 2, 1)
    """

    family = "poisson"
    label_site = "rates"
    _component_names = ("rates",)

    def __init__(self, K: int = 3, concentration: float = 1.0, rate_prior=(1.0, 0.1)):
        super().__init__(K, concentration)
        self.rate_prior = tuple(rate_prior)

    def component_priors(self, d: int, like: Any) -> dict[str, Any]:
        a, b = self.rate_prior
        return {"rates": pyro.sample("rates", dist.Gamma(a, b).expand([d]).to_event(1))}

    def component(self, p: Mapping[str, Any], dist: Any) -> Any:
        return dist.Poisson(p["rates"]).to_event(1)

    def init_params(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        means = [
            x[labels == k].mean(0) if (labels == k).any() else x.mean(0) for k in range(self.K)
        ]
        return {"rates": np.stack(means) + 0.1}


class BernoulliMixture(Mixture):
    r"""Mixture of independent Bernoulli variables (latent class analysis for binary data).

    .. math:: p_{kd} \sim \mathrm{Beta}(a, b),\; x_{id} \mid z_i \sim \mathrm{Bernoulli}(p_{z_i d})

    Data: ``x`` (N, D) of 0/1.

    Example:
        >>> import numpy as np, ppgen
        >>> x = (np.random.default_rng(0).random((40, 6)) < [[0.9] * 6, [0.1] * 6] * 20) * 1
        >>> fit = ppgen.fit(BernoulliMixture(2), {"x": x},
        ...                 ppgen.inference.SVI(guide="delta", elbo="enum", steps=20))
        >>> fit.draws["probs"].shape
        (1, 1000, 2, 6)
    """

    family = "bernoulli"
    label_site = "probs"
    _component_names = ("probs",)

    def __init__(self, K: int = 3, concentration: float = 1.0, prob_prior=(1.0, 1.0)):
        super().__init__(K, concentration)
        self.prob_prior = tuple(prob_prior)

    def component_priors(self, d: int, like: Any) -> dict[str, Any]:
        a, b = self.prob_prior
        return {"probs": pyro.sample("probs", dist.Beta(a, b).expand([d]).to_event(1))}

    def component(self, p: Mapping[str, Any], dist: Any) -> Any:
        return dist.Bernoulli(probs=p["probs"]).to_event(1)

    def init_params(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        means = [
            x[labels == k].mean(0) if (labels == k).any() else x.mean(0) for k in range(self.K)
        ]
        return {"probs": np.clip(np.stack(means), 0.05, 0.95)}


_FAMILIES = {
    "gaussian": GaussianMixture,
    "studentt": StudentTMixture,
    "poisson": PoissonMixture,
    "bernoulli": BernoulliMixture,
}


class DPMixture(Mixture):
    r"""Truncated stick-breaking Dirichlet-process mixture: the data choose how many are used.

    .. math:: v_k \sim \mathrm{Beta}(1, \alpha)\ (k < K),\; w = \mathrm{SB}(v),\;
              \theta_k \sim G_0,\; z_i \sim \mathrm{Cat}(w),\; x_i \sim f(\theta_{z_i})

    :math:`K` is a truncation level, not the number of clusters: with a small :math:`\alpha`
    the stick-breaking prior shrinks the weights of unneeded components towards zero, and
    :meth:`num_occupied` counts the components that hold data. Component priors and likelihood
    come from the ``family`` mixture (``"gaussian"``, ``"studentt"``, ``"poisson"``,
    ``"bernoulli"``), built with ``**family_kwargs``.

    References:
        Sethuraman (1994), A constructive definition of Dirichlet priors.
        Blei & Jordan (2006), Variational inference for Dirichlet process mixtures.

    Example:
        >>> import ppgen
        >>> from ppgen.data import load
        >>> dp = DPMixture(6, alpha=0.5)
        >>> x = load("blobs", n=60)["x"]
        >>> fit = ppgen.fit(dp, {"x": x}, ppgen.inference.SVI(
        ...     guide=dp.guide_for(x), elbo="enum", steps=20))
        >>> fit.draws["weights"].shape
        (1, 1000, 6)
    """

    def __init__(self, K: int = 10, alpha: float = 1.0, family: str = "gaussian", **family_kwargs):
        if family not in _FAMILIES:
            raise ValueError(f"`family` must be one of {sorted(_FAMILIES)}; got {family!r}.")
        super().__init__(K, alpha)
        self.alpha = alpha
        self.family = family
        self.base = _FAMILIES[family](K, **family_kwargs)
        self.label_site = self.base.label_site
        self._component_names = self.base._component_names

    def mixture_weights(self, like: Any) -> Any:
        with pyro.plate("stick", self.K - 1):
            v = pyro.sample("v", dist.Beta(1.0, self.alpha))
        return deterministic("weights", stick_breaking(v))

    def component_priors(self, d: int, like: Any) -> dict[str, Any]:
        return self.base.component_priors(d, like)

    def component(self, p: Mapping[str, Any], dist: Any) -> Any:
        return self.base.component(p, dist)

    def init_params(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        return self.base.init_params(x, labels)

    def init_values(self, x: Any, seed: int = 0) -> dict[str, np.ndarray]:
        out = super().init_values(x, seed)
        order = np.argsort(-out["weights"])  # stick-breaking favours early components
        out = {k: v[order] for k, v in out.items()}
        if "scales" in out:  # broad, overlapping components: surplus ones can empty out
            out["scales"] = np.broadcast_to(np.std(x, 0), out["scales"].shape).copy()
        w = out.pop("weights")
        v = w[:-1] / np.maximum(1.0 - np.concatenate([[0.0], np.cumsum(w)[:-2]]), 1e-6)
        out["v"] = np.clip(v, 1e-3, 1 - 1e-3)
        out = {k: v.astype(np.float32) for k, v in out.items()}
        return out

    def num_occupied(self, fit: Any, x: Any = None, min_size: int = 1) -> int:
        """Components that are the most probable assignment of at least ``min_size`` points."""
        resp = self.posterior_assignments(fit, x, relabel=False)
        counts = np.bincount(resp.argmax(1), minlength=self.K)
        return int((counts >= min_size).sum())

    def __repr__(self) -> str:
        return f"DPMixture(K={self.K}, alpha={self.alpha}, family={self.family!r})"


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
