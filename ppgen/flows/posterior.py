"""A diagonal Normal pushed through a conditional flow: the amortised flow posterior."""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from torch import Tensor, nn

__all__ = ["FlowPosterior"]


class FlowPosterior(dist.TorchDistribution):
    r""":math:`z = T(\mu + \sigma \odot \epsilon; h)` with :math:`T` a conditional flow.

    .. math:: \log q(z) = \log \mathcal N(\epsilon) - \textstyle\sum \log \sigma
        - \log |\det \partial T / \partial u|

    Samples are reparameterised and their density is cached (one pass for IAF); ``log_prob``
    of other values inverts :math:`T` (the density direction of the flow).

    Example:
        >>> from ppgen.flows import build_flow
        >>> flow = build_flow("iaf", 2, context_features=3)
        >>> q = FlowPosterior(torch.zeros(4, 2), torch.ones(4, 2), flow, torch.randn(4, 3))
        >>> z = q.rsample((5,))
        >>> z.shape, q.log_prob(z).shape
        (torch.Size([5, 4, 2]), torch.Size([5, 4]))
    """

    arg_constraints: dict = {}
    has_rsample = True
    support = dist.constraints.independent(dist.constraints.real, 1)

    def __init__(self, loc: Tensor, scale: Tensor, flow: nn.Module, context: Tensor):
        self.loc, self.scale, self.flow, self.context = loc, scale, flow, context
        self._cache: tuple[Tensor, Tensor] | None = None
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape: Any, _instance: Any = None) -> FlowPosterior:
        shape = torch.Size(batch_shape)
        ev, c = self.loc.shape[-1:], self.context.shape[-1:]
        return FlowPosterior(
            self.loc.expand(shape + ev),
            self.scale.expand(shape + ev),
            self.flow,
            self.context.expand(shape + c),
        )

    def _flat(self, lead: torch.Size) -> tuple[Tensor, Tensor, Tensor]:
        d, c = self.loc.shape[-1], self.context.shape[-1]
        loc = self.loc.expand(lead + (d,)).reshape(-1, d)
        scale = self.scale.expand(lead + (d,)).reshape(-1, d)
        return loc, scale, self.context.expand(lead + (c,)).reshape(-1, c)

    def rsample(self, sample_shape: Any = ()) -> Tensor:
        lead = torch.Size(sample_shape) + self.batch_shape
        loc, scale, ctx = self._flat(lead)
        eps = torch.empty_like(loc).normal_()
        z, logdet = self.flow._transform.inverse(loc + scale * eps, ctx)
        log_q = -0.5 * (eps * eps).sum(-1) - scale.log().sum(-1) - logdet
        log_q = log_q - 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        z = z.reshape(lead + self.event_shape)
        self._cache = (z, log_q.reshape(lead))
        return z

    def log_prob(self, value: Tensor) -> Tensor:
        if self._cache is not None and value is self._cache[0]:
            return self._cache[1]
        lead = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        loc, scale, ctx = self._flat(lead)
        u, logdet = self.flow._transform(
            value.expand(lead + self.event_shape).reshape(-1, loc.shape[-1]), ctx
        )
        eps = (u - loc) / scale
        log_q = -0.5 * (eps * eps).sum(-1) - scale.log().sum(-1) + logdet
        return (log_q - 0.5 * loc.shape[-1] * math.log(2 * math.pi)).reshape(lead)
