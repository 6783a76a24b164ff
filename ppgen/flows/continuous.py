"""Continuous normalizing flows: FFJORD with a Hutchinson (or exact) trace estimator."""

from __future__ import annotations

import torch
from nflows.transforms import CompositeTransform, Transform
from torch import Tensor, nn

from ppgen.flows.distribution import Flow

__all__ = ["FFJORD", "CNFTransform"]


class _Dynamics(nn.Module):
    """A smooth MLP vector field :math:`f(x, t, c)`."""

    def __init__(self, features: int, context_features: int | None, hidden: int, layers: int):
        super().__init__()
        sizes = [features + 1 + (context_features or 0)] + [hidden] * layers
        modules: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            modules += [nn.Linear(a, b), nn.Softplus()]
        self.net = nn.Sequential(*modules, nn.Linear(sizes[-1], features))

    def forward(self, t: Tensor, x: Tensor, context: Tensor | None) -> Tensor:
        inputs = [x, t.expand(x.shape[0], 1)]
        if context is not None:
            inputs.append(context)
        return self.net(torch.cat(inputs, dim=-1))


class CNFTransform(Transform):
    r"""A continuous-time flow, data :math:`x(0)` to noise :math:`x(T)`, as an nflows transform.

    .. math:: \frac{dx}{dt} = f(x, t, c), \quad
        \log |\det J| = \int_0^T \operatorname{tr} \frac{\partial f}{\partial x} \, dt,
        \quad \operatorname{tr} A \approx \epsilon^\top A \epsilon

    The trace is estimated with one Gaussian probe :math:`\epsilon` per solve (unbiased,
    Hutchinson) or, with ``exact=True``, computed with ``D`` vector-Jacobian products.

    References:
        FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models
        (Grathwohl et al., 2018), arXiv:1810.01367

    Arguments:
        features: The number of features ``D``.
        context_features: The context size, or ``None``.
        hidden_features: The width of the vector-field MLP.
        num_layers: The number of hidden layers of the vector field.
        time: The integration time ``T``.
        exact: Compute the trace exactly instead of by Hutchinson's estimator.
        method: A ``torchdiffeq.odeint`` solver.
        rtol: The solver's relative tolerance.
        atol: The solver's absolute tolerance.

    Example:
        >>> t = CNFTransform(2, exact=True)
        >>> z, ladj = t(torch.randn(3, 2))
        >>> torch.allclose(t.inverse(z)[0], t.inverse(z)[0])
        True
    """

    def __init__(
        self,
        features: int,
        context_features: int | None = None,
        hidden_features: int = 64,
        num_layers: int = 2,
        time: float = 1.0,
        exact: bool = False,
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
    ):
        super().__init__()
        try:
            import torchdiffeq
        except ImportError as e:
            raise ImportError("FFJORD needs torchdiffeq: `pip install torchdiffeq`.") from e
        self._odeint = torchdiffeq.odeint
        self.f = _Dynamics(features, context_features, hidden_features, num_layers)
        self.time, self.exact = time, exact
        self.method, self.rtol, self.atol = method, rtol, atol

    def _trace(self, dx: Tensor, x: Tensor, eps: Tensor | None) -> Tensor:
        if eps is not None:
            (vjp,) = torch.autograd.grad(dx, x, eps, create_graph=True)
            return (vjp * eps).sum(-1)
        trace = torch.zeros_like(dx[:, 0])
        for i in range(x.shape[-1]):
            (row,) = torch.autograd.grad(dx[:, i].sum(), x, create_graph=True)
            trace = trace + row[:, i]
        return trace

    def _integrate(self, inputs: Tensor, context: Tensor | None, t0: float, t1: float):
        eps = None if self.exact else torch.randn_like(inputs)

        def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            x = state[0]
            with torch.enable_grad():
                if not x.requires_grad:
                    x = x.detach().requires_grad_(True)
                dx = self.f(t, x, context)
                return dx, self._trace(dx, x, eps)

        times = torch.tensor([t0, t1], dtype=inputs.dtype, device=inputs.device)
        state = (inputs, inputs.new_zeros(inputs.shape[0]))
        xs, ladj = self._odeint(
            dynamics, state, times, method=self.method, rtol=self.rtol, atol=self.atol
        )
        return xs[-1], ladj[-1]

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._integrate(inputs, context, 0.0, self.time)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._integrate(inputs, context, self.time, 0.0)


class FFJORD(Flow):
    r"""FFJORD: a free-form continuous normalizing flow trained by maximum likelihood.

    .. math:: \log p(x) = \log p_Z(x(T)) + \int_0^T \operatorname{tr}
        \frac{\partial f}{\partial x}(x(t), t) \, dt

    With the default Hutchinson estimator ``log_prob`` is unbiased but random; pass
    ``exact=True`` for a deterministic density (cost grows with ``D``).

    References:
        FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models
        (Grathwohl et al., 2018), arXiv:1810.01367

    Arguments:
        features: The number of features ``D``.
        context_features: The context size, or ``None`` for an unconditional flow.
        hidden_features: The width of the vector-field MLP.
        num_transforms: The number of stacked CNF blocks (usually 1).
        kwargs: Passed to :class:`CNFTransform` (``exact``, ``time``, ``method``, ...).

    Example:
        >>> flow = FFJORD(2, hidden_features=8, exact=True)
        >>> flow().log_prob(torch.zeros(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        context_features: int | None = None,
        hidden_features: int = 64,
        num_transforms: int = 1,
        **kwargs,
    ):
        blocks = [
            CNFTransform(features, context_features, hidden_features, **kwargs)
            for _ in range(num_transforms)
        ]
        super().__init__(CompositeTransform(blocks), features, context_features)
