"""Shared networks: the MLP, posterior heads and module registration that models and guides use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Literal, get_args

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ppgen.flows.builders import build_flow
from ppgen.flows.posterior import FlowPosterior

__all__ = [
    "MLP",
    "Critic",
    "PosteriorHead",
    "Family",
    "mlp_layers",
    "register_module",
    "modules_registered",
    "PairCritic",
]

Family = Literal["normal", "lowrank", "mvn", "flow"]


_STATE = threading.local()


def register_module(name: str, module: torch.nn.Module) -> torch.nn.Module:
    """``pyro.module(name, module)``, skipped inside :func:`modules_registered`.

    An SVI engine registers every parameter once and optimises them itself, so re-running
    ``pyro.module`` (a param-store round trip per tensor) on each step is pure overhead.

    Example:
        >>> register_module("net", torch.nn.Linear(2, 2)).weight.shape
        torch.Size([2, 2])
    """
    if getattr(_STATE, "skip_modules", False):
        return module
    return pyro.module(name, module)


@contextlib.contextmanager
def modules_registered() -> Iterator[None]:
    """Within: every module's parameters are already in Pyro's param store (an engine's step).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> with modules_registered():
        ...     _ = register_module("unseen", net)
        >>> "unseen$$$weight" in pyro.get_param_store()
        False
    """
    before = getattr(_STATE, "skip_modules", False)
    _STATE.skip_modules = True
    try:
        yield
    finally:
        _STATE.skip_modules = before


def mlp_layers(sizes: Sequence[int], act: nn.Module | None = None) -> nn.Sequential:
    """``Linear`` layers through ``sizes`` with ``act`` (default ReLU) between, none after.

    Example:
        >>> mlp_layers([3, 8, 2])
        Sequential(
          (0): Linear(in_features=3, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    act = nn.ReLU() if act is None else act
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act)
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """Concatenates its inputs on the last axis, then ``Linear -> ReLU`` layers.

    Leading axes are batch axes (data, particles); the output is ``out_features`` wide.

    Example:
        >>> MLP(5, (8, 4))(torch.zeros(3, 5)).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_features: int, hidden_features: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden_features:
            layers += [nn.Linear(in_features, h), nn.ReLU()]
            in_features = h
        self.net = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, *xs: Tensor) -> Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, -1)
        return self.net(x)


class Critic(nn.Module):
    """A discriminator: flattened datum and covariates -> ``Linear -> LeakyReLU(0.2)`` -> 1 number.

    ``forward(x, *context)`` flattens ``x`` after its first (datum) axis and appends each
    covariate, one-hot encoded where ``num_classes`` gives its number of classes (integer
    labels), flattened otherwise. Returns shape ``(batch,)``.

    Example:
        >>> c = Critic(2 + 3, (8,), num_classes=(3,))
        >>> c(torch.zeros(4, 2), torch.tensor([0, 1, 2, 1])).shape
        torch.Size([4])
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (128, 128),
        num_classes: Sequence[int | None] = (),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden_features:
            layers += [nn.Linear(in_features, h), nn.LeakyReLU(0.2)]
            in_features = h
        layers.append(nn.Linear(in_features, 1))
        self.net = nn.Sequential(*layers)
        self.num_classes = tuple(num_classes)

    def _inputs(self, x: Tensor, context: tuple[Tensor, ...]) -> Tensor:
        n = x.shape[0]
        parts = [x.reshape(n, -1)]
        for c, k in zip(context, self.num_classes, strict=False):
            if k:
                parts.append(F.one_hot(c.long().reshape(n), k).to(x.dtype))
            else:
                parts.append(c.reshape(n, -1).to(x.dtype))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def forward(self, x: Tensor, *context: Tensor) -> Tensor:
        return self.net(self._inputs(x, context)).squeeze(-1)

    def features(self, x: Tensor, *context: Tensor) -> Tensor:
        """The last hidden layer's activations, ``(batch, hidden_features[-1])``: what VAE-GAN
        compares data and reconstructions by (Larsen et al. 2016)."""
        return self.net[:-1](self._inputs(x, context))


class PairCritic(nn.Module):
    r"""A discriminator on (x, z) pairs with BigBiGAN's unary terms: three scores per pair.

    ``forward(x, *zs, *context)`` returns ``(batch, 3)``: :math:`s_x(x)`, :math:`s_z(z)` and
    :math:`s_{xz}(x, z)`, three :class:`Critic` MLPs of widths ``hidden_features`` on the
    flattened datum, the codes, and both side by side; each also sees the covariates
    ``context`` (``context_features`` numbers in all, integer labels one-hot by
    ``num_classes`` as for :class:`Critic`). :class:`~ppgen.inference.ALI` trains
    each column by the loss and averages them (Donahue & Simonyan 2019): the :math:`s_x` term
    is a plain GAN's critic on the data alone, so the generator also gets the sharper signal
    of a marginal discriminator, and :math:`s_z` matches the encoder's aggregate codes to the
    prior, while :math:`s_{xz}` keeps ALI's joint match. ``ALI(unary=True)`` builds one.

    Example:
        >>> c = PairCritic(4, 2, (8,))
        >>> c(torch.zeros(5, 4), torch.zeros(5, 2)).shape
        torch.Size([5, 3])

    References:
        Donahue & Simonyan, Large Scale Adversarial Representation Learning, arXiv:1907.02544.
    """

    def __init__(
        self,
        x_features: int,
        z_features: int,
        hidden_features: Sequence[int] = (128, 128),
        num_latents: int = 1,
        context_features: int = 0,
        num_classes: Sequence[int | None] = (),
    ) -> None:
        super().__init__()
        c, k = context_features, list(num_classes)
        self.num_latents = num_latents
        self.x = Critic(x_features + c, hidden_features, k)
        self.z = Critic(z_features + c, hidden_features, [None] * (num_latents - 1) + k)
        self.xz = Critic(x_features + z_features + c, hidden_features, [None] * num_latents + k)

    def forward(self, x: Tensor, *rest: Tensor) -> Tensor:
        zs, context = rest[: self.num_latents], rest[self.num_latents :]
        return torch.stack([self.x(x, *context), self.z(*zs, *context), self.xz(x, *rest)], -1)


class PosteriorHead(nn.Module):
    r"""Encoder features :math:`h` to a posterior :math:`q(z \mid x)` over ``features`` dims.

    ``normal``: :math:`\mathcal N(\mu(h), \mathrm{diag}\,\sigma^2(h))`; ``lowrank``:
    covariance :math:`W W^\top + \mathrm{diag}\,d` of rank ``rank``; ``mvn``: full Cholesky
    factor; ``flow``: the diagonal Normal pushed through a conditional normalizing flow from
    :func:`ppgen.flows.build_flow` with context :math:`h` (IAF by default, the amortised flow
    posterior of Kingma et al.; the flow starts near the identity, so training starts from
    the diagonal posterior).
    The distribution has batch shape ``h.shape[:-1]`` and event shape ``(features,)``.

    References:
        Kingma & Welling, Auto-Encoding Variational Bayes, arXiv:1312.6114.
        Kingma et al., Improved Variational Inference with Inverse Autoregressive Flow,
        arXiv:1606.04934.

    Arguments:
        in_features: width of the encoder features.
        features: latent dimension ``D``.
        family: ``"normal"``, ``"lowrank"``, ``"mvn"`` or ``"flow"``.
        rank: rank of the ``lowrank`` covariance factor.
        flow: flow kind for ``family="flow"`` (``"iaf"``, ``"maf"``, ``"nsf"``, ...).
        flow_hidden_features / num_transforms: size of the flow.

    Example:
        >>> head = PosteriorHead(8, 3, "lowrank")
        >>> q = head(torch.randn(5, 8))
        >>> q.batch_shape, q.event_shape
        (torch.Size([5]), torch.Size([3]))
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        family: Family = "normal",
        *,
        rank: int = 2,
        flow: str = "iaf",
        flow_hidden_features: int = 64,
        num_transforms: int | None = None,
    ):
        super().__init__()
        if family not in get_args(Family):
            raise ValueError(f"`family` must be one of {get_args(Family)}; got {family!r}.")
        self.family, self.features, self.rank = family, features, rank
        d = features
        if family == "normal":
            self.linear = nn.Linear(in_features, 2 * d)
        elif family == "lowrank":
            self.linear = nn.Linear(in_features, 2 * d + d * rank)
        elif family == "mvn":
            self.linear = nn.Linear(in_features, d + d * (d + 1) // 2)
            self.register_buffer("_tril", torch.tril_indices(d, d), persistent=False)
        else:
            self.linear = nn.Linear(in_features, 2 * d)
            self.flow = build_flow(
                flow,
                d,
                context_features=in_features,
                hidden_features=flow_hidden_features,
                num_transforms=num_transforms,
            )
            for m in self.flow.modules():  # start at the identity: q = the diagonal Normal
                last = getattr(m, "final_layer", None)
                if isinstance(last, nn.Linear):
                    nn.init.zeros_(last.weight)
                    nn.init.zeros_(last.bias)

    def forward(self, h: Tensor) -> dist.TorchDistribution:
        d = self.features
        out = self.linear(h)
        loc = out[..., :d]
        if self.family == "normal":
            return dist.Normal(loc, F.softplus(out[..., d:]) + 1e-4).to_event(1)
        if self.family == "flow":
            return FlowPosterior(loc, F.softplus(out[..., d:]) + 1e-4, self.flow, h)
        if self.family == "lowrank":
            diag = F.softplus(out[..., d : 2 * d]) + 1e-4
            factor = out[..., 2 * d :].reshape(*out.shape[:-1], d, self.rank)
            return dist.LowRankMultivariateNormal(loc, factor, diag)
        tril = out.new_zeros(*out.shape[:-1], d, d)
        tril[..., self._tril[0], self._tril[1]] = out[..., d:]
        diag = F.softplus(tril.diagonal(dim1=-2, dim2=-1)) + 1e-4
        tril = tril.tril(-1) + torch.diag_embed(diag)
        return dist.MultivariateNormal(loc, scale_tril=tril)
