r"""The adversarial losses, written once for torch and JAX.

A discriminator (critic) returns one real number per sample, :math:`d = D(x)`: a logit for
the classifier losses, a score for the others. With :math:`d_r = D(x_\text{data})`,
:math:`d_f = D(G(z))` and :math:`\operatorname{sp}(a) = \log(1 + e^a)` (softplus):

- ``minimax``: D minimises :math:`E[\operatorname{sp}(-d_r)] + E[\operatorname{sp}(d_f)]`;
  G minimises :math:`-E[\operatorname{sp}(d_f)] = E[\log(1 - D)]`.
- ``ns`` (non-saturating): D as minimax; G minimises
  :math:`E[\operatorname{sp}(-d_f)] = -E[\log D]`.
- ``wgan-gp``: D minimises :math:`E[d_f] - E[d_r] + \lambda\,\mathrm{GP}`; G minimises
  :math:`-E[d_f]`.
- ``hinge``: D minimises :math:`E[\max(0, 1 - d_r)] + E[\max(0, 1 + d_f)]`; G minimises
  :math:`-E[d_f]`.
- ``lsgan``: D minimises :math:`\tfrac12 E[(d_r - 1)^2] + \tfrac12 E[d_f^2]`; G minimises
  :math:`\tfrac12 E[(d_f - 1)^2]`.

The gradient penalty is :math:`\mathrm{GP} = E[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 -
1)^2]` at :math:`\hat x = \epsilon x_\text{data} + (1 - \epsilon) G(z)`,
:math:`\epsilon \sim U(0, 1)` per sample.

References:
    Goodfellow et al., Generative Adversarial Nets, arXiv:1406.2661 (minimax, ns).
    Gulrajani et al., Improved Training of Wasserstein GANs, arXiv:1704.00028 (wgan-gp).
    Lim & Ye, Geometric GAN, arXiv:1705.02894; Miyato et al., arXiv:1802.05957 (hinge).
    Mao et al., Least Squares Generative Adversarial Networks, arXiv:1611.04076 (lsgan).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ppgen.errors import EstimatorError

__all__ = ["LOSSES", "check_loss", "discriminator_loss", "generator_loss", "array_ops"]

#: the adversarial losses, by name
LOSSES = ("minimax", "ns", "wgan-gp", "hinge", "lsgan")


def check_loss(loss: Any) -> str:
    """``loss`` as a known name, or an :class:`EstimatorError` listing the valid ones."""
    if not isinstance(loss, str) or loss.lower() not in LOSSES:
        raise EstimatorError(f"Unknown `loss={loss!r}`. Valid losses: {list(LOSSES)}.")
    return loss.lower()


def array_ops(backend: str) -> SimpleNamespace:
    """``softplus``/``relu`` of the backend's array library (``"pyro"``: torch, else JAX)."""
    if backend == "pyro":
        import torch.nn.functional as F

        return SimpleNamespace(softplus=F.softplus, relu=F.relu)
    import jax

    return SimpleNamespace(softplus=jax.nn.softplus, relu=jax.nn.relu)


def discriminator_loss(loss: str, d_real: Any, d_fake: Any, ops: SimpleNamespace) -> Any:
    """The discriminator's loss (without the gradient penalty) at outputs ``d_real``/``d_fake``.

    Example:
        >>> import torch
        >>> ops = array_ops("pyro")
        >>> dr, df = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0])
        >>> round(float(discriminator_loss("hinge", dr, df, ops)), 4)  # (1 + 0)/2 + (0 + 2)/2
        1.5
    """
    if loss in ("minimax", "ns"):
        return ops.softplus(-d_real).mean() + ops.softplus(d_fake).mean()
    if loss == "wgan-gp":
        return d_fake.mean() - d_real.mean()
    if loss == "hinge":
        return ops.relu(1.0 - d_real).mean() + ops.relu(1.0 + d_fake).mean()
    return 0.5 * ((d_real - 1.0) ** 2).mean() + 0.5 * (d_fake**2).mean()


def generator_loss(loss: str, d_fake: Any, ops: SimpleNamespace) -> Any:
    """The generator's loss at the discriminator's outputs ``d_fake`` on generated samples.

    Example:
        >>> import torch
        >>> ops = array_ops("pyro")
        >>> round(float(generator_loss("ns", torch.tensor([0.0]), ops)), 4)  # -log(1/2)
        0.6931
    """
    if loss == "minimax":
        return -ops.softplus(d_fake).mean()
    if loss == "ns":
        return ops.softplus(-d_fake).mean()
    if loss == "lsgan":
        return 0.5 * ((d_fake - 1.0) ** 2).mean()
    return -d_fake.mean()
