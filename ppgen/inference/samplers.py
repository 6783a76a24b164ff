"""MCMC samplers for energy-based models: batched chains over data-shaped tensors.

The contrastive estimators (contrastive divergence CD-k / PCD, noise-contrastive estimation,
score matching) need *negative samples* from the model being fitted: thousands of chains over
data-shaped tensors (images, vectors), advanced a few steps at a time while the model changes
between calls. Each sampler here is a small stateless object whose settings are validated at
construction, driven through an ``init`` / ``step`` pair over a state record::

    state = sampler.init(x0)               # {"x": x0 (detached copy), counters...}
    state = sampler.step(state, target)    # one transition of every chain (the rows of x)
    state = sampler.run(state, target, k)  # k transitions
    sampler.stats(state)                   # {"accept_rate": ...} for MALA / HMC

The state is a ``dict[str, torch.Tensor]`` and every random number comes from torch's global
RNG (of the device ``x`` lives on), so an estimator checkpoints the state with its other
tensors plus ``torch.get_rng_state()`` (and ``torch.cuda.get_rng_state_all()`` on a GPU) and
resumes bit-exactly. ``step`` never changes the state it is given: it returns a new record.

What ``target`` must provide depends on the sampler's ``needs``:

* ``"energy"`` (:class:`Langevin`, :class:`MALA`, :class:`HMC`): a callable
  ``energy(x) -> (N,)`` tensor, differentiable in ``x``, with :math:`p(x) \\propto e^{-E(x)}`.
  The samplers take :math:`\\nabla_x E` with ``torch.autograd.grad`` with respect to a detached
  copy of ``x`` only, so nothing accumulates in the model's parameters' ``.grad``; this works
  inside ``torch.no_grad()`` too. States come back detached.
* ``"score"`` (:class:`AnnealedLangevin`): a callable ``score(x, sigma) -> tensor like x``,
  the noise-conditional score :math:`\\nabla_x \\log p_\\sigma(x)` (``sigma`` a Python float).
* ``"gibbs"`` (:class:`BlockGibbs`): an object with ``block_gibbs_step(x) -> x'``, one sweep of
  a model with conditional structure (an RBM's visible -> hidden -> visible update).

A target that lacks what a sampler needs is refused with an
:class:`~ppgen.errors.EstimatorError` naming the samplers that fit it.

Example: 2000 MALA chains on a standard normal energy, started far away.

    >>> import torch
    >>> from ppgen.inference.samplers import MALA
    >>> _ = torch.manual_seed(0)
    >>> energy = lambda x: 0.5 * (x**2).sum(-1)
    >>> mala = MALA(step_size=0.5)
    >>> state = mala.run(mala.init(torch.full((2000, 2), 3.0)), energy, 200)
    >>> x = state["x"]
    >>> bool(x.mean(0).abs().max() < 0.1), bool((x.var(0) - 1).abs().max() < 0.15)
    (True, True)
    >>> 0.5 < mala.stats(state)["accept_rate"] < 1.0
    True
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
from abc import ABC
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ppgen.errors import EstimatorError, check_int, check_positive

__all__ = [
    "Sampler",
    "Langevin",
    "MALA",
    "HMC",
    "AnnealedLangevin",
    "BlockGibbs",
    "SAMPLERS",
    "make_sampler",
    "geometric_sigmas",
]

State = dict[str, Any]


# ----------------------------------------------------------------------------- target checks


def _positional_arity(f: Callable) -> tuple[int, float] | None:
    """(required, maximum) positional arguments of ``f``, or None when they cannot be read.

    Python functions and the methods bound to them are read from their code object (what
    ``inspect.signature`` reads, at a thousandth of its cost: samplers check their target
    once per ``run``, i.e. once per contrastive step); other callables (and functions that
    carry ``__wrapped__`` or ``__signature__``) go through ``inspect.signature``.

    Example:
        >>> _positional_arity(lambda x, sigma=1.0: x)
        (1, 2.0)
        >>> class Energy:
        ...     def energy(self, x, *rest): return x
        >>> _positional_arity(Energy().energy), _positional_arity(Energy.energy)
        ((1, inf), (2, inf))
    """
    fast = _code_arity(f)
    if fast is not None:
        return fast
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    required, maximum = 0, 0.0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            maximum = math.inf
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            maximum += 1
            required += p.default is p.empty
    return required, maximum


def _code_arity(f: Any) -> tuple[int, float] | None:
    """:func:`_positional_arity` of a plain Python function or a method bound to one, read
    from its code object; None for anything else."""
    func, bound = (f.__func__, True) if isinstance(f, types.MethodType) else (f, False)
    if not isinstance(func, types.FunctionType) or "__wrapped__" in func.__dict__:
        return None
    if "__signature__" in func.__dict__:
        return None
    code = func.__code__
    n = code.co_argcount  # positional-only and positional-or-keyword parameters
    required = n - len(func.__defaults__ or ())
    varargs = bool(code.co_flags & inspect.CO_VARARGS)
    if bound and n:  # the bound object fills the first positional parameter
        n, required = n - 1, max(required - 1, 0)
    return required, (math.inf if varargs else float(n))


def _fits_energy(target: Any) -> bool:
    if not callable(target):
        return False
    arity = _positional_arity(target)
    return arity is None or (arity[0] <= 1 and arity[1] >= 1)


def _fits_score(target: Any) -> bool:
    if not callable(target):
        return False
    arity = _positional_arity(target)
    return arity is None or (arity[0] <= 2 and arity[1] >= 2)


def _fits_gibbs(target: Any) -> bool:
    return callable(getattr(target, "block_gibbs_step", None))


_FITS = {"energy": _fits_energy, "score": _fits_score, "gibbs": _fits_gibbs}
_USE = {"energy": "Langevin, MALA or HMC", "score": "AnnealedLangevin", "gibbs": "BlockGibbs"}
_WHAT = {
    "energy": "a callable energy(x) -> (N,) tensor, differentiable in x",
    "score": "a callable score(x, sigma) -> tensor like x (a noise-conditional score)",
    "gibbs": "an object with block_gibbs_step(x) -> x' (one sweep of a conditional model)",
}


def _describe(target: Any, need: str) -> str:
    """What ``target`` offers, in words, for the refusal messages."""
    if need == "gibbs":
        return "the model declares no `block_gibbs_step`"
    if not callable(target):
        if _fits_gibbs(target):
            return "the model declares `block_gibbs_step` but is not callable"
        return f"the target is a {type(target).__name__}, not callable"
    arity = _positional_arity(target)
    if arity is not None and arity[0] >= 2:
        return f"the target takes {arity[0]} positional arguments, like score(x, sigma)"
    if arity is not None and arity[1] < 2:
        return "the target takes one argument, like energy(x)"
    return "the target"


def _require(sampler: Sampler, target: Any) -> None:
    if _FITS[sampler.needs](target):
        return
    fit = [_USE[k] for k in ("energy", "score", "gibbs") if _FITS[k](target)]
    advice = f"use {' or '.join(fit)}" if fit else f"give {_WHAT[sampler.needs]}"
    raise EstimatorError(
        f"{type(sampler).__name__} needs `target` to be {_WHAT[sampler.needs]}; "
        f"{_describe(target, sampler.needs)}; {advice}."
    )


def _check_x0(sampler: Sampler, x0: Any, *, floating: bool) -> torch.Tensor:
    name = type(sampler).__name__
    if not isinstance(x0, torch.Tensor):
        raise EstimatorError(
            f"{name}.init: `x0` must be a torch.Tensor whose rows are the chains; got "
            f"{type(x0).__name__}. Convert it with torch.as_tensor(x0)."
        )
    if x0.dim() < 1 or x0.shape[0] < 1:
        raise EstimatorError(
            f"{name}.init: `x0` must have at least one row (one chain per row), shape (N, ...); "
            f"got shape {tuple(x0.shape)}. For one chain of a vector use x0[None]."
        )
    if floating and not x0.is_floating_point():
        raise EstimatorError(
            f"{name}.init: `x0` must be a floating-point tensor (the chains move continuously); "
            f"got {x0.dtype}. Use x0.float(), or BlockGibbs for a discrete model."
        )
    return x0.detach().clone()


def _counter(value: int = 0) -> int:
    """A transition counter of a sampler's state: a Python int (a tensor would cost a
    dispatch per transition); checkpoints store it as it is."""
    return int(value)


def _energy_and_grad(energy: Callable, x: torch.Tensor, who: str) -> tuple[torch.Tensor, ...]:
    """E(x) (shape (N,)) and its gradient in x, both detached, with no graph into parameters."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        e = energy(xr)
        if not isinstance(e, torch.Tensor) or tuple(e.shape) != (x.shape[0],):
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise EstimatorError(
                f"{who}: energy(x) must return one energy per chain, shape ({x.shape[0]},) for "
                f"x of shape {tuple(x.shape)}; got {shape}. Sum the other dimensions (or "
                "squeeze a trailing 1)."
            )
        if not e.requires_grad:
            raise EstimatorError(
                f"{who}: energy(x) is not differentiable in x (its output has no grad_fn); "
                "Langevin, MALA and HMC follow the gradient of the energy. Compute it with "
                "torch operations, outside torch.no_grad(), or use BlockGibbs for a model "
                "with conditional structure."
            )
        # d(sum E)/dx with the ones given (no sum node and its backward in the graph)
        (g,) = torch.autograd.grad(e, xr, torch.ones_like(e))
    return e.detach(), g.detach()


