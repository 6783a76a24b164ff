"""The ppgen program shared by the models of the autoregressive zoo."""

from __future__ import annotations

import pyro
import torch
from torch import Tensor, nn

from ppgen.models._ar_heads import AutoregressiveDistribution, OutputHead

__all__ = ["ARProgram"]


class ARProgram(nn.Module):
    """The ppgen program shared by the autoregressive zoo: ``x ~ p(x)`` in a data plate."""

    head: OutputHead
    event_shape: torch.Size
    #: forward sampling runs the network once per dimension: ``to_arviz`` (and so ``save``)
    #: keeps this many posterior predictive data sets (``ppgen.analysis.arviz.predictive_draws``)
    predictive_draws: int = 10

    def distribution(self) -> AutoregressiveDistribution:
        return AutoregressiveDistribution(self)

    def model(self, x: Tensor | None = None, num_samples: int = 1) -> Tensor:
        pyro.module(type(self).__name__.lower(), self)
        with pyro.plate("data", x.shape[0] if x is not None else num_samples):
            return pyro.sample("x", self.distribution(), obs=x)

    def params(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        """:math:`\\log p(x)`, summed over the event, one value per datum."""
        return self.head(self.params(x)).log_prob(x).reshape(x.shape[0], -1).sum(-1)

    def log_density(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """Per-datum :math:`\\log p(x)` with :meth:`model`'s arguments (a capability, see
        :mod:`ppgen.capabilities`: MLE then skips tracing)."""
        return self.log_prob(x)

    def _dtype(self) -> torch.dtype:
        if self.head.likelihood == "categorical":
            return torch.long
        return next(self.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.parameters()).device
