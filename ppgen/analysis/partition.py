r"""Partition functions of restricted Boltzmann machines, and the log-likelihoods they give.

An energy program (:class:`~ppgen.distributions.Unnormalized`) knows its density only up to
:math:`\log Z`. For an RBM (a model declaring ``rbm_parameters()``, e.g.
:class:`~ppgen.models.ebm.RBM`) :math:`\log Z` is computable:

- :func:`rbm_log_partition_exact`: exactly, by enumerating the **smaller** layer's
  :math:`2^{\min(V, H)}` configurations and summing the other layer out analytically
  (:func:`gaussian_rbm_log_partition_exact` for a Gaussian–Bernoulli RBM, enumerating the
  hidden layer, each term a Gaussian integral);
- :func:`~ppgen.analysis.ais.rbm_ais`: by annealed importance sampling, for RBMs too wide for
  that, and :func:`~ppgen.analysis.ais.rbm_reverse_ais` for the upper bracket
  (:mod:`ppgen.analysis.ais`, re-exported here).

For any continuous energy, :func:`~ppgen.analysis.ais.energy_ais` anneals from a Gaussian with
HMC moves.

:func:`log_partition` does either for a fit, :func:`rbm_log_likelihood` turns the result into
per-datum log-likelihoods :math:`\log p(x) = -F(x) - \log Z`. All arithmetic is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ppgen.analysis.ais import (
    AISResult,
    _as64,
    _params,
    ais_betas,
    energy_ais,
    rbm_ais,
    rbm_reverse_ais,
)
from ppgen.errors import DataError
from ppgen.models.ebm import base_rate_bias

__all__ = [
    "AISResult",
    "LogPartition",
    "ais_betas",
    "energy_ais",
    "gaussian_rbm_log_partition_exact",
    "log_partition",
    "rbm_ais",
    "rbm_log_likelihood",
    "rbm_reverse_ais",
    "rbm_log_partition_exact",
]

MAX_EXACT_UNITS = 25
"""The largest smaller layer :func:`rbm_log_partition_exact` enumerates (:math:`2^{25}`)."""

_CHUNK = 1 << 16  # configurations per chunk: 2^20 configurations need 16 chunks


def _enumerate_logsumexp(n: int, term: Callable[[Tensor], Tensor]) -> float:
    """:math:`\\log \\sum_{s \\in \\{0,1\\}^n} e^{\\text{term}(s)}`, in chunks of configurations."""
    shifts = torch.arange(n, dtype=torch.int64)
    total = torch.tensor(-math.inf, dtype=torch.float64)
    for start in range(0, 1 << n, _CHUNK):
        idx = torch.arange(start, min(start + _CHUNK, 1 << n), dtype=torch.int64)
        s = ((idx[:, None] >> shifts) & 1).to(torch.float64)
        total = torch.logaddexp(total, torch.logsumexp(term(s), 0))
    return float(total)


def _too_many(which: str, n: int, other: str, m: int) -> ValueError:
    return ValueError(
        f"Exact log Z enumerates 2^{n} {which} configurations (the smaller layer; {other} has "
        f"{m}); at most {MAX_EXACT_UNITS} units are enumerable. Use method='ais' (rbm_ais)."
    )


def rbm_log_partition_exact(W: Any, vbias: Any, hbias: Any) -> float:
    r"""Exact :math:`\log Z` of a Bernoulli–Bernoulli RBM, :math:`E = -b^\top v - c^\top h -
    h^\top W v`, enumerating the smaller layer.

    With :math:`H \le V`: :math:`\log Z = \log\sum_h \exp(c^\top h + \sum_i
    \operatorname{softplus}(b_i + h^\top W_{:,i}))`; otherwise the same over :math:`v` with
    the roles swapped. The :math:`2^{\min(V,H)}` configurations are summed in chunks of
    :math:`2^{16}`, so memory stays small.

    Arguments:
        W: weights ``(H, V)``; vbias: ``(V,)``; hbias: ``(H,)`` (tensors or arrays).

    Raises:
        ValueError: when :math:`\min(V, H) > 25` (use :func:`rbm_ais`).

    Example:
        With zero weights the units are independent, :math:`\log Z = \sum_i
        \operatorname{softplus}(b_i) + \sum_j \operatorname{softplus}(c_j)`:

        >>> round(rbm_log_partition_exact(torch.zeros(2, 3), torch.zeros(3), torch.zeros(2)), 6)
        3.465736
        >>> round(5 * math.log(2), 6)
        3.465736
    """
    W, b, c = _params(W, vbias, hbias)
    H, V = W.shape
    if min(H, V) > MAX_EXACT_UNITS:
        small, big = ("hidden", "visible") if H <= V else ("visible", "hidden")
        raise _too_many(small, min(H, V), big + " layer", max(H, V))
    if H <= V:
        return _enumerate_logsumexp(H, lambda h: h @ c + F.softplus(b + h @ W).sum(-1))
    return _enumerate_logsumexp(V, lambda v: v @ b + F.softplus(c + v @ W.T).sum(-1))


def gaussian_rbm_log_partition_exact(W: Any, vbias: Any, hbias: Any, sigma: float = 1.0) -> float:
    r"""Exact :math:`\log Z` of a Gaussian–Bernoulli RBM
    (:class:`~ppgen.models.ebm.GaussianRBM`),
    :math:`E = \lVert v - b\rVert^2 / 2\sigma^2 - c^\top h - h^\top W v / \sigma^2`.

    Completing the square in :math:`v` for each hidden configuration,

    .. math:: \log Z = \tfrac V2 \log(2\pi\sigma^2) + \log \sum_h \exp\Big(c^\top h
        + \frac{\lVert b + W^\top h\rVert^2 - \lVert b\rVert^2}{2\sigma^2}\Big),

    enumerating the :math:`2^H` hidden configurations (:math:`H \le 25`).

    Example:
        Zero weights: :math:`\mathcal N(b, \sigma^2)` times :math:`2^H`:

        >>> W, b, c = torch.zeros(1, 2), torch.ones(2), torch.zeros(1)
        >>> z = gaussian_rbm_log_partition_exact(W, b, c, sigma=2.0)
        >>> round(z - math.log(2), 6) == round(math.log(2 * math.pi * 4.0), 6)
        True
    """
    W, b, c = _params(W, vbias, hbias)
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"`sigma` must be a positive finite number; got {sigma!r}.")
    s2 = float(sigma) ** 2
    H, V = W.shape
    if H > MAX_EXACT_UNITS:
        raise ValueError(
            f"Exact log Z of a Gaussian RBM enumerates 2^{H} hidden configurations; at most "
            f"{MAX_EXACT_UNITS} hidden units are enumerable."
        )
    bb = float(b @ b)

    def term(h: Tensor) -> Tensor:
        m = b + h @ W
        return h @ c + ((m * m).sum(-1) - bb) / (2 * s2)

    return 0.5 * V * math.log(2 * math.pi * s2) + _enumerate_logsumexp(H, term)


@dataclass
class LogPartition:
    """:math:`\\log Z` of a fitted model, from :func:`log_partition`.

    Attributes:
        value: the estimate of :math:`\\log Z`.
        stderr: its standard error (0 for ``"exact"``).
        method: ``"exact"``, ``"ais"`` or ``"reverse_ais"``.
        note: how it was computed, and its caveats.
    """

    value: float
    stderr: float
    method: str
    note: str


def _model_of(fit: Any) -> Any:
    program = getattr(fit, "program", None)
    return getattr(program, "obj", fit) if program is not None else fit


def _fitted_parameters(fit: Any, obj: Any) -> tuple[Tensor, Tensor, Tensor]:
    """The fitted ``(W, vbias, hbias)``: the fit's stored parameters where it has them
    (``{pyro_name}$$$W`` ...), else the model's own tensors."""
    own = obj.rbm_parameters()
    params = getattr(fit, "params", None)
    prefix = getattr(obj, "pyro_name", None)
    if not isinstance(params, Mapping) or prefix is None:
        return own
    names = ("W", "vbias", "hbias")
    return tuple(  # type: ignore[return-value]
        _as64(params[f"{prefix}$$${n}"]) if f"{prefix}$$${n}" in params else t
        for n, t in zip(names, own, strict=True)
    )


