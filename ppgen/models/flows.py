"""Zoo flow models: a flow from `ppgen.flows.build_flow` plus the Pyro program around it."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import torch
from torch import Tensor, nn

from ppgen.flows import FlowDistribution, build_flow

__all__ = [
    "FFJORDModel",
    "FlowModel",
    "GlowModel",
    "IAFModel",
    "MAFModel",
    "NICEModel",
    "NSFModel",
    "PlanarModel",
    "RadialModel",
    "RealNVPModel",
]


class FlowModel(nn.Module):
    r"""A density :math:`p_\theta(x)` given by a normalizing flow, as a ppgen program.

    The program is ``x ~ FlowDistribution(flow)`` in a ``data`` plate, observed when ``x`` is
    given, so maximum likelihood needs no guide. With ``context_features`` the model is
    conditional, :math:`p_\theta(x \mid c)`, fitted with data ``{"x": x, "c": c}``.

    Arguments:
        kind: The flow family, see :func:`ppgen.flows.build_flow`.
        features: ``D``, or ``(C, H, W)`` for ``realnvp`` and ``glow``.
        context_features: The context size, or ``None``.
        kwargs: Passed to :func:`~ppgen.flows.build_flow`.

    Example:
        >>> m = FlowModel("maf", 2, hidden_features=8)
        >>> m.sample(5).shape
        torch.Size([5, 2])
        >>> m.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        kind: str,
        features: int | Sequence[int],
        context_features: int | None = None,
        **kwargs,
    ):
        super().__init__()
        self.flow = build_flow(kind, features, context_features, **kwargs)

    def flow_distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """The distribution of one datum (batch shape from ``context``)."""
        return self.flow(context)

    def model(self, x: Tensor | None = None, c: Tensor | None = None, num_samples: int = 1):
        """The program: ``x`` is observed when given, else ``num_samples`` draws.

        ``c`` is the context of a conditional model (data key ``"c"``: Pyro's handlers
        reserve the keyword ``context``).
        """
        pyro.module("flow", self)
        n = x.shape[0] if x is not None else (c.shape[0] if c is not None else None)
        with pyro.plate("data", n if n is not None else num_samples):
            return pyro.sample("x", self.flow_distribution(c), obs=x)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The log density of each datum in ``x``."""
        return self.flow_distribution(context).log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` draws (per context row, shape ``(n, *batch, *event)``)."""
        return self.flow_distribution(context).sample((n,))


class MAFModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.MAF` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("maf", features, context_features, **kw)


class IAFModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.IAF` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("iaf", features, context_features, **kw)


class NSFModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.NSF` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("nsf", features, context_features, **kw)


class RealNVPModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.RealNVP` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("realnvp", features, context_features, **kw)


class NICEModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.NICE` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("nice", features, context_features, **kw)


class GlowModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.Glow` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("glow", features, context_features, **kw)


class PlanarModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.PlanarFlow` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("planar", features, context_features, **kw)


class RadialModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.RadialFlow` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("radial", features, context_features, **kw)


class FFJORDModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.FFJORD` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("ffjord", features, context_features, **kw)
