r"""Contrastive estimation of energy programs: NCE, contrastive divergence, score matching.

An energy program's observed site is ``Unnormalized(energy, event_shape)``:
:math:`\log p_\theta(x) = -E_\theta(x) - \log Z_\theta` with :math:`Z_\theta` unknown, so
neither the likelihood nor its gradient can be computed. Each estimator here avoids
:math:`Z` its own way (the losses are in :mod:`ppgen.inference.objectives.contrastive`):

- :class:`ContrastiveDivergence` estimates the likelihood gradient with negatives from a
  sampler of the model (CD-k from the data, PCD from persistent chains, or a replay buffer);
- :class:`NCE` classifies data against noise, learning :math:`\log Z` as a parameter;
- :class:`ScoreMatching` fits :math:`\nabla_x \log p`, where :math:`Z` does not appear.

They run on the shared loop (minibatches, progress with every metric, callbacks, the NaN
guard naming the energy network's parameters, checkpoints with the sampler's chains and the
RNG state, so a resumed fit is bit-identical), on Pyro programs and, for ``NCE``,
``ScoreMatching`` and ``ContrastiveDivergence`` with Langevin negatives, on NumPyro ones. A
program whose observed site has a normalised density (explicit) is fit the same way, its
``log_prob`` taken as :math:`-E`. Programs with latent sample sites are refused: write the
latents into the energy (an RBM's free energy sums out its hidden units).

After the fit, ``fit.sample(n)`` runs the fit's sampler (block Gibbs for a model that
declares ``block_gibbs_step``, otherwise MALA) for ``sample_steps`` transitions;
:func:`ppgen.analysis.log_partition` estimates :math:`\log Z` (exact or AIS for RBMs), which
``fit.log_likelihood`` then uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError, check_int, check_positive
from ppgen.inference._base import EngineEstimator, FitContext, register
from ppgen.inference._contrastive_jax import JaxContrastive
from ppgen.inference._contrastive_torch import TorchContrastive
from ppgen.inference.objectives.contrastive import check_score_kind
from ppgen.inference.optim import Optim
from ppgen.inference.samplers import Sampler, make_sampler
from ppgen.result import Fit

__all__ = ["Contrastive", "ContrastiveDivergence", "NCE", "ScoreMatching"]

ENGINES: dict[str, Any] = {"pyro": TorchContrastive, "numpyro": JaxContrastive}


def _shared(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings every contrastive estimator passes to :class:`Contrastive`."""
    return {k: settings[k] for k in _SHARED}