def log_partition(fit: Any, method: str = "exact", **kwargs: Any) -> LogPartition:
    """:math:`\\log Z` of a fitted RBM (``fit.program.obj``, or a model object itself).

    The model must declare ``rbm_parameters()`` (:class:`~ppgen.models.ebm.RBM`,
    :class:`~ppgen.models.ebm.GaussianRBM`): enumeration and AIS need an RBM-structured
    energy.

    Arguments:
        fit: a :class:`~ppgen.result.Fit` of an RBM, or the RBM.
        method: ``"exact"`` (:func:`rbm_log_partition_exact`, or
            :func:`gaussian_rbm_log_partition_exact` for a Gaussian RBM), ``"ais"``
            (:func:`rbm_ais`, Bernoulli or Gaussian visible units: a lower bracket in
            expectation) or
            ``"reverse_ais"`` (:func:`rbm_reverse_ais`: an upper bracket).
        kwargs: for ``"ais"``: ``data=`` (the training data, an array ``(N, V)`` or
            ``{"x": ...}``: the base-rate model's visible biases, unless ``base_vbias=`` is
            given), and :func:`rbm_ais`'s ``num_chains``, ``num_betas``, ``seed``. For
            ``"reverse_ais"``: ``data=`` as for AIS and the chains' start states unless
            ``init=`` is given, and :func:`rbm_reverse_ais`'s ``burn_in``, ``num_betas``,
            ``seed``.

    Given a :class:`~ppgen.result.Fit`, the estimate is also kept in the fit
    (``fit.log_partition``, saved with it), so that ``fit.log_likelihood`` and ``to_arviz``
    give :math:`-E(x) - \\log Z` from then on.

    Example:
        >>> from ppgen.models import RBM
        >>> lz = log_partition(RBM(6, 3, init_std=0.0))
        >>> lz.method, round(lz.value / math.log(2), 6)
        ('exact', 9.0)
    """
    obj = _model_of(fit)
    if method not in ("exact", "ais", "reverse_ais"):
        raise ValueError(f"`method` must be 'exact', 'ais' or 'reverse_ais'; got {method!r}.")
    if not callable(getattr(obj, "rbm_parameters", None)):
        if method == "ais" and callable(getattr(obj, "energy", None)):
            return _attach(fit, _energy_log_partition(obj, kwargs))
        raise ValueError(
            f"log Z by enumeration or reverse AIS needs an RBM-structured energy (a model "
            f"declaring `rbm_parameters()`, e.g. ppgen.models.RBM); {type(obj).__name__} does "
            "not. For a continuous energy (a model with `energy(x)`, e.g. ppgen.models.EBM) "
            "use method='ais' with `data=` (annealed importance sampling with HMC moves)."
        )
    W, b, c = _fitted_parameters(fit, obj)
    visible = getattr(obj, "visible", "bernoulli")
    H, V = _as64(W).shape
    if method == "exact":
        if kwargs:
            raise ValueError(f"method='exact' takes no options; got {sorted(kwargs)}.")
        if visible == "gaussian":
            sigma = float(getattr(obj, "sigma", 1.0))
            value = gaussian_rbm_log_partition_exact(W, b, c, sigma)
            note = f"exact: 2^{H} hidden configurations, each a Gaussian integral"
        else:
            value = rbm_log_partition_exact(W, b, c)
            layer = "hidden" if H <= V else "visible"
            note = f"exact: enumerated 2^{min(H, V)} {layer} configurations"
        return _attach(fit, LogPartition(value, 0.0, "exact", note))
    sigma = float(getattr(obj, "sigma", 1.0)) if visible == "gaussian" else None
    reverse = method == "reverse_ais"
    allowed = {"data", "base_vbias", "num_betas", "seed"}
    allowed |= {"init", "burn_in"} if reverse else {"num_chains"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"method={method!r} takes {sorted(allowed)}; got unknown {unknown}.")
    data = kwargs.pop("data", None)
    x = None
    if data is not None:
        x = _as64(np.asarray(data["x"] if isinstance(data, Mapping) else data))
        if x.dim() != 2 or x.shape[1] != V:
            raise DataError(f"`data` must be rows (N, {V}); got shape {tuple(x.shape)}.")
        if kwargs.get("base_vbias") is None:  # the data's mean (its logit for binary units)
            kwargs["base_vbias"] = x.mean(0) if sigma is not None else base_rate_bias(x.mean(0))
    start = "base-rate" if kwargs.get("base_vbias") is not None else "uniform"
    kwargs["sigma"] = sigma
    if not reverse:
        result = rbm_ais(W, b, c, **kwargs)
        note = (
            f"AIS: {result.num_chains} chains x {result.num_betas} temperatures from the "
            f"{start} model; underestimates log Z in expectation, so log-likelihoods from it "
            "are optimistic"
        )
        return _attach(fit, LogPartition(result.log_z, result.stderr, "ais", note))
    init = kwargs.pop("init", None)
    if init is None:
        if x is None:
            raise ValueError(
                "method='reverse_ais' starts its chains from model samples: pass `init=` "
                "(rows of visible states, e.g. a PCD fit's chains) or `data=` (the training "
                "data, burnt in by `burn_in` Gibbs sweeps)."
            )
        init = x
    result = rbm_reverse_ais(W, b, c, init, **kwargs)
    note = (
        f"reverse AIS: {result.num_chains} chains x {result.num_betas} temperatures down to "
        f"the {start} model, after {kwargs.get('burn_in', 1000)} Gibbs sweeps; overestimates "
        "log Z in expectation when its start states are model samples, so log-likelihoods "
        "from it are conservative"
    )
    return _attach(fit, LogPartition(result.log_z, result.stderr, "reverse_ais", note))


