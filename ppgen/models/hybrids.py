r"""The survey's mix-and-match models as programs with an encoder guide: the adversarial
autoencoder, the bidirectional GAN and PixelVAE.

Each is an ordinary zoo model (a ``torch.nn.Module`` with a ``model`` program and a
``guide``), fit by the estimator its name says (``method="aae"``, ``method="bigan"``); the
encoder registers its networks apart from the decoder's or generator's, so the adversarial
estimators can tell the two optimiser roles apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ppgen.distributions import Implicit
from ppgen.errors import DataError
from ppgen.models._ar_heads import OutputHead
from ppgen.models._ar_layers import MaskedConv2d
from ppgen.models._cli import CLISpec
from ppgen.models.gan import GAN
from ppgen.models.vae import VAE
from ppgen.nn import mlp_layers

__all__ = ["AAE", "BiGAN", "PixelVAE", "VAEGAN"]


class AAE(VAE):
    r"""Adversarial autoencoder (Makhzani et al. 2016, arXiv:1511.05644): a VAE's decoder
    program :math:`p(z)\,p_\theta(x \mid z)` with an encoder whose *aggregate* posterior is
    matched to the prior by :class:`~ppgen.inference.AAE` (``method="aae"``) instead of a KL
    term.

    The encoder is deterministic by default (``Delta(E(x))``, the paper's first variant) or
    the VAE's Gaussian head (``deterministic=False``). The decoder (program) and the encoder
    (guide) register their networks under ``"aae_decoder"`` and ``"aae_encoder"``.

    Arguments:
        x_dim, z_dim, hidden_features, likelihood: as for :class:`~ppgen.models.VAE`
            (likelihoods without parameters of their own: ``"bernoulli"``, ``"cbernoulli"``,
            ``"categorical"``).
        deterministic: a point encoder (``True``) or a Gaussian one.

    Example:
        >>> import numpy as np, ppgen
        >>> x = (np.random.default_rng(0).random((64, 6)) > 0.5).astype(np.float32)
        >>> fit = ppgen.fit(AAE(6, 2, hidden_features=(16,)), {"x": x}, "aae")
        >>> fit.encode({"x": x})["z"].shape, sorted(fit.history)[:2]
        ((64, 2), ['loss', 'loss_d'])
    """

    cli = (
        CLISpec(
            "aae",
            "hybrid",
            "digits_binary",
            "aae",
            {"z_dim": int},
            description="adversarial autoencoder, MLP encoder/decoder",
        ),
    )

    def __init__(
        self,
        x_dim: int = 64,
        z_dim: int = 8,
        hidden_features: Sequence[int] = (256, 256),
        likelihood: str = "bernoulli",
        *,
        deterministic: bool = True,
        **kwargs: Any,
    ) -> None:
        if likelihood == "gaussian":
            raise ValueError(
                "`likelihood` of AAE must be 'bernoulli', 'cbernoulli' or 'categorical' (the "
                "Gaussian likelihood's scale is a parameter of neither network); got "
                "'gaussian'."
            )
        super().__init__(x_dim, z_dim, hidden_features, likelihood, **kwargs)  # type: ignore[arg-type]
        self.deterministic = bool(deterministic)
        self._encoder_part = nn.ModuleList([self.encoder, self.head])

    def model(self, x: Tensor) -> Tensor:
        self.check_x(x)
        pyro.module("aae_decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0]))
            return pyro.sample("x", self.decode(z), obs=x)

    def guide(self, x: Tensor) -> Tensor:
        pyro.module("aae_encoder", self._encoder_part)
        q = self.posterior(x)
        with pyro.plate("data", x.shape[0]):
            if self.deterministic:
                return pyro.sample("z", dist.Delta(q.mean, event_dim=1))
            return pyro.sample("z", q)

    # the VAE's ELBO shortcut does not describe this program's training
    elbo_terms = None  # type: ignore[assignment]


class VAEGAN(VAE):
    r"""VAE-GAN (Larsen et al. 2016, arXiv:1512.09300): a generator :math:`x =
    \sigma(\mathrm{Dec}(z))` (``Implicit``: the reconstruction is measured by a
    discriminator's features, not a pixel likelihood) with the VAE's Gaussian encoder as its
    guide, fit by :class:`~ppgen.inference.VAEGAN` (``method="vaegan"``). Images in [0, 1].

    Arguments:
        x_dim, z_dim, hidden_features: as for :class:`~ppgen.models.VAE` (``x_shape=`` for
            image-shaped data).

    Example:
        >>> import numpy as np, ppgen
        >>> x = np.random.default_rng(0).random((32, 6)).astype(np.float32)
        >>> fit = ppgen.fit(VAEGAN(6, 2, hidden_features=(16,)), {"x": x}, "vaegan")
        >>> fit.sample(2)["x"].shape
        (2, 32, 6)
    """

    cli = (
        CLISpec(
            "vaegan",
            "hybrid",
            "digits",
            "vaegan",
            {"z_dim": int},
            description="VAE-GAN: GAN decoder, reconstructions in critic features",
        ),
    )

    def __init__(
        self,
        x_dim: int = 64,
        z_dim: int = 16,
        hidden_features: Sequence[int] = (256, 256),
        **kwargs: Any,
    ) -> None:
        super().__init__(x_dim, z_dim, hidden_features, "bernoulli", **kwargs)
        self._encoder_part = nn.ModuleList([self.encoder, self.head])

    def model(self, x: Tensor | None = None, n: int | None = None) -> Tensor:
        if x is not None:
            self.check_x(x)
        size = x.shape[0] if x is not None else int(n or 1)
        pyro.module("vaegan_decoder", self.decoder)
        with pyro.plate("data", size):
            z = pyro.sample("z", self.prior(size))
            mean = torch.sigmoid(self.decoder(z)).reshape(size, *self.x_shape)
            return pyro.sample("x", Implicit(mean, len(self.x_shape)), obs=x)

    def guide(self, x: Tensor, n: int | None = None) -> Tensor:
        pyro.module("vaegan_encoder", self._encoder_part)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.posterior(x))

    elbo_terms = None  # type: ignore[assignment]


class BiGAN(GAN):
    r"""Bidirectional GAN (Donahue et al. 2017, arXiv:1605.09782): the zoo's
    :class:`~ppgen.models.GAN` generator with an encoder guide :math:`z = E(x)`
    (``Delta``), fit by :class:`~ppgen.inference.ALI` (``method="ali"`` or ``"bigan"``), whose
    critic sees (x, z) pairs. ``fit.encode({"x": x})`` gives the codes.

    Arguments:
        x_shape, z_dim, hidden_features, output: as for :class:`~ppgen.models.GAN` (Pyro
            programs).
        encoder_features: the encoder MLP's widths (default: ``hidden_features``).

    Example:
        >>> import numpy as np, ppgen
        >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> fit = ppgen.fit(BiGAN(2, z_dim=2, hidden_features=(16,)), {"x": x}, "bigan")
        >>> fit.encode({"x": x})["z"].shape
        (64, 2)
    """

    cli = (
        CLISpec(
            "bigan",
            "hybrid",
            "ring8",
            "ali",
            {"z_dim": int},
            description="BiGAN: GAN generator + encoder, critic on (x, z)",
        ),
    )

    def __init__(
        self,
        x_shape: int | Sequence[int] = 2,
        z_dim: int = 8,
        hidden_features: Sequence[int] = (128, 128),
        output: str = "linear",
        *,
        encoder_features: Sequence[int] | None = None,
    ) -> None:
        super().__init__(x_shape, z_dim, hidden_features, output)
        widths = tuple(encoder_features or hidden_features)
        x_width = int(torch.Size(self.x_shape).numel())
        self.encoder = mlp_layers([x_width, *widths, self.z_dim], nn.LeakyReLU(0.2))

    def model(self, x: Tensor | None = None, y: Tensor | None = None, n: int | None = None) -> Any:
        """The generator program (:meth:`GAN.model`), its network registered apart from the
        encoder's."""
        if x is not None and tuple(x.shape[1:]) != self.x_shape:
            raise DataError(
                f"`x` has datum shape {tuple(x.shape[1:])}; this BiGAN was built for "
                f"x_shape={self.x_shape}."
            )
        size = len(x) if x is not None else int(n or 1)
        pyro.module("bigan_generator", self.generator)
        with pyro.plate("data", size):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.z_dim), 1.0).to_event(1))
            return pyro.sample("x", Implicit(self.generate(z), len(self.x_shape)), obs=x)

    def encode(self, x: Tensor) -> Tensor:
        """``E(x)``, one code per datum."""
        return self.encoder(x.reshape(x.shape[0], -1))

    def guide(self, x: Tensor | None = None, y: Tensor | None = None, n: int | None = None) -> Any:
        """The encoder program: ``z = E(x)`` for every datum."""
        pyro.module("bigan_encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Delta(self.encode(x), event_dim=1))


class _ConditionalPixelCNN(nn.Module):
    """A PixelCNN whose first layer gets a feature map computed from the code ``z``."""

    def __init__(
        self, shape: Sequence[int], z_dim: int, hidden: int, num_layers: int, kernel: int
    ) -> None:
        super().__init__()
        c, h, w = shape
        self.shape, self.hidden = tuple(shape), hidden
        self.head = OutputHead("bernoulli")
        self.first = MaskedConv2d(c, hidden, 7, "A")
        self.cond = nn.Linear(z_dim, hidden * h * w)
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [nn.ReLU(), MaskedConv2d(hidden, hidden, kernel, "B")]
        layers += [nn.ReLU(), nn.Conv2d(hidden, c * self.head.size, 1)]
        self.rest = nn.Sequential(*layers)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        b, (c, h, w) = x.shape[0], self.shape
        feat = self.first(x) + self.cond(z).reshape(b, self.hidden, h, w)
        return self.rest(feat).reshape(b, c, h, w)


class _PixelDecoder(dist.TorchDistribution):
    """:math:`p(x \\mid z) = \\prod_{i} p(x_i \\mid x_{<i}, z)`: one teacher-forced pass for
    ``log_prob``, ``H * W`` passes to sample; batch shape ``z.shape[:-1]``."""

    arg_constraints: dict = {}
    support = dist.constraints.independent(dist.constraints.boolean, 3)

    def __init__(self, net: _ConditionalPixelCNN, z: Tensor) -> None:
        self.net, self.z = net, z
        super().__init__(z.shape[:-1], torch.Size(net.shape), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        lead = self.batch_shape
        x = value.expand(*lead, *self.event_shape).reshape(-1, *self.event_shape)
        z = self.z.reshape(-1, self.z.shape[-1])
        logits = self.net.logits(x.to(z.dtype), z)
        lp = dist.Bernoulli(logits=logits).log_prob(x.to(z.dtype)).sum((1, 2, 3))
        return lp.reshape(lead)

    @torch.no_grad()
    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])
        x = torch.zeros(len(z), *self.event_shape, dtype=z.dtype, device=z.device)
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                p = torch.sigmoid(self.net.logits(x, z)[:, :, i, j])
                x[:, :, i, j] = torch.bernoulli(p)
        return x.reshape(*shape, *self.event_shape)


