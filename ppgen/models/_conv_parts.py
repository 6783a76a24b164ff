"""Convolutional networks of ``ConvVAE`` and the probe that measures an encoder's width."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["BatchedDecoder", "ChannelsLast", "ConvEncoder", "conv_networks", "probe"]


class ConvEncoder(nn.Module):
    """Wraps a convolutional stack, exposing its ``out_features``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.out_features = net, net.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ChannelsLast(nn.Module):
    """``(B, C * k, H, W)`` to flat ``(B, C * H * W * k)`` with the k levels last."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.c, self.k = c, k

    def forward(self, y: Tensor) -> Tensor:
        b, _, h, w = y.shape
        return y.reshape(b, self.c, self.k, h, w).permute(0, 1, 3, 4, 2).reshape(b, -1)


class BatchedDecoder(nn.Module):
    """Applies an image decoder to latents with any leading batch dims (vectorised particles)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*z.shape[:-1], out.shape[-1])


def conv_networks(
    x_shape: Sequence[int], z_dim: int, k: int, channels: int, hidden_features: int
) -> tuple[ConvEncoder, BatchedDecoder]:
    """Encoder (two stride-2 convolutions) and decoder (their transposes) for ``(C, H, W)``
    images, the decoder giving ``k`` outputs per pixel."""
    c, h, w = x_shape
    flat = 2 * channels * (h // 4) * (w // 4)
    encoder = nn.Sequential(
        nn.Conv2d(c, channels, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 4, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(flat, hidden_features),
        nn.ReLU(),
    )
    decoder = nn.Sequential(
        nn.Linear(z_dim, hidden_features),
        nn.ReLU(),
        nn.Linear(hidden_features, flat),
        nn.ReLU(),
        nn.Unflatten(-1, (2 * channels, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(channels, c * k, 4, 2, 1),
        ChannelsLast(c, k),
    )
    encoder.out_features = hidden_features  # type: ignore[assignment]
    return ConvEncoder(encoder), BatchedDecoder(decoder)


def probe(encoder: nn.Module, x_shape: tuple[int, ...]) -> int:
    """The feature width of ``encoder``, from one pass on zeros shaped like the data."""
    with torch.no_grad():
        return int(encoder(torch.zeros(2, *x_shape)).shape[-1])
