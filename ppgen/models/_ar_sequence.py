"""Sequence models of the autoregressive zoo: WaveNet and a char-level LSTM."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.models._ar_heads import Likelihood, OutputHead
from ppgen.models._ar_layers import _CausalConv
from ppgen.models._ar_program import ARProgram

__all__ = ["CharRNN", "WaveNet"]


class WaveNet(ARProgram):
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


class CharRNN(ARProgram):
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
