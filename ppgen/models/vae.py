"""Variational autoencoders as programs: MLP, convolutional, conditional and hierarchical."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, get_args

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.capabilities import ELBOTerms
from ppgen.errors import DataError
from ppgen.models._cli import CLISpec
from ppgen.models._conv_parts import conv_networks, probe
from ppgen.nn import MLP, Family, PosteriorHead, register_module

__all__ = ["VAE", "ConvVAE", "ConditionalVAE", "HierarchicalVAE", "Likelihood"]

Likelihood = Literal["bernoulli", "cbernoulli", "gaussian", "categorical"]
_OUT = {"bernoulli": 1, "cbernoulli": 1, "gaussian": 1, "categorical": 256}


class _Decoder(nn.Module):
    """MLP from ``in_features`` to ``out_features`` logits (no output activation)."""

    def __init__(self, in_features: int, hidden_features: Sequence[int], out_features: int):
        super().__init__()
        self.body = MLP(in_features, hidden_features)
        self.out = nn.Linear(self.body.out_features, out_features)

    def forward(self, z: Tensor) -> Tensor:
        return self.out(self.body(z))


class VAE(nn.Module):
    r"""Variational autoencoder :math:`p_\theta(x \mid z) p(z)` with an amortised posterior.

    .. math:: z_n \sim \mathcal N(0, I), \quad x_n \mid z_n \sim p_\theta(x_n \mid
        \mathrm{dec}(z_n)), \qquad q_\phi(z_n \mid x_n) = \mathrm{head}(\mathrm{enc}(x_n))

    ``likelihood``: ``"bernoulli"`` (binary data), ``"cbernoulli"`` (continuous Bernoulli on
    :math:`[0, 1]`, Loaiza-Ganem & Cunningham 2019), ``"gaussian"`` (learned per-dimension
    scale) or ``"categorical"`` (256 levels, integer data ``0..255``). The model owns its
    networks (a ``torch.nn.Module`` that moves with ``device=``) and its guide, so
    ``ppgen.fit(vae, {"x": x}, "svi")`` works and a saved run loads with ``ppgen.load``.

    References:
        Kingma & Welling, Auto-Encoding Variational Bayes, arXiv:1312.6114.
        Loaiza-Ganem & Cunningham, The continuous Bernoulli, arXiv:1907.06845.

    Arguments:
        x_dim: data dimension, or ``x_shape`` for image-shaped data.
        z_dim: latent dimension.
        hidden_features: widths of the MLP encoder and decoder.
        likelihood: see above.
        family: posterior family (``"normal"``, ``"lowrank"``, ``"mvn"``, ``"flow"``).
        encoder / decoder: your own networks: ``encoder(x) -> (B, F)`` features,
            ``decoder(z) -> (B, prod(x_shape) * k)`` (k = 256 for categorical, else 1).
        head_kwargs: passed to :class:`~ppgen.inference.guides.amortized.PosteriorHead`.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.inference import SVI
        >>> x = (np.random.default_rng(0).random((40, 6)) > 0.5).astype(float)
        >>> vae = VAE(6, 2, hidden_features=(16,))
        >>> fit = ppgen.fit(vae, {"x": x}, SVI(steps=5, num_draws=3))
        >>> vae.sample(4).shape
        torch.Size([4, 6])
    """

    cli = (
        CLISpec(
            "vae",
            "VAE",
            "digits_binary",
            "svi",
            {"z_dim": int, "likelihood": str},
            description="VAE, MLP encoder/decoder, Bernoulli pixels",
        ),
    )

    backend: ClassVar[str] = "pyro"

    def __init__(
        self,
        x_dim: int = 64,
        z_dim: int = 16,
        hidden_features: Sequence[int] = (256, 256),
        likelihood: Likelihood = "bernoulli",
        family: Family = "normal",
        *,
        x_shape: Sequence[int] | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        cond_features: int = 0,
        **head_kwargs: Any,
    ):
        super().__init__()
        if likelihood not in _OUT:
            raise ValueError(
                f"`likelihood` must be one of {get_args(Likelihood)}; got {likelihood!r}."
            )
        self.x_shape = tuple(x_shape) if x_shape is not None else (int(x_dim),)
        self.x_dim = int(math.prod(self.x_shape))
        self.z_dim, self.likelihood, self.family = int(z_dim), likelihood, family
        self.cond_features = cond_features
        k = _OUT[likelihood]
        self.encoder = encoder or MLP(self.x_dim + cond_features, hidden_features)
        feat = getattr(self.encoder, "out_features", None) or probe(self.encoder, self.x_shape)
        self.head = PosteriorHead(feat, self.z_dim, family, **head_kwargs)
        self.decoder = decoder or _Decoder(z_dim + cond_features, hidden_features, self.x_dim * k)
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.full((self.x_dim,), -1.0))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    # ------------------------------------------------------------------ pieces
    def check_x(self, x: Tensor) -> None:
        """Named errors for data of the wrong shape (support is checked by ppgen itself)."""
        if x.dim() != 1 + len(self.x_shape) or tuple(x.shape[1:]) != self.x_shape:
            raise DataError(
                f"`x` must have shape (N, {', '.join(map(str, self.x_shape))}) for this "
                f"{type(self).__name__}; got {tuple(x.shape)}. Reshape the data or build the "
                f"model with x_shape={tuple(x.shape[1:])}."
            )

    def _inputs(self, x: Tensor) -> Tensor:
        x = x.to(self._zero.dtype)
        if isinstance(self.encoder, MLP):
            x = x.reshape(x.shape[0], -1)
        return x / 255.0 if self.likelihood == "categorical" else x

    def prior(self, n: int) -> dist.TorchDistribution:
        """:math:`p(z) = \\mathcal N(0, I)`, batch shape ``(n,)``."""
        return dist.Normal(self._zero, 1.0).expand([n, self.z_dim]).to_event(1)

    def posterior(self, x: Tensor, *cond: Tensor) -> dist.TorchDistribution:
        """:math:`q_\\phi(z \\mid x)`, batch shape ``(N,)``."""
        return self.head(self.encoder(self._inputs(x), *cond))

    def observation(self, out: Tensor) -> dist.TorchDistribution:
        """:math:`p_\\theta(x \\mid z)` from decoder outputs ``out``."""
        b, shape, ev = out.shape[:-1], self.x_shape, len(self.x_shape)
        if self.likelihood == "categorical":
            logits = out.reshape(*b, *shape, 256)
            return dist.Categorical(logits=logits).to_event(ev)
        out = out.reshape(*b, *shape)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(ev)
        if self.likelihood == "cbernoulli":
            return dist.ContinuousBernoulli(logits=out).to_event(ev)
        scale = (F.softplus(self.log_scale) + 1e-2).reshape(shape)
        return dist.Normal(out, scale).to_event(ev)

    def decode(self, z: Tensor, *cond: Tensor) -> dist.TorchDistribution:
        """:math:`p_\\theta(x \\mid z)` for latents ``z``."""
        return self.observation(self.decoder(torch.cat([z, *cond], -1) if cond else z))

    def mean(self, d: dist.TorchDistribution) -> Tensor:
        """The mean image of an observation distribution (expected level for categorical)."""
        base = d.base_dist if isinstance(d, dist.Independent) else d
        if self.likelihood == "categorical":
            return (base.probs * torch.arange(256.0, device=base.probs.device)).sum(-1)
        return base.mean

    # ------------------------------------------------------------------ the program
    def model(self, x: Tensor) -> Tensor:
        self.check_x(x)
        register_module("vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0]))
            return pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: Tensor) -> Tensor:
        register_module("vae", self)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.posterior(x))

    # ------------------------------------------------------------------ capabilities
    def elbo_terms(self, num_particles: int, x: Tensor) -> ELBOTerms:
        """Per-datum ELBO terms of :meth:`model` with :meth:`guide`, by torch alone.

        The capability of :mod:`ppgen.capabilities` that lets SVI skip the handlers; the
        numbers are the program's for the same parameters and noise.
        """
        self.check_x(x)
        return self._elbo_terms(num_particles, x)

    def _elbo_terms(self, k: int, x: Tensor, *cond: Tensor) -> ELBOTerms:
        q = self.posterior(x, *cond)
        kl = None
        if self.family == "normal":  # closed form; the noise is drawn as q.rsample draws it
            loc, sd = q.base_dist.loc, q.base_dist.scale
            shape = ((k,) if k > 1 else ()) + loc.shape
            eps = torch.empty(shape, dtype=loc.dtype, device=loc.device).normal_()
            z = loc + eps * sd
            c = 0.5 * math.log(2 * math.pi) * loc.shape[-1]
            log_q = (-0.5 * eps * eps - sd.log()).sum(-1) - c
            log_p = -0.5 * (z * z).sum(-1) - c
            kl = (0.5 * (sd * sd + loc * loc - 1.0) - sd.log()).sum(-1)
        else:
            z = q.rsample((k,) if k > 1 else ())
            log_q, log_p = q.log_prob(z), self.prior(x.shape[0]).log_prob(z)
        if not x.is_floating_point() and self.likelihood != "categorical":
            x = x.to(z.dtype)
        cond = tuple(c.expand(*z.shape[:-1], -1) for c in cond)
        log_lik = self.decode(z, *cond).log_prob(x)
        lead = (1,) if k == 1 else ()
        return ELBOTerms(
            log_lik.reshape(lead + log_lik.shape),
            log_p.reshape(lead + log_p.shape),
            log_q.reshape(lead + log_q.shape),
            kl,
        )

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> Tensor:
        """``n`` generated data: decoder means (``mean=True``) or draws, shape ``(n, *x_shape)``."""
        d = self.decode(self.prior(n).sample())
        return self.mean(d) if mean else d.sample()


class ConvVAE(VAE):
    r"""A :class:`VAE` with convolutional encoder and transposed-convolution decoder.

    Images ``(C, H, W)`` with ``H`` and ``W`` divisible by 4 pass two stride-2 stages.

    Example:
        >>> ConvVAE((1, 8, 8), 4, channels=8).sample(2).shape
        torch.Size([2, 1, 8, 8])
    """

    cli = (
        CLISpec(
            "convvae",
            "VAE",
            "digits_binary_images",
            "svi",
            {"z_dim": int, "likelihood": str},
            sizes={"x_shape": ("x", None)},
            description="VAE, convolutional encoder/decoder, Bernoulli pixels",
        ),
    )

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 8, 8),
        z_dim: int = 16,
        likelihood: Likelihood = "bernoulli",
        family: Family = "normal",
        *,
        channels: int = 32,
        hidden_features: int = 256,
        **head_kwargs: Any,
    ):
        _, h, w = x_shape
        if h % 4 or w % 4:
            raise ValueError(f"`x_shape` height and width must be divisible by 4; got {x_shape}.")
        encoder, decoder = conv_networks(
            x_shape, z_dim, _OUT[likelihood], channels, hidden_features
        )
        super().__init__(
            z_dim=z_dim,
            likelihood=likelihood,
            family=family,
            x_shape=x_shape,
            encoder=encoder,
            decoder=decoder,
            **head_kwargs,
        )


class ConditionalVAE(VAE):
    r"""Conditional VAE: :math:`p_\theta(x \mid z, y)\, p(z)`, :math:`q_\phi(z \mid x, y)`.

    The label ``y`` (integers ``0..num_classes-1``) is an input of both networks (one-hot).

    References:
        Sohn et al., Learning Structured Output Representation using Deep Conditional
        Generative Models, NeurIPS 2015.

    Example:
        >>> import torch
        >>> cvae = ConditionalVAE(6, 2, num_classes=3, hidden_features=(8,))
        >>> cvae.sample(4, y=torch.tensor([0, 1, 2, 0])).shape
        torch.Size([4, 6])
    """

    cli = (
        CLISpec(
            "cvae",
            "VAE",
            "digits_binary_labelled",
            "svi",
            {"z_dim": int, "num_classes": int, "likelihood": str},
            sizes={"x_dim": ("x", 1)},
            description="conditional VAE p(x | z, y), labels y as covariates",
        ),
    )

    def __init__(self, x_dim: int = 64, z_dim: int = 16, *, num_classes: int = 10, **kwargs: Any):
        super().__init__(x_dim, z_dim, cond_features=num_classes, **kwargs)
        self.num_classes = num_classes

    def onehot(self, y: Tensor) -> Tensor:
        if y.is_floating_point() or y.dim() != 1 or (y < 0).any() or (y >= self.num_classes).any():
            raise DataError(
                f"`y` must be integer labels in 0..{self.num_classes - 1} of shape (N,); got "
                f"dtype {y.dtype}, shape {tuple(y.shape)}."
            )
        return F.one_hot(y, self.num_classes).to(self._zero.dtype)

    def model(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_x(x)
        c = self.onehot(y)
        register_module("vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0]))
            return pyro.sample("x", self.decode(z, c.expand(*z.shape[:-1], -1)), obs=x)

    def guide(self, x: Tensor, y: Tensor) -> Tensor:
        register_module("vae", self)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.posterior(x, self.onehot(y)))

    def elbo_terms(self, num_particles: int, x: Tensor, y: Tensor) -> ELBOTerms:
        """Per-datum ELBO terms of the labelled program (see :meth:`VAE.elbo_terms`)."""
        self.check_x(x)
        return self._elbo_terms(num_particles, x, self.onehot(y))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, y: Tensor | None = None) -> Tensor:
        y = torch.arange(n, device=self._zero.device) % self.num_classes if y is None else y
        d = self.decode(self.prior(n).sample(), self.onehot(y))
        return self.mean(d) if mean else d.sample()


class HierarchicalVAE(VAE):
    r"""A VAE with ``L >= 2`` stochastic layers (top-down generative, bottom-up inference).

    .. math:: z_L \sim \mathcal N(0, I), \quad z_l \mid z_{l+1} \sim
        \mathcal N(\mu_l(z_{l+1}), \sigma_l^2(z_{l+1})), \quad x \mid z_1 \sim p_\theta(x \mid z_1)

    with :math:`q(z_1 \mid x) \prod_{l>1} q(z_l \mid z_{l-1})`, as in the two-layer models of
    Burda et al. Sites are ``z1`` (next to the data) to ``zL``.

    References:
        Burda et al., Importance Weighted Autoencoders, arXiv:1509.00519.

    Example:
        >>> HierarchicalVAE(6, (4, 2), hidden_features=(8,)).sample(3).shape
        torch.Size([3, 6])
    """

    cli = (
        CLISpec(
            "hvae",
            "VAE",
            "digits_binary",
            "svi",
            {"likelihood": str},
            sizes={"x_dim": ("x", 1)},
            description="two-layer hierarchical VAE (z1 -> z2 -> x)",
        ),
    )

    elbo_terms = None  # several latent layers: SVI runs the program itself

    def __init__(
        self,
        x_dim: int = 64,
        z_dims: Sequence[int] = (16, 8),
        hidden_features: Sequence[int] = (256, 256),
        likelihood: Likelihood = "bernoulli",
        family: Family = "normal",
        **kwargs: Any,
    ):
        if len(z_dims) < 2:
            raise ValueError(f"`z_dims` needs at least two layers; got {tuple(z_dims)}.")
        super().__init__(x_dim, z_dims[0], hidden_features, likelihood, family, **kwargs)
        self.z_dims = tuple(int(d) for d in z_dims)
        small = tuple(max(h // 2, 8) for h in hidden_features)
        self.up = nn.ModuleList()
        self.down = nn.ModuleList()
        for lo, hi in zip(self.z_dims[:-1], self.z_dims[1:]):
            enc = MLP(lo, small)
            self.up.append(nn.ModuleList([enc, PosteriorHead(enc.out_features, hi, family)]))
            self.down.append(_Decoder(hi, small, 2 * lo))

    def _conditional_prior(self, level: int, upper: Tensor) -> dist.TorchDistribution:
        out = self.down[level](upper)
        d = self.z_dims[level]
        return dist.Normal(out[..., :d], F.softplus(out[..., d:]) + 1e-4).to_event(1)

    def _top_prior(self, n: int) -> dist.TorchDistribution:
        return dist.Normal(self._zero, 1.0).expand([n, self.z_dims[-1]]).to_event(1)

    def model(self, x: Tensor) -> Tensor:
        self.check_x(x)
        register_module("vae", self)
        depth = len(self.z_dims)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(f"z{depth}", self._top_prior(x.shape[0]))
            for level in range(depth - 2, -1, -1):
                z = pyro.sample(f"z{level + 1}", self._conditional_prior(level, z))
            return pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: Tensor) -> Tensor:
        register_module("vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z1", self.posterior(x))
            for level, (enc, head) in enumerate(self.up):
                z = pyro.sample(f"z{level + 2}", head(enc(z)))
        return z

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> Tensor:
        z = self._top_prior(n).sample()
        for level in range(len(self.z_dims) - 2, -1, -1):
            z = self._conditional_prior(level, z).sample()
        d = self.decode(z)
        return self.mean(d) if mean else d.sample()