def _energy_log_partition(obj: Any, kwargs: dict[str, Any]) -> LogPartition:
    """:func:`energy_ais` for a model's ``energy(x)``, from a Gaussian base around ``data``."""
    allowed = {"data", "num_chains", "num_betas", "sampler", "steps", "seed", "base_scale"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"method='ais' on an energy takes {sorted(allowed)}; got {unknown}.")
    data = kwargs.pop("data", None)
    if data is None:
        raise ValueError(
            "method='ais' on a continuous energy starts from a Gaussian around the data: pass "
            "`data=` (the training data, rows (N, *event))."
        )
    x = _as64(np.asarray(data["x"] if isinstance(data, Mapping) else data))
    if x.dim() < 2 or len(x) < 2 or not torch.isfinite(x).all():
        raise DataError(f"`data` must be >= 2 finite rows (N, *event); got {tuple(x.shape)}.")
    widen = float(kwargs.pop("base_scale", 2.0))
    loc, scale = x.mean(0), widen * x.std(0).clamp_min(1e-3)
    param = next(iter(obj.parameters()), None) if hasattr(obj, "parameters") else None
    dtype = param.dtype if param is not None else torch.float64

    def energy(v: Tensor) -> Tensor:
        return obj.energy(v.to(dtype)).to(torch.float64)

    r = energy_ais(energy, loc, scale, **kwargs)
    note = (
        f"AIS: {r.num_chains} chains x {r.num_betas} temperatures from N(data mean, "
        f"({widen:g} data sd)^2), HMC moves (acceptance {r.accept_rate:.2f}); underestimates "
        "log Z in expectation, so log-likelihoods from it are optimistic"
    )
    return LogPartition(r.log_z, r.stderr, "ais", note)