class Contrastive(EngineEstimator):
    """What the contrastive estimators share: the observed site, the optimiser (one group,
    ``energy``, plus NCE's ``log_Z``), the sampler that draws from the fit, and the loop
    contract. Subclasses set :attr:`objective` and their settings."""

    kinds = ("energy", "explicit")
    #: runs under ``runner=DDP()`` on Pyro: each process its share of the batch (and of the
    #: persistent chains) with its own noise, gradients averaged over the processes
    data_parallel = True
    #: "cd" | "nce" | "score": which loss the engines compute
    objective: str = ""

    def __init__(
        self,
        *,
        site: str | None,
        lr: float,
        optim: str,
        betas: tuple[float, float] | None,
        weight_decay: float,
        sample_sampler: Sampler | str | Mapping[str, Any] | None,
        sample_steps: int,
        steps: int | None,
        epochs: int | None,
        batch_size: int | None,
        batch_plate: str | None,
        drop_last: bool,
    ) -> None:
        super().__init__(
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            batch_plate=batch_plate,
            drop_last=drop_last,
        )
        self.site = site
        self.lr = check_positive("lr", lr)
        self.optim = optim
        self.betas = None if betas is None else tuple(float(b) for b in betas)
        self.weight_decay = float(weight_decay)
        if self.weight_decay < 0 or not np.isfinite(self.weight_decay):
            raise EstimatorError(f"`weight_decay` must be finite and >= 0; got {weight_decay!r}.")
        self.sample_sampler = None if sample_sampler is None else make_sampler(sample_sampler)
        self.sample_steps = check_int("sample_steps", sample_steps, 1)
        self._optim().options("energy")  # unknown optimiser names fail here

    def _optim(self) -> Optim:
        opts: dict[str, Any] = {"lr": self.lr}
        if self.betas is not None:
            opts["betas"] = self.betas
        return Optim(self.optim, self.lr, groups={"energy": opts}, weight_decay=self.weight_decay)

    def _total_steps(self) -> int:
        return self.steps if self.steps is not None else 1000

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        for k, v in vars(self).items():
            if isinstance(v, Sampler):
                out[k] = v.settings()
        if self.betas is not None:
            out["betas"] = list(self.betas)
        return out

    # ------------------------------------------------------------------ checks
    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        site = self.observed_site(info)
        latent = [s for s in info.latent if s != site]
        if latent:
            raise EstimatorError(
                f"{type(self).__name__} fits an energy over the data alone, but the program has "
                f"latent sample sites {latent}. Sum or integrate them into the energy (an RBM's "
                "free energy sums out its hidden units), or fit a latent-variable program with "
                "SVI or NUTS."
            )

    def observed_site(self, info: Any) -> str:
        """The energy (or density) site whose data the estimator contrasts."""
        sites = [s for s in info.observed if info.sites[s].density in ("energy", "explicit")]
        if not sites:
            raise EstimatorError(
                f"{type(self).__name__} needs an observed site with an energy "
                "(`Unnormalized(energy, event_shape)`) or a density; the program's observed "
                f"sites {info.observed} have neither (Implicit sites are fit by Adversarial)."
            )
        if self.site is not None:
            if self.site not in sites:
                raise EstimatorError(
                    f"`site={self.site!r}` is not an observed energy or density site; those "
                    f"are {sites}."
                )
            return self.site
        if len(sites) > 1:
            raise EstimatorError(
                f"The program has several observed sites {sites}; say which one "
                f"{type(self).__name__} fits with `site=...`."
            )
        return sites[0]

    # ------------------------------------------------------------------ the loop contract
    def init(self, ctx: FitContext) -> Any:
        engine = ENGINES.get(ctx.program.backend)
        if engine is None:
            raise EstimatorError(
                f"{type(self).__name__} runs on {sorted(ENGINES)} programs; this one is a "
                f"{ctx.program.backend} program."
            )
        return engine(self, ctx)

    def step(self, state: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, float]]:
        return state, state.step(batch["data"])

    def restore(self, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """Rebuild the energy of a loaded fit, put the saved parameters in it, and give the
        fit its sampler back (``fit.sample`` draws as the fitted one did)."""
        ENGINES[ctx.program.backend].restore(self, ctx, fit, state)


_SHARED = tuple(inspect.signature(Contrastive.__init__).parameters)[1:]


@register("cd", "contrastive_divergence")
class ContrastiveDivergence(Contrastive):
    r"""Contrastive divergence: CD-k (Hinton 2002), persistent CD (Tieleman 2008) and the replay
    buffer of deep energy models (Du & Mordatch 2019).

    Each step draws negatives :math:`x^-` with ``k`` transitions of ``sampler`` and descends
    :math:`\overline{E(x)} - \overline{E(x^-)}` (+ ``alpha`` times the mean squared energies),
    whose gradient estimates the log-likelihood's: the data term pulls the energy down on
    the data, the negative term pushes it up where the model puts mass.

    - ``persistent=False`` (CD-k): the chains start at the minibatch's data each step.
    - ``persistent=True`` (PCD): ``num_chains`` chains (default: the batch size, or N)
      started from random data rows carry on from step to step; they are part of the
      checkpoint, so a resumed fit is bit-identical.
    - ``buffer_size=M`` (with ``persistent=True``): a replay buffer of ``M`` samples,
      started as uniform noise over the data's range; each step takes a batch of them,
      restarts each from noise with probability ``reinit``, runs ``k`` transitions, and writes
      them back.

    ``method="pcd"`` is ``ContrastiveDivergence(persistent=True)``; ``method="cd"`` is CD-1.

    Arguments:
        k: sampler transitions per step (``>= 1``).
        persistent: keep the chains between steps (PCD).
        sampler: a :mod:`ppgen.inference.samplers` sampler or its name; default ``"auto"``:
            block Gibbs when the model declares ``block_gibbs_step`` (an RBM: ``(x) -> x'``
            on Pyro, ``(x, key) -> x'`` reading ``numpyro.param`` sites on NumPyro),
            otherwise Langevin with ``step_size=0.01``.
        num_chains: persistent chains (default: ``batch_size``, or N).
        buffer_size: replay-buffer size (``persistent=True`` only).
        reinit: the replay buffer's restart probability per sample.
        alpha: weight of the energy-magnitude regulariser.
        lr, optim, betas, weight_decay: the optimiser of the energy's parameters.
        sample_sampler, sample_steps: how ``fit.sample`` draws (default: ``sampler``, 1000
            transitions from noise).
        site, steps, epochs, batch_size, batch_plate, drop_last: as for every estimator.

    Example: PCD on a 1-D energy :math:`E(x) = (x - \mu)^2 / 2` recovers the data mean.

        >>> import numpy as np, torch, pyro, ppgen
        >>> from ppgen.distributions import Unnormalized
        >>> def model(x=None):
        ...     mu = pyro.param("mu", torch.zeros(1))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", Unnormalized(lambda v: 0.5 * ((v - mu) ** 2).sum(-1), (1,)),
        ...                     obs=x)
        >>> x = np.random.default_rng(0).normal(2.0, 1.0, (512, 1)).astype(np.float32)
        >>> est = ContrastiveDivergence(k=5, persistent=True, sampler="mala", lr=0.05, steps=300)
        >>> fit = ppgen.fit(model, {"x": x}, est, seed=0)
        >>> bool(abs(fit.params["mu"][0] - 2.0) < 0.2)
        True
    """

    name = "cd"
    objective = "cd"

    def __init__(
        self,
        k: int = 1,
        persistent: bool = False,
        sampler: Sampler | str | Mapping[str, Any] = "auto",
        *,
        num_chains: int | None = None,
        buffer_size: int | None = None,
        reinit: float = 0.05,
        alpha: float = 0.0,
        site: str | None = None,
        lr: float = 1e-3,
        optim: str = "adam",
        betas: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        sample_sampler: Sampler | str | Mapping[str, Any] | None = None,
        sample_steps: int = 1000,
        steps: int | None = 1000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        drop_last: bool = False,
    ) -> None:
        self.k = check_int("k", k, 1)
        if not isinstance(persistent, bool | np.bool_):
            raise EstimatorError(f"`persistent` must be True or False; got {persistent!r}.")
        self.persistent = bool(persistent)
        self.sampler = "auto" if sampler == "auto" else make_sampler(sampler)
        self.num_chains = None if num_chains is None else check_int("num_chains", num_chains, 1)
        self.buffer_size = None if buffer_size is None else check_int("buffer_size", buffer_size, 1)
        if self.buffer_size is not None and not self.persistent:
            raise EstimatorError(
                "`buffer_size` is the replay buffer of persistent negatives: pass "
                "`persistent=True` with it, or leave it out for CD-k from the data."
            )
        if isinstance(reinit, bool) or not (
            isinstance(reinit, int | float) and 0.0 <= reinit <= 1.0
        ):
            raise EstimatorError(f"`reinit` must be a probability in [0, 1]; got {reinit!r}.")
        self.reinit = float(reinit)
        if isinstance(alpha, bool) or not (isinstance(alpha, int | float) and alpha >= 0):
            raise EstimatorError(f"`alpha` must be a number >= 0; got {alpha!r}.")
        self.alpha = float(alpha)
        super().__init__(**_shared(locals()))

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        if self.sampler == "auto":
            out["sampler"] = "auto"
        return out


@register("pcd")
class PersistentContrastiveDivergence(ContrastiveDivergence):
    """``method="pcd"``: :class:`ContrastiveDivergence` with ``persistent=True`` by default."""

    name = "pcd"

    def __init__(self, k: int = 1, persistent: bool = True, **kwargs: Any) -> None:
        super().__init__(k, persistent, **kwargs)


@register("nce")
class NCE(Contrastive):
    r"""Noise-contrastive estimation (Gutmann & Hyvärinen 2010): the energy and :math:`\log Z`
    by telling data from noise.

    Each step draws ``noise_ratio`` (:math:`\nu`) noise samples per datum from ``noise`` and
    descends the logistic loss of classifying data against noise with the log-ratio
    :math:`G(u) = -E(u) - c - \log q(u) - \log\nu`; the normaliser :math:`c` is a parameter
    (group ``log_Z``, reported as the metric and ``fit.diagnostics["log_Z"]``), and at the
    optimum :math:`c = \log Z` and the model is the data distribution. The noise should cover
    the data and be close to it: the default is fitted to the data, an independent Bernoulli
    per dimension with the data's means for binary data, else a Gaussian with the data's
    mean and covariance.

    Arguments:
        noise: a distribution over one datum (``event_shape`` the site's) of the program's
            backend (``torch.distributions``/Pyro or NumPyro), or ``None`` for the default.
        noise_ratio: noise samples per datum (:math:`\nu > 0`).
        lr, optim, betas, weight_decay, sample_sampler, sample_steps, site, steps, epochs,
            batch_size, batch_plate, drop_last: as for :class:`ContrastiveDivergence`.

    Example: an unnormalised Gaussian :math:`E(x) = x^2 / (2 s^2)` learns :math:`s` and
    :math:`\log Z = \log(s\sqrt{2\pi})`.

        >>> import math, numpy as np, torch, pyro, ppgen
        >>> from ppgen.distributions import Unnormalized
        >>> def model(x=None):
        ...     log_s = pyro.param("log_s", torch.zeros(()))
        ...     with pyro.plate("data", len(x)):
        ...         energy = lambda v: 0.5 * (v**2).sum(-1) / (2 * log_s).exp()
        ...         pyro.sample("x", Unnormalized(energy, (1,)), obs=x)
        >>> x = np.random.default_rng(0).normal(0.0, 2.0, (4000, 1)).astype(np.float32)
        >>> fit = ppgen.fit(model, {"x": x}, NCE(noise_ratio=2, lr=0.05, steps=300), seed=0)
        >>> s = math.exp(float(fit.params["log_s"]))
        >>> log_z = math.log(s * math.sqrt(2 * math.pi))
        >>> bool(abs(s - 2.0) < 0.1), bool(abs(fit.diagnostics["log_Z"] - log_z) < 0.05)
        (True, True)
    """

    name = "nce"
    objective = "nce"

    def __init__(
        self,
        noise: Any = None,
        noise_ratio: float = 1.0,
        *,
        site: str | None = None,
        lr: float = 1e-3,
        optim: str = "adam",
        betas: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        sample_sampler: Sampler | str | Mapping[str, Any] | None = None,
        sample_steps: int = 1000,
        steps: int | None = 1000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        drop_last: bool = False,
    ) -> None:
        if noise is not None and not (hasattr(noise, "sample") and hasattr(noise, "log_prob")):
            raise EstimatorError(
                "`noise` of NCE must be a distribution with `sample` and `log_prob` (e.g. "
                "`torch.distributions.MultivariateNormal(...)` or a NumPyro distribution) over "
                "one datum, or None for the default fitted to the data; got "
                f"{type(noise).__name__}."
            )
        self.noise = noise
        self.noise_ratio = check_positive("noise_ratio", noise_ratio)
        super().__init__(**_shared(locals()))

    def _optim(self) -> Optim:
        spec = super()._optim()
        spec.groups["log_Z"] = dict(spec.groups["energy"])
        return spec

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["noise"] = None if self.noise is None else type(self.noise).__name__
        return out


@register("score_matching", "sm")
class ScoreMatching(Contrastive):
    r"""Score matching: fit :math:`s_\theta = -\nabla_x E_\theta` to the data's score, where
    :math:`\log Z` does not appear.

    - ``kind="exact"`` (Hyvärinen 2005): :math:`E[\tfrac12\lVert s\rVert^2 +
      \operatorname{tr}\nabla_x s]`, one backward pass per data dimension.
    - ``kind="denoising"`` (Vincent 2011): the score of the data blurred by
      :math:`N(0, \sigma^2 I)`; small ``sigma`` approaches the data's own.
    - ``kind="sliced"`` (Song et al. 2019): random projections, variance-reduced form; cost
      independent of the dimension.

    Continuous data only: discrete data (integer or 0/1 arrays, or a discrete density site)
    are refused before any work.

    Arguments:
        kind: ``"exact"``, ``"denoising"`` or ``"sliced"``.
        sigma: the noise scale of ``"denoising"``.
        num_projections: projections per datum of ``"sliced"``.
        lr, optim, betas, weight_decay, sample_sampler, sample_steps, site, steps, epochs,
            batch_size, batch_plate, drop_last: as for :class:`ContrastiveDivergence`.

    Example: exact score matching of :math:`E(x) = (x - \mu)^2 / (2 s^2)` recovers both.

        >>> import math, numpy as np, torch, pyro, ppgen
        >>> from ppgen.distributions import Unnormalized
        >>> def model(x=None):
        ...     mu, log_s = pyro.param("mu", torch.zeros(())), pyro.param("log_s", torch.zeros(()))
        ...     with pyro.plate("data", len(x)):
        ...         energy = lambda v: 0.5 * ((v - mu) ** 2).sum(-1) / (2 * log_s).exp()
        ...         pyro.sample("x", Unnormalized(energy, (1,)), obs=x)
        >>> x = np.random.default_rng(0).normal(1.0, 0.5, (2000, 1)).astype(np.float32)
        >>> fit = ppgen.fit(model, {"x": x}, ScoreMatching(lr=0.05, steps=300), seed=0)
        >>> s = math.exp(float(fit.params["log_s"]))
        >>> bool(abs(fit.params["mu"] - 1.0) < 0.05), bool(abs(s - 0.5) < 0.05)
        (True, True)
    """

    name = "score_matching"
    objective = "score"

    def __init__(
        self,
        kind: str = "exact",
        sigma: float = 0.1,
        num_projections: int = 1,
        *,
        site: str | None = None,
        lr: float = 1e-3,
        optim: str = "adam",
        betas: tuple[float, float] | None = None,
        weight_decay: float = 0.0,
        sample_sampler: Sampler | str | Mapping[str, Any] | None = None,
        sample_steps: int = 1000,
        steps: int | None = 1000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        drop_last: bool = False,
    ) -> None:
        self.kind = check_score_kind(kind)
        self.sigma = check_positive("sigma", sigma)
        self.num_projections = check_int("num_projections", num_projections, 1)
        super().__init__(**_shared(locals()))

    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        site = self.observed_site(info)
        if info.sites[site].discrete:
            raise EstimatorError(_DISCRETE.format(what=f"the observed site `{site}` is discrete"))

    def check_data(self, ctx: FitContext, key: str) -> None:
        """Refuse discrete data (integers, or only 0s and 1s) before any work."""
        x = np.asarray(ctx.data_np[key])
        if x.dtype.kind in "biu" or (x.size and np.isin(x, (0.0, 1.0)).all()):
            what = f"the data `{key}` are {'integers' if x.dtype.kind in 'biu' else 'all 0 or 1'}"
            raise EstimatorError(_DISCRETE.format(what=what))


_DISCRETE = (
    "ScoreMatching needs continuous data: {what}, and a score (a gradient in x) does not "
    "exist on a discrete set. Fit discrete data with ContrastiveDivergence (e.g. "
    "method='pcd', block Gibbs for an RBM) or NCE."
)
