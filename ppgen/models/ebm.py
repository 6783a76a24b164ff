r"""Energy-based models: restricted Boltzmann machines and deep energy networks.

Each is a program whose observed site ``x`` is :class:`~ppgen.distributions.Unnormalized`:
:math:`\log p_\theta(x) = -E_\theta(x) - \log Z_\theta` with :math:`\log Z_\theta` unknown to
the program, so the site's ``log_prob`` is :math:`-E_\theta(x)`. The programs have no latent
sites: an RBM's hidden units are summed out in its *free energy* :math:`F(v)`, which is the
energy the program uses. Fit them with the contrastive estimators of :mod:`ppgen.inference`
(contrastive divergence, noise-contrastive estimation, score matching); the samplers use
:meth:`RBM.block_gibbs_step`. For an RBM, :mod:`ppgen.analysis.partition` computes
:math:`\log Z` (exactly by enumerating the smaller layer, or by annealed importance
sampling) and so true log-likelihoods, through :meth:`RBM.rbm_parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.distributions import Unnormalized
from ppgen.errors import DataError
from ppgen.models._cli import CLISpec

__all__ = ["RBM", "GaussianRBM", "EBM", "base_rate_bias"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int; got {value!r}.")
    return int(value)


def _positive_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    return out


def _nonneg_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if not (math.isfinite(out) and out >= 0):
        raise ValueError(f"`{name}` must be a non-negative finite number; got {value!r}.")
    return out


def base_rate_bias(mean: Any, eps: float = 1e-3) -> Tensor:
    r"""Visible biases :math:`b_i = \log\frac{p_i}{1 - p_i}` of the *base-rate* model, from the
    data's per-pixel mean :math:`p_i` clipped to :math:`[\epsilon, 1 - \epsilon]`.

    Hinton's practical guide (2010, sec. 8.1) initialises an RBM's visible biases so; the
    zero-weight RBM with these biases (the independent-pixel model matching the data's
    marginals) is the base distribution of annealed importance sampling
    (:func:`ppgen.analysis.partition.rbm_ais`).

    Arguments:
        mean: the per-unit mean of binary data, shape ``(V,)`` (tensor or array).
        eps: the clipping of the probabilities (a pixel never on gives
            :math:`\log\frac{\epsilon}{1-\epsilon}`, not :math:`-\infty`).

    Example:
        >>> base_rate_bias(torch.tensor([0.5, 0.0, 1.0])).round(decimals=3)
        tensor([ 0.0000, -6.9070,  6.9070])
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"`eps` must be in (0, 0.5); got {eps!r}.")
    p = torch.as_tensor(mean).detach().to(torch.get_default_dtype())
    if p.dim() != 1:
        raise DataError(
            f"`mean` must be a vector (V,) of per-unit means; got shape {tuple(p.shape)}."
        )
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


