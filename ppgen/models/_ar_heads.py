"""Output heads of the autoregressive zoo and the Pyro distribution wrapping a model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Normal

__all__ = ["AutoregressiveDistribution", "DiscretizedLogisticMixture", "OutputHead", "Likelihood"]


Likelihood = Literal["bernoulli", "categorical", "gaussian", "logistic_mixture"]


class DiscretizedLogisticMixture(TorchDistribution):
    r"""A mixture of logistics discretised to ``num_bins`` levels on :math:`[-1, 1]`.

    .. math:: P(x) = \sum_m \pi_m \left[\sigma\left(\frac{x + \delta - \mu_m}{s_m}\right)
        - \sigma\left(\frac{x - \delta - \mu_m}{s_m}\right)\right],
        \quad \delta = \frac{1}{\text{num\_bins} - 1}

    with the edge bins extended to :math:`\pm\infty`, so the probabilities of the
    ``num_bins`` levels sum to one.

    References:
        PixelCNN++ (Salimans et al., 2017), arXiv:1701.05517

    Arguments:
        logits: Mixture logits, shape ``batch + (M,)``.
        loc: Component locations, shape ``batch + (M,)``.
        log_scale: Component log-scales, shape ``batch + (M,)``.
        num_bins: The number of levels, e.g. 256 for 8-bit data.

    Example:
        >>> d = DiscretizedLogisticMixture(torch.zeros(3), torch.zeros(3), torch.zeros(3), 4)
        >>> levels = torch.linspace(-1, 1, 4)
        >>> round(d.log_prob(levels).exp().sum().item(), 6)
        1.0
    """

    arg_constraints: dict = {}

    def __init__(
        self,
        logits: Tensor,
        loc: Tensor,
        log_scale: Tensor,
        num_bins: int = 256,
        validate_args=None,
    ):
        self.logits, self.loc = logits, loc
        self.log_scale = log_scale.clamp(min=-7.0)
        self.num_bins = num_bins
        super().__init__(logits.shape[:-1], torch.Size(), validate_args=validate_args)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return constraints.interval(-1.0, 1.0)

    def log_prob(self, value: Tensor) -> Tensor:
        x = value.unsqueeze(-1)
        centered, inv_s = x - self.loc, torch.exp(-self.log_scale)
        delta = 1.0 / (self.num_bins - 1)
        plus, minus = inv_s * (centered + delta), inv_s * (centered - delta)
        log_cdf_plus = plus - F.softplus(plus)  # log sigmoid, for the lowest bin
        log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid), for the highest bin
        cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_s * centered
        # far in the tails the CDF difference underflows: use the density times the bin width
        log_mid = mid - self.log_scale - 2 * F.softplus(mid) + math.log(2 * delta)
        log_delta = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_mid)
        log_p = torch.where(
            x < -1 + delta / 2,
            log_cdf_plus,
            torch.where(x > 1 - delta / 2, log_sf_minus, log_delta),
        )
        return torch.logsumexp(log_p + F.log_softmax(self.logits, -1), dim=-1)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        shape = torch.Size(sample_shape) + self.logits.shape
        with torch.no_grad():
            m = Categorical(logits=self.logits).sample(sample_shape)
            u = torch.rand(shape[:-1], dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(1e-5, 1 - 1e-5)
            loc = self.loc.expand(shape).gather(-1, m.unsqueeze(-1)).squeeze(-1)
            scale = self.log_scale.exp().expand(shape).gather(-1, m.unsqueeze(-1)).squeeze(-1)
            x = (loc + scale * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
            return torch.round((x + 1) / 2 * (self.num_bins - 1)) / (self.num_bins - 1) * 2 - 1


class OutputHead:
    r"""Turns ``size`` raw outputs per element into that element's distribution.

    ``bernoulli`` (binary data), ``categorical`` (integers ``0..num_classes-1``),
    ``gaussian`` (real data) or ``logistic_mixture`` (``num_classes`` levels on [-1, 1]).

    Example:
        >>> head = OutputHead("gaussian")
        >>> head.size, head(torch.zeros(4, 2)).batch_shape
        (2, torch.Size([4]))
    """

    def __init__(self, likelihood: Likelihood, num_classes: int = 256, num_mixtures: int = 5):
        sizes = {
            "bernoulli": 1,
            "categorical": num_classes,
            "gaussian": 2,
            "logistic_mixture": 3 * num_mixtures,
        }
        if likelihood not in sizes:
            raise ValueError(f"`likelihood` must be one of {sorted(sizes)}, got {likelihood!r}.")
        self.likelihood, self.size = likelihood, sizes[likelihood]
        self.num_classes, self.num_mixtures = num_classes, num_mixtures

    def __call__(self, params: Tensor) -> Distribution:
        if self.likelihood == "bernoulli":
            return Bernoulli(logits=params[..., 0])
        if self.likelihood == "categorical":
            return Categorical(logits=params)
        if self.likelihood == "gaussian":
            return Normal(params[..., 0], F.softplus(params[..., 1]) + 1e-3)
        m = self.num_mixtures
        return DiscretizedLogisticMixture(
            params[..., :m], params[..., m : 2 * m], params[..., 2 * m :], self.num_classes
        )

    def encode(self, x: Tensor) -> Tensor:
        """Data as a network input: categorical levels are rescaled to [-1, 1]."""
        if self.likelihood == "categorical":
            return x.float() / (self.num_classes - 1) * 2 - 1
        return x.float()

    @property
    def support(self) -> constraints.Constraint:
        return {
            "bernoulli": constraints.boolean,
            "categorical": constraints.integer_interval(0, self.num_classes - 1),
            "gaussian": constraints.real,
            "logistic_mixture": constraints.interval(-1.0, 1.0),
        }[self.likelihood]


class AutoregressiveDistribution(TorchDistribution):
    r"""The Pyro distribution of an autoregressive module :math:`p(x) = \prod_i p(x_i | x_{<i})`.

    ``log_prob`` is one teacher-forced pass; ``sample`` is the module's sequential sampler.

    Arguments:
        module: Any module with ``log_prob(x)``, ``sample(n)``, ``event_shape`` and ``head``.

    Example:
        >>> from ppgen.models.autoregressive import MADE
        >>> d = AutoregressiveDistribution(MADE(4, hidden_features=8))
        >>> d.log_prob(d.sample((3,))).shape
        torch.Size([3])
    """

    arg_constraints: dict = {}

    def __init__(self, module: nn.Module, validate_args: bool | None = None):
        self.module = module
        super().__init__(torch.Size(), torch.Size(module.event_shape), validate_args=validate_args)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return constraints.independent(self.module.head.support, len(self.event_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        k = len(self.event_shape)
        if value.dim() < k or value.shape[value.dim() - k :] != self.event_shape:
            raise ValueError(
                f"`x` must end in the event shape {tuple(self.event_shape)}, "
                f"got shape {tuple(value.shape)}."
            )
        lead = value.shape[: value.dim() - k]
        return self.module.log_prob(value.reshape(-1, *self.event_shape)).reshape(lead)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        shape = torch.Size(sample_shape)
        x = self.module.sample(max(shape.numel(), 1))
        return x.reshape(shape + self.event_shape)
