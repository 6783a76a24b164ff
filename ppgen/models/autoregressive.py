"""Autoregressive models: MADE, PixelCNN (plain and gated), WaveNet and a char-level LSTM."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.models._ar_heads import (
    AutoregressiveDistribution,
    DiscretizedLogisticMixture,
    Likelihood,
    OutputHead,
)
from ppgen.models._ar_layers import MaskedConv2d, MaskedLinear, _GatedLayer
from ppgen.models._ar_program import ARProgram
from ppgen.models._ar_sequence import CharRNN, WaveNet
from ppgen.models._cli import CLISpec

__all__ = [
    "MADE",
    "AutoregressiveDistribution",
    "CharRNN",
    "DiscretizedLogisticMixture",
    "GatedPixelCNN",
    "OutputHead",
    "PixelCNN",
    "WaveNet",
]


class MADE(ARProgram):
    r"""Masked autoencoder for distribution estimation.

    .. math:: p(x) = \prod_{d} p(x_{o(d)} \mid x_{o(<d)}), \quad
        M^{(l)}_{kj} = [m^{(l)}(k) \ge m^{(l-1)}(j)], \quad M^{V}_{dk} = [o^{-1}(d) > m^{(L)}(k)]

    Binary (``bernoulli``), real-valued (``gaussian``) or ``categorical`` data. With
    ``order_agnostic=True`` the input order and hidden connectivity are random, and
    :meth:`resample_masks` draws new ones (call it every step for order-agnostic training).

    References:
        MADE: Masked Autoencoder for Distribution Estimation (Germain et al., 2015),
        arXiv:1502.03509

    Arguments:
        features: The number of variables ``D``.
        hidden_features: The width of the hidden layers.
        num_layers: The number of hidden layers.
        likelihood: The per-variable output distribution.
        num_classes: The number of classes (``categorical``) or levels (``logistic_mixture``).
        order_agnostic: Use a random order and connectivity.

    Example:
        >>> made = MADE(5, hidden_features=16, likelihood="gaussian")
        >>> made.log_prob(made.sample(3)).shape
        torch.Size([3])
    """

    cli = (
        CLISpec(
            "made",
            "autoregressive",
            "digits_binary",
            "mle",
            {"hidden_features": int, "likelihood": str},
            sizes={"features": ("x", 1)},
            description="MADE over 64 binary pixels",
        ),
    )

    def __init__(
        self,
        features: int,
        hidden_features: int = 64,
        num_layers: int = 2,
        likelihood: Likelihood = "bernoulli",
        num_classes: int = 256,
        order_agnostic: bool = False,
    ):
        super().__init__()
        if features < 2:
            raise ValueError(f"`features` must be at least 2, got {features}.")
        self.head = OutputHead(likelihood, num_classes)
        self.features, self.order_agnostic = features, order_agnostic
        self.event_shape = torch.Size([features])
        sizes = [features] + [hidden_features] * num_layers
        self.hidden = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = MaskedLinear(hidden_features, features * self.head.size)
        self.register_buffer("order", torch.arange(features))
        self.resample_masks(torch.Generator().manual_seed(0) if order_agnostic else None)

    def resample_masks(self, generator: torch.Generator | None = None) -> None:
        """Draws a new order and connectivity (fixed natural order when not order-agnostic)."""
        d = self.features
        if self.order_agnostic:
            degrees = torch.randperm(d, generator=generator) + 1
        else:
            degrees = torch.arange(1, d + 1)
        self.order.copy_(torch.argsort(degrees))
        previous = degrees
        for layer in self.hidden:
            if self.order_agnostic:
                low = int(previous.min().clamp(max=d - 1))
                m = torch.randint(low, d, (layer.out_features,), generator=generator)
            else:
                m = torch.arange(layer.out_features) % (d - 1) + 1
            layer.mask.copy_((m[:, None] >= previous[None, :]).float())
            previous = m
        out = degrees.repeat_interleave(self.head.size)
        self.out.mask.copy_((out[:, None] > previous[None, :]).float())

    def params(self, x: Tensor) -> Tensor:
        h = self.head.encode(x)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.out(h).reshape(x.shape[0], self.features, self.head.size)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Samples one variable at a time in the model's order (``D`` network passes)."""
        x = torch.zeros(n, self.features, dtype=self._dtype(), device=self._device())
        for i in self.order.tolist():
            x[:, i] = self.head(self.params(x)[:, i]).sample().to(x.dtype)
        return x


