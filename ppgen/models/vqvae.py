"""VQ-VAE: a discrete codebook bottleneck with straight-through gradients, as a program."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import pyro
import torch
from torch import Tensor, nn

from ppgen.errors import DataError
from ppgen.models.vae import VAE, Likelihood
from ppgen.nn import MLP, register_module

__all__ = ["VQVAE", "VectorQuantizer"]


class VectorQuantizer(nn.Module):
    r"""Nearest-codebook quantisation with the straight-through estimator.

    .. math:: k = \arg\min_j \|z_e - e_j\|, \quad z_q = z_e + \mathrm{sg}(e_k - z_e),
        \quad \mathcal L_{vq} = \|\mathrm{sg}(z_e) - e_k\|^2 + \beta \|z_e - \mathrm{sg}(e_k)\|^2

    The forward value is the code vector :math:`e_k`; the gradient of :math:`z_q` passes to
    :math:`z_e` unchanged, the codebook learns from the first loss term and the encoder is
    committed to its codes by the second.

    References:
        van den Oord, Vinyals & Kavukcuoglu, Neural Discrete Representation Learning,
        arXiv:1711.00937.

    Example:
        >>> vq = VectorQuantizer(8, 3)
        >>> zq, codes, loss = vq(torch.randn(5, 2, 3))
        >>> zq.shape, codes.shape, loss.shape
        (torch.Size([5, 2, 3]), torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25):
        super().__init__()
        self.codebook = nn.Parameter(torch.empty(num_codes, code_dim).uniform_(-1, 1) / num_codes)
        self.beta = beta

    def codes(self, z_e: Tensor) -> Tensor:
        """Index of the nearest code of each vector in ``z_e`` (``(..., d)`` to ``(...)``)."""
        flat = z_e.reshape(-1, z_e.shape[-1])
        d = (flat * flat).sum(-1, keepdim=True) - 2 * flat @ self.codebook.T
        d = d + (self.codebook * self.codebook).sum(-1)
        return d.argmin(-1).reshape(z_e.shape[:-1])

    def forward(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        codes = self.codes(z_e)
        e = self.codebook[codes]
        commit = ((z_e - e.detach()) ** 2).flatten(1).sum(-1)
        codebook = ((z_e.detach() - e) ** 2).flatten(1).sum(-1)
        z_q = z_e + (e - z_e).detach()
        return z_q, codes, codebook + self.beta * commit


class VQVAE(nn.Module):
    r"""VQ-VAE on vectors or images: ``num_latents`` code vectors per datum from ``num_codes``.

    .. math:: \log p_\theta(x \mid z_q(x)) - \|\mathrm{sg}(z_e) - e\|^2
        - \beta \|z_e - \mathrm{sg}(e)\|^2

    The program observes ``x`` given the quantised code vectors and adds the codebook and
    commitment terms with ``pyro.factor`` per datum (so minibatch scaling applies); the
    posterior over codes is a point mass, so there is no latent sample site: the guide only
    registers the networks, and SVI (e.g. ``FastSVI``) maximises the likelihood exactly as
    ``"mle"`` would, with saved runs that reload. The codes are a
    deterministic site ``codes`` ``(N, num_latents)`` and :meth:`encode_codes` /
    :meth:`decode_codes` export and import them (e.g. for a prior fitted on the codes).

    References:
        van den Oord, Vinyals & Kavukcuoglu, Neural Discrete Representation Learning,
        arXiv:1711.00937.

    Arguments:
        x_dim / x_shape: data dimension or shape.
        num_codes: codebook size ``K``; code_dim: size of each code vector.
        num_latents: code vectors per datum.
        likelihood: as :class:`~ppgen.models.vae.VAE`.
        beta: commitment weight.

    Example:
        >>> import numpy as np, ppgen
        >>> x = (np.random.default_rng(0).random((16, 6)) > 0.5).astype(float)
        >>> vq = VQVAE(6, num_codes=4, code_dim=2, num_latents=3, hidden_features=(8,))
        >>> fit = ppgen.fit(vq, {"x": x}, ppgen.inference.SVI(steps=3, lr=1e-3))
        >>> vq.encode_codes(torch.tensor(x)).shape
        torch.Size([16, 3])
    """

    backend: ClassVar[str] = "pyro"

    def __init__(
        self,
        x_dim: int = 64,
        *,
        num_codes: int = 32,
        code_dim: int = 8,
        num_latents: int = 4,
        hidden_features: Sequence[int] = (256, 256),
        likelihood: Likelihood = "bernoulli",
        beta: float = 0.25,
        x_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        self.x_shape = tuple(x_shape) if x_shape is not None else (int(x_dim),)
        self.x_dim = int(math.prod(self.x_shape))
        self.num_latents, self.code_dim, self.num_codes = num_latents, code_dim, num_codes
        body = MLP(self.x_dim, hidden_features)
        self.encoder = nn.Sequential(body, nn.Linear(body.out_features, num_latents * code_dim))
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta)
        # the observation model of a VAE whose "z" is the flattened code vectors
        self.obs = VAE(
            z_dim=num_latents * code_dim,
            hidden_features=hidden_features,
            likelihood=likelihood,
            x_shape=self.x_shape,
        )
        del self.obs.encoder, self.obs.head

    def z_e(self, x: Tensor) -> Tensor:
        """Encoder outputs ``(N, num_latents, code_dim)`` before quantisation."""
        h = x.reshape(x.shape[0], -1).to(self.quantizer.codebook.dtype)
        if self.obs.likelihood == "categorical":
            h = h / 255.0
        return self.encoder(h).reshape(x.shape[0], self.num_latents, self.code_dim)

    def model(self, x: Tensor) -> Tensor:
        self.obs.check_x(x)
        register_module("vqvae", self)
        z_q, codes, vq_loss = self.quantizer(self.z_e(x))
        with pyro.plate("data", x.shape[0]):
            pyro.deterministic("codes", codes.to(z_q.dtype), event_dim=1)
            pyro.factor("vq_loss", -vq_loss)
            return pyro.sample("x", self.obs.decode(z_q.flatten(1)), obs=x)

    def guide(self, x: Tensor) -> None:
        """No latent sample sites (codes are deterministic); registers the parameters."""
        register_module("vqvae", self)

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        """Integer codes ``(N, num_latents)`` of data ``x``."""
        if tuple(x.shape[1:]) != self.x_shape:
            raise DataError(f"`x` must have shape (N, {self.x_shape}); got {tuple(x.shape)}.")
        return self.quantizer.codes(self.z_e(x))

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """Mean reconstruction from integer ``codes`` ``(N, num_latents)``."""
        if codes.dim() != 2 or codes.shape[1] != self.num_latents:
            raise DataError(
                f"`codes` must have shape (N, {self.num_latents}); got {tuple(codes.shape)}."
            )
        if (codes < 0).any() or (codes >= self.num_codes).any():
            raise DataError(f"`codes` must lie in 0..{self.num_codes - 1}.")
        e = self.quantizer.codebook[codes]
        return self.obs.mean(self.obs.decode(e.flatten(1)))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> Tensor:
        """Decodes ``n`` uniformly random code sets (the VQ-VAE's uniform prior)."""
        dev = self.quantizer.codebook.device
        return self.decode_codes(
            torch.randint(0, self.num_codes, (n, self.num_latents), device=dev)
        )