class PixelVAE(VAE):
    r"""PixelVAE (Gulrajani et al. 2017, arXiv:1611.05013): a VAE whose decoder is a PixelCNN
    conditioned on the code, for binary images ``(C, H, W)``.

    .. math:: z \sim \mathcal N(0, I), \qquad p(x \mid z) = \prod_{i,j}
        p(x_{:,i,j} \mid x_{<(i,j)}, z)

    The code enters as a learned feature map added after the first (type-A) masked
    convolution; the encoder is the VAE's MLP (Gaussian head), so it fits by SVI like any
    VAE (``method="svi"``), the ELBO and IWAE bounds included. Sampling runs the decoder
    ``H * W`` times.

    Arguments:
        x_shape: ``(C, H, W)``.
        z_dim: code dimension.
        hidden_features: the encoder's widths.
        hidden_channels, num_layers, kernel_size: the PixelCNN decoder's.

    Example:
        >>> import numpy as np, ppgen
        >>> x = (np.random.default_rng(0).random((16, 1, 4, 4)) > 0.5).astype(np.float32)
        >>> m = PixelVAE((1, 4, 4), z_dim=2, hidden_features=(16,), hidden_channels=8)
        >>> fit = ppgen.fit(m, {"x": x}, ppgen.inference.SVI(steps=2, num_draws=2))
        >>> m.sample(3).shape
        torch.Size([3, 1, 4, 4])
    """

    cli = (
        CLISpec(
            "pixelvae",
            "VAE",
            "digits_binary_images",
            "svi",
            {"z_dim": int, "hidden_channels": int},
            sizes={"x_shape": ("x", None)},
            description="PixelVAE: VAE with a conditional PixelCNN decoder",
        ),
    )

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 8, 8),
        z_dim: int = 8,
        hidden_features: Sequence[int] = (256,),
        *,
        hidden_channels: int = 32,
        num_layers: int = 3,
        kernel_size: int = 3,
    ) -> None:
        shape = tuple(int(s) for s in x_shape)
        if len(shape) != 3:
            raise ValueError(f"`x_shape` of PixelVAE must be (C, H, W); got {tuple(x_shape)}.")
        net = _ConditionalPixelCNN(shape, int(z_dim), hidden_channels, num_layers, kernel_size)
        super().__init__(z_dim=z_dim, hidden_features=hidden_features, x_shape=shape, decoder=net)

    def decode(self, z: Tensor, *cond: Tensor) -> dist.TorchDistribution:
        return _PixelDecoder(self.decoder, z)

    def mean(self, d: dist.TorchDistribution) -> Tensor:
        return d.sample()  # an autoregressive decoder has no closed-form mean image