class PixelCNN(ARProgram):
    r"""PixelCNN: masked convolutions over a raster order of pixels.

    .. math:: p(x) = \prod_{i,j} p(x_{:,i,j} \mid x_{<(i,j)})

    The channels of one pixel are modelled independently given the previous pixels. The
    stack has a blind spot to the upper right, removed by :class:`GatedPixelCNN`.
    Sampling takes ``H * W`` network passes.

    References:
        Pixel Recurrent Neural Networks (van den Oord et al., 2016), arXiv:1601.06759

    Arguments:
        shape: The image shape ``(C, H, W)``.
        hidden_channels: The width of the convolutions.
        num_layers: The number of masked type-``B`` layers.
        kernel_size: The kernel size of the type-``B`` layers (the first layer uses 7).
        likelihood: The per-pixel output distribution.
        num_classes: The number of levels for ``categorical`` and ``logistic_mixture``.

    Example:
        >>> m = PixelCNN((1, 4, 4), hidden_channels=8, num_layers=2)
        >>> m.log_prob(m.sample(2)).shape
        torch.Size([2])
    """

    cli = (
        CLISpec(
            "pixelcnn",
            "autoregressive",
            "digits_binary_images",
            "mle",
            {"hidden_channels": int, "num_layers": int, "likelihood": str},
            sizes={"shape": ("x", None)},
            description="PixelCNN over binary images",
        ),
    )

    def __init__(
        self,
        shape: Sequence[int],
        hidden_channels: int = 64,
        num_layers: int = 5,
        kernel_size: int = 3,
        likelihood: Likelihood = "bernoulli",
        num_classes: int = 256,
    ):
        super().__init__()
        self.head = OutputHead(likelihood, num_classes)
        self.event_shape = torch.Size(shape)
        c = shape[0]
        layers: list[nn.Module] = [MaskedConv2d(c, hidden_channels, 7, "A")]
        for _ in range(num_layers):
            layers += [nn.ReLU(), MaskedConv2d(hidden_channels, hidden_channels, kernel_size, "B")]
        layers += [nn.ReLU(), nn.Conv2d(hidden_channels, c * self.head.size, 1)]
        self.net = nn.Sequential(*layers)

    def _check(self, x: Tensor) -> None:
        if x.shape[1:] != self.event_shape:
            raise ValueError(
                f"`x` must have shape (N, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(x.shape)}."
            )

    def params(self, x: Tensor) -> Tensor:
        self._check(x)
        b, c, h, w = x.shape
        out = self.net(self.head.encode(x))
        return out.reshape(b, c, self.head.size, h, w).permute(0, 1, 3, 4, 2)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Samples pixel by pixel in raster order (``H * W`` passes, no caching)."""
        x = torch.zeros(n, *self.event_shape, dtype=self._dtype(), device=self._device())
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                x[:, :, i, j] = self.head(self.params(x)[:, :, i, j]).sample().to(x.dtype)
        return x


class GatedPixelCNN(PixelCNN):
    r"""Gated PixelCNN: vertical and horizontal stacks (no blind spot) and gated units.

    .. math:: y = \tanh(W_f * x) \odot \sigma(W_g * x)

    References:
        Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016),
        arXiv:1606.05328

    Arguments:
        The same as :class:`PixelCNN`.

    Example:
        >>> m = GatedPixelCNN((1, 4, 4), hidden_channels=8, num_layers=2)
        >>> m.log_prob(m.sample(2)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        shape: Sequence[int],
        hidden_channels: int = 64,
        num_layers: int = 5,
        kernel_size: int = 3,
        likelihood: Likelihood = "bernoulli",
        num_classes: int = 256,
    ):
        super().__init__(shape, 1, 0, kernel_size, likelihood, num_classes)
        c, hidden = shape[0], hidden_channels
        self.layers = nn.ModuleList(
            _GatedLayer(c if i == 0 else hidden, hidden, kernel_size, first=i == 0)
            for i in range(num_layers + 1)
        )
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, c * self.head.size, 1))

    def params(self, x: Tensor) -> Tensor:
        self._check(x)
        b, c, h, w = x.shape
        v = hz = self.head.encode(x)
        for layer in self.layers:
            v, hz = layer(v, hz)
        return self.net(hz).reshape(b, c, self.head.size, h, w).permute(0, 1, 3, 4, 2)
