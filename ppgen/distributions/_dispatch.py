"""The public ``Implicit`` and ``Unnormalized``: one name per kind, the class per backend."""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Sequence
from typing import Any

from ppgen.distributions._base import active_backend, array_backend, check_backend

__all__ = ["Implicit", "Unnormalized"]


class Implicit(ABC):  # noqa: B024 - a virtual base: classes with its ppgen_kind
    r"""A distribution over a value with no density: a generator's output :math:`x = G(z)`.

    ``sample``/``rsample`` return the value itself (reparameterised: ``rsample``, which
    ``pyro.sample`` uses, keeps the graph, so gradients flow back to the generator); the
    randomness lives in the program's upstream sites (``z``). ``log_prob`` raises
    :class:`~ppgen.errors.ImplicitDensityError`. The support is all of :math:`\mathbb R^n`.
    A program whose observed site is Implicit is an *implicit* program, fitted by adversarial
    estimators (GANs: Goodfellow et al. 2014, arXiv:1406.2661; ALI/BiGAN: arXiv:1606.00704).

    ``Implicit(value)`` returns a :class:`~ppgen.distributions._pyro.PyroImplicit` for a torch
    tensor and a :class:`~ppgen.distributions._numpyro.NumPyroImplicit` for a JAX array
    (other values: the backend of the running program); ``isinstance(d, Implicit)`` holds for
    both. ``to_event``, ``expand`` and ``mask`` work as for any distribution.

    Arguments:
        value: the generated value (torch tensor or JAX array).
        event_dim: how many trailing dims of ``value`` form one event (default 0: every dim
            is a batch dim).
        backend: force ``"pyro"`` or ``"numpyro"`` (default: from the value's type).

    Example:
        >>> import torch
        >>> w = torch.tensor(2.0, requires_grad=True)
        >>> d = Implicit(w * torch.ones(4, 3), event_dim=1)
        >>> isinstance(d, Implicit), tuple(d.batch_shape), tuple(d.event_shape)
        (True, (4,), (3,))
        >>> d.rsample().sum().backward()
        >>> w.grad
        tensor(12.)
    """

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        return getattr(other, "ppgen_kind", None) == "implicit" or NotImplemented

    def __new__(cls, value: Any, event_dim: int = 0, *, backend: str | None = None) -> Any:
        check_backend(backend)
        which = backend or array_backend(value) or active_backend()
        if which == "numpyro":
            from ppgen.distributions._numpyro import NumPyroImplicit

            return NumPyroImplicit(value, event_dim)
        from ppgen.distributions._pyro import PyroImplicit

        return PyroImplicit(value, event_dim)


class Unnormalized(ABC):  # noqa: B024 - a virtual base: classes with its ppgen_kind
    r"""An energy model: :math:`\log p(x) = -E(x) - \log Z` with :math:`\log Z` unknown.

    ``log_prob(x)`` returns exactly ``-energy(x)``: the log-density up to the unknown constant
    :math:`\log Z`, which is what contrastive estimators (noise-contrastive estimation,
    contrastive divergence, score matching) need, and which makes log-likelihoods and
    likelihood-based estimators inapplicable. ``sample`` raises
    :class:`~ppgen.errors.EnergySamplingError`: an energy model is sampled by MCMC (Langevin,
    Gibbs), not by forward simulation; ``has_rsample`` is ``False``. The support is all of
    :math:`\mathbb R^n`.

    ``Unnormalized(...)`` returns the class of the backend of the running program (ppgen runs
    programs inside ``ppgen.backends.use_backend``), a
    :class:`~ppgen.distributions._pyro.PyroUnnormalized` otherwise; ``backend=`` forces one.
    ``isinstance(d, Unnormalized)`` holds for both.

    Arguments:
        energy: a callable ``x -> E(x)`` returning one energy per batch element (shape
            ``x.shape[:-len(event_shape)]``), in the backend's arrays.
        event_shape: the shape of one event (e.g. ``(D,)`` for D-dimensional data).
        batch_shape: the batch shape (default ``()``; plates expand it).
        backend: force ``"pyro"`` or ``"numpyro"``.

    Example:
        >>> import torch
        >>> d = Unnormalized(lambda x: 0.5 * (x**2).sum(-1), event_shape=(2,))
        >>> d.log_prob(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
        tensor([-2.5000, -0.0000])
        >>> isinstance(d, Unnormalized), d.has_rsample
        (True, False)
    """

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        return getattr(other, "ppgen_kind", None) == "energy" or NotImplemented

    def __new__(
        cls,
        energy: Callable[[Any], Any],
        event_shape: Sequence[int] = (),
        batch_shape: Sequence[int] = (),
        *,
        backend: str | None = None,
    ) -> Any:
        check_backend(backend)
        if (backend or active_backend()) == "numpyro":
            from ppgen.distributions._numpyro import NumPyroUnnormalized

            return NumPyroUnnormalized(energy, event_shape, batch_shape)
        from ppgen.distributions._pyro import PyroUnnormalized

        return PyroUnnormalized(energy, event_shape, batch_shape)
