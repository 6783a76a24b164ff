"""Normalizing-flow posteriors: the conditional :class:`FlowPosterior` of ``Amortized`` heads
and the :class:`FlowGuide` autoguide over all latents of a program."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from torch import Tensor, nn

__all__ = ["FlowGuide", "FlowPosterior"]


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


class FlowGuide(AutoContinuous):
    r"""A normalizing-flow posterior over all (unconstrained, flattened) latents of a program.

    .. math:: q(\theta) = T_\#\, p_\phi, \qquad p_\phi = f_\phi^{-1}{}_\# \mathcal N(0, I)

    where :math:`f_\phi` is a flow from :func:`ppgen.flows.build_flow` (IAF by default: one
    pass to sample and score its own draws) and :math:`T` maps to each latent's support. For
    per-datum latents use the conditional version, ``Amortized(model, family="flow")``; both
    use the same flow implementation.

    References:
        Rezende & Mohamed, Variational Inference with Normalizing Flows, arXiv:1505.05770.
        Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow,
        arXiv:1606.04934.

    Arguments:
        model: the program.
        kind: ``"iaf"``, ``"maf"``, ``"nsf"`` or any :data:`ppgen.flows.FlowKind` for vectors.
        hidden_features / num_transforms: flow size.

    Example:
        >>> import pyro, pyro.distributions as dist
        >>> def model():
        ...     pyro.sample("a", dist.Normal(0.0, 1.0))
        ...     pyro.sample("b", dist.LogNormal(0.0, 1.0))
        >>> guide = FlowGuide(model, hidden_features=8)
        >>> sorted(guide())
        ['a', 'b']
    """

    def __init__(
        self,
        model: Callable,
        kind: str = "iaf",
        *,
        hidden_features: int = 64,
        num_transforms: int | None = None,
        init_loc_fn: Callable = init_to_median,
    ):
        super().__init__(model, init_loc_fn=init_loc_fn)
        self.kind, self.hidden_features, self.num_transforms = kind, hidden_features, num_transforms
        self.flow = None

    def get_posterior(self, *args: Any, **kwargs: Any) -> dist.TorchDistribution:
        if self.flow is None:
            from ppgen.flows import build_flow

            vals = [s.get("value") for s in self.prototype_trace.nodes.values()]
            dev = next((v.device for v in vals if torch.is_tensor(v)), None)
            self.flow = build_flow(
                self.kind,
                self.latent_dim,
                hidden_features=self.hidden_features,
                num_transforms=self.num_transforms,
            ).to(dev)
        return self.flow()

    def get_base_dist(self) -> dist.TorchDistribution:
        return dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1)
