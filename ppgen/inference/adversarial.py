"""Adversarial estimation of implicit programs: the GAN family, on Pyro or NumPyro."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ppgen.errors import EstimatorError, check_int, check_positive
from ppgen.inference._adversarial_common import check_pack, data_key
from ppgen.inference._adversarial_jax import JaxAdversarial
from ppgen.inference._adversarial_torch import TorchAdversarial
from ppgen.inference._base import EngineEstimator, FitContext, register
from ppgen.inference.objectives.gan import check_loss
from ppgen.inference.optim import Optim
from ppgen.result import Fit

__all__ = ["Adversarial"]

ENGINES = {"pyro": TorchAdversarial, "numpyro": JaxAdversarial}


@register("adversarial", "gan")
class Adversarial(EngineEstimator):
    r"""Fit a program by a discriminator: the GAN family, for implicit and explicit programs.

    The program is the generator: its latents are drawn from their priors and its observed
    site is simulated (``Implicit(G(z))``, or any reparameterisable distribution), so
    gradients reach the program's parameters (``pyro.module`` networks, ``param`` sites). A
    discriminator :math:`D` tells data from simulations; each loop step makes ``n_critic``
    discriminator updates (each on fresh generator samples and the step's data minibatch),
    then one generator update through the updated discriminator. The losses are in
    :mod:`ppgen.inference.objectives.gan`.

    Data entries that feed no observed site and have one row per datum (labels, context)
    are **covariates**: the program receives them as always (a conditional generator), and
    the discriminator as its second input, ``D(x, c)``, so a conditional GAN needs no other
    setting. The default discriminator one-hot encodes integer covariates.

    Arguments:
        discriminator: Pyro: a ``torch.nn.Module`` returning one number per sample, called
            ``D(x)`` or ``D(x, *covariates)``. NumPyro: an equinox module, or an
            ``(init(key, x, *covariates) -> params, apply(params, x, *covariates))`` pair.
            ``None``: an MLP (LeakyReLU 0.2) sized from the data; the program object may
            also declare a ``discriminator(backend)`` method giving its default.
        loss: ``"minimax"``, ``"ns"`` (non-saturating), ``"wgan-gp"``, ``"hinge"``,
            ``"lsgan"``.
        site: the observed site to match (default: the program's only observed site).
        gp_weight: weight :math:`\lambda` of the gradient penalty (``wgan-gp``).
        n_critic: discriminator updates per generator update (default 5 for ``wgan-gp``,
            else 1).
        lr, lr_g, lr_d: learning rates (``lr_g``/``lr_d`` default to ``lr``).
        betas, betas_d: Adam's betas of the generator and of the discriminator (default
            (0.5, 0.999), or (0.0, 0.9) for ``wgan-gp``; ``betas_d`` defaults to ``betas``).
        optim: optimiser name (:data:`~ppgen.inference.optim.OPTIMIZERS`).
        lr_decay: both learning rates fall exponentially to ``lr_decay`` times their start
            over the run (``None``: constant), as :class:`~ppgen.inference.optim.Optim`'s.
        spectral_norm: spectral normalisation of the discriminator's linear and conv layers
            (Pyro: torch's parametrisation, one power iteration per step with persistent
            vectors; NumPyro: :func:`~ppgen.inference._adversarial_jax.spectral_normalise`
            on every weight array, 20 power iterations per call).
        ema: decay of an exponential moving average of the generator's parameters; the fit's
            parameters are the average (``None``: the last iterate).
        hidden: hidden widths of the default discriminator.
        pack: **PacGAN**'s packing (Lin et al.): the discriminator judges ``pack`` = m
            samples at once, all real or all generated, so a generator that drops modes
            (whose samples lack diversity) is easier to tell apart. Each minibatch of B real
            and B generated data becomes B/m inputs, each m flattened data side by side
            (:func:`~ppgen.inference._adversarial_common.pack`; covariates of a conditional
            GAN are packed the same way); the gradient penalty of ``wgan-gp`` is taken at
            interpolates of packed inputs. ``batch_size`` (or N, without one) must be
            divisible by m; a short last minibatch of an epoch drops its remainder. The
            default discriminator is sized to m times the datum (and covariate) width; your
            own ``discriminator`` (or the program's) must accept that packed width. The
            paper's PacGAN2 / PacGAN4 are ``pack=2`` / ``4``; the default 1 is a plain GAN.
            Sampling is unaffected (packing only concerns the discriminator).
        info_sites, guide, info_weight: **InfoGAN** as a composition. ``info_sites`` names
            latent code sites of the program (e.g. a categorical ``c`` fed to the generator);
            ``guide`` is the auxiliary network :math:`Q` written as a guide over just those
            sites, called with the data arguments and the *generated* value of the observed
            site. The generator and :math:`Q` together maximise
            :math:`\lambda\, \mathbb E \log q(c \mid G(z, c))`, a lower bound on the mutual
            information :math:`I(c; G(z, c))` minus :math:`H(c)` (Chen et al.), with
            :math:`\lambda` = ``info_weight``: one number, or one per code site (the paper
            weighs continuous codes less, e.g. ``{"c": 1.0, "u": 0.1}``);
            ``fit.history["info"]`` holds it per step and ``fit.params`` holds :math:`Q`'s
            weights beside the generator's.
        steps / epochs / batch_size / batch_plate / drop_last: the length of the run and
            minibatching (as for :class:`~ppgen.inference.SVI`: each data array is sliced
            along the axis ``batch_plate`` indexes). When ``batch_size`` B does not divide
            N, each epoch ends with a partial batch of ``N mod B`` real samples (with
            ``pack``, cut to a multiple of m); ``drop_last=True`` skips it (``floor(N / B)``
            full batches an epoch).

    The fit holds the generator's parameters (``fit.params``), no posterior (latents are
    noise; an implicit program has no likelihood), and the discriminator's weights as
    auxiliary state ``fit.auxiliary["discriminator"]``; ``fit.sample(n)`` draws new data
    sets and ``fit.history`` has ``loss_d``, ``loss_g`` (and ``gp``, ``wasserstein`` for
    ``wgan-gp``). ``loss`` is ``loss_d``.

    Speed (Pyro): each fake batch is one run of the program under one light handler. On a
    small generator Pyro's per-site cost is a large share of the step (a 2 -> 128 -> 128 MLP:
    0.64 ms for the program against 0.22 ms for ``G(randn)``); a model object that declares
    ``simulate_sites`` (:mod:`ppgen.capabilities`; the zoo's ``GAN``, ``DCGAN`` and
    ``ConditionalGAN`` do, and so can your class) is drawn through that torch-only
    simulation instead, after a check against the program that it computes the same values
    and gradients from the same noise.

    References:
        Goodfellow et al., Generative Adversarial Nets, arXiv:1406.2661.
        Gulrajani et al., Improved Training of Wasserstein GANs, arXiv:1704.00028.
        Miyato et al., Spectral Normalization for GANs, arXiv:1802.05957.
        Heusel et al., Two Time-Scale Update Rule, arXiv:1706.08500.
        Chen et al., InfoGAN, arXiv:1606.03657.
        Lin, Khetan, Fanti & Oh, PacGAN: The Power of Two Samples in Generative Adversarial
        Networks, NeurIPS 2018, arXiv:1712.04086.

    Example: a location-scale generator learns the data's mean.

        >>> import numpy as np, torch, pyro, pyro.distributions as dist, ppgen
        >>> from ppgen.distributions import Implicit
        >>> def gen(x=None):
        ...     loc = pyro.param("loc", torch.tensor(0.0))
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", Implicit(loc + z), obs=x)
        >>> x = np.random.default_rng(0).normal(2.0, 1.0, 512)
        >>> fit = ppgen.fit(gen, {"x": x}, Adversarial(loss="ns", steps=600, lr=0.02,
        ...                                             hidden=(16,)))
        >>> bool(abs(float(fit.params["loc"]) - 2.0) < 0.3)
        True

    PacGAN2: the discriminator sees pairs of samples, so its first layer takes 2 inputs.

        >>> fit2 = ppgen.fit(gen, {"x": x}, Adversarial(loss="ns", steps=20, pack=2,
        ...                                              hidden=(16,)))
        >>> fit2.auxiliary["discriminator"]["net.0.weight"].shape
        (16, 2)
    """

    name = "adversarial"
    kinds = ("implicit", "explicit")
    #: runs under ``runner=DDP()`` on Pyro: each process its share of every batch and its own
    #: noise, the gradients of each update averaged over the processes
    data_parallel = True

    def __init__(
        self,
        discriminator: Any = None,
        loss: str = "ns",
        *,
        site: str | None = None,
        gp_weight: float = 10.0,
        n_critic: int | None = None,
        lr: float = 2e-4,
        lr_g: float | None = None,
        lr_d: float | None = None,
        betas: tuple[float, float] | None = None,
        betas_d: tuple[float, float] | None = None,
        optim: str = "adam",
        lr_decay: float | None = None,
        spectral_norm: bool = False,
        ema: float | None = None,
        hidden: tuple[int, ...] = (128, 128),
        pack: int = 1,
        info_sites: Sequence[str] | None = None,
        guide: Callable[..., Any] | None = None,
        info_weight: float | Mapping[str, float] = 1.0,
        steps: int | None = 1000,
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
        self.loss = check_loss(loss)
        if n_critic is None:
            n_critic = 5 if self.loss == "wgan-gp" else 1
        self.n_critic = check_int("n_critic", n_critic, 1)
        self.gp_weight = float(gp_weight)
        if self.gp_weight < 0 or not np.isfinite(self.gp_weight):
            raise EstimatorError(f"`gp_weight` must be finite and >= 0; got {gp_weight!r}.")
        self.lr = check_positive("lr", lr)
        self.lr_g = self.lr if lr_g is None else check_positive("lr_g", lr_g)
        self.lr_d = self.lr if lr_d is None else check_positive("lr_d", lr_d)
        default = (0.0, 0.9) if self.loss == "wgan-gp" else (0.5, 0.999)
        self.betas = _betas("betas", default if betas is None else betas)
        self.betas_d = self.betas if betas_d is None else _betas("betas_d", betas_d)
        if ema is not None and not (isinstance(ema, float | int) and 0.0 < ema < 1.0):
            raise EstimatorError(f"`ema` must be a decay in (0, 1) or None; got {ema!r}.")
        self.ema = None if ema is None else float(ema)
        self.spectral_norm = bool(spectral_norm)
        self.hidden = tuple(check_int("hidden", h, 1) for h in hidden)
        self.pack = _pack(pack, batch_size)
        self.discriminator = discriminator
        self.site = site
        self.optim = optim
        self.lr_decay = (
            None if lr_decay is None else check_positive("lr_decay", lr_decay, upper=1.0)
        )
        self.info_sites = _info_sites(info_sites)
        if guide is not None and not callable(guide):
            raise EstimatorError(
                "`guide` of Adversarial is InfoGAN's Q network: a Pyro/NumPyro guide function "
                f"sampling the `info_sites`; got {type(guide).__name__}."
            )
        if guide is not None and not self.info_sites:
            raise EstimatorError(
                "`guide=` was given without `info_sites=`: name the latent code sites the guide "
                "infers (e.g. `info_sites=['c']`), or drop the guide."
            )
        self.guide = guide
        self.info_weight = _info_weight(info_weight, self.info_sites)
        self._optim().options("generator")  # unknown optimiser names fail here

    @property
    def info_weights(self) -> dict[str, float]:
        """The weight of each info site's term."""
        w = self.info_weight
        return dict(w) if isinstance(w, dict) else {s: w for s in self.info_sites}

    def _optim(self) -> Optim:
        groups = {
            "generator": {"lr": self.lr_g, "betas": self.betas},
            "discriminator": {"lr": self.lr_d, "betas": self.betas_d},
        }
        if self.optim not in ("adam", "adamw", "clipped_adam"):
            groups = {k: {"lr": v["lr"]} for k, v in groups.items()}
        return Optim(self.optim, self.lr, groups=groups, lr_decay=self.lr_decay)

    def _total_steps(self) -> int:
        return self.steps if self.steps is not None else 1000

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["betas"], out["betas_d"] = list(self.betas), list(self.betas_d)
        out["hidden"] = list(self.hidden)
        out["info_weight"] = self.info_weight  # a number, or {site: weight}
        out.pop("guide", None)  # code: not saved (a loaded fit samples without it)
        out["info_guide"] = None if self.guide is None else getattr(self.guide, "__name__", "Q")
        return out

    # ------------------------------------------------------------------ checks
    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        self.observed_site(info)
        if self.info_sites:
            if self.guide is None:
                raise EstimatorError(
                    f"`info_sites={self.info_sites}` needs `guide=`: InfoGAN's Q network, a "
                    "guide sampling those sites from the generated data."
                )
            bad = [s for s in self.info_sites if s not in info.latent]
            if bad:
                raise EstimatorError(
                    f"`info_sites` {bad} are not latent sample sites of the program; its latent "
                    f"sites are {info.latent}."
                )

    def observed_site(self, info: Any) -> str:
        """The observed site the discriminator compares, checked against the program."""
        if not info.observed:
            raise EstimatorError(
                "Adversarial needs an observed site to compare with data (an `Implicit(G(z))` "
                "or any reparameterisable distribution with `obs=`); the program has none."
            )
        if self.site is not None:
            if self.site not in info.observed:
                raise EstimatorError(
                    f"`site={self.site!r}` is not an observed site; the observed sites are "
                    f"{info.observed}."
                )
            return self.site
        if len(info.observed) > 1:
            raise EstimatorError(
                f"The program has several observed sites {info.observed}; say which one the "
                "discriminator compares with `Adversarial(site=...)`."
            )
        return info.observed[0]

    # ------------------------------------------------------------------ the loop contract
    def init(self, ctx: FitContext) -> Any:
        key = data_key(ctx.info, self.observed_site(ctx.info))
        check_pack(self.pack, int(np.shape(ctx.data_np[key])[0]), self.batch_size)
        return ENGINES[ctx.program.backend](self, ctx)

    def step(self, state: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, float]]:
        return state, state.step(batch["data"])

    def restore(self, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """Rebuild the generator of a loaded fit and put the saved parameters in it."""
        ENGINES[ctx.program.backend].restore(self, ctx, fit, state)


def _pack(pack: Any, batch_size: int | None) -> int:
    if isinstance(pack, bool) or not isinstance(pack, int | np.integer) or pack < 1:
        raise EstimatorError(
            f"`pack` is the number of samples the discriminator sees at once (PacGAN): an "
            f"int >= 1; got {pack!r}."
        )
    if batch_size is not None and batch_size % pack:
        raise EstimatorError(
            f"`batch_size={batch_size}` is not divisible by `pack={pack}`: each minibatch is cut "
            f"into inputs of {pack} samples. Pass a batch_size that is a multiple of {pack} "
            f"(e.g. {max(pack, batch_size // pack * pack)}), or another pack."
        )
    return int(pack)


def _info_weight(weight: Any, sites: list[str]) -> float | dict[str, float]:
    def one(name: str, w: Any) -> float:
        try:
            w = float(w)
        except (TypeError, ValueError):
            w = float("nan")
        if not (np.isfinite(w) and w >= 0):
            raise EstimatorError(f"`{name}` must be a finite number >= 0; got {weight!r}.")
        return w

    if isinstance(weight, Mapping):
        if set(weight) != set(sites):
            raise EstimatorError(
                f"`info_weight` as a dict needs one weight per info site {sites}; got keys "
                f"{sorted(weight)}."
            )
        return {k: one(f"info_weight[{k!r}]", v) for k, v in weight.items()}
    return one("info_weight", weight)


def _info_sites(sites: Any) -> list[str]:
    if sites is None:
        return []
    if isinstance(sites, str):
        sites = [sites]
    out = list(sites)
    if not all(isinstance(s, str) for s in out):
        raise EstimatorError(f"`info_sites` must be site names (strings); got {sites!r}.")
    return out


def _betas(name: str, betas: Any) -> tuple[float, float]:
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise EstimatorError(f"`{name}` must be a pair (beta1, beta2); got {betas!r}.") from None
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise EstimatorError(f"`{name}` must be two numbers in [0, 1); got {betas!r}.")
    return b1, b2
