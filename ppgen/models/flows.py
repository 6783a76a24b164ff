"""Zoo flow models: a flow from `ppgen.flows.build_flow` plus the Pyro program around it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pyro
import torch
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor, nn

from ppgen.data.images import VariationalDequantizer, discrete_log_likelihood, sigmoid_transform
from ppgen.flows import FlowDistribution, build_flow
from ppgen.models._cli import CLISpec

__all__ = [
    "DequantizedFlowModel",
    "FFJORDModel",
    "FlowModel",
    "GlowModel",
    "IAFModel",
    "MAFModel",
    "NICEModel",
    "NSFModel",
    "PlanarModel",
    "RadialModel",
    "RealNVPModel",
]


def _flow_cli(name: str, description: str, **fixed: Any) -> CLISpec:
    """The command line of a flow density: fit by MLE to 2-D ``moons`` by default, its
    ``features`` read from the width of ``x``; ``fixed`` constructor arguments."""
    return CLISpec(
        name,
        "flow",
        "moons",
        "mle",
        fixed=fixed,
        sizes={"features": ("x", 1)},
        description=f"{description} on 2-D points",
    )


class FlowModel(nn.Module):
    r"""A density :math:`p_\theta(x)` given by a normalizing flow, as a ppgen program.

    The program is ``x ~ FlowDistribution(flow)`` in a ``data`` plate, observed when ``x`` is
    given, so maximum likelihood needs no guide. With ``context_features`` the model is
    conditional, :math:`p_\theta(x \mid c)`, fitted with data ``{"x": x, "c": c}``.

    Arguments:
        kind: The flow family, see :func:`ppgen.flows.build_flow`.
        features: ``D``, or ``(C, H, W)`` for ``realnvp`` and ``glow``.
        context_features: The context size, or ``None``.
        kwargs: Passed to :func:`~ppgen.flows.build_flow`.

    Example:
        >>> m = FlowModel("maf", 2, hidden_features=8)
        >>> m.sample(5).shape
        torch.Size([5, 2])
        >>> m.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        kind: str,
        features: int | Sequence[int],
        context_features: int | None = None,
        **kwargs,
    ):
        super().__init__()
        self.flow = build_flow(kind, features, context_features, **kwargs)

    def flow_distribution(self, context: Tensor | None = None) -> FlowDistribution:
        """The distribution of one datum (batch shape from ``context``)."""
        return self.flow(context)

    def model(self, x: Tensor | None = None, c: Tensor | None = None, num_samples: int = 1):
        """The program: ``x`` is observed when given, else ``num_samples`` draws.

        ``c`` is the context of a conditional model (data key ``"c"``: Pyro's handlers
        reserve the keyword ``context``).
        """
        pyro.module("flow", self)
        n = x.shape[0] if x is not None else (c.shape[0] if c is not None else None)
        with pyro.plate("data", n if n is not None else num_samples):
            return pyro.sample("x", self.flow_distribution(c), obs=x)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The log density of each datum in ``x``."""
        return self.flow_distribution(context).log_prob(x)

    def log_density(self, x: Tensor, c: Tensor | None = None, num_samples: int = 1) -> Tensor:
        """Per-datum :math:`\\log p(x)` of the program's observed site, with :meth:`model`'s
        arguments: the :mod:`ppgen.capabilities` that lets MLE skip tracing."""
        return self.flow_distribution(c).log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` draws (per context row, shape ``(n, *batch, *event)``)."""
        return self.flow_distribution(context).sample((n,))


class MAFModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.MAF` flow."""

    cli = (_flow_cli("maf", "MAF density"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("maf", features, context_features, **kw)


class IAFModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.IAF` flow."""

    cli = (_flow_cli("iaf", "IAF density (slow to evaluate, fast to sample)"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("iaf", features, context_features, **kw)


class NSFModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.NSF` flow."""

    cli = (_flow_cli("nsf", "neural spline flow density"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("nsf", features, context_features, **kw)


class RealNVPModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.RealNVP` flow."""

    cli = (_flow_cli("realnvp", "RealNVP density"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("realnvp", features, context_features, **kw)


class NICEModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.NICE` flow."""

    cli = (_flow_cli("nice", "NICE (additive coupling) density"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("nice", features, context_features, **kw)


class GlowModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.Glow` flow."""

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("glow", features, context_features, **kw)


class PlanarModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.PlanarFlow` flow."""

    cli = (_flow_cli("planar", "planar flow density"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("planar", features, context_features, **kw)


class RadialModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.RadialFlow` flow."""

    cli = (_flow_cli("radial", "radial flow density"),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("radial", features, context_features, **kw)


class FFJORDModel(FlowModel):
    """:class:`FlowModel` with a :class:`~ppgen.flows.FFJORD` flow."""

    cli = (_flow_cli("ffjord", "FFJORD continuous-time flow density (exact trace)", exact=True),)

    def __init__(self, features: int | Sequence[int], context_features: int | None = None, **kw):
        super().__init__("ffjord", features, context_features, **kw)


class DequantizedDistribution(TorchDistribution):
    r"""Integer levels ``0..K-1`` under a flow on dequantised, optionally logit-mapped values.

    ``log_prob`` is the dequantisation bound of
    :func:`~ppgen.data.images.discrete_log_likelihood` on the discrete scale (one draw of the
    noise per datum); ``sample`` maps flow draws back to levels.
    """

    arg_constraints: dict = {}

    def __init__(self, owner: DequantizedFlowModel, validate_args: bool | None = None):
        self.owner = owner
        super().__init__(torch.Size(), owner.flow.event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True)
    def support(self) -> constraints.Constraint:
        levels = constraints.integer_interval(0, self.owner.num_bins - 1)
        return constraints.independent(levels, len(self.event_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        o, k = self.owner, len(self.event_shape)
        lead = value.shape[: value.dim() - k]
        flat = value.reshape(-1, *self.event_shape)
        base = o.flow(None).log_prob
        lp = discrete_log_likelihood(base, flat, o.num_bins, o.dequantizer, o.logit)
        return lp.reshape(lead)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        o = self.owner
        with torch.no_grad():
            y = o.flow(None).sample(sample_shape)
            y = sigmoid_transform(y, o.logit) if o.logit is not None else y.clamp(0, 1)
            return (y * o.num_bins).floor().clamp(0, o.num_bins - 1)


class DequantizedFlowModel(FlowModel):
    r"""A flow over discrete data (image pixels, counts in ``0..K-1``), fitted by exact MLE.

    .. math:: \log P(x) \ge \mathbb{E}_{q(u \mid x)}\left[\log p_\theta(g(\tfrac{x + u}{K}))
        + \log|g'| - \log q(u \mid x)\right] - D \log K

    with uniform (:math:`q = 1`) or variational dequantisation (a conditional flow
    :math:`q_\phi(u \mid x)` trained jointly) and :math:`g` the logit map of Real NVP (or the
    identity with ``logit=None``). The program observes integer levels, so ppgen's validation
    rejects values outside ``0..K-1`` before fitting, and the loss (``MLE``'s ``nll``,
    ``bits_per_dim``) is on the original discrete scale.

    References:
        Theis et al., A note on the evaluation of generative models, arXiv:1511.01844.
        Ho et al., Flow++, arXiv:1902.00275.

    Arguments:
        kind: The flow family (``"realnvp"``, ``"glow"`` for images; any for vectors).
        features: ``D`` or ``(C, H, W)``.
        num_bins: The number of levels ``K``.
        dequantize: ``"uniform"`` or ``"variational"``.
        logit: The ``alpha`` of the logit preprocessing, or ``None``.
        dequantizer_kwargs: Passed to :class:`~ppgen.data.images.VariationalDequantizer`.
        kwargs: Passed to :func:`~ppgen.flows.build_flow`.

    Example:
        >>> import ppgen
        >>> x = np.random.default_rng(0).integers(0, 4, (64, 3))
        >>> m = DequantizedFlowModel("maf", 3, num_bins=4, hidden_features=8)
        >>> fit = ppgen.fit(m, {"x": x}, ppgen.inference.MLE(steps=5))
        >>> fit.diagnostics["path"], m.sample(2).shape
        ('declared', torch.Size([2, 3]))
    """

    def __init__(
        self,
        kind: str,
        features: int | Sequence[int],
        num_bins: int = 256,
        dequantize: Literal["uniform", "variational"] = "uniform",
        logit: float | None = 0.05,
        dequantizer_kwargs: dict | None = None,
        **kwargs,
    ):
        if not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"`num_bins` must be an int >= 2, got {num_bins!r}.")
        if dequantize not in ("uniform", "variational"):
            raise ValueError(
                f"`dequantize` must be 'uniform' or 'variational', got {dequantize!r}."
            )
        if logit is not None and not 0 <= logit < 0.5:
            raise ValueError(f"`logit` must be None or in [0, 0.5), got {logit!r}.")
        super().__init__(kind, features, None, **kwargs)
        self.num_bins, self.logit = num_bins, logit
        d = math.prod(self.flow.event_shape)
        self.dequantizer: VariationalDequantizer | str = (
            VariationalDequantizer(d, num_bins, **(dequantizer_kwargs or {}))
            if dequantize == "variational"
            else "uniform"
        )

    def flow_distribution(self, context: Tensor | None = None) -> DequantizedDistribution:
        """The distribution of one datum's levels (unconditional)."""
        if context is not None:
            raise ValueError("DequantizedFlowModel is unconditional; got a context.")
        return DequantizedDistribution(self)

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Mean bits per dimension of levels ``x`` (an upper bound, one noise draw per datum)."""
        d = math.prod(self.flow.event_shape)
        return -self.log_prob(x).mean() / (d * math.log(2))
