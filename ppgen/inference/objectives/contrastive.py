r"""The contrastive objectives for energy models, :math:`p_\theta(x) = e^{-E_\theta(x)} / Z_\theta`.

All are losses to minimise, averaged over the batch, written once over an array namespace
(``ops``: torch or JAX, :func:`array_ops`):

- **Contrastive divergence** (Hinton 2002; PCD: Tieleman 2008): with negatives
  :math:`x^-` from a sampler of :math:`p_\theta`,
  :math:`L = \overline{E(x)} - \overline{E(x^-)} + \alpha\,(\overline{E(x)^2} +
  \overline{E(x^-)^2})`, whose gradient (the negatives held fixed) is the maximum-likelihood
  gradient when :math:`x^- \sim p_\theta`; :math:`\alpha` is Du & Mordatch's (2019) energy
  magnitude regulariser.
- **Noise-contrastive estimation** (Gutmann & Hyvärinen 2010): with :math:`\nu` noise draws
  :math:`y \sim q` per datum and :math:`G(u) = \log p_\theta(u) - \log q(u) - \log\nu`,
  :math:`\log p_\theta = -E - c` with the log-normaliser :math:`c` a free parameter,
  :math:`L = \overline{\operatorname{sp}(-G(x))} + \nu\,\overline{\operatorname{sp}(G(y))}`
  (:math:`\operatorname{sp}` the softplus). At the optimum :math:`c = \log Z`.
- **Score matching**, with the model score :math:`s_\theta(x) = -\nabla_x E_\theta(x)`:
  exact (Hyvärinen 2005) :math:`\tfrac12\lVert s\rVert^2 + \operatorname{tr}\nabla_x s`;
  denoising (Vincent 2011) :math:`\tfrac12 \lVert s(\tilde x) + \epsilon / \sigma \rVert^2`
  at :math:`\tilde x = x + \sigma\epsilon` (which fits the score of the data blurred by
  :math:`\sigma`); sliced with variance reduction (Song et al. 2019)
  :math:`v^\top \nabla_x (v^\top s) + \tfrac12\lVert s\rVert^2`, :math:`v \sim N(0, I)`.
  These take the score and its derivatives from the backend (:func:`torch_score_losses`,
  JAX in the NumPyro engine); the combinations of terms are here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ppgen.errors import EstimatorError

__all__ = [
    "SCORE_KINDS",
    "check_score_kind",
    "cd_loss",
    "nce_loss",
    "torch_score_loss",
]

#: the score-matching variants, by name
SCORE_KINDS = ("exact", "denoising", "sliced")


def check_score_kind(kind: Any) -> str:
    """``kind`` as a known score-matching variant, or an error listing them."""
    if not isinstance(kind, str) or kind.lower() not in SCORE_KINDS:
        raise EstimatorError(f"Unknown score matching `kind={kind!r}`; valid: {list(SCORE_KINDS)}.")
    return kind.lower()


def cd_loss(
    e_data: Any, e_neg: Any, alpha: float = 0.0, means: tuple[Any, Any] | None = None
) -> Any:
    """Contrastive divergence's surrogate loss from the energies of data and negatives
    (``means``: their means, when the caller has them already).

    Example: the loss is the energy gap (plus the regulariser).

        >>> round(cd_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]), alpha=0.1).item(), 4)
        2.05
    """
    mean_data, mean_neg = means if means is not None else (e_data.mean(), e_neg.mean())
    loss = mean_data - mean_neg
    if alpha:
        loss = loss + alpha * ((e_data**2).mean() + (e_neg**2).mean())
    return loss


def nce_loss(g_data: Any, g_noise: Any, nu: float, softplus: Callable[[Any], Any]) -> Any:
    """NCE's logistic loss from the log-ratios ``G`` at the data and at the noise draws.

    ``g_noise`` holds the ``nu * B`` noise draws' log-ratios; the loss is per datum.

    Example: a model equal to the noise (``G = -log nu``) scores ``sp(log nu) + nu sp(-log
    nu)`` — ``2 log 2`` for ``nu = 1``.

        >>> import torch.nn.functional as F
        >>> round(nce_loss(torch.zeros(4), torch.zeros(4), 1.0, F.softplus).item(), 4)
        1.3863
    """
    return softplus(-g_data).mean() + nu * softplus(g_noise).mean()


def torch_score_loss(
    kind: str,
    energy: Callable[[Any], Any],
    x: Any,
    *,
    sigma: float = 0.1,
    num_projections: int = 1,
) -> Any:
    r"""The score-matching loss of an energy ``energy(x) -> (N,)`` at data ``x`` (torch).

    Differentiable in the energy's parameters (``create_graph``). ``exact`` takes one
    backward pass per data dimension for the Hessian's trace (fine for small D; use
    ``sliced`` or ``denoising`` beyond); ``sliced`` averages ``num_projections``
    Gaussian projections per datum.

    Example: for :math:`E = \tfrac12 x^2` (a standard normal, :math:`s = -x`), the exact
    objective is :math:`E[\tfrac12 x^2] - 1`.

        >>> x = torch.tensor([[1.0], [3.0]])
        >>> torch_score_loss("exact", lambda v: 0.5 * (v**2).sum(-1), x).item()
        1.5
    """
    import torch

    flat_dims = tuple(range(1, x.dim()))
    if kind == "denoising":
        eps = torch.randn_like(x)
        xt = (x + sigma * eps).requires_grad_(True)
        (g,) = torch.autograd.grad(energy(xt).sum(), xt, create_graph=True)
        return 0.5 * ((-g + eps / sigma) ** 2).sum(flat_dims).mean()
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
    s = -g
    half_norm = 0.5 * (s**2).sum(flat_dims)
    if kind == "sliced":
        total = 0.0
        for _ in range(num_projections):
            v = torch.randn_like(x)
            (hv,) = torch.autograd.grad((s * v).sum(), x, create_graph=True)
            total = total + (hv * v).sum(flat_dims)
        return (total / num_projections + half_norm).mean()
    flat_s = s.reshape(s.shape[0], -1)
    trace = 0.0
    for i in range(flat_s.shape[1]):
        (gi,) = torch.autograd.grad(flat_s[:, i].sum(), x, create_graph=True)
        trace = trace + gi.reshape(gi.shape[0], -1)[:, i]
    return (trace + half_norm).mean()
