"""InfoGAN (Chen et al. 2016) as an implicit program plus its Q network, written as a guide.

The program draws noise ``z``, a categorical code ``c`` and continuous codes ``u``, and
generates ``x = G(z, one_hot(c), u)``; :meth:`InfoGAN.q` is the auxiliary network
:math:`Q(c, u \\mid x)`. Fit it with the adversarial estimator's InfoGAN composition::

    Adversarial(info_sites=gan.info_sites, guide=gan.q, info_weight=gan.info_weight)

There is no InfoGAN estimator: the mutual-information term is a setting any program with
code sites and a Q guide can use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ppgen.distributions import Implicit
from ppgen.errors import DataError
from ppgen.nn import Critic, mlp_layers, register_module

__all__ = ["InfoGAN"]


class InfoGAN(nn.Module):
    r"""A generator with interpretable codes: categorical ``c`` and continuous ``u``.

    .. math::
        z_n \sim \mathcal N(0, I),\quad c_n \sim \mathrm{Cat}(1/K),\quad
        u_n \sim \mathcal U(-1, 1)^{d_u},\quad x_n = G_\theta(z_n, c_n, u_n)\ (\text{Implicit})

    :meth:`q` is :math:`Q_\phi(c, u \mid x)`: a categorical over ``c`` and a diagonal normal
    over ``u`` from one MLP, so :math:`\mathbb E \log Q(c, u \mid G(z, c, u))` is InfoGAN's
    variational lower bound on :math:`I(c, u; x) - H(c, u)`.

    Arguments:
        x_shape: the shape of one datum (an int for vectors).
        num_categories: :math:`K`, the values of the categorical code (0: none).
        continuous_codes: :math:`d_u`, the number of continuous codes (0: none).
        z_dim: the noise dimension.
        hidden_features: widths of the generator, of Q and of the default critic.

    Example: the code picks one of four clusters.

        >>> import numpy as np, ppgen
        >>> from ppgen.inference import Adversarial
        >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> gan = InfoGAN(2, num_categories=4, continuous_codes=1, hidden_features=(16,))
        >>> est = Adversarial(
        ...     steps=3, info_sites=gan.info_sites, guide=gan.q, info_weight=gan.info_weight
        ... )
        >>> fit = ppgen.fit(gan, {"x": x}, est)
        >>> sorted(fit.history)
        ['info', 'loss', 'loss_d', 'loss_g']
    """

    backend: ClassVar[str] = "pyro"

    def __init__(
        self,
        x_shape: int | Sequence[int] = 2,
        num_categories: int = 10,
        continuous_codes: int = 2,
        z_dim: int = 16,
        hidden_features: Sequence[int] = (128, 128),
    ) -> None:
        super().__init__()
        self.x_shape = (int(x_shape),) if isinstance(x_shape, int) else tuple(x_shape)
        self.num_categories, self.continuous_codes = int(num_categories), int(continuous_codes)
        if self.num_categories < 0 or self.continuous_codes < 0:
            raise ValueError("`num_categories` and `continuous_codes` must be >= 0.")
        if self.num_categories == 1:
            raise ValueError("`num_categories=1` carries no information; use 0 or >= 2.")
        if not (self.num_categories or self.continuous_codes):
            raise ValueError("An InfoGAN needs a code: set `num_categories` or `continuous_codes`.")
        self.z_dim, self.hidden_features = int(z_dim), tuple(hidden_features)
        width = math.prod(self.x_shape)
        codes = self.num_categories + self.continuous_codes
        self.generator = mlp_layers([self.z_dim + codes, *self.hidden_features, width])
        self.recogniser = mlp_layers([width, *self.hidden_features, codes + self.continuous_codes])

    @property
    def info_sites(self) -> list[str]:
        """The code sites, for ``Adversarial(info_sites=...)``."""
        return (["c"] if self.num_categories else []) + (["u"] if self.continuous_codes else [])

    @property
    def info_weight(self) -> dict[str, float]:
        """The paper's weights: 1 for the categorical code, 0.1 for the continuous codes.

        With equal weights the continuous codes, whose log density is unbounded, can take over
        the categorical code's role (measured: 1 of 3 seeds on four clusters).
        """
        return {s: 1.0 if s == "c" else 0.1 for s in self.info_sites}

    def _codes(self, c: Tensor | None, u: Tensor | None, like: Tensor) -> Tensor:
        parts = []
        if self.num_categories:
            parts.append(nn.functional.one_hot(c, self.num_categories).to(like.dtype))
        if self.continuous_codes:
            parts.append(u)
        return torch.cat(parts, -1)

    def generate(self, z: Tensor, c: Tensor | None = None, u: Tensor | None = None) -> Tensor:
        """``G(z, c, u)``, datum-shaped."""
        out = self.generator(torch.cat([z, self._codes(c, u, z)], -1))
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def model(self, x: Tensor | None = None, n: int | None = None) -> Any:
        """The program: noise, codes, the generator, the implicit observed site ``x``."""
        if x is not None and tuple(x.shape[1:]) != self.x_shape:
            raise DataError(
                f"`x` has datum shape {tuple(x.shape[1:])}; this InfoGAN was built for "
                f"x_shape={self.x_shape}."
            )
        size = len(x) if x is not None else int(n or 1)
        register_module("generator", self.generator)
        c = u = None
        with pyro.plate("data", size):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.z_dim), 1.0).to_event(1))
            if self.num_categories:
                c = pyro.sample("c", dist.Categorical(logits=torch.zeros(self.num_categories)))
            if self.continuous_codes:
                box = dist.Uniform(-torch.ones(self.continuous_codes), 1.0)
                u = pyro.sample("u", box.to_event(1))
            return pyro.sample("x", Implicit(self.generate(z, c, u), len(self.x_shape)), obs=x)

    def q(self, x: Tensor | None = None, n: int | None = None) -> None:
        """The Q network as a guide over the codes, reading the (generated) ``x``."""
        register_module("recogniser", self.recogniser)
        h = self.recogniser(x.reshape(len(x), -1))
        k, d = self.num_categories, self.continuous_codes
        with pyro.plate("data", len(x)):
            if k:
                pyro.sample("c", dist.Categorical(logits=h[..., :k]))
            if d:
                loc, log_scale = h[..., k : k + d], h[..., k + d :]
                pyro.sample("u", dist.Normal(loc, log_scale.clamp(-5, 2).exp()).to_event(1))

    def discriminator(self, backend: str) -> nn.Module | None:
        """The default critic: :class:`ppgen.nn.Critic` with the generator's widths."""
        if backend != "pyro":
            return None
        return Critic(math.prod(self.x_shape), self.hidden_features, ())
