"""Coupling flows: NICE, RealNVP and Glow, for vectors and multi-scale for (C, H, W) images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from nflows.nn.nets import ConvResidualNet, ResidualNet
from nflows.transforms import (
    ActNorm,
    AdditiveCouplingTransform,
    AffineCouplingTransform,
    CompositeTransform,
    MultiscaleCompositeTransform,
    SqueezeTransform,
    Transform,
)
from torch import Tensor, nn

from ppgen.flows.distribution import Flow, StandardNormal
from ppgen.flows.transforms import DiagonalScale, LULinear, OneByOneConvolution

__all__ = ["NICE", "Glow", "RealNVP"]


def _mask(features: int, parity: int) -> Tensor:
    return (torch.arange(features) + parity) % 2


class _ConvNet(nn.Module):
    """nflows' ConvResidualNet with a context vector broadcast over the pixels."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, context: int | None):
        super().__init__()
        self.net = ConvResidualNet(in_channels, out_channels, hidden, context, num_blocks=2)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        if context is not None:
            context = context[:, :, None, None].expand(-1, -1, *inputs.shape[2:])
        return self.net(inputs, context)


class _CouplingFlow(Flow):
    """Stacks ``step(features, parity)`` blocks; for images, in levels of squeeze + split."""

    coupling: type[Transform] = AffineCouplingTransform

    def __init__(
        self,
        features: int | Sequence[int],
        context_features: int | None = None,
        hidden_features: int = 64,
        num_transforms: int = 4,
        num_blocks: int = 2,
        num_levels: int = 2,
    ):
        self._hidden, self._blocks = hidden_features, num_blocks
        self._context = context_features
        if isinstance(features, int):
            steps = [self.step(features, i % 2) for i in range(num_transforms)]
            transform = CompositeTransform([*steps, *self.final(features)])
            super().__init__(transform, features, context_features)
            return
        c, h, w = features
        if h % 2**num_levels or w % 2**num_levels:
            raise ValueError(
                f"`features` height and width must be divisible by 2**num_levels = "
                f"{2**num_levels}, got {tuple(features)}."
            )
        transform = MultiscaleCompositeTransform(num_levels)
        shape = (c, h, w)
        for _ in range(num_levels):
            squeeze = SqueezeTransform()
            shape = squeeze.get_output_shape(*shape)
            steps = [self.image_step(shape[0], i % 2) for i in range(num_transforms)]
            shape = transform.add_transform(CompositeTransform([squeeze, *steps]), shape)
        base = StandardNormal((c * h * w,))
        super().__init__(transform, features, context_features, base=base)

    def _net(self) -> Callable[[int, int], nn.Module]:
        return lambda i, o: ResidualNet(i, o, self._hidden, self._context, num_blocks=self._blocks)

    def _conv_net(self) -> Callable[[int, int], nn.Module]:
        return lambda i, o: _ConvNet(i, o, self._hidden, self._context)

    def step(self, features: int, parity: int) -> Transform:
        return self.coupling(_mask(features, parity), self._net())

    def image_step(self, channels: int, parity: int) -> Transform:
        return self.coupling(_mask(channels, parity), self._conv_net())

    def final(self, features: int) -> list[Transform]:
        return []


class RealNVP(_CouplingFlow):
    r"""Real NVP: affine coupling layers with alternating masks.

    .. math:: z_{A} = x_{A}, \quad z_{B} = x_{B} \odot s(x_{A}, c) + t(x_{A}, c)

    For image inputs ``(C, H, W)`` the flow is multi-scale: each of ``num_levels`` levels
    squeezes ``2x2`` pixels into channels, applies ``num_transforms`` couplings with
    alternating channel masks (convolutional residual nets), and factors out half of the
    channels. The paper's checkerboard masks are replaced by squeeze + channel masks.

    References:
        Density estimation using Real NVP (Dinh et al., 2016), arXiv:1605.08803

    Arguments:
        features: ``D`` for vectors, or ``(C, H, W)`` for images.
        context_features: The context size, or ``None`` for an unconditional flow.
        hidden_features: The width (channels) of the coupling networks.
        num_transforms: The number of couplings (per level, for images).
        num_blocks: The number of residual blocks in each vector coupling network.
        num_levels: The number of multi-scale levels (images only).

    Example:
        >>> flow = RealNVP((1, 8, 8), hidden_features=8)
        >>> flow().sample((2,)).shape
        torch.Size([2, 1, 8, 8])
    """


class NICE(_CouplingFlow):
    r"""NICE: additive (volume-preserving) couplings followed by a learned diagonal scaling.

    .. math:: z_{B} = x_{B} + t(x_{A}, c), \quad z = e^{s} \odot z_{\text{coupled}}

    References:
        NICE: Non-linear Independent Components Estimation (Dinh et al., 2014),
        arXiv:1410.8516

    Arguments:
        The same as :class:`RealNVP` (vectors only).

    Example:
        >>> NICE(3)().log_prob(torch.zeros(3)).shape
        torch.Size([])
    """

    coupling = AdditiveCouplingTransform

    def __init__(self, features: int, *args, **kwargs):
        if not isinstance(features, int):
            raise ValueError(f"`features` must be an int for NICE, got {features!r}.")
        super().__init__(features, *args, **kwargs)

    def final(self, features: int) -> list[Transform]:
        return [DiagonalScale(features)]


class Glow(_CouplingFlow):
    r"""Glow: steps of actnorm, invertible 1x1 convolution (LU) and affine coupling.

    .. math:: \text{step}(x) = \text{coupling}(W \, \text{actnorm}(x)), \quad
        W = P L (U + \mathrm{diag}(s))

    Images ``(C, H, W)`` use the multi-scale squeeze/split architecture of :class:`RealNVP`;
    vectors use :class:`~ppgen.flows.transforms.LULinear` in place of the 1x1 convolution.
    Actnorm is initialised from the first batch seen in training mode.

    References:
        Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma & Dhariwal, 2018),
        arXiv:1807.03039

    Arguments:
        The same as :class:`RealNVP`.

    Example:
        >>> flow = Glow((1, 8, 8), hidden_features=8)
        >>> flow().log_prob(torch.randn(5, 1, 8, 8)).shape
        torch.Size([5])
    """

    def step(self, features: int, parity: int) -> Transform:
        return CompositeTransform(
            [ActNorm(features), LULinear(features, identity_init=True), super().step(features, 0)]
        )

    def image_step(self, channels: int, parity: int) -> Transform:
        return CompositeTransform(
            [ActNorm(channels), OneByOneConvolution(channels), super().image_step(channels, 0)]
        )