def _attach(fit: Any, lz: LogPartition) -> LogPartition:
    """Keep ``lz`` in a fit's diagnostics (what ``Fit.log_partition`` reads)."""
    diagnostics = getattr(fit, "diagnostics", None)
    if isinstance(diagnostics, dict) and hasattr(fit, "program"):
        diagnostics["log_partition"] = {
            "value": float(lz.value),
            "stderr": float(lz.stderr),
            "method": lz.method,
            "note": lz.note,
        }
    return lz


def rbm_log_likelihood(model_or_params: Any, x: Any, log_z: Any) -> np.ndarray:
    r"""Per-datum :math:`\log p(x_n) = -F(x_n) - \log Z`, shape ``(N,)``, float64.

    Arguments:
        model_or_params: an RBM model (Bernoulli or Gaussian; a fit of one works too, with
            its fitted parameters) or the tuple ``(W, vbias, hbias)`` of a Bernoulli RBM.
        x: the data, ``(N, V)``.
        log_z: :math:`\log Z`: a number, a :class:`LogPartition` or an :class:`AISResult`.

    Example:
        >>> from ppgen.models import RBM
        >>> rbm = RBM(3, 2, init_std=0.0)
        >>> rbm_log_likelihood(rbm, torch.ones(2, 3), log_partition(rbm)) / math.log(2)
        array([-3., -3.])
    """
    lz = getattr(log_z, "value", getattr(log_z, "log_z", log_z))
    lz = float(lz)
    visible, sigma = "bernoulli", 1.0
    if isinstance(model_or_params, tuple | list):
        if len(model_or_params) != 3:
            raise ValueError("`model_or_params` as a tuple must be (W, vbias, hbias).")
        W, b, c = _params(*model_or_params)
    else:
        obj = _model_of(model_or_params)
        if not callable(getattr(obj, "rbm_parameters", None)):
            raise ValueError(
                "`model_or_params` must be an RBM model (declaring `rbm_parameters`), a fit "
                f"of one, or the tuple (W, vbias, hbias); got {type(obj).__name__}."
            )
        W, b, c = _params(*_fitted_parameters(model_or_params, obj))
        visible = getattr(obj, "visible", "bernoulli")
        sigma = float(getattr(obj, "sigma", 1.0))
    xv = _as64(x if isinstance(x, Tensor) else np.asarray(x))
    if xv.dim() != 2 or xv.shape[1] != W.shape[1]:
        raise DataError(f"`x` must be rows (N, {W.shape[1]}); got shape {tuple(xv.shape)}.")
    if visible == "gaussian":
        s2 = sigma**2
        free = ((xv - b) ** 2).sum(-1) / (2 * s2) - F.softplus(c + xv @ W.T / s2).sum(-1)
    else:
        free = -(xv @ b) - F.softplus(c + xv @ W.T).sum(-1)
    return (-free - lz).numpy()
