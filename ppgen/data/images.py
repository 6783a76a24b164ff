"""Image preprocessing for density models: dequantisation, logit transform, bits per dimension."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "VariationalDequantizer",
    "bits_per_dim",
    "discrete_log_likelihood",
    "logit_transform",
    "sigmoid_transform",
    "uniform_dequantize",
]


def _check_levels(x: Tensor, num_bins: int) -> None:
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise ValueError(
            f"`x` must hold integer levels 0..{num_bins - 1}; got non-integer values "
            "(already dequantised data go through `dequantize=None`)."
        )
    if x.numel() and (x.min() < 0 or x.max() > num_bins - 1):
        raise ValueError(
            f"`x` must hold levels in 0..{num_bins - 1} for num_bins={num_bins}, got values "
            f"in [{x.min().item()}, {x.max().item()}]."
        )


def _cell(x: Tensor, u: Tensor, num_bins: int) -> Tensor:
    y = (x.to(u.dtype) + u) / num_bins
    # float rounding can carry 255 + 0.99999 up to 256: keep y strictly inside its cell
    upper = torch.nextafter((x.to(u.dtype) + 1) / num_bins, torch.zeros_like(y))
    return torch.minimum(y, upper)


def uniform_dequantize(x: Tensor, num_bins: int = 256) -> Tensor:
    r"""Uniform dequantisation :math:`y = (x + u) / K`, :math:`u \sim \mathcal{U}[0, 1)^D`.

    Each level :math:`k` maps into its own cell :math:`[k/K, (k+1)/K)`.

    References:
        A note on the evaluation of generative models (Theis et al., 2015), arXiv:1511.01844

    Arguments:
        x: Integer levels in ``0..num_bins-1`` (any dtype).
        num_bins: The number of levels ``K`` (256 for 8-bit images).

    Returns:
        Floating values in :math:`[0, 1)` with the shape of ``x``.

    Example:
        >>> y = uniform_dequantize(torch.tensor([0, 255]))
        >>> bool(((y * 256).floor() == torch.tensor([0.0, 255.0])).all())
        True
    """
    _check_levels(x, num_bins)
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    return _cell(x, torch.rand(x.shape, dtype=dtype, device=x.device), num_bins)


def logit_transform(y: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    r"""The logit preprocessing of Real NVP and its log-Jacobian per datum.

    .. math:: s = \alpha + (1 - 2\alpha) y, \quad z = \log s - \log(1 - s), \quad
        \log \left|\frac{dz}{dy}\right| = \sum_d \log(1 - 2\alpha) - \log s_d - \log(1 - s_d)

    References:
        Density estimation using Real NVP (Dinh et al., 2016), arXiv:1605.08803

    Arguments:
        y: Values in :math:`[0, 1]`, shape ``(N, ...)``.
        alpha: The squeeze away from 0 and 1.

    Returns:
        ``z`` with the shape of ``y``, and the log-Jacobian of shape ``(N,)``.

    Example:
        >>> z, ladj = logit_transform(torch.full((2, 3), 0.5))
        >>> z.abs().max().item(), ladj.shape
        (0.0, torch.Size([2]))
    """
    s = alpha + (1 - 2 * alpha) * y
    z = torch.log(s) - torch.log1p(-s)
    ladj = math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)
    return z, ladj.reshape(y.shape[0], -1).sum(-1)


def sigmoid_transform(z: Tensor, alpha: float = 0.05) -> Tensor:
    """The inverse of :func:`logit_transform`, from model space back to :math:`[0, 1]`."""
    return ((torch.sigmoid(z) - alpha) / (1 - 2 * alpha)).clamp(0, 1)


class VariationalDequantizer(nn.Module):
    r"""Variational dequantisation: a flow :math:`q(u \mid x)` on :math:`(0, 1)^D`.

    .. math:: u = \sigma(v), \quad v \sim q_\phi(v \mid x), \quad
        \log q(u \mid x) = \log q_\phi(v \mid x) - \sum_d \log \sigma(v_d) \sigma(-v_d)

    :math:`q_\phi` is a conditional flow from :func:`ppgen.flows.build_flow` with context
    :math:`x / (K - 1)`. Training it jointly with the model tightens the bound on
    :math:`\log P(x)`.

    References:
        Flow++ (Ho et al., 2019), arXiv:1902.00275

    Arguments:
        features: The number of dimensions ``D`` of one datum (flattened).
        num_bins: The number of levels ``K``.
        kind: The flow family for :math:`q_\phi`.
        kwargs: Passed to :func:`~ppgen.flows.build_flow`.

    Example:
        >>> deq = VariationalDequantizer(4, hidden_features=8)
        >>> y, log_q = deq(torch.randint(0, 256, (3, 4)))
        >>> y.shape, log_q.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    def __init__(self, features: int, num_bins: int = 256, kind: str = "realnvp", **kwargs):
        super().__init__()
        from ppgen.flows import build_flow

        self.num_bins = num_bins
        self.flow = build_flow(kind, features, context_features=features, **kwargs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns :math:`y = (x + u) / K` and :math:`\\log q(u \\mid x)` per datum."""
        _check_levels(x, self.num_bins)
        flat = x.reshape(x.shape[0], -1).to(torch.get_default_dtype())
        v, log_q = self.flow(flat / (self.num_bins - 1)).rsample_and_log_prob()
        log_q = log_q - (F.logsigmoid(v) + F.logsigmoid(-v)).sum(-1)
        return _cell(flat, torch.sigmoid(v), self.num_bins).reshape(x.shape), log_q


def discrete_log_likelihood(
    log_prob: Callable[[Tensor], Tensor],
    x: Tensor,
    num_bins: int = 256,
    dequantize: Literal["uniform"] | VariationalDequantizer | None = None,
    logit: float | None = None,
) -> Tensor:
    r"""A lower bound on :math:`\log P(x)` of discrete data under a continuous density.

    .. math:: \log P(x) \ge \mathbb{E}_{q(u \mid x)}\left[\log p(g(y)) +
        \log |g'(y)| - \log q(u \mid x)\right] - D \log K, \quad y = \frac{x + u}{K}

    where :math:`g` is the identity, or :func:`logit_transform` when ``logit`` is given, and
    :math:`\log q = 0` for uniform dequantisation. One sample of :math:`u` per datum.

    Arguments:
        log_prob: The model's log density in its own space (after :math:`g`), per datum.
        x: Levels in ``0..num_bins-1``, shape ``(N, ...)``; or, with ``dequantize=None``,
            already dequantised values :math:`y \in [0, 1)`.
        num_bins: The number of levels ``K``.
        dequantize: ``"uniform"``, a :class:`VariationalDequantizer`, or ``None``.
        logit: The ``alpha`` of the logit preprocessing, or ``None`` for a model on
            :math:`[0, 1]`.

    Returns:
        The bound in nats, shape ``(N,)``.

    Example:
        >>> x = torch.randint(0, 256, (5, 3))
        >>> discrete_log_likelihood(lambda y: torch.zeros(len(y)), x, dequantize="uniform")
        tensor([-16.6355, -16.6355, -16.6355, -16.6355, -16.6355])
    """
    log_q = x.new_zeros(x.shape[0], dtype=torch.get_default_dtype())
    if dequantize is None:
        if not x.is_floating_point() or torch.equal(x, x.round()):
            raise ValueError(
                f"`dequantize` is required for discrete `x` (dtype {x.dtype}, integer values): "
                "a density gives probability zero to a set of points. Pass "
                "dequantize='uniform' or a VariationalDequantizer."
            )
        if x.min() < 0 or x.max() > 1:
            raise ValueError(
                "`x` must lie in [0, 1] when `dequantize=None` (dequantised data), got values "
                f"in [{x.min().item()}, {x.max().item()}]."
            )
        y = x
    elif isinstance(dequantize, VariationalDequantizer):
        y, log_q = dequantize(x)
    elif dequantize == "uniform":
        y = uniform_dequantize(x, num_bins)
    else:
        raise ValueError(
            f"`dequantize` must be 'uniform', a VariationalDequantizer or None, got {dequantize!r}."
        )
    ladj = torch.zeros_like(log_q)
    if logit is not None:
        y, ladj = logit_transform(y, logit)
    dims = x[0].numel()
    return log_prob(y) + ladj - log_q - dims * math.log(num_bins)


def bits_per_dim(
    log_prob: Callable[[Tensor], Tensor],
    x: Tensor,
    num_bins: int = 256,
    dequantize: Literal["uniform"] | VariationalDequantizer | None = None,
    logit: float | None = None,
) -> Tensor:
    r"""Bits per dimension on the original discrete scale (an upper bound for dequantisation).

    .. math:: \text{bpd} = -\frac{\log P(x)}{D \log 2}

    with :math:`\log P(x)` from :func:`discrete_log_likelihood`, whose arguments it takes; all
    preprocessing Jacobians are accounted for, so a uniform model on 8-bit data scores 8.

    Returns:
        The mean over the batch (a 0-d tensor).

    Example:
        >>> x = torch.randint(0, 256, (5, 3))
        >>> bits_per_dim(lambda y: torch.zeros(len(y)), x, dequantize="uniform")
        tensor(8.)
    """
    nll = -discrete_log_likelihood(log_prob, x, num_bins, dequantize, logit)
    return nll.mean() / (x[0].numel() * math.log(2))
