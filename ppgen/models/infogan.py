"""InfoGAN (Chen et al. 2016) as an implicit program plus its Q network, written as a guide.

The program draws noise ``z``, a categorical code ``c`` and continuous codes ``u``, and
generates ``x = G(z, one_hot(c), u)``; :meth:`InfoGAN.q` is the auxiliary network
:math:`Q(c, u \\mid x)`. Fit it with the adversarial estimator's InfoGAN composition::

    Adversarial(info_sites=gan.info_sites, guide=gan.q, info_weight=gan.info_weight)

There is no InfoGAN estimator: the mutual-information term is a setting any program with
code sites and a Q guide can use. It runs on Pyro (torch networks, the default) or on NumPyro
(``backend="numpyro"``: the same MLPs from ``numpyro.param`` sites of :mod:`ppgen.nn_jax`, a
JAX critic); JAX is imported only when a NumPyro InfoGAN is built or run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ppgen.distributions import Implicit
from ppgen.errors import DataError
from ppgen.models._cli import CLISpec
from ppgen.models.gan import _check_backend, jax_critic
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
        backend: ``"pyro"`` (torch MLPs registered with ``pyro.module``) or ``"numpyro"`` (the
            same MLPs, ``torch.nn.Linear``-initialised, from ``numpyro.param`` sites
            ``generator.{i}.weight/bias`` and ``recogniser.{i}.weight/bias``, and the JAX
            default critic :func:`~ppgen.models.gan.jax_critic`).

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

        The same on NumPyro (Q's weights are kept in the fit beside the generator's):

        >>> gan = InfoGAN(2, num_categories=4, continuous_codes=1, hidden_features=(16,),
        ...               backend="numpyro")
        >>> est = Adversarial(
        ...     steps=3, info_sites=gan.info_sites, guide=gan.q, info_weight=gan.info_weight
        ... )
        >>> fit = ppgen.fit(gan, {"x": x}, est)
        >>> fit.program.backend, sorted({k.split(".")[0] for k in fit.params})
        ('numpyro', ['generator', 'recogniser'])
    """

    cli = (
        CLISpec(
            "infogan",
            "GAN",
            "ring8",
            "adversarial",
            {"z_dim": int, "num_categories": int, "continuous_codes": int},
            fixed={"num_categories": 8, "continuous_codes": 0},
            sizes={"x_shape": ("x", None)},
            estimator_args={"info_sites": "info_sites", "guide": "q", "info_weight": "info_weight"},
            description="InfoGAN: a categorical code (8 for ring8) and its recogniser q",
        ),
    )

    backend: str = "pyro"  # per instance: the constructor's ``backend``

    def __init__(
        self,
        x_shape: int | Sequence[int] = 2,
        num_categories: int = 10,
        continuous_codes: int = 2,
        z_dim: int = 16,
        hidden_features: Sequence[int] = (128, 128),
        backend: str = "pyro",
    ) -> None:
        super().__init__()
        self.backend = _check_backend(backend)
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
        if self.backend == "pyro":
            self.generator = mlp_layers([self.z_dim + codes, *self.hidden_features, width])
            q_sizes = [width, *self.hidden_features, codes + self.continuous_codes]
            self.recogniser = mlp_layers(q_sizes)
        else:  # NumPyro: the weights are `numpyro.param` sites of the program and of `q`
            self.generator = self.recogniser = None

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
        """``G(z, c, u)``, datum-shaped.

        On NumPyro ``z``, ``c`` and ``u`` are JAX arrays and the weights are ``numpyro.param``
        sites, so call it inside a NumPyro program (or a ``handlers.seed``/``substitute``).
        """
        if self.backend == "numpyro":
            return self._generate_jax(z, c, u)
        out = self.generator(torch.cat([z, self._codes(c, u, z)], -1))
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def _generate_jax(self, z: Any, c: Any = None, u: Any = None) -> Any:
        import jax
        import jax.numpy as jnp

        from ppgen import nn_jax

        parts = [z]
        if self.num_categories:
            parts.append(jax.nn.one_hot(c, self.num_categories, dtype=z.dtype))
        if self.continuous_codes:
            parts.append(u)
        h = jnp.concatenate(parts, -1)
        out = nn_jax.mlp("generator", h, self.hidden_features, math.prod(self.x_shape))
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def _check_data(self, x: Any) -> None:
        if x is not None and tuple(x.shape[1:]) != self.x_shape:
            raise DataError(
                f"`x` has datum shape {tuple(x.shape[1:])}; this InfoGAN was built for "
                f"x_shape={self.x_shape}."
            )

    def model(self, x: Tensor | None = None, n: int | None = None) -> Any:
        """The program: noise, codes, the generator, the implicit observed site ``x``."""
        self._check_data(x)
        size = len(x) if x is not None else int(n or 1)
        if self.backend == "numpyro":
            return self._model_jax(x, size)
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

    def _model_jax(self, x: Any, size: int) -> Any:
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as ndist

        c = u = None
        with numpyro.plate("data", size):
            z = numpyro.sample("z", ndist.Normal(jnp.zeros(self.z_dim), 1.0).to_event(1))
            if self.num_categories:
                logits = jnp.zeros(self.num_categories)
                c = numpyro.sample("c", ndist.Categorical(logits=logits))
            if self.continuous_codes:
                box = ndist.Uniform(-jnp.ones(self.continuous_codes), 1.0)
                u = numpyro.sample("u", box.to_event(1))
            gen = Implicit(self.generate(z, c, u), len(self.x_shape))
            return numpyro.sample("x", gen, obs=x)

    def q(self, x: Tensor | None = None, n: int | None = None) -> None:
        """The Q network as a guide over the codes, reading the (generated) ``x``."""
        if self.backend == "numpyro":
            return self._q_jax(x)
        register_module("recogniser", self.recogniser)
        h = self.recogniser(x.reshape(len(x), -1))
        k, d = self.num_categories, self.continuous_codes
        with pyro.plate("data", len(x)):
            if k:
                pyro.sample("c", dist.Categorical(logits=h[..., :k]))
            if d:
                loc, log_scale = h[..., k : k + d], h[..., k + d :]
                pyro.sample("u", dist.Normal(loc, log_scale.clamp(-5, 2).exp()).to_event(1))
        return None

    def _q_jax(self, x: Any) -> None:
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as ndist

        from ppgen import nn_jax

        k, d = self.num_categories, self.continuous_codes
        h = nn_jax.mlp("recogniser", x.reshape(len(x), -1), self.hidden_features, k + 2 * d)
        with numpyro.plate("data", len(x)):
            if k:
                numpyro.sample("c", ndist.Categorical(logits=h[..., :k]))
            if d:
                loc, log_scale = h[..., k : k + d], h[..., k + d :]
                scale = jnp.exp(jnp.clip(log_scale, -5, 2))
                numpyro.sample("u", ndist.Normal(loc, scale).to_event(1))

    def discriminator(self, backend: str) -> Any:
        """The default critic with the generator's widths, for ``backend``.

        Pyro: :class:`ppgen.nn.Critic`; NumPyro: the ``(init, apply)`` pair of
        :func:`~ppgen.models.gan.jax_critic`.

        Example:
            >>> type(InfoGAN(2, hidden_features=(8,)).discriminator("pyro")).__name__
            'Critic'
            >>> len(InfoGAN(2, hidden_features=(8,), backend="numpyro").discriminator("numpyro"))
            2
        """
        width = math.prod(self.x_shape)
        if backend == "numpyro":
            return jax_critic(width, self.hidden_features)
        if backend != "pyro":
            return None
        return Critic(width, self.hidden_features, ())