def _rowsum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1)


def _rowview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-chain (N,) tensor shaped to broadcast against ``like`` (N, ...)."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


# ---------------------------------------------------------------------------------- samplers


class Sampler(ABC):  # noqa: B024 - a base: _step or step is what subclasses write
    """A batched Markov kernel: each row of ``state["x"]`` is one chain.

    Subclasses set ``name`` (their key in :data:`SAMPLERS`) and ``needs`` (``"energy"``,
    ``"score"`` or ``"gibbs"``: what ``target`` must provide, see the module docstring) and
    implement :meth:`_step` (the transition; :meth:`step` checks the target first, and
    :meth:`run` checks it once for ``k`` transitions) or :meth:`step`. Samplers hold settings
    only; everything that changes lives in the state record, so one sampler object can drive
    any number of states.

    Example: a custom kernel (a random walk with no target) plugs in with ``step`` alone.

        >>> class Drift(Sampler):
        ...     name, needs = "drift", "energy"
        ...     def step(self, state, target):
        ...         return {**state, "x": state["x"] + 1, "step": state["step"] + 1}
        >>> s = Drift().run(Drift().init(torch.zeros(3, 2)), lambda x: x.sum(-1), 4)
        >>> s["x"][0].tolist(), int(s["step"])
        ([4.0, 4.0], 4)
    """

    name: str = "sampler"
    needs: str = "energy"

    def init(self, x0: torch.Tensor) -> State:
        """A fresh state at ``x0`` (rows = chains): ``{"x": detached copy, "step": 0}``."""
        return {"x": _check_x0(self, x0, floating=self.needs != "gibbs"), "step": _counter()}

    def step(self, state: State, target: Any) -> State:
        """One transition of every chain; returns a new state (``state`` is not changed)."""
        _require(self, target)
        return self._step(state, target)

    def _step(self, state: State, target: Any) -> State:
        """The transition itself, ``target`` already checked (subclasses implement this, or
        override :meth:`step`)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither step nor _step.")

    def run(self, state: State, target: Any, k: int) -> State:
        """``k`` transitions of every chain (``k = 0`` returns ``state``); ``target`` is
        checked once, not at every transition."""
        if type(k) is not int or k < 0:  # noqa: E721 - the check below names what is wrong
            k = check_int("k", k, 0)
        if k == 0:
            return state
        state = self.step(state, target)
        step = self._step if type(self)._step is not Sampler._step else self.step
        for _ in range(k - 1):
            state = step(state, target)
        return state

    def stats(self, state: State) -> dict[str, float]:
        """Diagnostics of the chains so far (``{}`` for samplers with nothing to report)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments, so that ``make_sampler(s.settings())`` rebuilds ``s``."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "name")
        return f"{type(self).__name__}({args})"


