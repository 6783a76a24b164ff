"""The Pyro (torch) classes behind ``Implicit`` and ``Unnormalized``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pyro.distributions import TorchDistribution, constraints

from ppgen.distributions._base import (
    check_energy,
    check_event_dim,
    energy_sampling_message,
    implicit_density_message,
)
from ppgen.errors import EnergySamplingError, ImplicitDensityError

__all__ = ["PyroImplicit", "PyroUnnormalized"]


def _real(event_dim: int) -> Any:
    return constraints.independent(constraints.real, event_dim) if event_dim else constraints.real


class PyroImplicit(TorchDistribution):
    """:class:`~ppgen.distributions.Implicit` for Pyro: a point at ``value``, no density.

    Example:
        >>> d = PyroImplicit(torch.arange(6.0).reshape(2, 3), event_dim=1)
        >>> d.expand((4, 2)).sample().shape
        torch.Size([4, 2, 3])
    """

    ppgen_kind = "implicit"
    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, value: Any, event_dim: int = 0, validate_args: bool | None = None) -> None:
        if not torch.is_tensor(value):
            value = torch.as_tensor(value, dtype=torch.get_default_dtype())
        check_event_dim(event_dim, value.dim())
        split = value.dim() - event_dim
        self.value = value
        super().__init__(value.shape[:split], value.shape[split:], validate_args=False)

    @property
    def support(self) -> Any:
        return _real(len(self.event_shape))

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> PyroImplicit:
        shape = torch.Size(batch_shape) + self.event_shape
        return PyroImplicit(self.value.expand(shape), len(self.event_shape))

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        return self.value.expand(shape)

    def log_prob(self, value: Any) -> torch.Tensor:
        raise ImplicitDensityError(implicit_density_message())

    @property
    def mean(self) -> torch.Tensor:
        return self.value


class PyroUnnormalized(TorchDistribution):
    """:class:`~ppgen.distributions.Unnormalized` for Pyro: ``log_prob(x) = -energy(x)``.

    Example:
        >>> d = PyroUnnormalized(lambda x: x.abs().sum(-1), (2,)).expand((3,))
        >>> tuple(d.batch_shape), d.log_prob(torch.ones(3, 2)).tolist()
        ((3,), [-2.0, -2.0, -2.0])
    """

    ppgen_kind = "energy"
    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        energy: Callable[[torch.Tensor], torch.Tensor],
        event_shape: Sequence[int] = (),
        batch_shape: Sequence[int] = (),
        validate_args: bool | None = None,
    ) -> None:
        event, batch = check_energy(energy, event_shape, batch_shape)
        self.energy = energy
        super().__init__(torch.Size(batch), torch.Size(event), validate_args=False)

    @property
    def support(self) -> Any:
        return _real(len(self.event_shape))

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> PyroUnnormalized:
        return PyroUnnormalized(self.energy, self.event_shape, torch.Size(batch_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -self.energy(value)

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        raise EnergySamplingError(energy_sampling_message())

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> torch.Tensor:
        raise EnergySamplingError(energy_sampling_message())
