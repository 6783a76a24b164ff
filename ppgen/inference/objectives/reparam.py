"""The reparameterised ELBO: objectives from one guide pass and one model pass; KL warm-up."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import pyro
import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import ELBO
from pyro.poutine.messenger import Messenger
from torch import Tensor
from torch.distributions import kl_divergence

from ppgen.capabilities import ELBOTerms, declares
from ppgen.errors import EstimatorError

__all__ = [
    "ReparamELBO",
    "KLWarmup",
    "Objective",
    "NotReparameterized",
    "lean_passes",
    "log_weights",
]

Objective = Literal["trace", "meanfield", "renyi", "iwae"]
_PARTICLES = "num_particles_vectorized"


class NotReparameterized(EstimatorError):
    """The program is outside the lean path (non-reparameterised or enumerated sites)."""


class _Record(Messenger):
    """One pass of the guide (record) or the model (replay the guide's values, record)."""

    def __init__(self, values: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        self.values = values
        self.sites: dict[str, dict] = {}

    def _process_message(self, msg: dict) -> None:
        if self.values is not None and msg["type"] == "sample" and not msg["is_observed"]:
            v = self.values.get(msg["name"])
            if v is not None:
                msg["value"], msg["done"] = v, True

    def _postprocess_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["infer"].get("_deterministic"):
            return
        fn = msg["fn"]
        if type(fn).__name__ == "_Subsample":
            return
        if msg["infer"].get("enumerate"):
            raise NotReparameterized(
                f"Site `{msg['name']}` is enumerated; the lean ELBO cannot sum it out."
            )
        if self.values is None and not msg["is_observed"] and not fn.has_rsample:
            raise NotReparameterized(
                f"Guide site `{msg['name']}` ({type(fn).__name__}) is not reparameterisable."
            )
        self.sites[msg["name"]] = msg


def _run(
    fn: Callable, kwargs: Mapping[str, Any], values: Mapping[str, Tensor] | None, k: int, dim: int
) -> dict[str, dict]:
    rec = _Record(values)
    with rec:
        if k > 1:
            with pyro.plate(_PARTICLES, k, dim=dim):
                fn(**kwargs)
        else:
            fn(**kwargs)
    return rec.sites


def lean_passes(
    model: Callable, guide: Callable, kwargs: Mapping[str, Any], k: int, plate_nesting: int
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Run the guide, then the model on the guide's draws; ``({site: msg}, {site: msg})``.

    With ``k > 1`` both run inside a plate of ``k`` particles at dim ``-plate_nesting - 1``.
    """
    dim = -plate_nesting - 1
    g = _run(guide, kwargs, None, k, dim)
    values = {n: s["value"] for n, s in g.items() if not s["is_observed"]}
    return _run(model, kwargs, values, k, dim), g


def _log_prob(site: dict, scaled: bool = True) -> Tensor:
    lp = site["fn"].log_prob(site["value"])
    return scale_and_mask(lp, site["scale"] if scaled else 1.0, site["mask"])


def _sum_to(lp: Tensor | float, keep: tuple[int, ...], ndim: int) -> Tensor | float:
    """Sum ``lp`` (right-aligned in ``ndim`` batch dims) over every dim except ``keep``."""
    if not torch.is_tensor(lp):
        return lp
    lp = lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)
    dims = [d for d in range(ndim) if d not in keep]
    return lp.sum(dims, keepdim=True) if dims else lp


class ReparamELBO(ELBO):
    r"""ELBO objectives evaluated directly from one guide pass and one model pass.

    No Pyro traces are built: a small handler records each site's distribution and value,
    the model replays the guide's draws, and the objective is summed with torch. For the same
    parameters and noise the numbers equal Pyro's: ``"trace"`` = ``Trace_ELBO``,
    ``"meanfield"`` = ``TraceMeanField_ELBO`` (analytic KL where registered), ``"renyi"`` /
    ``"iwae"`` = ``RenyiELBO``: when every site sits in the data plate (a VAE) the weights are
    per datum, the bound of Burda et al.,

    .. math:: \mathcal L_K = \sum_n \mathbb E \log \frac1K \sum_k
        \frac{p(x_n, z_{nk})}{q(z_{nk} \mid x_n)},

    and otherwise one weight per particle for the whole batch. Under minibatching the
    ``N / B`` weight multiplies the per-datum bound (Pyro puts it inside the log-mean-exp;
    the numbers agree on full batches). ``beta`` weights the latent terms
    (:math:`\log p(z) - \log q(z)`, or the KL) as in the :math:`\beta`-VAE; change it during
    training with :class:`KLWarmup`. Guides must be reparameterisable; otherwise use Pyro's
    objectives (``SVI(elbo="trace")`` handles score-function terms).

    References:
        Burda et al., Importance Weighted Autoencoders, arXiv:1509.00519.
        Li & Turner, Rényi Divergence Variational Inference, arXiv:1602.02311.
        Higgins et al., beta-VAE, ICLR 2017; Bowman et al., arXiv:1511.06349 (KL warm-up).

    Arguments:
        objective: ``"trace"``, ``"meanfield"``, ``"renyi"`` or ``"iwae"``.
        num_particles: ``K`` vectorised particles (a plate of size ``K``).
        alpha: Rényi order (``"renyi"``); 0 for the IWAE bounds.
        beta: weight of the latent terms (``trace`` and ``meanfield`` only).
        max_plate_nesting: plate dims of the program (default: read from a first trace).

    Example:
        >>> import pyro, pyro.distributions as dist, torch
        >>> def model(x):
        ...     with pyro.plate("data", 3):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", 3):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.7))
        >>> x = torch.tensor([0.0, 1.0, -1.0])
        >>> pyro.set_rng_seed(0); a = ReparamELBO().loss(model, guide, x=x)
        >>> pyro.set_rng_seed(0); b = pyro.infer.Trace_ELBO().loss(model, guide, x=x)
        >>> abs(a - b) < 1e-5
        True
    """

    def __init__(
        self,
        objective: Objective = "trace",
        num_particles: int = 1,
        *,
        alpha: float = 0.0,
        beta: float = 1.0,
        max_plate_nesting: int | None = None,
    ) -> None:
        if objective not in get_args(Objective):
            raise EstimatorError(
                f"Unknown `objective={objective!r}`. Valid names: {list(get_args(Objective))}."
            )
        if objective in ("renyi", "iwae") and num_particles < 2:
            raise EstimatorError(
                f"`objective={objective!r}` needs `num_particles >= 2`; got {num_particles}."
            )
        if objective in ("renyi", "iwae") and beta != 1.0:
            raise EstimatorError("`beta` weights ELBO terms; use objective='trace' or 'meanfield'.")
        super().__init__(num_particles=num_particles, vectorize_particles=True)
        self.objective, self.alpha, self.beta = (
            objective,
            0.0 if "iwae" in objective else alpha,
            beta,
        )
        self.plate_nesting = max_plate_nesting

    # ------------------------------------------------------------------ passes
    def _passes(self, model: Callable, guide: Callable, kwargs: Mapping[str, Any]) -> tuple:
        if self.plate_nesting is None:
            if self.num_particles == 1:  # no particle plate: nesting is irrelevant
                return lean_passes(model, guide, kwargs, 1, 0)
            self.plate_nesting = _max_plate_nesting(model, guide, kwargs)
        return lean_passes(model, guide, kwargs, self.num_particles, self.plate_nesting)

    def differentiable_loss(self, model: Callable, guide: Callable, /, *args: Any, **kwargs: Any):
        """The negative objective as a tensor with gradients."""
        if args:
            raise EstimatorError("ReparamELBO takes the program's data as keyword arguments.")
        if self.objective == "trace":
            declared = self._declared_guide_loss(model, guide, kwargs)
            if declared is not None:
                return declared
        m, g = self._passes(model, guide, kwargs)
        if self.objective in ("trace", "meanfield"):
            return -self._elbo(m, g) / self.num_particles
        w, scale = log_weights(m, g, self.plate_nesting)
        a = 1.0 - self.alpha
        bound = (torch.logsumexp(a * w, 0) - math.log(self.num_particles)) / a
        return -scale * bound.sum()

    def _declared_guide_loss(
        self, model: Callable, guide: Callable, kwargs: Mapping[str, Any]
    ) -> Tensor | None:
        """The ``trace`` loss from the guide's declared ``reparam_draws`` (no guide pass).

        ``None`` when the guide declares none, declines (returns ``None``), or leaves a latent
        site of the model undrawn.
        """
        obj = inspect.unwrap(guide)
        if not declares(obj, "reparam_draws"):
            return None
        k = self.num_particles
        if k > 1 and self.plate_nesting is None:
            self.plate_nesting = _max_plate_nesting(model, guide, kwargs)
        draws = obj.reparam_draws(k, **kwargs)
        if draws is None:
            return None
        values, log_q = draws
        m = _run(model, kwargs, values, k, -(self.plate_nesting or 0) - 1)
        obs, lat, scale = 0.0, 0.0, 1.0
        for name, site in m.items():
            if site["is_observed"]:
                obs = obs + _log_prob(site).sum()
            elif name in values:
                lat, scale = lat + _log_prob(site).sum(), site["scale"]
            else:
                return None  # a latent the guide did not draw: run the guide itself
        return -(obs + self.beta * (lat - scale * log_q.sum())) / k

    def terms_loss(self, terms: ELBOTerms) -> Tensor:
        """The negative objective from a model's declared per-datum terms (no program run).

        See :class:`~ppgen.capabilities.ELBOTerms`; ``meanfield`` uses ``terms.kl`` when given.
        """
        k = self.num_particles
        if self.objective in ("trace", "meanfield"):
            if self.objective == "meanfield" and terms.kl is not None:
                return -(terms.log_likelihood.sum() / k - self.beta * terms.kl.sum())
            w = terms.log_likelihood + self.beta * (terms.log_prior - terms.log_q)
            return -w.sum() / k
        a = 1.0 - self.alpha
        lw = a * (terms.log_likelihood + terms.log_prior - terms.log_q)
        return -((torch.logsumexp(lw, 0) - math.log(k)) / a).sum()

    def _elbo(self, m: dict[str, dict], g: dict[str, dict]) -> Tensor:
        obs, lat = 0.0, 0.0
        for name, site in m.items():
            if site["is_observed"]:
                obs = obs + _log_prob(site).sum()
                continue
            q = g.get(name)
            kl = None
            if self.objective == "meanfield" and q is not None:
                try:
                    kl = kl_divergence(q["fn"], site["fn"])
                except NotImplementedError:
                    kl = None
            if kl is not None:
                kl = scale_and_mask(kl, q["scale"], q["mask"])
                lat = lat - (kl.sum() if torch.is_tensor(kl) else kl * q["fn"].batch_shape.numel())
                continue
            lat = lat + _log_prob(site).sum()
            if q is not None:
                lat = lat - _log_prob(q).sum()
        for name, q in g.items():
            if name not in m:  # auxiliary guide sites
                lat = lat - _log_prob(q).sum()
        total = obs + self.beta * lat
        return total if torch.is_tensor(total) else torch.tensor(float(total))

    # ------------------------------------------------------------------ pyro ELBO API
    def _get_trace(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - unused
        raise NotImplementedError("ReparamELBO builds no traces.")

    def loss(self, model: Callable, guide: Callable, /, *args: Any, **kwargs: Any) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(
        self, model: Callable, guide: Callable, /, *args: Any, **kwargs: Any
    ) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return float(loss.detach())


def log_weights(m: Mapping[str, dict], g: Mapping[str, dict], plate_nesting: int) -> tuple:
    r"""Per-particle log importance weights :math:`\log p(x, z_k) - \log q(z_k)`.

    As in Pyro's ``RenyiELBO``, dims of plates shared by every model site (the particle plate
    and, for VAEs, the data plate) are kept and the others summed, so the weights have shape
    ``(K, *shared)``. Returns ``(weights, scale)``: when every site has the same scale ``s``
    (minibatch ``N / B``) the weights are unscaled and ``s`` multiplies the bound outside the
    log-mean-exp; otherwise the scaled weights and ``1.0``.
    """
    sample = [*m.values(), *g.values()]
    frames = [{f for f in s["cond_indep_stack"] if f.vectorized} for s in m.values()]
    common = set.intersection(*frames) if frames else set()
    ndim = plate_nesting + 1
    keep = tuple(sorted(ndim + f.dim for f in common)) or (0,)
    scales = {s["scale"] if not torch.is_tensor(s["scale"]) else None for s in sample}
    shared = len(scales) == 1 and None not in scales
    scale = scales.pop() if shared else 1.0
    total: Any = 0.0
    for sites, sign in ((m, 1.0), (g, -1.0)):
        for site in sites.values():
            total = total + sign * _sum_to(_log_prob(site, scaled=not shared), keep, ndim)
    shape = [total.shape[d] for d in keep]
    return total.reshape(shape), scale


def _max_plate_nesting(model: Callable, guide: Callable, kwargs: Mapping[str, Any]) -> int:
    """Plate dims used by the program (one probe run that leaves the RNG untouched)."""
    state = torch.get_rng_state()
    try:
        with torch.no_grad(), pyro.poutine.block():
            g = _run(guide, kwargs, None, 1, -1)
            m = _run(model, kwargs, {n: s["value"] for n, s in g.items()}, 1, -1)
    finally:
        torch.set_rng_state(state)
    sites = (*m.values(), *g.values())
    dims = [-f.dim for s in sites for f in s["cond_indep_stack"] if f.vectorized]
    return max(dims, default=0)


class KLWarmup:
    r"""Callback annealing the KL weight :math:`\beta` of a :class:`ReparamELBO` linearly.

    .. math:: \beta_t = \beta_0 + (\beta_1 - \beta_0) \min(1, t / T)

    References:
        Bowman et al., Generating Sentences from a Continuous Space, arXiv:1511.06349.
        Sønderby et al., Ladder Variational Autoencoders, arXiv:1602.02282.

    Example:
        >>> elbo = ReparamELBO()
        >>> warm = KLWarmup(elbo, steps=10)
        >>> elbo.beta, [warm(t, {}) for t in (5,)], elbo.beta
        (0.0, [False], 0.5)
    """

    def __init__(self, elbo: ReparamELBO, steps: int, start: float = 0.0, end: float | None = None):
        if steps < 1:
            raise EstimatorError(f"`steps` must be a positive int; got {steps!r}.")
        self.elbo, self.steps, self.start = elbo, steps, start
        self.end = elbo.beta if end is None else end
        elbo.beta = start

    def __call__(self, step: int, metrics: Mapping[str, float]) -> bool:
        self.elbo.beta = self.start + (self.end - self.start) * min(1.0, step / self.steps)
        return False
