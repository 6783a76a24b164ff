"""The :class:`FlowGuide` autoguide: a normalizing-flow posterior over all latents of a program."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median

from ppgen.flows.builders import build_flow

__all__ = ["FlowGuide"]


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
