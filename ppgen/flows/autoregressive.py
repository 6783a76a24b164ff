"""Autoregressive flows: MAF, its inverse IAF, and the rational-quadratic spline NSF."""

from __future__ import annotations

from nflows.transforms import (
    CompositeTransform,
    InverseTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    RandomPermutation,
    ReversePermutation,
    Transform,
)

from ppgen.flows.distribution import Flow
from ppgen.flows.transforms import SCALES, MaskedAffineAutoregressiveTransform

__all__ = ["IAF", "MAF", "NSF"]


class MAF(Flow):
    r"""Masked autoregressive flow: a stack of MADE-parameterised affine layers.

    .. math:: z_i = (x_i - \mu_i(x_{<i}, c)) \, \sigma_i(x_{<i}, c)^{-1}

    Density evaluation is one network pass; sampling inverts the layers one feature at a
    time (``D`` passes). Between layers the features are reversed (or randomly permuted).

    References:
        Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017),
        arXiv:1705.07057

    Arguments:
        features: The number of features ``D``.
        context_features: The context size, or ``None`` for an unconditional flow.
        hidden_features: The width of the MADE hidden layers.
        num_transforms: The number of autoregressive layers.
        num_blocks: The number of residual blocks in each MADE.
        random_permutation: Permute features randomly between layers instead of reversing.
        scale: The scale parametrisation of each affine layer, ``"softplus"`` (nflows' own,
            the default for MAF) or ``"tanh"`` (a bounded log-scale, the default for IAF); see
            :class:`~ppgen.flows.transforms.MaskedAffineAutoregressiveTransform`.

    With the defaults each layer is the one of nflows' ``MaskedAutoregressiveFlow(features,
    hidden_features, num_layers=num_transforms, num_blocks_per_layer=num_blocks)``: a MADE of
    ``num_blocks`` residual blocks (ReLU, near-zero last layer in each block), softplus scale
    (its logit shifted so that the scale is 1 at initialisation, where nflows' is 0.69).
    nflows also reverses the features before the first layer; MAF does not (no effect on the
    family, and saved MAFs keep their module names).

    Example:
        >>> import torch
        >>> flow = MAF(3, context_features=2)
        >>> flow(torch.randn(2)).sample((4,)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        features: int,
        context_features: int | None = None,
        hidden_features: int = 64,
        num_transforms: int = 5,
        num_blocks: int = 2,
        random_permutation: bool = False,
        scale: str | None = None,
    ):
        self.scale = self.default_scale if scale is None else scale
        if self.scale not in SCALES:
            raise ValueError(f"`scale` must be one of {SCALES}, got {scale!r}.")
        layers: list[Transform] = []
        for i in range(num_transforms):
            if i > 0:
                layers.append(
                    RandomPermutation(features)
                    if random_permutation
                    else ReversePermutation(features)
                )
            layers.append(self._layer(features, context_features, hidden_features, num_blocks))
        super().__init__(CompositeTransform(layers), features, context_features)

    default_scale = "softplus"

    def _layer(
        self, features: int, context_features: int | None, hidden_features: int, num_blocks: int
    ) -> Transform:
        return MaskedAffineAutoregressiveTransform(
            features, hidden_features, context_features, num_blocks=num_blocks, scale=self.scale
        )


class IAF(MAF):
    r"""Inverse autoregressive flow: each MAF layer used in the sampling direction.

    .. math:: x_i = \mu_i(z_{<i}, c) + \sigma_i(z_{<i}, c) \, z_i

    Sampling, and the density of the flow's own samples, take one pass per layer, which makes
    IAF the usual choice for variational posteriors (the density of a sample drawn by
    ``rsample`` is cached). The density of arbitrary data needs ``D`` passes per layer: slow.

    References:
        Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016),
        arXiv:1606.04934

    Arguments:
        The same as :class:`MAF`; ``scale`` is ``"tanh"`` by default (a bounded log-scale keeps
        the guide's samples stable early in a variational fit).

    Example:
        >>> import torch
        >>> d = IAF(3)()
        >>> x, log_p = d.rsample_and_log_prob((4,))
        >>> log_p.shape
        torch.Size([4])
    """

    default_scale = "tanh"

    def _layer(
        self, features: int, context_features: int | None, hidden_features: int, num_blocks: int
    ) -> Transform:
        return InverseTransform(
            super()._layer(features, context_features, hidden_features, num_blocks)
        )


class NSF(MAF):
    r"""Neural spline flow: MAF with monotonic rational-quadratic splines instead of affines.

    .. math:: z_i = \mathrm{RQS}(x_i; \theta_i(x_{<i}, c))

    on :math:`[-B, B]` with ``num_bins`` bins and identity (linear) tails outside.

    References:
        Neural Spline Flows (Durkan et al., 2019), arXiv:1906.04032

    Arguments:
        num_bins: The number of spline bins.
        tail_bound: The half-width ``B`` of the spline's interval.
        others: as in :class:`MAF`.

    Example:
        >>> import torch
        >>> NSF(3, num_bins=4)().log_prob(torch.zeros(3)).shape
        torch.Size([])
    """

    def __init__(self, features: int, *args, num_bins: int = 8, tail_bound: float = 5.0, **kwargs):
        self.num_bins, self.tail_bound = num_bins, tail_bound
        super().__init__(features, *args, **kwargs)

    def _layer(
        self, features: int, context_features: int | None, hidden_features: int, num_blocks: int
    ) -> Transform:
        return MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
            features,
            hidden_features,
            context_features,
            num_bins=self.num_bins,
            tails="linear",
            tail_bound=self.tail_bound,
            num_blocks=num_blocks,
        )
