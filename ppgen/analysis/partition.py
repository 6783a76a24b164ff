r"""Partition functions of restricted Boltzmann machines, and the log-likelihoods they give.

An energy program (:class:`~ppgen.distributions.Unnormalized`) knows its density only up to
:math:`\log Z`. For an RBM (a model declaring ``rbm_parameters()``, e.g.
:class:`~ppgen.models.ebm.RBM`) :math:`\log Z` is computable:

- :func:`rbm_log_partition_exact`: exactly, by enumerating the **smaller** layer's
  :math:`2^{\min(V, H)}` configurations and summing the other layer out analytically
  (:func:`gaussian_rbm_log_partition_exact` for a Gaussian–Bernoulli RBM, enumerating the
  hidden layer, each term a Gaussian integral);
- :func:`rbm_ais`: by annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008,
  "On the quantitative analysis of deep belief networks"), for RBMs too wide for that, and
  :func:`rbm_reverse_ais` (Burda, Grosse & Salakhutdinov 2015) for the upper bracket.

For any continuous energy, :func:`energy_ais` anneals from a Gaussian with HMC moves.

:func:`log_partition` does either for a fit, :func:`rbm_log_likelihood` turns the result into
per-datum log-likelihoods :math:`\log p(x) = -F(x) - \log Z`. All arithmetic is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ppgen.errors import DataError
from ppgen.inference.samplers import HMC, MALA
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


def _as64(x: Any) -> Tensor:
    return torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)


def _params(W: Any, vbias: Any, hbias: Any) -> tuple[Tensor, Tensor, Tensor]:
    W, b, c = _as64(W), _as64(vbias), _as64(hbias)
    if W.dim() != 2:
        raise DataError(f"`W` must be a matrix (H, V); got shape {tuple(W.shape)}.")
    H, V = W.shape
    if tuple(b.shape) != (V,):
        raise DataError(
            f"`vbias` must have shape ({V},) to match W (H={H}, V={V}); got {tuple(b.shape)}."
        )
    if tuple(c.shape) != (H,):
        raise DataError(
            f"`hbias` must have shape ({H},) to match W (H={H}, V={V}); got {tuple(c.shape)}."
        )
    if not (torch.isfinite(W).all() and torch.isfinite(b).all() and torch.isfinite(c).all()):
        raise DataError("The RBM's parameters (W, vbias, hbias) contain NaN or inf.")
    return W, b, c


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


def ais_betas(num_betas: int) -> np.ndarray:
    r"""The default AIS schedule: Salakhutdinov & Murray's (2008) three uniform segments,
    :math:`0 \to 0.5`, :math:`0.5 \to 0.9`, :math:`0.9 \to 1` in 1000, 4000 and 10,000 steps
    (15,001 temperatures), the step counts scaled in proportion to ``num_betas`` temperatures
    (so the schedule is densest near :math:`\beta = 1`, where the intermediate distributions
    change fastest).

    Example:
        >>> b = ais_betas(1000)
        >>> len(b), float(b[0]), float(b[-1]), bool(np.all(np.diff(b) > 0))
        (1000, 0.0, 1.0, True)
        >>> np.diff(ais_betas(15001))[[0, 2000, -1]].round(8).tolist()
        [0.0005, 0.0001, 1e-05]
    """
    if isinstance(num_betas, bool) or not isinstance(num_betas, int | np.integer) or num_betas < 10:
        raise ValueError(f"`num_betas` must be an int >= 10; got {num_betas!r}.")
    steps = int(num_betas) - 1
    s1 = max(1, round(steps * 1000 / 15000))
    s2 = max(1, round(steps * 4000 / 15000))
    s3 = steps - s1 - s2
    return np.concatenate(
        [
            np.linspace(0.0, 0.5, s1 + 1)[:-1],
            np.linspace(0.5, 0.9, s2 + 1)[:-1],
            np.linspace(0.9, 1.0, s3 + 1),
        ]
    )


@dataclass
class AISResult:
    r"""An annealed-importance-sampling estimate of :math:`\log Z`.

    :math:`\hat Z = Z_A \cdot \frac1M \sum_m w_m` is unbiased for :math:`Z`, so by Jensen's
    inequality :math:`\log \hat Z` **underestimates** :math:`\log Z` in expectation (a
    stochastic lower bound): log-likelihoods :math:`-F(x) - \log \hat Z` computed from it are
    *optimistic* (too high), more so with too few temperatures or chains.

    Attributes:
        log_z: :math:`\log Z_A + \log \frac1M \sum_m w_m`.
        stderr: the delta-method standard error of ``log_z``:
            :math:`\mathrm{sd}(w) / (\sqrt M\, \bar w)`; it does not see the bias above, and
            a heavy-tailed weight distribution makes it too small.
        log_weights: the ``M`` log importance weights :math:`\log w_m`.
        log_z_base: :math:`\log Z_A` of the base-rate model.
        num_betas: the number of temperatures (including 0 and 1).
        num_chains: ``M``.
    """

    log_z: float
    stderr: float
    log_weights: np.ndarray
    num_betas: int
    num_chains: int
    log_z_base: float = 0.0
    #: the transitions' mean acceptance rate (:func:`energy_ais`; ``None`` for Gibbs sweeps)
    accept_rate: float | None = None


def rbm_ais(
    W: Any,
    vbias: Any,
    hbias: Any,
    *,
    num_chains: int = 100,
    num_betas: int | Sequence[float] | np.ndarray = 1000,
    base_vbias: Any = None,
    seed: int = 0,
    sigma: float | None = None,
) -> AISResult:
    r""":math:`\log Z` of an RBM by annealed importance sampling (Salakhutdinov & Murray
    2008): Bernoulli–Bernoulli, or Gaussian–Bernoulli with ``sigma``.

    The base :math:`A` is the *base-rate* RBM: zero weights, visible biases ``base_vbias``
    :math:`b_A` (default zeros; pass :func:`~ppgen.models.ebm.base_rate_bias` of the training
    data's mean for a much better start), :math:`H` hidden units; :math:`\log Z_A = H \log 2 +
    \sum_i \operatorname{softplus}(b_{A,i})`. The intermediate distributions are the
    geometric averages of the two *joint* distributions over :math:`(v, h)`, i.e. RBMs with
    weights :math:`\beta_k W`, hidden biases :math:`\beta_k c`, visible biases
    :math:`(1 - \beta_k) b_A + \beta_k b`; with :math:`h` summed out

    .. math:: \log p^*_k(v) = (1-\beta_k)\, b_A^\top v + \beta_k\, b^\top v
        + \textstyle\sum_j \operatorname{softplus}(\beta_k (c_j + W_j v)).

    Each chain starts from an exact draw of :math:`A`, accumulates
    :math:`\log w \mathrel{+}= \log p^*_k(v) - \log p^*_{k-1}(v)` and moves by one block Gibbs
    sweep of :math:`p_k`. Cost: ``num_betas`` sweeps of ``num_chains`` chains.

    With Gaussian visible units (``sigma``: their standard deviation, as in
    :class:`~ppgen.models.ebm.GaussianRBM`, energy :math:`\lVert v - b\rVert^2 / 2\sigma^2 -
    c^\top h - h^\top W v / \sigma^2`) the base is :math:`N(b_A, \sigma^2 I)` times uniform
    hidden units, :math:`\log Z_A = \tfrac V2 \log 2\pi\sigma^2 + H \log 2`, and

    .. math:: \log p^*_k(v) = -\frac{(1-\beta_k)\lVert v - b_A\rVert^2
        + \beta_k \lVert v - b\rVert^2}{2\sigma^2}
        + \textstyle\sum_j \operatorname{softplus}(\beta_k (c_j + W_j v / \sigma^2)),

    with :math:`v \mid h \sim N((1-\beta_k) b_A + \beta_k (b + W^\top h), \sigma^2 I)`.

    Arguments:
        W, vbias, hbias: the RBM (``(H, V)``, ``(V,)``, ``(H,)``).
        num_chains: ``M``, independent AIS runs.
        num_betas: the number of temperatures of the default schedule (:func:`ais_betas`,
            Salakhutdinov & Murray's, scaled), or an explicit increasing sequence from 0 to 1.
        base_vbias: :math:`b_A`, shape ``(V,)`` (Gaussian: the base's mean; pass the data's
            mean).
        seed: the seed of the chains' own generator (torch's global one is untouched).
        sigma: ``None`` for binary visible units, else the Gaussian visible units' sd.

    Returns:
        :class:`AISResult` (an underestimate of :math:`\log Z` in expectation; see there).

    Example:
        An RBM with zero weights *is* a base-rate model: every weight is exactly 1.

        >>> r = rbm_ais(torch.zeros(3, 4), torch.ones(4), torch.zeros(3), num_betas=50,
        ...             base_vbias=torch.ones(4), num_chains=10)
        >>> round(r.log_z - rbm_log_partition_exact(torch.zeros(3, 4), torch.ones(4),
        ...                                         torch.zeros(3)), 12), r.stderr
        (0.0, 0.0)
    """
    W, b, c = _params(W, vbias, hbias)
    H, V = W.shape
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"`num_chains` must be an int >= 2; got {num_chains!r}.")
    betas = _schedule(num_betas)
    path = _Path(W, b, c, base_vbias, sigma)
    gen = torch.Generator().manual_seed(int(seed))
    lw = _anneal(path, path.base_draws(num_chains, gen), betas, gen).numpy()
    top, mean, stderr = _weights(lw)
    return AISResult(
        path.log_z_base + top + math.log(mean), stderr, lw, len(betas), num_chains, path.log_z_base
    )


class _Path:
    """The annealing path from the base-rate RBM A to the RBM (W, b, c): binary visible units
    (``sigma=None``) or Gaussian ones with sd ``sigma``; see :func:`rbm_ais`."""

    def __init__(self, W: Tensor, b: Tensor, c: Tensor, base_vbias: Any, sigma: Any) -> None:
        H, V = W.shape
        bA = torch.zeros(V, dtype=torch.float64) if base_vbias is None else _as64(base_vbias)
        if tuple(bA.shape) != (V,) or not torch.isfinite(bA).all():
            raise DataError(
                f"`base_vbias` must be finite with shape ({V},); got {tuple(bA.shape)}."
            )
        if sigma is not None and not (isinstance(sigma, int | float) and sigma > 0):
            raise ValueError(f"`sigma` must be None or a positive number; got {sigma!r}.")
        self.W, self.b, self.c, self.bA = W, b, c, bA
        self.s2 = None if sigma is None else float(sigma) ** 2
        if self.s2 is None:
            self.log_z_base = H * math.log(2.0) + float(F.softplus(bA).sum())
        else:
            self.log_z_base = H * math.log(2.0) + 0.5 * V * math.log(2 * math.pi * self.s2)

    def base_draws(self, n: int, gen: torch.Generator) -> Tensor:
        if self.s2 is None:
            return torch.bernoulli(torch.sigmoid(self.bA).expand(n, len(self.bA)), generator=gen)
        eps = torch.randn(n, len(self.bA), generator=gen, dtype=torch.float64)
        return self.bA + math.sqrt(self.s2) * eps

    def log_f(self, v: Tensor, beta: float) -> Tensor:
        r""":math:`\log p^*_\beta(v)`, h summed out, up to a constant of neither v nor beta."""
        if self.s2 is None:
            act = v @ self.W.T + self.c
            return (1 - beta) * (v @ self.bA) + beta * (v @ self.b) + F.softplus(beta * act).sum(-1)
        act = v @ self.W.T / self.s2 + self.c
        quad = (1 - beta) * ((v - self.bA) ** 2).sum(-1) + beta * ((v - self.b) ** 2).sum(-1)
        return -quad / (2 * self.s2) + F.softplus(beta * act).sum(-1)

    def sweep(self, v: Tensor, beta: float, gen: torch.Generator) -> Tensor:
        """One block Gibbs sweep (h | v, then v | h) at temperature ``beta``."""
        s2 = 1.0 if self.s2 is None else self.s2
        h = torch.bernoulli(torch.sigmoid(beta * (v @ self.W.T / s2 + self.c)), generator=gen)
        mean = (1 - beta) * self.bA + beta * (self.b + h @ self.W)
        if self.s2 is None:
            return torch.bernoulli(torch.sigmoid(mean), generator=gen)
        return mean + math.sqrt(self.s2) * torch.randn(v.shape, generator=gen, dtype=v.dtype)


def _schedule(num_betas: Any) -> np.ndarray:
    """:func:`ais_betas` of an int, or an explicit schedule from 0 to 1, checked."""
    if isinstance(num_betas, int | np.integer) and not isinstance(num_betas, bool):
        return ais_betas(int(num_betas))
    betas = np.asarray(num_betas, dtype=np.float64)
    if (
        betas.ndim != 1
        or len(betas) < 2
        or betas[0] != 0.0
        or betas[-1] != 1.0
        or not np.all(np.diff(betas) > 0)
    ):
        raise ValueError(
            "`num_betas` must be an int or a strictly increasing 1-D sequence of "
            f"temperatures from 0.0 to 1.0; got {np.asarray(num_betas)!r:.80}."
        )
    return betas


def _anneal(path: _Path, v: Tensor, betas: Any, gen: torch.Generator) -> Tensor:
    r"""Chains from ``v`` through the temperatures ``betas`` in the order given (up: AIS; down:
    reverse AIS): at each new temperature the log weight gains
    :math:`\log p^*_k(v) - \log p^*_{k-1}(v)`, then one block Gibbs sweep of :math:`p_k`
    moves ``v`` (none after the last). Returns the log weights ``(M,)``."""
    log_w = torch.zeros(len(v), dtype=torch.float64)
    prev = float(betas[0])
    for k in range(1, len(betas)):
        beta = float(betas[k])
        log_w += path.log_f(v, beta) - path.log_f(v, prev)
        prev = beta
        if k < len(betas) - 1:
            v = path.sweep(v, beta, gen)
    return log_w


def _weights(lw: np.ndarray) -> tuple[float, float, float]:
    """``(max log w, mean of w / exp(max), delta-method sd of log mean w)``."""
    top = float(lw.max())
    w = np.exp(lw - top)
    mean = float(w.mean())
    return top, mean, float(w.std(ddof=1) / (math.sqrt(len(w)) * mean))


def rbm_reverse_ais(
    W: Any,
    vbias: Any,
    hbias: Any,
    init: Any,
    *,
    burn_in: int = 1000,
    num_betas: int | Sequence[float] | np.ndarray = 1000,
    base_vbias: Any = None,
    seed: int = 0,
    sigma: float | None = None,
) -> AISResult:
    r""":math:`\log Z` of an RBM by **reverse** AIS (Burda, Grosse &
    Salakhutdinov 2015): an upper bracket to :func:`rbm_ais`'s lower one.

    The chains start from samples of the RBM itself and anneal *down* the same path to the
    base-rate model :math:`A`; the weights :math:`w_m` are unbiased for :math:`Z_A / Z` when
    the start states are exact draws, so :math:`\log \hat Z = \log Z_A - \log \frac1M
    \sum_m w_m` **overestimates** :math:`\log Z` in expectation (Jensen), and log-likelihoods
    from it are conservative. Together, :math:`\log \hat Z_\text{AIS} \lesssim \log Z
    \lesssim \log \hat Z_\text{reverse}`, and the gap says how far to trust either. The
    start states are ``init`` (one chain per row: e.g. the training data, or a PCD fit's
    persistent chains) after ``burn_in`` block Gibbs sweeps of the RBM; the bracket is only
    as conservative as those states are model samples (from data after a short burn-in,
    reverse AIS can *under*-estimate too).

    Arguments:
        W, vbias, hbias: the RBM (``(H, V)``, ``(V,)``, ``(H,)``).
        init: ``(M, V)`` start states, one chain per row (binary for Bernoulli visible
            units).
        burn_in: block Gibbs sweeps of the RBM before annealing.
        num_betas, base_vbias, seed, sigma: as for :func:`rbm_ais` (``sigma``: Gaussian
            visible units).

    Example:
        A base-rate RBM (zero weights) anneals to itself: every weight is exactly 1.

        >>> r = rbm_reverse_ais(torch.zeros(3, 4), torch.ones(4), torch.zeros(3),
        ...                     torch.ones(5, 4), num_betas=20, base_vbias=torch.ones(4))
        >>> round(r.log_z - rbm_log_partition_exact(torch.zeros(3, 4), torch.ones(4),
        ...                                         torch.zeros(3)), 12), r.stderr
        (0.0, 0.0)
    """
    W, b, c = _params(W, vbias, hbias)
    H, V = W.shape
    betas = _schedule(num_betas)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int | np.integer) or burn_in < 0:
        raise ValueError(f"`burn_in` must be an int >= 0; got {burn_in!r}.")
    v = _as64(init if isinstance(init, Tensor) else np.asarray(init))
    if v.dim() != 2 or v.shape[1] != V or len(v) < 2:
        raise DataError(f"`init` must be >= 2 rows of {V} visible units; got {tuple(v.shape)}.")
    if sigma is None and not bool(((v == 0) | (v == 1)).all()):
        raise DataError("`init` must be binary (0/1) visible states of the Bernoulli RBM.")
    if not bool(torch.isfinite(v).all()):
        raise DataError("`init` must be finite.")
    path = _Path(W, b, c, base_vbias, sigma)
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(int(burn_in)):
        v = path.sweep(v, 1.0, gen)
    lw = _anneal(path, v, betas[::-1], gen).numpy()
    top, mean, stderr = _weights(lw)
    lz = path.log_z_base - top - math.log(mean)
    return AISResult(lz, stderr, lw, len(betas), len(v), path.log_z_base)


def energy_ais(
    energy: Callable[[Tensor], Tensor],
    loc: Any,
    scale: Any,
    *,
    num_chains: int = 100,
    num_betas: int | Sequence[float] | np.ndarray = 1000,
    sampler: HMC | MALA | None = None,
    steps: int = 1,
    seed: int = 0,
) -> AISResult:
    r""":math:`\log Z = \log \int e^{-E(x)}\,dx` of any continuous energy by annealed
    importance sampling (Neal 2001) from a diagonal Gaussian base.

    The path is :math:`p^*_\beta(x) = \mathcal N(x; \mu, \operatorname{diag}\sigma^2)^{1-\beta}
    e^{-\beta E(x)}`; each chain starts from the base, adds
    :math:`(\beta_k - \beta_{k-1})\,(-E(x) - \log \mathcal N(x; \mu, \sigma^2))` to its log
    weight at each new temperature and then makes ``steps`` transitions of ``sampler`` (an
    exactly invariant Metropolis kernel: :class:`~ppgen.inference.samplers.HMC` or
    :class:`~ppgen.inference.samplers.MALA`) targeting :math:`p_\beta`. Like :func:`rbm_ais` it
    underestimates :math:`\log Z` in expectation; the base should cover the energy's mass (the
    data's mean and a generous sd), and the sampler's step size suit the energy (the mean
    acceptance over all transitions is kept in ``AISResult.accept_rate``).

    Arguments:
        energy: ``E(x)``, ``(M, *event) -> (M,)``, differentiable in ``x`` (a model's
            ``energy``, e.g. :class:`~ppgen.models.ebm.EBM`'s).
        loc, scale: the base's mean and sd, each of the event's shape (or broadcastable).
        num_chains, num_betas, seed: as for :func:`rbm_ais` (``seed`` seeds torch's global
            generator inside a fork, so the caller's random state is untouched).
        sampler: default ``HMC(step_size=0.2, num_steps=5)``; tune its step size to the
            energy's scale (acceptance well above 0.5).
        steps: transitions per temperature.

    Example: an unnormalised Gaussian, whose :math:`\log Z` is
    :math:`\tfrac d2 \log 2\pi - \tfrac12 \log\det P`.

        >>> P = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
        >>> energy = lambda x: 0.5 * ((x @ P) * x).sum(-1)
        >>> r = energy_ais(energy, torch.zeros(2), torch.full((2,), 2.0), num_chains=500,
        ...                num_betas=300, sampler=HMC(0.3, 5))
        >>> exact = math.log(2 * math.pi) - 0.5 * math.log(float(torch.det(P)))
        >>> abs(r.log_z - exact) < 0.1, r.accept_rate > 0.9
        (True, True)
    """
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(f"`num_chains` must be an int >= 2; got {num_chains!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an int >= 1; got {steps!r}.")
    sampler = HMC(step_size=0.2, num_steps=5) if sampler is None else sampler
    if not isinstance(sampler, HMC | MALA):
        raise ValueError(
            "`sampler` must be an HMC or MALA sampler (ppgen.inference.samplers): AIS needs "
            f"transitions that leave each tempered target exactly invariant; got {sampler!r}."
        )
    betas = _schedule(num_betas)
    mu, sd = _as64(loc), _as64(scale)
    if not (torch.isfinite(mu).all() and torch.isfinite(sd).all() and (sd > 0).all()):
        raise DataError("`loc` must be finite and `scale` finite and positive.")
    shape = torch.broadcast_shapes(mu.shape, sd.shape)
    d = int(torch.Size(shape).numel())
    log_z_base = 0.0  # the base is normalised

    def log_base(x: Tensor) -> Tensor:
        z = (x - mu) / sd
        quad = (z * z).reshape(len(x), -1).sum(-1)
        return (
            -0.5 * quad - float(torch.log(sd).expand(shape).sum()) - 0.5 * d * math.log(2 * math.pi)
        )

    def log_ratio(x: Tensor) -> Tensor:  # log p*_1(x) - log p*_0(x)
        return -energy(x).to(torch.float64) - log_base(x)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        x = mu + sd * torch.randn((num_chains, *shape), dtype=torch.float64)
        log_w = torch.zeros(num_chains, dtype=torch.float64)
        accepted, moves = 0.0, 0
        for k in range(1, len(betas)):
            beta, prev = float(betas[k]), float(betas[k - 1])
            with torch.no_grad():
                log_w += (beta - prev) * log_ratio(x)
            if k < len(betas) - 1:

                def target(y: Tensor, beta: float = beta) -> Tensor:
                    return -(1 - beta) * log_base(y) + beta * energy(y).to(torch.float64)

                state = sampler.init(x)
                state = sampler.run(state, target, steps)
                x = state["x"]
                accepted += float(state["accepted"].double().mean())
                moves += steps
    lw = log_w.numpy()
    top, mean, stderr = _weights(lw)
    result = AISResult(log_z_base + top + math.log(mean), stderr, lw, len(betas), num_chains)
    result.accept_rate = accepted / max(moves, 1)
    return result


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
