"""Generative adversarial networks as implicit programs: MLP, conditional and convolutional.

Each is a program whose observed site is ``Implicit(G(z))``; fit it with
:class:`~ppgen.inference.Adversarial` (any of its losses). Each declares a default
``discriminator`` (see :mod:`ppgen.capabilities`) sized to its data. :class:`GAN`,
:class:`ConditionalGAN` and :class:`DCGAN` run on Pyro (torch networks, the default) or on
NumPyro (``backend="numpyro"``: ``numpyro.param`` weights from :mod:`ppgen.nn_jax`, a JAX
critic); the NumPyro DCGAN normalises per image (a one-group GroupNorm) where the Pyro one uses
batch norm (see :class:`DCGAN`). JAX is imported only when a NumPyro GAN is built or run.
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
from ppgen.nn import Critic, mlp_layers, register_module

__all__ = ["GAN", "ConditionalGAN", "DCGAN", "jax_critic"]

_BACKENDS = ("pyro", "numpyro")


def _check_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` must be 'pyro' or 'numpyro'; got {backend!r}.")
    return backend


def jax_critic(
    in_features: int, hidden_features: Sequence[int], num_classes: int = 0
) -> tuple[Any, Any]:
    """An MLP critic for NumPyro programs, as the ``(init, apply)`` pair Adversarial takes.

    ``init(key, x, *labels) -> params``; ``apply(params, x, *labels)`` flattens each datum of
    ``x`` to ``in_features`` numbers, appends the one-hot ``labels`` (when ``num_classes``)
    and returns one number per datum: :func:`ppgen.nn_jax.mlp_critic`, the twin of
    :class:`ppgen.nn.Critic`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> init, apply = jax_critic(4, (8,), num_classes=3)
        >>> x, y = jnp.ones((5, 2, 2)), jnp.arange(5) % 3
        >>> apply(init(jax.random.PRNGKey(0), x, y), x, y).shape
        (5,)
    """
    from ppgen import nn_jax  # JAX is imported only when a NumPyro GAN is built

    classes = [int(num_classes)] if num_classes else []
    init, apply = nn_jax.mlp_critic(int(in_features) + int(num_classes), hidden_features, classes)
    return (lambda key, *_: init(key)), apply


class GAN(nn.Module):
    r"""A generator :math:`x = G(z)`, :math:`z \sim \mathcal N(0, I)`, for data of any shape.

    .. math:: z_n \sim \mathcal N(0, I_{d_z}), \qquad x_n = G_\theta(z_n)\ \ (\text{Implicit})

    ``G`` is an MLP (ReLU) to ``prod(x_shape)`` outputs, reshaped; ``output="tanh"`` or
    ``"sigmoid"`` bounds them (images scaled to [-1, 1] or [0, 1]).

    Arguments:
        x_shape: the shape of one datum (an int for vectors).
        z_dim: the noise dimension.
        hidden_features: the generator's widths (also the default critic's).
        output: ``"linear"``, ``"tanh"`` or ``"sigmoid"``.
        backend: ``"pyro"`` (a torch MLP, registered with ``pyro.module``) or ``"numpyro"``
            (the same MLP from ``numpyro.param`` sites ``generator.{i}.weight/bias``, and a
            JAX default critic, :func:`jax_critic`).

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.inference import Adversarial
        >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> gan = GAN(2, z_dim=2, hidden_features=(16,))
        >>> fit = ppgen.fit(gan, {"x": x}, Adversarial(steps=3))
        >>> fit.sample(5)["x"].shape
        (5, 64, 2)

        The same on NumPyro:

        >>> gan = GAN(2, z_dim=2, hidden_features=(16,), backend="numpyro")
        >>> fit = ppgen.fit(gan, {"x": x}, Adversarial(steps=3))
        >>> fit.program.backend, fit.sample(5)["x"].shape
        ('numpyro', (5, 64, 2))
    """

    cli = (
        CLISpec(
            "gan",
            "GAN",
            "ring8",
            "adversarial",
            {"z_dim": int},
            description="GAN, MLP generator, default critic",
        ),
    )

    backend: str = "pyro"  # per instance: the constructor's ``backend``

    def __init__(
        self,
        x_shape: int | Sequence[int] = 2,
        z_dim: int = 8,
        hidden_features: Sequence[int] = (128, 128),
        output: str = "linear",
        num_classes: int = 0,
        backend: str = "pyro",
    ) -> None:
        super().__init__()
        self.backend = _check_backend(backend)
        self.x_shape = (int(x_shape),) if isinstance(x_shape, int) else tuple(x_shape)
        if output not in ("linear", "tanh", "sigmoid"):
            raise ValueError(f"`output` must be 'linear', 'tanh' or 'sigmoid'; got {output!r}.")
        self.z_dim, self.output, self.num_classes = int(z_dim), output, int(num_classes)
        self.hidden_features = tuple(hidden_features)
        width = math.prod(self.x_shape)
        self.generator = self._generator(width) if self.backend == "pyro" else None

    def _generator(self, width: int) -> nn.Module:
        sizes = [self.z_dim + self.num_classes, *self.hidden_features, width]
        return mlp_layers(sizes, nn.ReLU())

    def _bound(self, out: Tensor) -> Tensor:
        if self.output == "tanh":
            return torch.tanh(out)
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """``G(z)`` (with one-hot labels ``y`` appended for a conditional GAN), datum-shaped.

        On NumPyro ``z`` and ``y`` are JAX arrays and the weights are ``numpyro.param``
        sites, so call it inside a NumPyro program (or a ``handlers.seed``/``substitute``).
        """
        if self.backend == "numpyro":
            return self._generate_jax(z, y)
        if self.num_classes:
            z = torch.cat([z, nn.functional.one_hot(y.long(), self.num_classes).to(z.dtype)], -1)
        out = self._bound(self.generator(z))
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def _generate_jax(self, z: Any, y: Any = None) -> Any:
        import jax
        import jax.numpy as jnp

        from ppgen import nn_jax

        if self.num_classes:
            onehot = jax.nn.one_hot(y, self.num_classes, dtype=z.dtype)
            onehot = jnp.broadcast_to(onehot, (*z.shape[:-1], self.num_classes))
            z = jnp.concatenate([z, onehot], -1)
        out = nn_jax.mlp("generator", z, self.hidden_features, math.prod(self.x_shape))
        if self.output == "tanh":
            out = jnp.tanh(out)
        elif self.output == "sigmoid":
            out = jax.nn.sigmoid(out)
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def model(self, x: Tensor | None = None, y: Tensor | None = None, n: int | None = None) -> Any:
        """The program: noise, the generator, the implicit observed site ``x``."""
        if x is not None and tuple(x.shape[1:]) != self.x_shape:
            raise DataError(
                f"`x` has datum shape {tuple(x.shape[1:])}; this {type(self).__name__} was built "
                f"for x_shape={self.x_shape}."
            )
        if self.num_classes and y is None:
            raise DataError(
                f"This {type(self).__name__} is conditional: pass the labels `y` "
                f"(0..{self.num_classes - 1}, one per datum) with the data."
            )
        size = len(x) if x is not None else (len(y) if y is not None else int(n or 1))
        if self.backend == "numpyro":
            import jax.numpy as jnp
            import numpyro
            import numpyro.distributions as ndist

            with numpyro.plate("data", size):
                z = numpyro.sample("z", ndist.Normal(jnp.zeros(self.z_dim), 1.0).to_event(1))
                gen = Implicit(self.generate(z, y), len(self.x_shape))
                return numpyro.sample("x", gen, obs=x)
        register_module("generator", self)
        with pyro.plate("data", size):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.z_dim), 1.0).to_event(1))
            return pyro.sample("x", Implicit(self.generate(z, y), len(self.x_shape)), obs=x)

    def simulate_sites(
        self,
        sites: Sequence[str],
        x: Tensor | None = None,
        y: Tensor | None = None,
        n: int | None = None,
    ) -> dict[str, Tensor] | None:
        """The program's ``z`` and ``x`` drawn with torch alone (:mod:`ppgen.capabilities`).

        The same noise as :meth:`model` (``z`` from torch's global generator, the one draw
        of the program), so the same values; ``None`` (run the program) on NumPyro or for
        other sites.

        Example:
            >>> gan = GAN(2, z_dim=3, hidden_features=(8,))
            >>> _ = torch.manual_seed(0)
            >>> fast = gan.simulate_sites(["x"], x=torch.zeros(4, 2))["x"]
            >>> _ = torch.manual_seed(0)
            >>> tr = pyro.poutine.trace(pyro.poutine.uncondition(gan.model)).get_trace(
            ...     x=torch.zeros(4, 2))
            >>> torch.equal(fast, tr.nodes["x"]["value"])
            True
        """
        if self.backend != "pyro" or not set(sites) <= {"x", "z"}:
            return None
        size = len(x) if x is not None else (len(y) if y is not None else int(n or 1))
        z = torch.randn(size, self.z_dim)
        values = {"z": z, "x": self.generate(z, y)}
        return {s: values[s] for s in sites}

    def discriminator(self, backend: str) -> Any:
        """The default critic with the generator's widths, for ``backend``.

        Pyro: :class:`ppgen.nn.Critic`; NumPyro: the ``(init, apply)`` pair of
        :func:`jax_critic`. Both take the one-hot labels of a conditional GAN.

        Example:
            >>> type(GAN(2, hidden_features=(8,)).discriminator("pyro")).__name__
            'Critic'
            >>> len(GAN(2, hidden_features=(8,)).discriminator("numpyro"))
            2
        """
        width = math.prod(self.x_shape)
        if backend == "numpyro":
            return jax_critic(width, self.hidden_features, self.num_classes)
        if backend != "pyro":
            return None
        classes = (self.num_classes,) if self.num_classes else ()
        return Critic(width + self.num_classes, self.hidden_features, classes)


class ConditionalGAN(GAN):
    r"""A class-conditional generator :math:`x = G(z, y)` (Mirza & Osindero 2014).

    Pass the labels ``y`` (``0..num_classes-1``) with the data: the generator gets them
    one-hot, and :class:`~ppgen.inference.Adversarial` hands them to the critic too.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.inference import Adversarial
        >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> y = np.arange(64) % 3
        >>> gan = ConditionalGAN(2, num_classes=3, z_dim=2, hidden_features=(16,))
        >>> fit = ppgen.fit(gan, {"x": x, "y": y}, Adversarial(steps=3))
        >>> fit.sample(2, data={"y": np.zeros(5, int)})["x"].shape
        (2, 5, 2)

        On NumPyro, ``backend="numpyro"``:

        >>> gan = ConditionalGAN(2, num_classes=3, z_dim=2, hidden_features=(16,),
        ...                      backend="numpyro")
        >>> fit = ppgen.fit(gan, {"x": x, "y": y}, Adversarial(steps=3))
        >>> fit.sample(2, data={"y": np.zeros(5, int)})["x"].shape
        (2, 5, 2)
    """

    cli = (
        CLISpec(
            "cgan",
            "GAN",
            "digits_binary_labelled",
            "adversarial",
            {"z_dim": int, "num_classes": int},
            sizes={"x_shape": ("x", None)},
            description="conditional GAN G(z, y), labels y as covariates",
        ),
    )

    def __init__(self, x_shape: int | Sequence[int] = 2, num_classes: int = 10, **kw: Any):
        super().__init__(x_shape, num_classes=num_classes, **kw)


class DCGAN(GAN):
    r"""Convolutional generator and critic for ``(C, H, W)`` images, H and W divisible by 4.

    Radford et al. (arXiv:1511.06434), sized down: ``Linear -> (2c, H/4, W/4)``, two stride-2
    transposed convolutions (kernel 4, padding 1) with a normalisation and ReLU before each,
    ``tanh`` output (scale images to [-1, 1]); the critic mirrors it: two stride-2 convolutions
    with LeakyReLU(0.2) and no normalisation (so it also serves WGAN-GP, whose penalty is per
    sample), ``Linear`` to one number, one-hot labels appended for a conditional DCGAN.
    Works for 8×8 digits and 28×28 images.

    Arguments:
        x_shape: ``(C, H, W)``.
        z_dim: the noise dimension.
        channels: ``c``, the width of the last hidden layer (the first has ``2c``).
        num_classes: class count of a conditional DCGAN (0: unconditional).
        backend: ``"pyro"`` (torch layers registered with ``pyro.module``) or ``"numpyro"``.

    The two backends differ in the normalisation only. Pyro uses torch's ``BatchNorm2d``, as
    the paper; it keeps running statistics, state that the NumPyro engine of
    :class:`~ppgen.inference.Adversarial` does not carry (it trains ``param`` sites only), and
    it normalises over the batch while training but by the running averages when sampling.
    NumPyro uses :func:`ppgen.nn_jax.group_norm` with one group instead: each image's
    ``(C, H, W)`` activations normalised to mean 0 and variance 1 with a learned per-channel
    scale and shift, as ``torch.nn.GroupNorm(1, C)``. It has no running state and computes the
    same at training and sampling time for any batch size (one image included). It is there
    because it trains: on two 8×8 patterns the NumPyro generator with no normalisation drew
    only one of them after 100-400 steps, with the group norm both (measured, seed 0).
    Everything else is the same layers (:func:`~ppgen.nn_jax.linear`,
    :func:`~ppgen.nn_jax.conv_transpose2d`, as ``numpyro.param`` sites
    ``generator.{0..4}.weight/bias`` with torch's initialisation; conv weights in torch's
    layout, the linear one transposed), and the default critic is
    :func:`~ppgen.nn_jax.conv_critic`, the twin of the Pyro critic.

    Example:
        >>> import numpy as np, ppgen
        >>> from ppgen.inference import Adversarial
        >>> x = np.zeros((16, 1, 8, 8), np.float32)
        >>> fit = ppgen.fit(DCGAN((1, 8, 8), channels=4), {"x": x}, Adversarial(steps=2))
        >>> fit.sample(1)["x"].shape
        (1, 16, 1, 8, 8)

        The same on NumPyro:

        >>> gan = DCGAN((1, 8, 8), z_dim=4, channels=4, backend="numpyro")
        >>> fit = ppgen.fit(gan, {"x": x}, Adversarial(steps=2))
        >>> fit.program.backend, fit.sample(1)["x"].shape
        ('numpyro', (1, 16, 1, 8, 8))
    """

    cli = (
        CLISpec(
            "dcgan",
            "GAN",
            "digits_images",
            "adversarial",
            {"z_dim": int, "channels": int},
            sizes={"x_shape": ("x", None)},
            description="DCGAN, conv generator and critic, on images",
        ),
    )

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 8, 8),
        z_dim: int = 32,
        channels: int = 32,
        num_classes: int = 0,
        backend: str = "pyro",
    ) -> None:
        _check_backend(backend)
        if len(x_shape) != 3 or x_shape[1] % 4 or x_shape[2] % 4:
            raise ValueError(
                f"`x_shape` must be (C, H, W) with H, W divisible by 4; got {x_shape}."
            )
        self.channels = int(channels)
        super().__init__(x_shape, z_dim, (), "tanh", num_classes, backend)

    def _generator(self, width: int) -> nn.Module:
        c, h, w = self.x_shape
        k = self.channels
        return nn.Sequential(
            nn.Linear(self.z_dim + self.num_classes, 2 * k * (h // 4) * (w // 4)),
            nn.Unflatten(-1, (2 * k, h // 4, w // 4)),
            nn.BatchNorm2d(2 * k),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * k, k, 4, 2, 1),
            nn.BatchNorm2d(k),
            nn.ReLU(),
            nn.ConvTranspose2d(k, c, 4, 2, 1),
        )

    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.backend == "numpyro":
            return self._generate_jax(z, y)
        if self.num_classes:
            z = torch.cat([z, nn.functional.one_hot(y.long(), self.num_classes).to(z.dtype)], -1)
        lead = z.shape[:-1]
        out = torch.tanh(self.generator(z.reshape(-1, z.shape[-1])))
        return out.reshape(*lead, *self.x_shape)

    def _generate_jax(self, z: Any, y: Any = None) -> Any:
        import jax
        import jax.numpy as jnp

        from ppgen import nn_jax

        if self.num_classes:
            onehot = jax.nn.one_hot(y, self.num_classes, dtype=z.dtype)
            onehot = jnp.broadcast_to(onehot, (*z.shape[:-1], self.num_classes))
            z = jnp.concatenate([z, onehot], -1)
        c, h, w = self.x_shape
        k, lead = self.channels, z.shape[:-1]
        out = nn_jax.linear("generator.0", z.reshape(-1, z.shape[-1]), 2 * k * (h // 4) * (w // 4))
        out = out.reshape(-1, 2 * k, h // 4, w // 4)
        out = jax.nn.relu(nn_jax.group_norm("generator.1", out))
        out = nn_jax.conv_transpose2d("generator.2", out, k, 4, 2, 1)
        out = jax.nn.relu(nn_jax.group_norm("generator.3", out))
        out = jnp.tanh(nn_jax.conv_transpose2d("generator.4", out, c, 4, 2, 1))
        return out.reshape(*lead, *self.x_shape)

    def discriminator(self, backend: str) -> Any:
        """The default critic: two stride-2 convolutions, LeakyReLU(0.2), ``Linear`` to 1.

        Pyro: a torch module; NumPyro: the ``(init, apply)`` pair of
        :func:`ppgen.nn_jax.conv_critic` with the same layers. Both take the one-hot labels
        of a conditional DCGAN.

        Example:
            >>> gan = DCGAN((1, 8, 8), channels=4, backend="numpyro")
            >>> type(gan.discriminator("pyro")).__name__, len(gan.discriminator("numpyro"))
            ('_ConvCritic', 2)
        """
        if backend == "numpyro":
            from ppgen import nn_jax

            return nn_jax.conv_critic(
                self.x_shape, (self.channels, 2 * self.channels), self.num_classes
            )
        if backend != "pyro":
            return None
        return _ConvCritic(self.x_shape, self.channels, self.num_classes)


class _ConvCritic(nn.Module):
    def __init__(self, x_shape: Sequence[int], channels: int, num_classes: int) -> None:
        super().__init__()
        c, h, w = x_shape
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(c, channels, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.out = nn.Linear(2 * channels * (h // 4) * (w // 4) + num_classes, 1)

    def forward(self, x: Tensor, *context: Tensor) -> Tensor:
        h = self.features(x)
        if self.num_classes and context:
            h = torch.cat([h, nn.functional.one_hot(context[0].long(), self.num_classes)], -1)
        return self.out(h.to(self.out.weight.dtype)).squeeze(-1)