class Langevin(Sampler):
    """Unadjusted Langevin dynamics (SGLD-style), as used to sample deep EBMs.

    Each step moves every chain by

    .. math:: x \\leftarrow x - \\tfrac{h}{2}\\,\\nabla_x E(x) + s\\,\\sqrt{h}\\,\\varepsilon,
        \\qquad \\varepsilon \\sim \\mathcal N(0, I),

    with ``h = step_size`` and ``s = noise_scale``. With ``s = 1`` this is the Euler-Maruyama
    discretisation of the Langevin diffusion whose stationary law is :math:`p \\propto e^{-E}`:
    exact as ``h -> 0``, with an :math:`O(h)` bias otherwise (on a Gaussian with precision
    :math:`P` the chains settle at covariance :math:`(P - hP^2/4)^{-1}`, not :math:`P^{-1}`; no
    accept/reject step corrects it: use :class:`MALA` or :class:`HMC` for exact draws). Deep-EBM
    practice (Du & Mordatch 2019, *Implicit generation and generalization in energy-based
    models*; Nijkamp et al. 2019) decouples the two terms: a large step with a small noise
    (their ``h = 10`` with noise standard deviation 0.005 is ``noise_scale = 0.005 / sqrt(10)``)
    and short chains; this samples a sharpened :math:`p^{1/s^2}` at best, which is what
    those training schemes expect.

    Arguments:
        step_size: ``h > 0``.
        noise_scale: ``s >= 0`` (default 1: the Langevin diffusion; 0: gradient descent).
        clip_grad: if given (``> 0``), each chain's gradient is rescaled to norm at most
            ``clip_grad`` (the norm over all of its coordinates) before the step; guards the
            first steps of a young EBM whose energy is steep. Changes the target law where it
            binds.
        clip_x: if given, every coordinate is clamped after each step to ``[-c, c]`` (a number
            ``c > 0``) or ``[lo, hi]`` (a pair ``lo < hi``), e.g. the data range of images.
            Also changes the target law where it binds (the chains live in the box).

    State: ``{"x", "step"}``.

    Example: the chains of a standard normal settle at mean 0 and variance
    :math:`1 / (1 - h/4)` (the step bias, 1.026 here).

        >>> _ = torch.manual_seed(0)
        >>> sampler = Langevin(step_size=0.1)
        >>> state = sampler.run(sampler.init(torch.zeros(4000, 1)), lambda x: 0.5 * x[:, 0]**2, 300)
        >>> abs(float(state["x"].var()) - 1 / (1 - 0.1 / 4)) < 0.1
        True
    """

    name, needs = "langevin", "energy"

    def __init__(
        self,
        step_size: float = 0.01,
        noise_scale: float = 1.0,
        clip_grad: float | None = None,
        clip_x: float | tuple[float, float] | None = None,
    ) -> None:
        self.step_size = check_positive("step_size", step_size)
        ok = isinstance(noise_scale, numbers.Real) and not isinstance(noise_scale, bool)
        if not ok or not math.isfinite(noise_scale) or noise_scale < 0:
            raise EstimatorError(
                f"`noise_scale` must be a finite number >= 0 (1 for the Langevin diffusion); "
                f"got {noise_scale!r}."
            )
        self.noise_scale = float(noise_scale)
        self.clip_grad = None if clip_grad is None else check_positive("clip_grad", clip_grad)
        self.clip_x = _check_box(clip_x)

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step_size": self.step_size,
            "noise_scale": self.noise_scale,
            "clip_grad": self.clip_grad,
            "clip_x": self.clip_x,
        }

    def _step(self, state: State, target: Any) -> State:
        _, g = _energy_and_grad(target, state["x"], "Langevin")
        if self.clip_grad is not None:
            norm = _rowsum(g * g).sqrt()
            g = g * _rowview((self.clip_grad / norm.clamp_min(1e-30)).clamp(max=1.0), g)
        x = self._move(state["x"], g)
        if self.clip_x is not None:
            x.clamp_(*self.clip_x)
        return {**state, "x": x, "step": state["step"] + 1}

    def _move(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Drift and noise of one transition, as a new tensor (so the in-place noise and
        clamping touch only this sampler's own tensor)."""
        x = torch.add(x, g, alpha=-self.step_size / 2)
        if self.noise_scale > 0:
            x.add_(torch.randn_like(x), alpha=self.noise_scale * math.sqrt(self.step_size))
        return x

    def run(self, state: State, target: Any, k: int) -> State:
        """``k`` transitions; the first checks ``target`` and its output, the rest run the
        bare update (the same arithmetic as :meth:`step`, without its per-call checks)."""
        if type(k) is not int or k < 0:  # noqa: E721 - the check names what is wrong
            k = check_int("k", k, 0)
        if k <= 1 or self.clip_grad is not None or self.clip_x is not None:
            return super().run(state, target, k)
        state = self.step(state, target)
        x = state["x"]
        ones = None  # d(sum E)/dx with the ones given, as in step (E's dtype and device)
        with torch.enable_grad():
            for _ in range(k - 1):
                xr = x.requires_grad_(True)  # x is this sampler's own tensor, with no graph
                e = target(xr)
                if ones is None:
                    ones = torch.ones_like(e)
                (g,) = torch.autograd.grad(e, xr, ones)
                x = self._move(xr.detach(), g)
        return {**state, "x": x, "step": state["step"] + k - 1}


def _check_box(clip_x: Any) -> tuple[float, float] | None:
    if clip_x is None:
        return None
    if isinstance(clip_x, numbers.Real) and not isinstance(clip_x, bool):
        c = check_positive("clip_x", clip_x)
        return (-c, c)
    try:
        lo, hi = (float(v) for v in clip_x)
    except (TypeError, ValueError):
        lo, hi = math.nan, math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise EstimatorError(
            f"`clip_x` must be a number c > 0 (the box [-c, c]) or a pair (lo, hi) with lo < hi; "
            f"got {clip_x!r}."
        )
    return (lo, hi)


class _Metropolis(Sampler):
    """Shared bookkeeping of the accept/reject samplers."""

    def init(self, x0: torch.Tensor) -> State:
        """``{"x", "step", "accepted", "last_accepted"}``: per-chain accept counts."""
        state = super().init(x0)
        n, dev = state["x"].shape[0], state["x"].device
        state["accepted"] = torch.zeros(n, dtype=torch.int64, device=dev)
        state["last_accepted"] = torch.zeros(n, dtype=torch.bool, device=dev)
        return state

    def _accept(self, state: State, proposal: torch.Tensor, log_ratio: torch.Tensor) -> State:
        x = state["x"]
        u = torch.rand(x.shape[0], device=x.device, dtype=x.dtype)
        # NaN log-ratios (a proposal where the energy blew up) compare False: rejected
        accept = torch.log(u) < log_ratio
        x = torch.where(_rowview(accept, x), proposal, x)
        return {
            **state,
            "x": x,
            "step": state["step"] + 1,
            "accepted": state["accepted"] + accept,
            "last_accepted": accept,
        }

    def stats(self, state: State) -> dict[str, float]:
        """``accept_rate`` (all chains, since ``init``), ``last_accept_rate`` (the last step)
        and ``min_chain_accept_rate`` (the stickiest chain: near 0 flags a stuck chain)."""
        steps = int(state["step"])
        if steps == 0:
            return {}
        acc = state["accepted"].double()
        return {
            "accept_rate": float(acc.mean()) / steps,
            "last_accept_rate": float(state["last_accepted"].double().mean()),
            "min_chain_accept_rate": float(acc.min()) / steps,
        }


class MALA(_Metropolis):
    """Metropolis-adjusted Langevin: a Langevin proposal, accepted or rejected per chain.

    Proposal (``h = step_size``): :math:`y = x - \\tfrac h2 \\nabla E(x) + \\sqrt h\\,\\varepsilon`,
    so :math:`q(y \\mid x) = \\mathcal N(y;\\, x - \\tfrac h2 \\nabla E(x),\\, hI)`. Each chain
    moves to ``y`` with probability

    .. math:: \\min\\Bigl(1,\\; \\frac{e^{-E(y)}\\, q(x \\mid y)}{e^{-E(x)}\\, q(y \\mid x)}\\Bigr),

    so :math:`p \\propto e^{-E}` is exactly invariant for every step size (no step bias; the
    step size trades acceptance against move length, ~0.57 acceptance is the classic optimum
    in high dimension). Two energy-and-gradient evaluations per step; the energy is evaluated
    afresh each step (no cache in the state), since a model being fitted changes between calls.

    Arguments:
        step_size: ``h > 0``.

    State: ``{"x", "step", "accepted" (N,) int64 accept counts per chain, "last_accepted" (N,)
    bool}``; :meth:`stats` reports the acceptance rates.

    Example: a bigger step is accepted less often.

        >>> _ = torch.manual_seed(0)
        >>> energy = lambda x: 0.5 * (x**2).sum(-1)
        >>> rate = lambda h: MALA(h).stats(MALA(h).run(MALA(h).init(torch.zeros(1000, 2)),
        ...                                          energy, 50))["accept_rate"]
        >>> rate(0.5) > rate(2.0) > rate(4.0)
        True
    """

    name, needs = "mala", "energy"

    def __init__(self, step_size: float = 0.01) -> None:
        self.step_size = check_positive("step_size", step_size)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "step_size": self.step_size}

    def _step(self, state: State, target: Any) -> State:
        x, h = state["x"], self.step_size
        e0, g0 = _energy_and_grad(target, x, "MALA")
        noise = torch.randn_like(x)
        y = x - (h / 2) * g0 + math.sqrt(h) * noise
        e1, g1 = _energy_and_grad(target, y, "MALA")
        log_q_fwd = -0.5 * _rowsum(noise * noise)  # log q(y | x), up to the shared constant
        back = x - y + (h / 2) * g1
        log_q_bwd = -_rowsum(back * back) / (2 * h)  # log q(x | y)
        return self._accept(state, y, (e0 - e1) + (log_q_bwd - log_q_fwd))


class HMC(_Metropolis):
    """Batched Hamiltonian Monte Carlo: every chain its own trajectory and accept/reject.

    Each step draws a momentum :math:`p \\sim \\mathcal N(0, I)` (identity mass) per chain, runs
    ``num_steps`` leapfrog steps of size ``h = step_size`` on :math:`H(x, p) = E(x) +
    \\tfrac12 \\lVert p \\rVert^2` and accepts the end point with probability
    :math:`\\min(1, e^{H(x, p) - H(x', p')})`, chain by chain: :math:`e^{-E}` is exactly
    invariant (the leapfrog is volume-preserving and reversible). ``num_steps + 1`` energy
    and gradient evaluations per step.

    Why not Pyro's HMC: Pyro's kernel (and ``ppgen.inference.HMC``, the estimator) samples a
    *program's latent sites*, one chain per kernel, adapting its step size and mass matrix
    during warm-up. An energy-based model's negative phase needs the opposite shape: thousands
    of persistent chains over data-shaped tensors, each with its own accept/reject, all
    advanced together a few steps per parameter update under an energy that changes between
    calls, with state an estimator can checkpoint. This kernel is that, and no more (no
    adaptation: tune ``step_size`` for the acceptance rate :meth:`stats` reports, ~0.65-0.8).

    Arguments:
        step_size: leapfrog step ``h > 0``.
        num_steps: leapfrog steps per transition, an int ``>= 1`` (default 10).
        jitter: in ``[0, 1)`` (default 0): each chain's step size is drawn afresh every
            transition, uniform in ``h (1 +- jitter)``. A fixed trajectory ``h * num_steps``
            can be (nearly) periodic in some direction of the target, so that the chains never
            move along it (on a Gaussian with precision eigenvalue :math:`\\lambda`, when
            ``num_steps`` leapfrog rotations of angle
            :math:`\\arccos(1 - h^2\\lambda/2)` add up to a multiple of :math:`2\\pi`); a
            random step size breaks it and keeps the target invariant (Neal 2011, *MCMC using
            Hamiltonian dynamics*, 5.4.2.2).

    State: as :class:`MALA`'s.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> hmc = HMC(step_size=0.3, num_steps=5)
        >>> state = hmc.run(hmc.init(torch.zeros(2000, 3)), lambda x: 0.5 * (x**2).sum(-1), 20)
        >>> round(float(state["x"].var(0).mean()), 1), hmc.stats(state)["accept_rate"] > 0.9
        (1.0, True)
    """

    name, needs = "hmc", "energy"

    def __init__(self, step_size: float = 0.1, num_steps: int = 10, jitter: float = 0.0) -> None:
        self.step_size = check_positive("step_size", step_size)
        self.num_steps = check_int("num_steps", num_steps, 1)
        ok = isinstance(jitter, numbers.Real) and not isinstance(jitter, bool)
        if not ok or not 0 <= jitter < 1:
            raise EstimatorError(
                f"`jitter` must be a number in [0, 1) (the relative spread of the random step "
                f"size; 0 for a fixed step); got {jitter!r}."
            )
        self.jitter = float(jitter)

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "step_size": self.step_size,
            "num_steps": self.num_steps,
            "jitter": self.jitter,
        }

    def _step(self, state: State, target: Any) -> State:
        x0 = state["x"]
        h: float | torch.Tensor = self.step_size
        if self.jitter > 0:
            u = torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
            h = _rowview(self.step_size * (1 + self.jitter * (2 * u - 1)), x0)
        e0, g = _energy_and_grad(target, x0, "HMC")
        p0 = torch.randn_like(x0)
        x, p = x0, p0 - (h / 2) * g
        for i in range(self.num_steps):
            x = x + h * p
            e, g = _energy_and_grad(target, x, "HMC")
            if i < self.num_steps - 1:
                p = p - h * g
        p = p - (h / 2) * g
        h0 = e0 + 0.5 * _rowsum(p0 * p0)
        h1 = e + 0.5 * _rowsum(p * p)
        return self._accept(state, x, h0 - h1)


