"""Adversarial variational Bayes: an implicit posterior whose KL term a discriminator estimates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError, check_int, check_positive
from ppgen.inference._avb_jax import JaxAVB
from ppgen.inference._avb_jax_amortized import JaxAmortizedAVB
from ppgen.inference._avb_torch import TorchAmortizedAVB, TorchAVB
from ppgen.inference._base import EngineEstimator, FitContext, register
from ppgen.inference.guides.implicit import ImplicitAmortized
from ppgen.inference.optim import Optim
from ppgen.result import Fit

__all__ = ["AVB"]

ENGINES = {"pyro": TorchAVB, "numpyro": JaxAVB}
AMORTIZED = {"pyro": TorchAmortizedAVB, "numpyro": JaxAmortizedAVB}


@register("avb")
class AVB(EngineEstimator):
    r"""Adversarial variational Bayes (Mescheder et al. 2017): VI with an implicit posterior.

    The posterior is a neural sampler, :math:`u = g_\phi(\varepsilon)` with
    :math:`\varepsilon \sim N(0, I)`, over all of the program's latents at once (flattened
    and unconstrained, each site mapped to its support by ``biject_to``); it has no density,
    so any shape (skewed, correlated, multimodal) is within reach. The ELBO's intractable
    :math:`\log q` is replaced by a discriminator :math:`T_\psi` trained by logistic
    regression to tell the guide's draws from a reference :math:`r` whose density is known:
    at its optimum :math:`T^* = \log q - \log r`, so

    .. math:: \mathcal L(\phi) = \mathbb E_{q_\phi}\big[\log p(x, z) - \log r(u)
              - T_\psi(u)\big]

    is the ELBO (with the Jacobian of the unconstrained space inside :math:`\log p`); its
    gradient flows through the draws :math:`u` only (the paper's Proposition 2).

    With ``adaptive_contrast=True`` (the default; the paper's Section 3.3), :math:`r` is the
    diagonal Normal with the mean and standard deviation of the step's draws, and :math:`T`
    compares standardised draws with :math:`N(0, I)`: a far easier job than telling
    :math:`q` from the prior when the posterior is much narrower than the prior. With
    ``False``, :math:`r` is the prior itself (the paper's plain AVB; prior draws come from
    running the program forward). Plain AVB is much less accurate: on a 2-D Gaussian
    posterior with sds 0.52 and 0.38 (``tests/inference/test_avb.py``) it found sds of
    0.05-0.18 over three seeds, where adaptive contrast found 0.53 and 0.38.

    Each step: ``particles`` draws from the guide, ``n_critic`` logistic updates of
    :math:`T` on them, one ELBO update of the guide (and of the program's own ``param``
    sites, so hyperparameters are fitted by maximum marginal likelihood as with SVI).

    Without a guide (the default) the implicit posterior covers all of the program's
    continuous latents jointly (eight schools, a regression), on Pyro and NumPyro, and the
    data are used whole every step. On Pyro the particles go through the program in one
    ``torch.func.vmap`` pass (one run per particle where vmap cannot run the program), or
    in one call of the model's ``log_joint_terms`` where it declares that capability
    (:mod:`ppgen.capabilities`; checked against the program before training); on
    NumPyro the whole step is one ``jax.jit`` (``jax.vmap`` over particles, ``lax.scan`` over
    critic updates).

    **Amortised AVB** (the paper's VAE setting): pass an
    :class:`~ppgen.inference.ImplicitAmortized` encoder, ``AVB(ImplicitAmortized(model))``
    (or ``ppgen.fit(..., guide=ImplicitAmortized(...))``), for a program whose latents all sit
    in the data plate. Each datum's latents are :math:`z_n = g_\phi(x_n, \varepsilon)`;
    the discriminator sees pairs, :math:`T_\psi(x_n, z_n)`, and with adaptive contrast
    :math:`r(z_n \mid x_n)` is the Normal with the mean and sd of that datum's ``particles``
    draws (so ``particles`` is per datum, default 16). ``batch_size``/``epochs`` minibatch the
    data plate, the program's sites and the critic's terms weighted ``N / B``. On NumPyro the
    whole step is one ``jax.jit`` and the encoder is ppgen's MLP of the guide's
    ``hidden_features`` (a torch ``encoder=`` is refused there). The fit's
    draws of the training data's latents are its ``posterior`` (one value per datum); a
    loaded run rebuilds the default encoder from its saved weights (your own encoder is code,
    not saved: the loaded run keeps its draws and draws no new ones). A guide with a density
    (an autoguide, :class:`~ppgen.inference.Amortized`, a guide function) is refused: that is
    SVI's job, with no discriminator in the way.

    The fit has a ``posterior`` group of ``num_draws`` guide draws (one chain), so
    ``az.summary`` works, and the usual ``log_likelihood`` group: the *program* has a
    density, so pointwise log-likelihoods at the draws and PSIS-LOO are as for any other
    posterior sample. What the implicit guide lacks is :math:`\log q`: importance-weighted
    evidence bounds cannot be computed from it. The guide's and the discriminator's weights
    are auxiliary state (``fit.auxiliary["guide"]``, ``["discriminator"]``); a loaded fit
    draws new posterior samples from the saved guide.

    Arguments:
        guide: ``None`` (an implicit posterior over all latents) or an
            :class:`~ppgen.inference.ImplicitAmortized` encoder of per-datum latents.
        particles: guide draws per step (the Monte Carlo size of the ELBO and of the
            discriminator's batch); per datum for an amortised fit. Default 128, or 16 with
            a guide.
        n_critic: discriminator updates per step.
        adaptive_contrast: contrast the guide with a Normal of its own moments (``True``) or
            with the prior (``False``).
        noise_dim: size of the guide's noise :math:`\varepsilon` (default ``max(D, 16)``
            for D unconstrained latent numbers).
        hidden: hidden widths of the guide's MLP (ReLU).
        critic_hidden: hidden widths of the discriminator's MLP (LeakyReLU 0.2).
        lr, lr_d: learning rates of the guide and of the discriminator (``lr_d`` defaults to
            ``lr``); Adam.
        lr_decay: both rates fall exponentially to this fraction of their start over the run
            (``None``: constant).
        num_draws: posterior draws kept in the fit.
        steps, epochs, batch_size, batch_plate, drop_last: the length of the run and, for an
            amortised fit, its minibatches (as for :class:`~ppgen.inference.SVI`).

    References:
        Mescheder, Nowozin & Geiger, Adversarial Variational Bayes: Unifying Variational
        Autoencoders and Generative Adversarial Networks, ICML 2017, arXiv:1701.04722.

    Example: a Normal mean with a known answer (posterior N(n x̄ / (n + 1), 1 / (n + 1))).

        >>> import numpy as np, torch, pyro, pyro.distributions as dist, ppgen
        >>> def model(x=None):
        ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
        >>> x = np.random.default_rng(0).normal(1.0, 1.0, 24)
        >>> fit = ppgen.fit(model, {"x": x}, AVB(steps=600, particles=128, lr=3e-3))
        >>> mu = fit.draws["mu"]
        >>> bool(abs(mu.mean() - x.sum() / 25) < 0.05), bool(abs(mu.std() - 0.2) < 0.04)
        (True, True)
    """

    name = "avb"
    kinds = ("explicit",)

    def __init__(
        self,
        guide: ImplicitAmortized | None = None,
        *,
        particles: int | None = None,
        n_critic: int = 3,
        adaptive_contrast: bool = True,
        noise_dim: int | None = None,
        hidden: tuple[int, ...] = (64, 64),
        critic_hidden: tuple[int, ...] = (64, 64),
        lr: float = 1e-3,
        lr_d: float | None = None,
        lr_decay: float | None = 0.05,
        num_draws: int = 1000,
        steps: int | None = 3000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            batch_plate=batch_plate,
            drop_last=drop_last,
        )
        self.guide = guide
        if particles is None:
            particles = 128 if guide is None else 16
        self.particles = check_int("particles", particles, 2)
        self.n_critic = check_int("n_critic", n_critic, 1)
        if not isinstance(adaptive_contrast, bool | np.bool_):
            raise EstimatorError(
                f"`adaptive_contrast` must be True or False; got {adaptive_contrast!r}."
            )
        self.adaptive_contrast = bool(adaptive_contrast)
        self.noise_dim = None if noise_dim is None else check_int("noise_dim", noise_dim, 1)
        self.hidden = tuple(check_int("hidden", h, 1) for h in hidden)
        self.critic_hidden = tuple(check_int("critic_hidden", h, 1) for h in critic_hidden)
        self.lr = check_positive("lr", lr)
        self.lr_d = self.lr if lr_d is None else check_positive("lr_d", lr_d)
        self.lr_decay = (
            None if lr_decay is None else check_positive("lr_decay", lr_decay, upper=1.0)
        )
        self.num_draws = check_int("num_draws", num_draws, 1)

    def noise_size(self, dim: int) -> int:
        """The guide's noise size for ``dim`` unconstrained latent numbers."""
        return self.noise_dim if self.noise_dim is not None else max(dim, 16)

    def _optim(self) -> Optim:
        groups = {"guide": {"lr": self.lr}, "discriminator": {"lr": self.lr_d}}
        return Optim("adam", self.lr, groups=groups, lr_decay=self.lr_decay)

    def _total_steps(self) -> int:
        return self.steps if self.steps is not None else 1000

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out.pop("guide", None)  # code: not saved (a loaded fit rebuilds a default encoder)
        out["encoder"] = None if self.guide is None else type(self.guide).__name__
        out["hidden"], out["critic_hidden"] = list(self.hidden), list(self.critic_hidden)
        return out

    # ------------------------------------------------------------------ checks
    def latent_sites(self, info: Any) -> list[str]:
        """The latent sites the guide draws (all of them), checked: continuous, not
        enumerated, not inside a subsampled plate."""
        if not info.latent:
            raise EstimatorError(
                "AVB infers latent sites, and the program has none. Fit its parameters with "
                "method='mle' (or SVI), or add priors with `sample`."
            )
        discrete = [n for n in info.latent if info.sites[n].discrete]
        if discrete:
            raise EstimatorError(
                f"AVB's guide draws continuous latents by a network; the latent sites "
                f"{discrete} are discrete. Fit the program with SVI (enumeration) or NUTS, or "
                "marginalise them out in the program."
            )
        return list(info.latent)

    def _guide(self, program: Any) -> ImplicitAmortized | None:
        """The implicit encoder to fit: ``AVB(guide=)`` or ``ppgen.fit(..., guide=)`` (a guide
        the zoo model declares itself is a density guide for SVI, not AVB's)."""
        guide = self.guide if self.guide is not None else getattr(program, "user_guide", None)
        if guide is None or isinstance(guide, ImplicitAmortized):
            return guide
        raise EstimatorError(
            f"AVB's posterior is an implicit network with no density; the guide passed "
            f"({getattr(guide, '__name__', type(guide).__name__)}) is a guide program with its "
            "own density, which needs no discriminator: fit it with SVI (`method=SVI(guide=...)`"
            "). For AVB pass no guide (one implicit posterior over all latents) or an "
            "`ImplicitAmortized` encoder for per-datum latents."
        )

    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        self.latent_sites(info)
        guide = self._guide(program)
        if guide is not None and program.backend != "pyro" and not guide.default_encoder:
            raise EstimatorError(
                "On NumPyro programs amortised AVB builds its encoder itself (an MLP of the "
                "guide's `hidden_features`); the `encoder=` given is a torch module. Drop it, "
                "or write the program in Pyro."
            )
        if guide is None and (self.batch_size is not None or self.epochs is not None):
            raise EstimatorError(
                "AVB without a guide infers global latents from the whole data every step; "
                "`batch_size`/`epochs` minibatch the data plate of an amortised fit, "
                "`AVB(guide=ImplicitAmortized(model))`. Drop them, or pass the encoder."
            )

    # ------------------------------------------------------------------ the loop contract
    def init(self, ctx: FitContext) -> Any:
        guide = self._guide(ctx.program)
        if guide is not None:
            return AMORTIZED[ctx.program.backend](self, ctx, guide)
        return ENGINES[ctx.program.backend](self, ctx)

    def step(self, state: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, float]]:
        return state, state.step(batch["data"], batch["scale"])

    def restore(self, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """Put a loaded fit's saved parameters of the program back (its ``param`` sites)."""
        ENGINES[ctx.program.backend].restore(ctx, fit, state)

    def restore_auxiliary(
        self, fit: Fit, name: str, arrays: Mapping[str, np.ndarray], settings: dict[str, Any]
    ) -> None:
        """A loaded fit draws new posterior samples from its saved guide network."""
        if name == "guide":
            engines = AMORTIZED if settings.get("amortized") else ENGINES
            engine = engines[fit.backend]
            engine.restore_sampler(self, fit, arrays, settings)
