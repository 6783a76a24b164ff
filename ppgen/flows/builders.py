"""Planar and radial flows, and `build_flow`, the one factory for every flow kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from nflows.transforms import CompositeTransform

from ppgen.flows.autoregressive import IAF, MAF, NSF
from ppgen.flows.continuous import FFJORD
from ppgen.flows.coupling import NICE, Glow, RealNVP
from ppgen.flows.distribution import Flow
from ppgen.flows.transforms import PlanarTransform, RadialTransform

__all__ = ["FLOWS", "FlowKind", "PlanarFlow", "RadialFlow", "build_flow"]

FlowKind = Literal["maf", "iaf", "nsf", "realnvp", "nice", "glow", "planar", "radial", "ffjord"]


class PlanarFlow(Flow):
    r"""A stack of planar layers :math:`y = z + \hat u \tanh(w^\top z + b)`.

    Sampling is closed form; the density of arbitrary data solves one scalar equation per
    layer by bisection (the density of the flow's own samples is cached, as for IAF). With
    ``context_features`` each layer's parameters are amortized by a linear map of the context.

    References:
        Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015),
        arXiv:1505.05770

    Arguments:
        features: The number of features ``D``.
        context_features: The context size, or ``None`` for an unconditional flow.
        num_transforms: The number of layers.

    Example:
        >>> import torch
        >>> PlanarFlow(2)().rsample((3,)).shape
        torch.Size([3, 2])
    """

    layer = PlanarTransform

    def __init__(self, features: int, context_features: int | None = None, num_transforms: int = 5):
        layers = [self.layer(features, context_features) for _ in range(num_transforms)]
        # nflows stacks transforms data -> noise; the paper's first layer acts on the noise
        super().__init__(CompositeTransform(layers[::-1]), features, context_features)


class RadialFlow(PlanarFlow):
    r"""A stack of radial layers :math:`y = z + \beta (z - z_0) / (\alpha + \|z - z_0\|)`.

    Both directions are closed form.

    References:
        Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015),
        arXiv:1505.05770

    Arguments:
        The same as :class:`PlanarFlow`.

    Example:
        >>> import torch
        >>> RadialFlow(2)().log_prob(torch.zeros(2)).shape
        torch.Size([])
    """

    layer = RadialTransform


FLOWS: dict[str, type[Flow]] = {
    "maf": MAF,
    "iaf": IAF,
    "nsf": NSF,
    "realnvp": RealNVP,
    "nice": NICE,
    "glow": Glow,
    "planar": PlanarFlow,
    "radial": RadialFlow,
    "ffjord": FFJORD,
}
assert set(FLOWS) == set(get_args(FlowKind))


def build_flow(
    kind: FlowKind,
    features: int | Sequence[int],
    context_features: int | None = None,
    hidden_features: int = 64,
    num_transforms: int | None = None,
    **kwargs,
) -> Flow:
    r"""Builds a flow by name; ``flow(context)`` is then a Pyro :class:`FlowDistribution`.

    ===========  ===========================================  =========  ========
    kind         family                                       density    sampling
    ===========  ===========================================  =========  ========
    ``maf``      masked affine autoregressive                 fast       ``D`` passes
    ``iaf``      inverse of MAF (guides)                      ``D`` passes  fast
    ``nsf``      autoregressive rational-quadratic splines    fast       ``D`` passes
    ``realnvp``  affine coupling; multi-scale for images      fast       fast
    ``nice``     additive coupling + scaling                  fast       fast
    ``glow``     actnorm + 1x1 conv (LU) + affine coupling    fast       fast
    ``planar``   planar layers                                bisection  fast
    ``radial``   radial layers                                fast       fast
    ``ffjord``   continuous flow, ODE solve                   ODE        ODE
    ===========  ===========================================  =========  ========

    Arguments:
        kind: The flow family.
        features: ``D``, or ``(C, H, W)`` for ``realnvp`` and ``glow``.
        context_features: The context size for a conditional flow, or ``None``.
        hidden_features: The width of the networks (ignored by planar and radial).
        num_transforms: The number of layers (per level for image flows); default per family
            (5 for autoregressive and planar/radial, 4 for couplings, 1 CNF block for FFJORD).
        kwargs: Family-specific options (e.g. ``num_blocks`` and ``scale`` for ``maf`` and
            ``iaf``, ``num_bins``, ``num_levels``, ``exact``).

    Returns:
        A :class:`Flow` module.

    Example:
        >>> import torch
        >>> flow = build_flow("nsf", 3, context_features=2, hidden_features=16)
        >>> d = flow(torch.randn(8, 2))
        >>> d.log_prob(d.sample()).shape
        torch.Size([8])
    """
    if kind not in FLOWS:
        raise ValueError(f"`kind` must be one of {sorted(FLOWS)}, got {kind!r}.")
    image = not isinstance(features, int)
    if image and kind not in ("realnvp", "glow"):
        raise ValueError(
            f"`features` must be an int for kind {kind!r}; image shapes (C, H, W) are "
            f"supported by 'realnvp' and 'glow', got {features!r}."
        )
    if image and len(features) != 3:
        raise ValueError(f"`features` must be an int or (C, H, W), got {features!r}.")
    if not image and features < 1:
        raise ValueError(f"`features` must be positive, got {features}.")
    if num_transforms is not None:
        kwargs["num_transforms"] = num_transforms
    cls = FLOWS[kind]
    if cls in (PlanarFlow, RadialFlow):
        return cls(features, context_features, **kwargs)
    return cls(features, context_features, hidden_features=hidden_features, **kwargs)
