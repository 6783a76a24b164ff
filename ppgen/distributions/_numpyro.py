"""The NumPyro (JAX) classes behind ``Implicit`` and ``Unnormalized``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints

from ppgen.distributions._base import (
    check_energy,
    check_event_dim,
    energy_sampling_message,
    implicit_density_message,
)
from ppgen.errors import EnergySamplingError, ImplicitDensityError

__all__ = ["NumPyroImplicit", "NumPyroUnnormalized"]


def _real(event_dim: int) -> Any:
    return constraints.independent(constraints.real, event_dim) if event_dim else constraints.real


class NumPyroImplicit(Distribution):
    """:class:`~ppgen.distributions.Implicit` for NumPyro: a point at ``value``, no density.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> d = NumPyroImplicit(jnp.ones((2, 3)), event_dim=1)
        >>> d.expand((4, 2)).sample(jax.random.key(0), (5,)).shape
        (5, 4, 2, 3)
    """

    ppgen_kind = "implicit"
    arg_constraints: dict = {}
    reparametrized_params: list = []

    def __init__(self, value: Any, event_dim: int = 0, *, validate_args: bool | None = None):
        value = value if isinstance(value, jax.Array) else jnp.asarray(value)
        check_event_dim(event_dim, jnp.ndim(value))
        split = jnp.ndim(value) - event_dim
        self.value = value
        shape = tuple(jnp.shape(value))
        super().__init__(shape[:split], shape[split:], validate_args=False)

    @property
    def support(self) -> Any:
        return _real(len(self.event_shape))

    @property
    def has_rsample(self) -> bool:
        return True

    def expand(self, batch_shape: Sequence[int]) -> NumPyroImplicit:
        shape = tuple(batch_shape) + tuple(self.event_shape)
        return NumPyroImplicit(jnp.broadcast_to(self.value, shape), len(self.event_shape))

    def sample(self, key: Any, sample_shape: Sequence[int] = ()) -> Any:
        return jnp.broadcast_to(
            self.value, tuple(sample_shape) + self.batch_shape + self.event_shape
        )

    def log_prob(self, value: Any) -> Any:
        raise ImplicitDensityError(implicit_density_message())

    @property
    def mean(self) -> Any:
        return self.value


class NumPyroUnnormalized(Distribution):
    """:class:`~ppgen.distributions.Unnormalized` for NumPyro: ``log_prob(x) = -energy(x)``.

    Example:
        >>> import jax.numpy as jnp
        >>> d = NumPyroUnnormalized(lambda x: jnp.abs(x).sum(-1), (2,)).expand((3,))
        >>> d.batch_shape, d.log_prob(jnp.ones((3, 2))).tolist()
        ((3,), [-2.0, -2.0, -2.0])
    """

    ppgen_kind = "energy"
    arg_constraints: dict = {}

    def __init__(
        self,
        energy: Callable[[Any], Any],
        event_shape: Sequence[int] = (),
        batch_shape: Sequence[int] = (),
        *,
        validate_args: bool | None = None,
    ) -> None:
        event, batch = check_energy(energy, event_shape, batch_shape)
        self.energy = energy
        super().__init__(batch, event, validate_args=False)

    @property
    def support(self) -> Any:
        return _real(len(self.event_shape))

    @property
    def has_rsample(self) -> bool:
        return False

    def expand(self, batch_shape: Sequence[int]) -> NumPyroUnnormalized:
        return NumPyroUnnormalized(self.energy, self.event_shape, tuple(batch_shape))

    def log_prob(self, value: Any) -> Any:
        return -self.energy(value)

    def sample(self, key: Any, sample_shape: Sequence[int] = ()) -> Any:
        raise EnergySamplingError(energy_sampling_message())
