"""Masked and causal layers of the autoregressive zoo (MADE, PixelCNN, WaveNet)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MaskedConv2d", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary mask."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", torch.ones(out_features, in_features))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MaskedConv2d(nn.Conv2d):
    """A convolution that only sees pixels above and to the left (type ``B``: and itself)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.ones_like(self.weight)
        mask[:, :, c, c + (mask_type == "B") :] = 0
        mask[:, :, c + 1 :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class _GatedLayer(nn.Module):
    """One gated layer with a vertical (rows above) and a horizontal (row to the left) stack."""

    def __init__(self, c_in: int, c: int, k: int, first: bool):
        super().__init__()
        self.k, self.first = k, first
        self.v = nn.Conv2d(c_in, 2 * c, (k // 2 + 1, k))
        self.h = nn.Conv2d(c_in, 2 * c, (1, k // 2 + 1))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        k = self.k
        if self.first:  # strictly above / strictly left: shift by one
            v = F.pad(v, (0, 0, 1, 0))[:, :, :-1]
            h = F.pad(h, (1, 0))[:, :, :, :-1]
        v_pre = self.v(F.pad(v, (k // 2, k // 2, k // 2, 0)))
        h_pre = self.h(F.pad(h, (k // 2, 0))) + self.v_to_h(v_pre)
        v_out = torch.tanh(v_pre.chunk(2, 1)[0]) * torch.sigmoid(v_pre.chunk(2, 1)[1])
        gated = torch.tanh(h_pre.chunk(2, 1)[0]) * torch.sigmoid(h_pre.chunk(2, 1)[1])
        h_out = self.h_out(gated)
        return v_out, h_out if self.first else h + h_out


class _CausalConv(nn.Conv1d):
    """A kernel-2 dilated causal convolution with a one-step form for cached sampling."""

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__(c_in, c_out, 2, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.dilation[0], 0)))

    def step(self, x: Tensor, history: list[Tensor]) -> Tensor:
        history.append(x)
        d = self.dilation[0]
        past = history[-1 - d] if len(history) > d else torch.zeros_like(x)
        return F.linear(past, self.weight[:, :, 0]) + F.linear(x, self.weight[:, :, 1], self.bias)