class _RBMBase(nn.Module):
    """What the Bernoulli and Gaussian RBMs share: parameters, checks, program, Gibbs sweep."""

    visible: str = "bernoulli"
    pyro_name: str = "rbm"

    def __init__(self, num_visible: int, num_hidden: int, init_std: float) -> None:
        super().__init__()
        self.num_visible = _positive_int("num_visible", num_visible)
        self.num_hidden = _positive_int("num_hidden", num_hidden)
        std = _nonneg_float("init_std", init_std)
        self.W = nn.Parameter(torch.randn(self.num_hidden, self.num_visible) * std)
        self.vbias = nn.Parameter(torch.zeros(self.num_visible))
        self.hbias = nn.Parameter(torch.zeros(self.num_hidden))

    def _check(self, name: str, value: Tensor, width: int) -> Tensor:
        if not isinstance(value, Tensor):
            value = torch.as_tensor(value, dtype=self.W.dtype)
        if value.dim() < 1 or value.shape[-1] != width:
            raise DataError(
                f"`{name}` must have last dimension {width} (this {type(self).__name__} has "
                f"num_{'visible' if name in ('x', 'v') else 'hidden'}={width}); got shape "
                f"{tuple(value.shape)}."
            )
        return value

    def hidden_given_visible(self, v: Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(h \\mid v)`: independent Bernoullis, batch ``(*v.shape[:-1], H)``."""
        v = self._check("v", v, self.num_visible)
        return torch.distributions.Bernoulli(logits=self._hidden_logits(v), validate_args=False)

    def _hidden_logits(self, v: Tensor) -> Tensor:
        p = self._parameters  # read directly: nn.Module's attribute lookup is the slow path
        W = p["W"]
        return F.linear(v if v.dtype == W.dtype else v.to(W.dtype), W, p["hbias"])

    def block_gibbs_step(self, x: Tensor) -> Tensor:
        r"""One block Gibbs sweep :math:`v \to h \sim p(h \mid v) \to v' \sim p(v \mid h)`.

        Draws from torch's global generator (``torch.manual_seed`` fixes it); returns
        :math:`v'` with the shape and dtype of ``x``. No gradients flow through it.
        """
        x = self._check("x", x, self.num_visible)
        with torch.no_grad():
            h = torch.bernoulli(torch.sigmoid(self._hidden_logits(x)))  # p(h | v)
            v = self.visible_given_hidden(h).sample()
        return v.to(x.dtype)

    def rbm_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """The tensors ``(W, vbias, hbias)``, shapes ``(H, V)``, ``(V,)``, ``(H,)``: what
        :mod:`ppgen.analysis.partition` computes :math:`\\log Z` from."""
        return self.W, self.vbias, self.hbias

    def model(self, x: Tensor | None = None, num_samples: int = 1) -> Any:
        """The program: ``x ~ Unnormalized(free energy)`` over the ``data`` plate."""
        pyro.module(self.pyro_name, self)
        if x is not None:
            x = self._check("x", x, self.num_visible)
            if x.dim() != 2:
                raise DataError(
                    f"`x` must be (N, {self.num_visible}) rows; got shape {tuple(x.shape)}."
                )
        n = x.shape[0] if x is not None else num_samples
        with pyro.plate("data", n):
            return pyro.sample("x", Unnormalized(self.energy, (self.num_visible,)), obs=x)


class RBM(_RBMBase):
    r"""A Bernoulli–Bernoulli restricted Boltzmann machine over binary vectors.

    .. math::
        E(v, h) = -b^\top v - c^\top h - h^\top W v, \qquad v \in \{0,1\}^V,\ h \in \{0,1\}^H,

    :math:`p(v, h) = e^{-E(v, h)} / Z`. Summing out :math:`h` gives the free energy, the
    program's energy (``log_prob`` of site ``x`` is :math:`-F(v)`):

    .. math:: F(v) = -b^\top v - \textstyle\sum_j \operatorname{softplus}(c_j + W_j v),
        \qquad \log p(v) = -F(v) - \log Z.

    The conditionals factorise: :math:`p(h_j = 1 \mid v) = \sigma(c_j + W_j v)`,
    :math:`p(v_i = 1 \mid h) = \sigma(b_i + h^\top W_{:, i})`.

    Arguments:
        num_visible: ``V``, the width of the data ``x`` (N, V) in {0, 1}.
        num_hidden: ``H``.
        init_std: weights start :math:`\mathcal N(0, \text{init\_std}^2)`; biases at 0 (see
            :meth:`init_visible_bias` for the data-based visible bias).

    Example:
        One visible and one hidden unit: :math:`F(v) = -bv - \log(1 + e^{c + wv})`.

        >>> rbm = RBM(1, 1)
        >>> with torch.no_grad():
        ...     _ = rbm.W.fill_(2.0), rbm.vbias.fill_(0.5), rbm.hbias.fill_(-1.0)
        >>> rbm.energy(torch.tensor([[0.0], [1.0]]))
        tensor([-0.3133, -1.8133], grad_fn=<SubBackward0>)
        >>> -0.5 - math.log(1 + math.exp(1.0))
        -1.8132616875182228
        >>> RBM(64, 16).hidden_given_visible(torch.zeros(5, 64)).probs.shape
        torch.Size([5, 16])
    """

    cli = (
        CLISpec(
            "rbm",
            "EBM",
            "digits_binary",
            "pcd",
            {"num_hidden": int},
            sizes={"num_visible": ("x", 1)},
            description="Bernoulli RBM, free energy",
        ),
    )

    visible = "bernoulli"
    pyro_name = "rbm"

    def __init__(self, num_visible: int = 64, num_hidden: int = 16, *, init_std: float = 0.01):
        super().__init__(num_visible, num_hidden, init_std)

    def energy(self, x: Tensor) -> Tensor:
        """The free energy :math:`F(x)` of each row, shape ``x.shape[:-1]``."""
        p = self._parameters  # read directly: nn.Module's attribute lookup is the slow path
        x, W = self._check("x", x, self.num_visible), p["W"]
        x = x if x.dtype == W.dtype else x.to(W.dtype)
        return -(x @ p["vbias"]) - F.softplus(F.linear(x, W, p["hbias"])).sum(-1)

    def block_gibbs_step(self, x: Tensor) -> Tensor:
        r"""One block Gibbs sweep :math:`v \to h \to v'` (Bernoulli units: two matrix products
        and two coin flips, drawn from torch's global generator)."""
        p = self._parameters
        x = self._check("x", x, self.num_visible)
        with torch.no_grad():
            h = torch.bernoulli(torch.sigmoid(self._hidden_logits(x)))
            v = torch.bernoulli(torch.sigmoid(F.linear(h, p["W"].T, p["vbias"])))
        return v if v.dtype == x.dtype else v.to(x.dtype)

    def visible_given_hidden(self, h: Tensor) -> torch.distributions.Bernoulli:
        """:math:`p(v \\mid h)`: independent Bernoullis, batch ``(*h.shape[:-1], V)``."""
        h = self._check("h", h, self.num_hidden).to(self.W.dtype)
        return torch.distributions.Bernoulli(logits=self.vbias + h @ self.W, validate_args=False)

    @torch.no_grad()
    def init_visible_bias(self, data_mean: Any, eps: float = 1e-3) -> RBM:
        r"""Set :math:`b_i = \log\frac{p_i}{1-p_i}` from the data's per-unit mean :math:`p_i`
        (clipped to :math:`[\epsilon, 1-\epsilon]`; Hinton's practical guide). Returns self.

        Example:
            >>> RBM(2, 1).init_visible_bias([0.5, 0.75]).vbias.detach().round(decimals=4)
            tensor([0.0000, 1.0986])
        """
        mean = torch.as_tensor(data_mean, dtype=self.W.dtype)
        if mean.shape != (self.num_visible,):
            raise DataError(
                f"`data_mean` must have shape ({self.num_visible},); got {tuple(mean.shape)}."
            )
        self.vbias.copy_(base_rate_bias(mean, eps).to(self.vbias.dtype))
        return self


class GaussianRBM(_RBMBase):
    r"""A Gaussian–Bernoulli RBM for real-valued (standardised) data, with fixed :math:`\sigma`.

    .. math::
        E(v, h) = \frac{\lVert v - b \rVert^2}{2\sigma^2} - c^\top h
            - \frac{h^\top W v}{\sigma^2}, \qquad v \in \mathbb R^V,\ h \in \{0,1\}^H.

    Conditionals: :math:`p(h_j = 1 \mid v) = \sigma(c_j + W_j v / \sigma^2)` and
    :math:`p(v \mid h) = \mathcal N(b + W^\top h, \sigma^2 I)`. The free energy (the program's
    energy) and the partition function, a sum over :math:`h` of Gaussian integrals:

    .. math::
        F(v) = \frac{\lVert v - b \rVert^2}{2\sigma^2}
            - \textstyle\sum_j \operatorname{softplus}(c_j + W_j v / \sigma^2),

        \log Z = \tfrac V2 \log(2\pi\sigma^2) + \log \textstyle\sum_h \exp\Big(c^\top h
            + \frac{\lVert b + W^\top h \rVert^2 - \lVert b \rVert^2}{2\sigma^2}\Big)

    (:func:`ppgen.analysis.partition.gaussian_rbm_log_partition_exact`).

    Arguments:
        num_visible: ``V``, the width of the data ``x`` (N, V).
        num_hidden: ``H``.
        sigma: the fixed visible standard deviation (1 for standardised data).
        init_std: weights start :math:`\mathcal N(0, \text{init\_std}^2)`; biases at 0.

    Example:
        With no hidden influence the model is :math:`\mathcal N(b, \sigma^2)`:

        >>> rbm = GaussianRBM(2, 3, sigma=2.0, init_std=0.0)
        >>> rbm.energy(torch.tensor([[2.0, 0.0]])) + 3 * math.log(2)
        tensor([0.5000], grad_fn=<AddBackward0>)
        >>> rbm.visible_given_hidden(torch.ones(4, 3)).stddev.shape
        torch.Size([4, 2])
    """

    visible = "gaussian"
    pyro_name = "gaussian_rbm"

    def __init__(
        self,
        num_visible: int,
        num_hidden: int = 16,
        *,
        sigma: float = 1.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(num_visible, num_hidden, init_std)
        self.sigma = _positive_float("sigma", sigma)

    def _hidden_logits(self, v: Tensor) -> Tensor:
        return self.hbias + (v.to(self.W.dtype) @ self.W.T) / self.sigma**2

    def energy(self, x: Tensor) -> Tensor:
        """The free energy :math:`F(x)` of each row, shape ``x.shape[:-1]``."""
        x = self._check("x", x, self.num_visible).to(self.W.dtype)
        quad = ((x - self.vbias) ** 2).sum(-1) / (2 * self.sigma**2)
        return quad - F.softplus(self._hidden_logits(x)).sum(-1)

    def visible_given_hidden(self, h: Tensor) -> torch.distributions.Normal:
        """:math:`p(v \\mid h) = \\mathcal N(b + W^\\top h, \\sigma^2)`, batch ``(..., V)``."""
        h = self._check("h", h, self.num_hidden).to(self.W.dtype)
        loc = self.vbias + h @ self.W
        return torch.distributions.Normal(
            loc, torch.full_like(loc, self.sigma), validate_args=False
        )


class EBM(nn.Module):
    r"""A deep energy network :math:`E_\theta(x)`: :math:`p_\theta(x) \propto e^{-E_\theta(x)}`.

    ``conv=False``: an MLP with SiLU activations over the flattened datum, widths
    ``hidden_features``, one output. ``conv=True`` (images ``(C, H, W)``): two stride-2 3x3
    convolutions with ``channels`` and ``2 * channels`` maps (SiLU), then a linear layer to one
    number. Any real-valued data; nothing bounds :math:`e^{-E}` to be integrable, so fit it
    with an estimator that keeps it so (score matching, NCE, or CD with a regulariser).

    Arguments:
        event_shape: the shape of one datum (an int for vectors; ``(C, H, W)`` with ``conv``).
        hidden_features: the MLP's widths (``conv=False``).
        conv: the convolutional energy for images.
        channels: the first convolution's channels (``conv=True``).

    Example:
        >>> EBM(2, hidden_features=(16,)).energy(torch.zeros(5, 2)).shape
        torch.Size([5])
        >>> EBM((1, 8, 8), conv=True, channels=4).energy(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3])
    """

    cli = (
        CLISpec(
            "ebm",
            "EBM",
            "ring8",
            "pcd",
            sizes={"event_shape": ("x", None)},
            description="deep energy network (MLP)",
        ),
    )

    pyro_name = "ebm"

    def __init__(
        self,
        event_shape: int | Sequence[int] = (2,),
        hidden_features: Sequence[int] = (64, 64),
        *,
        conv: bool = False,
        channels: int = 32,
    ) -> None:
        super().__init__()
        shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"`event_shape` must be positive ints; got {event_shape!r}.")
        self.event_shape = shape
        self.conv = bool(conv)
        self._width = shape[0] if len(shape) == 1 else -1  # the hot path's (B, D) input
        if self.conv:
            if len(shape) != 3:
                raise ValueError(f"`conv=True` needs `event_shape` (C, H, W); got {event_shape!r}.")
            ch = _positive_int("channels", channels)
            self.net = nn.Sequential(
                nn.Conv2d(shape[0], ch, 3, stride=2, padding=1),
                nn.SiLU(),
                nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1),
                nn.SiLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                width = self.net(torch.zeros(1, *shape)).shape[-1]
            self.net.append(nn.Linear(width, 1))
        else:
            widths = [_positive_int("hidden_features", w) for w in hidden_features]
            sizes = [math.prod(shape), *widths, 1]
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
                layers.append(nn.Linear(a, b))
                if i < len(sizes) - 2:
                    layers.append(nn.SiLU())
            self.net = nn.Sequential(*layers)
            # the network and its first layer's parameters, for the hot path (kept out of
            # nn.Module's registry, so no second name in the state dict, and read without
            # its attribute lookup)
            self.__dict__["_hot"] = (self.net, layers[0]._parameters)

    def energy(self, x: Tensor) -> Tensor:
        """:math:`E_\\theta(x)` of each datum, shape ``x.shape[:-len(event_shape)]``."""
        if not isinstance(x, Tensor):
            x = torch.as_tensor(x)
        net, first = self.__dict__.get("_hot", (None, None))
        # the hot path: an MLP over vectors (and still the module's own network)
        if x.dim() == 2 and x.shape[1] == self._width and net is self._modules["net"]:
            dtype = first["weight"].dtype
            return net(x if x.dtype == dtype else x.to(dtype)).reshape(-1)
        k = len(self.event_shape)
        if x.dim() < k or tuple(x.shape[x.dim() - k :]) != self.event_shape:
            raise DataError(
                f"`x` must end in the event shape {self.event_shape}; got shape {tuple(x.shape)}."
            )
        batch = x.shape[: x.dim() - k]
        param = next(self.parameters())
        flat = x.to(param.dtype).reshape(-1, *self.event_shape)
        if not self.conv:
            flat = flat.reshape(flat.shape[0], -1)
        return self.net(flat).reshape(batch)

    def model(self, x: Tensor | None = None, num_samples: int = 1) -> Any:
        """The program: ``x ~ Unnormalized(energy)`` over the ``data`` plate."""
        pyro.module(self.pyro_name, self)
        if x is not None and tuple(x.shape[1:]) != self.event_shape:
            raise DataError(
                f"`x` has datum shape {tuple(x.shape[1:])}; this EBM was built for "
                f"event_shape={self.event_shape}."
            )
        n = x.shape[0] if x is not None else num_samples
        with pyro.plate("data", n):
            return pyro.sample("x", Unnormalized(self.energy, self.event_shape), obs=x)
