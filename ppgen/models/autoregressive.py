"""Autoregressive models: MADE, PixelCNN (plain and gated), WaveNet and a char-level LSTM."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.models._ar_heads import (
    AutoregressiveDistribution,
    DiscretizedLogisticMixture,
    Likelihood,
    OutputHead,
)
from ppgen.models._ar_layers import MaskedConv2d, MaskedLinear, _CausalConv, _GatedLayer

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


class _Program(nn.Module):
    """The ppgen program shared by the autoregressive zoo: ``x ~ p(x)`` in a data plate."""

    head: OutputHead
    event_shape: torch.Size

    def distribution(self) -> AutoregressiveDistribution:
        return AutoregressiveDistribution(self)

    def model(self, x: Tensor | None = None, num_samples: int = 1) -> Tensor:
        pyro.module(type(self).__name__.lower(), self)
        with pyro.plate("data", x.shape[0] if x is not None else num_samples):
            return pyro.sample("x", self.distribution(), obs=x)

    def params(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log p(x)`, summed over the event, one value per datum."""
        return self.head(self.params(x)).log_prob(x).reshape(x.shape[0], -1).sum(-1)

    def _dtype(self) -> torch.dtype:
        if self.head.likelihood == "categorical":
            return torch.long
        return next(self.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class MADE(_Program):
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


class PixelCNN(_Program):
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


class WaveNet(_Program):
    r"""WaveNet: a stack of gated, dilated causal convolutions over a sequence.

    .. math:: p(x) = \prod_t p(x_t \mid x_{<t}), \quad
        z = \tanh(W_{f} *_d x) \odot \sigma(W_{g} *_d x)

    Data are ``(N, T)`` integer classes (``categorical``, one-hot inputs) or values on
    [-1, 1] (``gaussian``, ``logistic_mixture``). :meth:`sample` caches each layer's past
    activations (Fast WaveNet), so one step costs one column of the network.

    References:
        WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016), arXiv:1609.03499;
        Fast Wavenet Generation Algorithm (Paine et al., 2016), arXiv:1611.09482

    Arguments:
        length: The sequence length ``T`` (for sampling and validation).
        num_classes: The number of classes or levels.
        channels: The residual and skip channels.
        dilations: The dilation of each layer; the receptive field is ``1 + sum(dilations)``.
        likelihood: The per-step output distribution.

    Example:
        >>> m = WaveNet(16, num_classes=4, channels=8, dilations=(1, 2))
        >>> m.log_prob(m.sample(3)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        length: int,
        num_classes: int = 256,
        channels: int = 32,
        dilations: Sequence[int] = (1, 2, 4, 8),
        likelihood: Likelihood = "categorical",
    ):
        super().__init__()
        self.head = OutputHead(likelihood, num_classes)
        self.event_shape = torch.Size([length])
        self.in_channels = num_classes if likelihood == "categorical" else 1
        self.input = _CausalConv(self.in_channels, channels, 1)
        self.dilated = nn.ModuleList(_CausalConv(channels, 2 * channels, d) for d in dilations)
        # the last layer only feeds the skip path
        self.res = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations[1:])
        self.skip = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv1d(channels, self.head.size, 1))

    def _encode(self, x: Tensor) -> Tensor:
        if self.head.likelihood == "categorical":
            return F.one_hot(x, self.head.num_classes).to(self.input.weight.dtype)
        return x.unsqueeze(-1).to(self.input.weight.dtype)

    def params(self, x: Tensor) -> Tensor:
        if x.shape[1:] != self.event_shape:
            raise ValueError(
                f"`x` must have shape (N, {self.event_shape[0]}), got {tuple(x.shape)}."
            )
        inputs = F.pad(self._encode(x).transpose(1, 2), (1, 0))[:, :, :-1]  # predict x_t from x_<t
        h = self.input(inputs)
        skip = 0
        for i, (conv, sk) in enumerate(zip(self.dilated, self.skip)):
            a, b = conv(h).chunk(2, 1)
            z = torch.tanh(a) * torch.sigmoid(b)
            skip = skip + sk(z)
            if i < len(self.res):
                h = h + self.res[i](z)
        return self.out(skip).transpose(1, 2)

    def _one_step(self, x: Tensor, cache: list[list[Tensor]]) -> Tensor:
        def pointwise(conv: nn.Conv1d, v: Tensor) -> Tensor:
            return F.linear(v, conv.weight[:, :, 0], conv.bias)

        h = self.input.step(x, cache[0])
        skip = 0
        for i, (conv, sk) in enumerate(zip(self.dilated, self.skip)):
            a, b = conv.step(h, cache[i + 1]).chunk(2, -1)
            z = torch.tanh(a) * torch.sigmoid(b)
            skip = skip + pointwise(sk, z)
            if i < len(self.res):
                h = h + pointwise(self.res[i], z)
        return pointwise(self.out[1], F.relu(skip))

    @torch.no_grad()
    def sample(self, n: int, cache: bool = True) -> Tensor:
        """Samples step by step; ``cache=False`` recomputes the whole prefix every step."""
        x = torch.zeros(n, *self.event_shape, dtype=self._dtype(), device=self._device())
        history: list[list[Tensor]] = [[] for _ in range(len(self.dilated) + 1)]
        step_input = self.input.weight.new_zeros(n, self.in_channels)
        for t in range(x.shape[1]):
            params = self._one_step(step_input, history) if cache else self.params(x)[:, t]
            x[:, t] = self.head(params).sample().to(x.dtype)
            step_input = self._encode(x[:, t : t + 1])[:, 0]
        return x


class CharRNN(_Program):
    r"""A character-level LSTM language model.

    .. math:: p(x_{1:T}) = \prod_t \mathrm{Cat}(x_t \mid \mathrm{softmax}(W h_t)), \quad
        h_t = \mathrm{LSTM}(h_{t-1}, e(x_{t-1})), \quad x_0 = \langle\text{bos}\rangle

    Sequences are ``(N, T)`` integer tokens in ``0..vocab_size-1``. :meth:`sample` carries
    the LSTM state (cached); ``cache=False`` re-reads the whole prefix every step.

    References:
        Generating Sequences With Recurrent Neural Networks (Graves, 2013), arXiv:1308.0850

    Arguments:
        vocab_size: The number of tokens.
        length: The sequence length ``T`` used by :meth:`sample` and the program.
        embedding_dim: The token embedding size.
        hidden_size: The LSTM width.
        num_layers: The number of LSTM layers.

    Example:
        >>> lm = CharRNN(5, length=7, hidden_size=16)
        >>> lm.log_prob(lm.sample(2)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        vocab_size: int,
        length: int = 64,
        embedding_dim: int = 32,
        hidden_size: int = 128,
        num_layers: int = 1,
    ):
        super().__init__()
        self.head = OutputHead("categorical", vocab_size)
        self.event_shape = torch.Size([length])
        self.embed = nn.Embedding(vocab_size + 1, embedding_dim)  # the last token is <bos>
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True)
        self.proj = nn.Linear(hidden_size, vocab_size)

    def params(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(
                f"`x` must be a (N, T) tensor of token ids, got {x.dtype} of shape "
                f"{tuple(x.shape)}."
            )
        bos = torch.full_like(x[:, :1], self.head.num_classes)
        h, _ = self.lstm(self.embed(torch.cat([bos, x[:, :-1]], dim=1)))
        return self.proj(h)

    @torch.no_grad()
    def sample(self, n: int, length: int | None = None, cache: bool = True) -> Tensor:
        """Samples ``n`` sequences of ``length`` tokens (default: the model's length)."""
        length = length or self.event_shape[0]
        x = torch.zeros(n, length, dtype=torch.long, device=self._device())
        token = torch.full((n, 1), self.head.num_classes, dtype=torch.long, device=x.device)
        state = None
        for t in range(length):
            if cache:
                h, state = self.lstm(self.embed(token), state)
                logits = self.proj(h[:, -1])
            else:
                logits = self.params(x[:, : t + 1])[:, t]
            x[:, t] = self.head(logits[:, None]).sample()[:, 0]
            token = x[:, t : t + 1]
        return x
