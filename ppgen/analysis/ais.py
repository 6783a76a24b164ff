r"""Annealed importance sampling for :math:`\log Z`: RBMs (forward and reverse) and any energy.

- :func:`rbm_ais`: annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008, "On
  the quantitative analysis of deep belief networks") from the base-rate RBM, Bernoulli or
  Gaussian visible units: a stochastic lower bound on :math:`\log Z`;
- :func:`rbm_reverse_ais` (Burda, Grosse & Salakhutdinov 2015): the same path walked down
  from model samples, a stochastic upper bound;
- :func:`energy_ais`: any continuous energy, from a Gaussian base with HMC or MALA moves.

:func:`ppgen.analysis.partition.log_partition` runs them for a fit. All arithmetic is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ppgen.errors import DataError
from ppgen.inference.samplers import HMC, MALA

__all__ = ["AISResult", "ais_betas", "energy_ais", "rbm_ais", "rbm_reverse_ais"]


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

        >>> from ppgen.analysis.partition import rbm_log_partition_exact
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

    def increment(self, v: Tensor, beta: float, prev: float) -> Tensor:
        return self.log_f(v, beta) - self.log_f(v, prev)

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


def _anneal(path: Any, v: Tensor, betas: Any, gen: torch.Generator | None) -> Tensor:
    r"""Chains from ``v`` through the temperatures ``betas`` in the order given (up: AIS; down:
    reverse AIS): at each new temperature the log weight gains
    :math:`\log p^*_k(v) - \log p^*_{k-1}(v)` (``path.increment``), then one move of the
    chains leaving :math:`p_k` invariant (``path.sweep``; none after the last). ``path`` is an
    :class:`_Path` (RBMs, block Gibbs) or an :class:`_EnergyPath` (HMC/MALA). Returns the log
    weights ``(M,)``."""
    log_w = torch.zeros(len(v), dtype=torch.float64)
    prev = float(betas[0])
    for k in range(1, len(betas)):
        beta = float(betas[k])
        log_w += path.increment(v, beta, prev)
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

        >>> from ppgen.analysis.partition import rbm_log_partition_exact
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
    path = _EnergyPath(energy, loc, scale, sampler, steps)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # the kernels take their own grads
        torch.manual_seed(int(seed))
        x = path.mu + path.sd * torch.randn((num_chains, *path.shape), dtype=torch.float64)
        log_w = _anneal(path, x, betas, None)
    lw = log_w.numpy()
    top, mean, stderr = _weights(lw)
    result = AISResult(top + math.log(mean), stderr, lw, len(betas), num_chains)  # Z_base = 1
    result.accept_rate = path.accepted / max(path.moves, 1)
    return result


class _EnergyPath:
    r"""The annealing path from :math:`\mathcal N(\mu, \operatorname{diag}\sigma^2)` to
    :math:`e^{-E}`, moved by ``steps`` transitions of an HMC/MALA ``sampler`` per temperature
    (their acceptance counted); see :func:`energy_ais`."""

    def __init__(self, energy: Callable, loc: Any, scale: Any, sampler: Any, steps: int) -> None:
        self.mu, self.sd = _as64(loc), _as64(scale)
        if not (
            torch.isfinite(self.mu).all() and torch.isfinite(self.sd).all() and (self.sd > 0).all()
        ):
            raise DataError("`loc` must be finite and `scale` finite and positive.")
        self.shape = torch.broadcast_shapes(self.mu.shape, self.sd.shape)
        d = int(torch.Size(self.shape).numel())
        self.norm = float(torch.log(self.sd).expand(self.shape).sum()) + 0.5 * d * math.log(
            2 * math.pi
        )
        self.energy, self.sampler, self.steps = energy, sampler, steps
        self.accepted, self.moves = 0.0, 0

    def log_base(self, x: Tensor) -> Tensor:
        z = (x - self.mu) / self.sd
        return -0.5 * (z * z).reshape(len(x), -1).sum(-1) - self.norm

    def increment(self, x: Tensor, beta: float, prev: float) -> Tensor:
        """:math:`(\beta - \beta') (\\log p^*_1(x) - \\log p^*_0(x))`: one energy call."""
        return (beta - prev) * (-self.energy(x).to(torch.float64) - self.log_base(x))

    def sweep(self, x: Tensor, beta: float, gen: Any) -> Tensor:
        """``steps`` transitions targeting :math:`p_\beta` (torch's global generator)."""

        def target(y: Tensor) -> Tensor:
            return -(1 - beta) * self.log_base(y) + beta * self.energy(y).to(torch.float64)

        state = self.sampler.run(self.sampler.init(x), target, self.steps)
        self.accepted += float(state["accepted"].double().mean())
        self.moves += self.steps
        return state["x"]
