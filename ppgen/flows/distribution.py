"""Flow modules that return Pyro distributions, and the distribution that wraps them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import nflows.distributions
import nflows.flows
import torch
from nflows.transforms import Transform
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor

__all__ = ["Flow", "FlowDistribution", "StandardNormal"]


def _as_shape(features: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(features, int):
        return (features,)
    return tuple(int(f) for f in features)


class StandardNormal(nflows.distributions.Distribution):
    r"""Standard normal base distribution :math:`\mathcal{N}(0, I)` over a fixed shape.

    Unlike :class:`nflows.distributions.StandardNormal`, noise is drawn with the dtype and
    device of the module, so ``flow.double()`` and ``flow.to("cuda")`` just work.

    Arguments:
        shape: The event shape.

    Example:
        >>> base = StandardNormal((3,))
        >>> base.sample(5).shape
        torch.Size([5, 3])
    """

    def __init__(self, shape: int | Sequence[int]):
        super().__init__()
        self._shape = torch.Size(_as_shape(shape))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def _log_prob(self, inputs: Tensor, context: Tensor | None) -> Tensor:
        if inputs.shape[1:] != self._shape:
            raise ValueError(
                f"`inputs` must have event shape {tuple(self._shape)}, "
                f"got {tuple(inputs.shape[1:])}."
            )
        x = inputs.reshape(inputs.shape[0], -1)
        return -0.5 * (x**2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)

    def _sample(self, num_samples: int, context: Tensor | None) -> Tensor:
        like = self._zero if context is None else context
        if context is None:
            return torch.randn(num_samples, *self._shape, device=like.device, dtype=like.dtype)
        n = context.shape[0]
        return torch.randn(n, num_samples, *self._shape, device=like.device, dtype=like.dtype)


class Flow(nflows.flows.Flow):
    r"""A normalizing flow: a transform :math:`f` (data :math:`\to` noise) and a base density.

    .. math:: \log p(x \mid c) = \log p_Z(f(x; c)) + \log \left| \det J_f(x; c) \right|

    Calling the module with a context (or ``None``) returns a :class:`FlowDistribution`, so
    conditional (amortized) and unconditional flows are the same object. The nflows methods
    ``log_prob(inputs, context)`` and ``sample(num_samples, context)`` keep working.

    Arguments:
        transform: An nflows ``Transform`` mapping data to noise.
        features: The event shape of the data, ``D`` or ``(C, H, W)``.
        context_features: The size of the context vector, or ``None`` if unconditional.
        base: The base distribution (default: a standard normal over ``features``).

    Example:
        >>> from nflows.transforms import ReversePermutation
        >>> flow = Flow(ReversePermutation(3), 3)
        >>> flow().log_prob(torch.zeros(3)).shape
        torch.Size([])
    """

    def __init__(
        self,
        transform: Transform,
        features: int | Sequence[int],
        context_features: int | None = None,
        base: nflows.distributions.Distribution | None = None,
    ):
        super().__init__(transform, base if base is not None else StandardNormal(features))
        self.event_shape = torch.Size(_as_shape(features))
        self.context_features = context_features

    def forward(self, context: Tensor | None = None) -> FlowDistribution:
        return FlowDistribution(self, context)

    def distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """The Pyro distribution :math:`p(x \\mid c)`; same as ``self(context)``."""
        return FlowDistribution(self, context)


class FlowDistribution(TorchDistribution):
    r"""A Pyro distribution over ``event_shape`` defined by an nflows flow and a context.

    ``batch_shape`` is ``context.shape[:-1]`` (empty without context). Samples are
    reparameterised, :math:`x = f^{-1}(z; c)` with :math:`z \sim p_Z`; the log density of the
    last ``rsample`` is cached, so flows that are slow to evaluate (IAF, planar) cost one pass
    when used as a guide.

    Arguments:
        flow: A :class:`Flow`, or any ``nflows.flows.Flow`` (then pass ``event_shape``).
        context: A context of shape ``batch_shape + (context_features,)``, or ``None``.
        event_shape: The data shape; read from ``flow.event_shape`` by default.

    Example:
        >>> from ppgen.flows import build_flow
        >>> flow = build_flow("maf", 2, context_features=4)
        >>> d = flow(torch.randn(10, 4))
        >>> d.batch_shape, d.event_shape, d.rsample((5,)).shape
        (torch.Size([10]), torch.Size([2]), torch.Size([5, 10, 2]))
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(
        self,
        flow: nflows.flows.Flow,
        context: Tensor | None = None,
        event_shape: Sequence[int] | None = None,
        validate_args: bool | None = None,
    ):
        if event_shape is None:
            event_shape = getattr(flow, "event_shape", None)
        if event_shape is None:
            raise ValueError("`event_shape` is required for flows without an `event_shape`.")
        expected = getattr(flow, "context_features", None)
        if context is None and expected is not None:
            raise ValueError(
                f"`context` is required: the flow is conditional on {expected} features."
            )
        if context is not None:
            if hasattr(flow, "context_features") and expected is None:
                raise ValueError("`context` was given but the flow is unconditional.")
            if context.dim() == 0 or (expected is not None and context.shape[-1] != expected):
                raise ValueError(
                    f"`context` must have shape (..., {expected}), got {tuple(context.shape)}."
                )
        self.flow = flow
        self.context = context
        self._cache: tuple[Tensor, Tensor] | None = None
        batch_shape = context.shape[:-1] if context is not None else torch.Size()
        super().__init__(batch_shape, torch.Size(event_shape), validate_args=validate_args)

    @constraints.dependent_property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, len(self.event_shape))

    def _check_value(self, value: Tensor) -> None:
        k = len(self.event_shape)
        if value.dim() < k or value.shape[value.dim() - k :] != self.event_shape:
            raise ValueError(
                f"`value` must end in the event shape {tuple(self.event_shape)}, "
                f"got shape {tuple(value.shape)}."
            )

    def log_prob(self, value: Tensor) -> Tensor:
        if self._cache is not None and value is self._cache[0]:
            return self._cache[1]
        self._check_value(value)
        k = len(self.event_shape)
        lead = torch.broadcast_shapes(value.shape[: value.dim() - k], self.batch_shape)
        x = value.expand(lead + self.event_shape).reshape(-1, *self.event_shape)
        context = None
        if self.context is not None:
            context = self.context.expand(lead + self.context.shape[-1:])
            context = context.reshape(-1, self.context.shape[-1])
        return self.flow.log_prob(x, context).reshape(lead)

    def rsample_and_log_prob(self, sample_shape: Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """Draws reparameterised samples and their log densities in one inverse pass."""
        shape = torch.Size(sample_shape)
        n = max(shape.numel(), 1)
        if self.context is None:
            x, log_p = self.flow.sample_and_log_prob(n * max(self.batch_shape.numel(), 1))
        else:
            context = self.context.reshape(-1, self.context.shape[-1])
            x, log_p = self.flow.sample_and_log_prob(n, context)
            x, log_p = x.transpose(0, 1), log_p.transpose(0, 1)
        x = x.reshape(shape + self.batch_shape + self.event_shape)
        log_p = log_p.reshape(shape + self.batch_shape)
        self._cache = (x, log_p)
        return x, log_p

    def rsample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def expand(self, batch_shape: Sequence[int], _instance=None) -> TorchDistribution:
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        if self.context is None:  # iid draws: a FlowDistribution too, so the cache still works
            new = FlowDistribution(self.flow, None, self.event_shape, self._validate_args)
            new._batch_shape = batch_shape
            return new
        context = self.context.expand(batch_shape + self.context.shape[-1:])
        return FlowDistribution(self.flow, context, self.event_shape, self._validate_args)
