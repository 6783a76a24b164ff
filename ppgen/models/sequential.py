"""Deep Markov model: sequential latents with gated transitions and a combiner-RNN guide."""

from __future__ import annotations

from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.errors import DataError
from ppgen.nn import register_module

__all__ = ["DMM", "GatedTransition", "Combiner"]


class GatedTransition(nn.Module):
    r""":math:`p(z_t \mid z_{t-1})`: a gated mix of a linear and a nonlinear proposal.

    .. math:: g = \sigma(W_g h_g), \quad \mu = (1 - g) \odot W_\mu z_{t-1} + g \odot
        \tilde\mu(z_{t-1}), \quad \sigma = \mathrm{softplus}(W_\sigma \mathrm{relu}(\tilde\mu))

    Example:
        >>> loc, scale = GatedTransition(3, 8)(torch.zeros(2, 3))
        >>> loc.shape, bool((scale > 0).all())
        (torch.Size([2, 3]), True)
    """

    def __init__(self, z_dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.proposed = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.loc = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        nn.init.eye_(self.loc.weight)
        nn.init.zeros_(self.loc.bias)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        g = torch.sigmoid(self.gate(z))
        prop = self.proposed(z)
        loc = (1 - g) * self.loc(z) + g * prop
        return loc, F.softplus(self.scale(F.relu(prop))) + 1e-4


class Combiner(nn.Module):
    r""":math:`q(z_t \mid z_{t-1}, h_t)` with :math:`h = \frac12(\tanh(W z_{t-1}) + h^{rnn}_t)`.

    Example:
        >>> loc, scale = Combiner(3, 5)(torch.zeros(2, 3), torch.zeros(2, 5))
        >>> loc.shape
        torch.Size([2, 3])
    """

    def __init__(self, z_dim: int, rnn_dim: int):
        super().__init__()
        self.z_to_h = nn.Linear(z_dim, rnn_dim)
        self.loc = nn.Linear(rnn_dim, z_dim)
        self.scale = nn.Linear(rnn_dim, z_dim)

    def forward(self, z: Tensor, h_rnn: Tensor) -> tuple[Tensor, Tensor]:
        h = 0.5 * (torch.tanh(self.z_to_h(z)) + h_rnn)
        return self.loc(h), F.softplus(self.scale(h)) + 1e-4


class DMM(nn.Module):
    r"""Deep Markov model for sequences ``x`` of shape ``(N, T, D)`` (binary or real).

    .. math:: z_t \mid z_{t-1} \sim \mathcal N(\mu_\theta(z_{t-1}), \sigma^2_\theta(z_{t-1})),
        \quad x_t \mid z_t \sim p_\theta(x_t \mid \mathrm{emit}(z_t))

    The guide runs a GRU backwards over ``x`` and combines its state with :math:`z_{t-1}`
    (structured, non-mean-field inference). ``mask`` ``(N, T)`` marks the valid steps of
    sequences of different lengths. Sites are ``z_1..z_T`` and ``x_1..x_T`` in plate ``data``;
    KL annealing is :class:`~ppgen.inference.objectives.reparam.KLWarmup` on a ``ReparamELBO``.

    References:
        Krishnan, Shalit & Sontag, Structured Inference Networks for Nonlinear State Space
        Models, arXiv:1609.09869.

    Example:
        >>> import numpy as np, ppgen
        >>> x = (np.random.default_rng(0).random((8, 5, 3)) > 0.5).astype(float)
        >>> est = ppgen.inference.SVI(steps=2, num_draws=2)
        >>> fit = ppgen.fit(DMM(3, 2, hidden=8), {"x": x}, est)
        >>> fit.draws["z_5"].shape
        (1, 2, 8, 2)
    """

    backend: ClassVar[str] = "pyro"

    def __init__(
        self,
        x_dim: int = 88,
        z_dim: int = 16,
        *,
        hidden: int = 64,
        rnn_dim: int = 64,
        likelihood: str = "bernoulli",
    ):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"`likelihood` must be 'bernoulli' or 'gaussian'; got {likelihood!r}.")
        self.x_dim, self.z_dim, self.likelihood = x_dim, z_dim, likelihood
        k = 1 if likelihood == "bernoulli" else 2
        self.emitter = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, k * x_dim),
        )
        self.trans = GatedTransition(z_dim, hidden)
        self.combiner = Combiner(z_dim, rnn_dim)
        self.rnn = nn.GRU(x_dim, rnn_dim, batch_first=True)
        self.z_0 = nn.Parameter(torch.zeros(z_dim))
        self.z_q_0 = nn.Parameter(torch.zeros(z_dim))
        self.h_0 = nn.Parameter(torch.zeros(1, 1, rnn_dim))

    def _check(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.x_dim:
            raise DataError(
                f"`x` must have shape (N, T, {self.x_dim}) (sequences of {self.x_dim}-vectors); "
                f"got {tuple(x.shape)}."
            )
        if mask is None:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise DataError(
                f"`mask` must have shape {tuple(x.shape[:2])}; got {tuple(mask.shape)}."
            )
        return mask.bool()

    def emission(self, z: Tensor) -> dist.TorchDistribution:
        """:math:`p(x_t \\mid z_t)`."""
        out = self.emitter(z)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        loc, raw = out[..., : self.x_dim], out[..., self.x_dim :]
        return dist.Normal(loc, F.softplus(raw) + 1e-3).to_event(1)

    def model(self, x: Tensor, mask: Tensor | None = None) -> None:
        m = self._check(x, mask)
        register_module("dmm", self)
        n, t_max = x.shape[:2]
        z = self.z_0.expand(n, self.z_dim)
        with pyro.plate("data", n):
            for t in pyro.markov(range(t_max)):
                loc, scale = self.trans(z)
                z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1).mask(m[:, t]))
                pyro.sample(f"x_{t + 1}", self.emission(z).mask(m[:, t]), obs=x[:, t])

    def guide(self, x: Tensor, mask: Tensor | None = None) -> None:
        m = self._check(x, mask)
        register_module("dmm", self)
        n, t_max = x.shape[:2]
        h0 = self.h_0.expand(1, n, self.h_0.shape[-1]).contiguous()
        h, _ = self.rnn(torch.flip(x.to(self.h_0.dtype), [1]), h0)
        h = torch.flip(h, [1])
        z = self.z_q_0.expand(n, self.z_dim)
        with pyro.plate("data", n):
            for t in pyro.markov(range(t_max)):
                loc, scale = self.combiner(z, h[:, t])
                z = pyro.sample(f"z_{t + 1}", dist.Normal(loc, scale).to_event(1).mask(m[:, t]))

    @torch.no_grad()
    def sample(self, n: int, steps: int) -> Tensor:
        """``n`` generated sequences of length ``steps``: emission means ``(n, steps, D)``."""
        z = self.z_0.expand(n, self.z_dim)
        out = []
        for _ in range(steps):
            loc, scale = self.trans(z)
            z = dist.Normal(loc, scale).sample()
            base = self.emission(z).base_dist
            out.append(base.mean)
        return torch.stack(out, 1)
