"""Finite and Dirichlet-process mixtures with enumerated (summed-out) assignments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pyroapi import distributions as dist
from pyroapi import pyro

from ppgen.models._base import deterministic
from ppgen.models._cli import CLISpec
from ppgen.models._mixture_base import (
    Mixture,
    pointwise_log_likelihood,
    posterior_assignments,
    stick_breaking,
)

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
        (1, 1, 3, 2)
    """

    cli = (
        CLISpec(
            "gmm",
            "mixture",
            "blobs",
            "nuts",
            {"K": int},
            description="GaussianMixture with --K (or --arg K=) components",
        ),
    )

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
        (1, 1, 2, 1)
    """

    cli = (
        CLISpec(
            "tmm",
            "mixture",
            "blobs",
            "nuts",
            {"K": int, "df": float},
            description="Student-t mixture with --K components",
        ),
    )

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
        (1, 1, 2, 1)
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
        (1, 1, 2, 6)
    """

    cli = (
        CLISpec(
            "bmm",
            "mixture",
            "digits_binary",
            "svi",
            {"K": int},
            fixed={"K": 10},
            description="Bernoulli mixture of binary vectors (K=10 for digits)",
        ),
    )

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