def geometric_sigmas(sigma_max: float, sigma_min: float, num: int) -> tuple[float, ...]:
    """``num`` noise levels from ``sigma_max`` down to ``sigma_min``, a geometric sequence.

    Example:
        >>> [round(s, 3) for s in geometric_sigmas(1.0, 0.01, 3)]
        [1.0, 0.1, 0.01]
    """
    hi, lo = check_positive("sigma_max", sigma_max), check_positive("sigma_min", sigma_min)
    num = check_int("num", num, 2)
    if not hi > lo:
        raise EstimatorError(
            f"`sigma_max` must be larger than `sigma_min`; got {sigma_max!r} <= {sigma_min!r}."
        )
    ratio = (lo / hi) ** (1 / (num - 1))
    return tuple(hi * ratio**i for i in range(num - 1)) + (lo,)


class AnnealedLangevin(Sampler):
    """Annealed Langevin dynamics (Song & Ermon 2019, *Generative modeling by estimating
    gradients of the data distribution*, Algorithm 1) on a noise-conditional score.

    For each noise level :math:`\\sigma_1 > \\dots > \\sigma_L` in turn, with step
    :math:`\\alpha_i = \\epsilon\\, \\sigma_i^2 / \\sigma_L^2`, run ``T = steps_per_sigma`` steps

    .. math:: x \\leftarrow x + \\tfrac{\\alpha_i}{2}\\, s(x, \\sigma_i)
        + \\sqrt{\\alpha_i}\\,\\varepsilon, \\qquad \\varepsilon \\sim \\mathcal N(0, I),

    where :math:`s(x, \\sigma) \\approx \\nabla_x \\log p_\\sigma(x)` is the score of the data
    convolved with :math:`\\mathcal N(0, \\sigma^2 I)`. The large levels fill low-density
    regions and let chains cross between modes, so the modes' weights come out right where
    plain Langevin on the data's score keeps whatever split the starting points' basins of
    attraction give (their Fig. 3).

    Arguments:
        sigmas: the noise levels, positive and strictly decreasing (usually geometric:
            :func:`geometric_sigmas`; default ``geometric_sigmas(1, 0.01, 10)``, the paper's
            image setting).
        steps_per_sigma: ``T``, an int ``>= 1`` (default 100).
        eps: :math:`\\epsilon > 0`, the step at the last level (default 2e-5).

    ``step`` advances one Langevin step and moves on to the next level after ``T`` steps at a
    level; the position in the schedule is kept in the state. A full run is
    ``len(sigmas) * T`` steps (:attr:`num_steps`, :meth:`sample`); steps after that stay at
    the last level (:meth:`stats` reports ``done = 1``). ``score`` is called with ``x`` and
    ``sigma`` as a Python float; its output is detached.

    State: ``{"x", "step", "level" (index of the next step's sigma; len(sigmas) when done),
    "t" (steps taken at that level)}``.

    Example: a standard normal's perturbed score is :math:`-x / (1 + \\sigma^2)`.

        >>> _ = torch.manual_seed(0)
        >>> ald = AnnealedLangevin(geometric_sigmas(5.0, 0.1, 5), steps_per_sigma=50, eps=0.01)
        >>> x = ald.sample(10 * torch.rand(4000, 2) - 5, lambda x, sigma: -x / (1 + sigma**2))
        >>> bool((x.mean(0).abs() < 0.1).all()), bool(((x.var(0) - 1).abs() < 0.15).all())
        (True, True)
    """

    name, needs = "annealed_langevin", "score"

    def __init__(
        self,
        sigmas: Sequence[float] | torch.Tensor | None = None,
        steps_per_sigma: int = 100,
        eps: float = 2e-5,
    ) -> None:
        if sigmas is None:
            sigmas = geometric_sigmas(1.0, 0.01, 10)
        if isinstance(sigmas, torch.Tensor):
            sigmas = sigmas.detach().cpu().reshape(-1).tolist()
        try:
            values = tuple(float(s) for s in sigmas)
        except (TypeError, ValueError):
            values = ()
        ok = len(values) >= 1 and all(math.isfinite(s) and s > 0 for s in values)
        if not ok or any(b >= a for a, b in zip(values, values[1:])):
            raise EstimatorError(
                "`sigmas` must be a non-empty sequence of positive noise levels in strictly "
                f"decreasing order (e.g. geometric_sigmas(20.0, 0.01, 10)); got {sigmas!r}."
            )
        self.sigmas = values
        self.steps_per_sigma = check_int("steps_per_sigma", steps_per_sigma, 1)
        self.eps = check_positive("eps", eps)

    @property
    def num_steps(self) -> int:
        """Steps in the whole schedule: ``len(sigmas) * steps_per_sigma``."""
        return len(self.sigmas) * self.steps_per_sigma

    def step_size(self, level: int) -> float:
        """:math:`\\alpha_i = \\epsilon\\, \\sigma_i^2 / \\sigma_L^2` of level ``i`` (from 0)."""
        return self.eps * (self.sigmas[level] / self.sigmas[-1]) ** 2

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sigmas": list(self.sigmas),
            "steps_per_sigma": self.steps_per_sigma,
            "eps": self.eps,
        }

    def init(self, x0: torch.Tensor) -> State:
        """``{"x", "step", "level", "t"}`` at the start of the schedule."""
        return {**super().init(x0), "level": _counter(), "t": _counter()}

    def _step(self, state: State, target: Any) -> State:
        x, level, t = state["x"], int(state["level"]), int(state["t"])
        n_levels = len(self.sigmas)
        at = min(level, n_levels - 1)
        sigma, alpha = self.sigmas[at], self.step_size(at)
        s = target(x, sigma)
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise EstimatorError(
                f"AnnealedLangevin: score(x, sigma) must return a tensor shaped like x, "
                f"{tuple(x.shape)}; got {shape}."
            )
        x = x + (alpha / 2) * s.detach() + math.sqrt(alpha) * torch.randn_like(x)
        t += 1
        if level < n_levels and t >= self.steps_per_sigma:
            level, t = level + 1, 0
        return {
            **state,
            "x": x,
            "step": state["step"] + 1,
            "level": _counter(level),
            "t": _counter(t),
        }

    def sample(self, x0: torch.Tensor, score: Callable, *, denoise: bool = False) -> torch.Tensor:
        """Run the whole schedule from ``x0`` and return the chains' final positions.

        ``denoise=True`` adds the final denoising step :math:`x + \\sigma_L^2 s(x, \\sigma_L)`
        (Tweedie's formula; Jolicoeur-Martineau et al. 2021), which removes the last level's
        noise from the samples.
        """
        x = self.run(self.init(x0), score, self.num_steps)["x"]
        if denoise:
            x = x + self.sigmas[-1] ** 2 * score(x, self.sigmas[-1]).detach()
        return x

    def stats(self, state: State) -> dict[str, float]:
        """``sigma`` (the next step's noise level), ``level`` and ``done`` (1.0 when the
        schedule has been run through)."""
        level = int(state["level"])
        return {
            "sigma": self.sigmas[min(level, len(self.sigmas) - 1)],
            "level": float(level),
            "done": float(level >= len(self.sigmas)),
        }


