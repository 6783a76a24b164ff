"""ALI / BiGAN: adversarial inference, a discriminator on (x, z) pairs, on Pyro."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ppgen.errors import EstimatorError, check_int
from ppgen.inference._ali_jax import JaxALI
from ppgen.inference._ali_torch import TorchALI
from ppgen.inference._base import FitContext, register
from ppgen.inference.adversarial import Adversarial
from ppgen.result import Fit

__all__ = ["ALI", "BiGAN"]

ENGINES = {"pyro": TorchALI, "numpyro": JaxALI}


@register("ali", "bigan")
class ALI(Adversarial):
    r"""Adversarially learned inference (ALI) / bidirectional GAN (BiGAN): a generator and an
    encoder trained together against a discriminator on (x, z) pairs.

    The program is the generator :math:`p(z)\,p(x \mid z)`: per-datum latent sites with
    priors and one observed site (``Implicit(G(z))`` or any reparameterisable distribution),
    as for :class:`~ppgen.inference.Adversarial`. ``guide`` is the encoder
    :math:`q(z \mid x)`: a Pyro program over the same latent sites, called with the data
    arguments (a deterministic ``Delta(E(x))`` for BiGAN, a reparameterised ``Normal`` for
    ALI). A discriminator :math:`D(x, z)` tells the *encoder's pairs*
    :math:`(x_\text{data}, z \sim q(z \mid x))` from the *generator's pairs*
    :math:`(x \sim p(x \mid z), z \sim p(z))`. Each step makes ``n_critic`` discriminator
    updates, then one joint update of the generator and the encoder (one optimiser group,
    ``generator``) through the frozen, updated discriminator: both try to fool it, the
    generator on its pairs with the loss's generator term and the encoder on the data's pairs
    with the same term with real and fake exchanged (``D``'s output mirrored, :math:`d \to -d`,
    or :math:`d \to 1 - d` for ``lsgan``, whose labels are 1 and 0). At the optimum the two
    joint distributions agree, so the generator matches the data and the encoder inverts it,
    :math:`E(G(z)) = z` (Donahue et al., Theorem 2).

    Arguments:
        guide: the encoder program (required to fit; a saved run is loaded without it).
            It must sample every latent site of the program with the program's shapes, each
            reparameterisable (``Delta``, ``Normal``...), and register its network with
            ``pyro.module``. An :class:`~ppgen.inference.Amortized` guide works too (it is
            bound to the program). ``ppgen.fit(..., guide=...)`` is used when this is None.
        discriminator: a ``torch.nn.Module`` (on NumPyro: see below) called ``D(x, z)``
            (``D(x, z1, ...)`` with several latent sites, in the program's order) returning
            one number per pair, or
            ``k`` scores per pair, ``(batch, k)``: each column is trained by the loss and the
            losses are averaged (BigBiGAN's form). ``None``: an MLP (LeakyReLU 0.2, widths
            ``hidden``) on the flattened ``x`` and ``z`` side by side.
        unary: the default critic becomes :class:`~ppgen.nn.PairCritic`, BigBiGAN's three
            scores :math:`s_x(x), s_z(z), s_{xz}(x, z)` (Donahue & Simonyan 2019): beside the
            joint score, a plain GAN critic on ``x`` alone and one on the codes alone, each
            trained by the loss. The ``x`` term gives the generator a marginal
            discriminator's sharper signal (see ``benchmarks/RESULTS.md`` for its effect on
            the grid of 25). Both backends.
        others: ``loss``, ``gp_weight``, ``n_critic``, ``lr``, ``lr_g``, ``lr_d``, ``betas``,
            ``betas_d``, ``optim``, ``lr_decay``, ``spectral_norm``, ``ema``, ``hidden``,
            ``site``, ``steps``, ``epochs``, ``batch_size``, ``batch_plate``, ``drop_last``:
            as for :class:`~ppgen.inference.Adversarial` (``ema`` averages the generator's
            and the encoder's weights; ``wgan-gp`` penalises the gradient at interpolates of
            joint (x, z) pairs).
        local_draws: encoder draws of each training datum's latents kept as the fit's
            ``fit.local_draws`` (0: none); see below.

    Posterior: the encoder is the fit's amortised posterior. ``local_draws`` draws of
    :math:`z \sim q(z \mid x_n)` for every training datum (one each for a deterministic
    BiGAN encoder, all equal) become ArviZ's ``posterior_local`` group (dims ``chain``,
    ``draw``, the data plate, the site's event), so ``fit.summary()`` and ``az.summary``
    work on the codes. The encoder has no density (a ``Delta``) or one ppgen does not use, so
    no importance-weighted bound is formed from it. On a program whose observed site is
    ``Implicit`` (the usual generator) there is no ``log_likelihood`` group and no ``lp``:
    the missing density is the program's, and LOO/WAIC have nothing to work with (the groups
    are omitted with that reason in ``idata.attrs["ppgen_omitted_groups"]``;
    ``fit.log_likelihood`` refuses the same way). With an explicit observed site (an AAE's or
    VAE-GAN's decoder) the pointwise log-likelihood is :math:`\log p(x_n \mid z_n)` at the
    encoder's draws.

    The fit holds the generator's and the encoder's weights (``fit.params``), the
    discriminator's as auxiliary state (``fit.auxiliary["discriminator"]``) and ``loss_d``,
    ``loss_g`` (the generator's term), ``loss_e`` (the encoder's) in ``fit.history`` (with
    ``gp`` and ``wasserstein`` for ``wgan-gp``); ``loss`` is ``loss_d``. ``fit.sample(n)``
    draws new data sets from the program; ``fit.encode({"x": x})`` gives the encoder's
    :math:`z` for each datum (its mean, for a stochastic encoder) and
    :func:`ppgen.analysis.latent.reconstruct` the program's ``x`` at those codes.

    A model that declares ``simulate_sites`` (:mod:`ppgen.capabilities`) for the observed
    site and the latents (the zoo's ``GAN`` draws ``x`` and ``z``) is simulated through it, as
    for :class:`~ppgen.inference.Adversarial`, after the same check against its program.

    On NumPyro programs the same objective runs as one jitted step per loop step; the critic
    is the default MLP (``unary``: :func:`ppgen.nn_jax.pair_critic`), an equinox module called
    ``D(x, z...)``, or an ``(init(key, x, z...), apply(params, x, z...))`` pair (``fit.encode``
    works on the fit, not on a loaded run). Not covered: PacGAN packing.

    Covariates: a data argument with one row per datum that feeds no observed site (class
    labels, a conditioning vector) reaches the program and the encoder, and the critic sees it
    beside each pair, ``D(x, z..., y)`` (one-hot for integer labels in the default critics, and
    given to each of ``unary``'s three scores): a conditional BiGAN, whose generator learns
    :math:`p(x \mid y)` and not only the marginal of :math:`x`; they are named in
    ``fit.diagnostics["covariates"]``.

    References:
        Dumoulin et al., Adversarially Learned Inference, arXiv:1606.00704.
        Donahue, Krähenbühl & Darrell, Adversarial Feature Learning, arXiv:1605.09782.
        Donahue & Simonyan, Large Scale Adversarial Representation Learning (BigBiGAN),
        arXiv:1907.02544.

    Example: a linear generator and encoder on N(3, 0.5^2) data (a short run; with
    ``tests/inference/test_ali.py``'s settings a -> 0.5, b -> 3 and c x + d inverts G).

        >>> import numpy as np, torch, pyro, pyro.distributions as dist, ppgen
        >>> from ppgen.distributions import Implicit
        >>> def gen(x=None):
        ...     a = pyro.param("a", torch.tensor(1.0))
        ...     b = pyro.param("b", torch.tensor(0.0))
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", Implicit(a * z + b), obs=x)
        >>> def enc(x=None):
        ...     c = pyro.param("c", torch.tensor(1.0))
        ...     d = pyro.param("d", torch.tensor(0.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", dist.Delta(c * x + d))
        >>> x = np.random.default_rng(0).normal(3.0, 0.5, 512).astype(np.float32)
        >>> fit = ppgen.fit(gen, {"x": x}, ALI(guide=enc, steps=200, lr=0.05, hidden=(16,),
        ...                                    batch_size=256))
        >>> bool(abs(float(fit.params["b"]) - 3.0) < 0.5)  # G's location reaches the data's
        True
        >>> sorted(fit.params), sorted(fit.history)  # generator and encoder; both losses
        (['a', 'b', 'c', 'd'], ['loss', 'loss_d', 'loss_e', 'loss_g'])
        >>> fit.encode({"x": x})["z"].shape  # one code per datum
        (512,)
    """

    name = "ali"
    backends = ("pyro", "numpyro")
    #: the engine per backend (AAE and VAE-GAN set their own)
    engines: ClassVar[dict[str, Any]] = ENGINES
    #: what the critic sees when it is not the pair (AAE: the codes, VAE-GAN: the data)
    critic_input: ClassVar[str | None] = None

    def __init__(
        self,
        guide: Callable[..., Any] | None = None,
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
        steps: int | None = 1000,
        epochs: int | None = None,
        batch_size: int | None = None,
        batch_plate: str | None = None,
        drop_last: bool = False,
        local_draws: int = 10,
        unary: bool = False,
    ) -> None:
        super().__init__(
            discriminator,
            loss,
            site=site,
            gp_weight=gp_weight,
            n_critic=n_critic,
            lr=lr,
            lr_g=lr_g,
            lr_d=lr_d,
            betas=betas,
            betas_d=betas_d,
            optim=optim,
            lr_decay=lr_decay,
            spectral_norm=spectral_norm,
            ema=ema,
            hidden=hidden,
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            batch_plate=batch_plate,
            drop_last=drop_last,
        )
        if guide is not None and not callable(guide):
            raise EstimatorError(
                "`guide` of ALI is the encoder: a Pyro guide function sampling the program's "
                f"latent sites from the data; got {type(guide).__name__}."
            )
        self.guide = guide
        self.local_draws = check_int("local_draws", local_draws, 0)
        if not isinstance(unary, bool):
            raise EstimatorError(f"`unary` of ALI must be True or False; got {unary!r}.")
        if unary and self.critic_input:
            raise EstimatorError(
                "`unary` is ALI's (scores of x and z beside the pair's); "
                f"{type(self).__name__}'s critic sees {self.critic_input}: leave it out."
            )
        if unary and discriminator is not None:
            raise EstimatorError(
                "`unary=True` builds the default critic (ppgen.nn.PairCritic); with your own "
                "`discriminator`, return the scores you want from it, shape (batch, k), and "
                "leave `unary` False."
            )
        self.unary = unary

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        for k in ("pack", "info_sites", "info_weight", "info_guide"):
            out.pop(k, None)
        # code: not saved (a loaded fit samples without it); its name, for the record
        out["encoder"] = None if self.guide is None else getattr(self.guide, "__name__", "guide")
        if self.unary:
            out["unary"] = True
        return out

    # ------------------------------------------------------------------ checks
    def latent_sites(self, info: Any) -> list[str]:
        """The latent sites the encoder infers (all of the program's), checked: continuous."""
        if not info.latent:
            raise EstimatorError(
                "ALI/BiGAN pairs each datum with its latent code, and the program has no latent "
                "sample sites. Add per-datum latents with priors (e.g. `z ~ Normal(0, 1)` in "
                "the data plate, fed to the generator), or fit the program with "
                "`Adversarial` (a plain GAN needs no encoder)."
            )
        discrete = info.discrete_latent
        if discrete:
            raise EstimatorError(
                f"ALI/BiGAN's encoder must reach the discriminator by reparameterised draws; "
                f"the latent sites {discrete} are discrete. Make them continuous (or relaxed, "
                "e.g. RelaxedOneHotCategorical), or fit with `Adversarial`."
            )
        return list(info.latent)

    def check(self, program: Any, info: Any) -> None:
        super().check(program, info)
        self.latent_sites(info)
        if self.guide is None and program.guide is None:
            raise EstimatorError(
                "ALI/BiGAN needs an encoder: pass `ALI(guide=encoder)` (or `ppgen.fit(..., "
                f"guide=encoder)`), a Pyro program sampling the latent sites {info.latent} "
                "from the data, e.g. `pyro.sample('z', dist.Delta(net(x)).to_event(1))` in "
                "the data plate."
            )

    # ------------------------------------------------------------------ the loop contract
    def init(self, ctx: FitContext) -> Any:
        return self.engines[ctx.program.backend](self, ctx)

    def restore(self, ctx: FitContext, fit: Fit, state: Mapping[str, Any]) -> None:
        """Rebuild the generator of a loaded fit (the encoder's weights stay in fit.params)."""
        self.engines[ctx.program.backend].restore(self, ctx, fit, state)


BiGAN = ALI
"""Donahue et al.'s name for :class:`ALI` (``method="bigan"``)."""