class BlockGibbs(Sampler):
    """Block Gibbs sampling: one ``target.block_gibbs_step(x)`` sweep per step.

    For models with conditional structure, such as a restricted Boltzmann machine, whose
    sweep samples the hidden units given the visible ones and then the visible units given
    the hidden ones (each block exactly from its conditional: every sweep leaves the model's
    law invariant, no step size to tune). The sweep draws its random numbers from torch's
    global RNG for the state to resume bit-exactly. ``x`` may be of any dtype (binary units as
    floats or ints); the sweep must return a tensor of the same shape.

    State: ``{"x", "step"}``.

    Example: a two-state chain that flips with probability 0.5 is uniform.

        >>> class Flip:
        ...     def block_gibbs_step(self, x):
        ...         return torch.where(torch.rand_like(x) < 0.5, 1 - x, x)
        >>> _ = torch.manual_seed(0)
        >>> s = BlockGibbs().run(BlockGibbs().init(torch.zeros(4000, 1)), Flip(), 3)
        >>> round(float(s["x"].mean()), 1)
        0.5
    """

    name, needs = "gibbs", "gibbs"

    def _step(self, state: State, target: Any) -> State:
        x = state["x"]
        new = target.block_gibbs_step(x)
        if not isinstance(new, torch.Tensor) or new.shape != x.shape:
            shape = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise EstimatorError(
                f"BlockGibbs: block_gibbs_step(x) must return a tensor shaped like x, "
                f"{tuple(x.shape)}; got {shape}."
            )
        return {**state, "x": new.detach(), "step": state["step"] + 1}


SAMPLERS: dict[str, type[Sampler]] = {
    "langevin": Langevin,
    "mala": MALA,
    "hmc": HMC,
    "annealed_langevin": AnnealedLangevin,
    "gibbs": BlockGibbs,
}


def make_sampler(spec: Sampler | str | dict[str, Any], **settings: Any) -> Sampler:
    """A :class:`Sampler` from an instance (returned as is), a name in :data:`SAMPLERS` (built
    with its default settings, overridden by ``settings``) or a dict ``{"name": ..., **settings}``
    (what :meth:`Sampler.settings` returns, for saved runs).

    Example:
        >>> make_sampler("hmc", step_size=0.05)
        HMC(step_size=0.05, num_steps=10, jitter=0.0)
        >>> make_sampler({"name": "mala", "step_size": 0.2})
        MALA(step_size=0.2)
        >>> make_sampler("gibbs")
        BlockGibbs()
    """
    if isinstance(spec, Sampler):
        if settings:
            raise EstimatorError(
                f"make_sampler: settings {sorted(settings)} were given with a built sampler "
                f"{spec!r}; pass them to its constructor instead."
            )
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise EstimatorError(
                f"make_sampler: a dict spec needs a 'name' key (one of {sorted(SAMPLERS)}); "
                f"got keys {sorted(spec)}."
            )
        settings = {**spec, **settings}
        spec = name
    if not isinstance(spec, str) or spec.lower() not in SAMPLERS:
        raise EstimatorError(
            f"Unknown sampler {spec!r}: give one of {sorted(SAMPLERS)} or a Sampler instance "
            "(ppgen.inference.samplers)."
        )
    cls = SAMPLERS[spec.lower()]
    try:
        return cls(**settings)
    except TypeError as e:
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise EstimatorError(
            f"make_sampler({spec!r}): {e}. {cls.__name__} takes {params or 'no settings'}."
        ) from None
