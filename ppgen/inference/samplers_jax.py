"""The samplers of :mod:`ppgen.inference.samplers` as JAX transitions (NumPyro fits).

:func:`jax_transition` turns a :class:`~ppgen.inference.samplers.Langevin`,
:class:`~ppgen.inference.samplers.MALA`, :class:`~ppgen.inference.samplers.HMC` or
:class:`~ppgen.inference.samplers.BlockGibbs` into one pure function
``move(x, key) -> (x', accepted)`` over a batch of chains, to run under ``jax.lax.scan``
inside a jitted step: the same update rules as the torch samplers (each chain accepted or
rejected on its own), ``accepted`` a ``(N,)`` float array (all ones for Langevin and block
Gibbs, which have no accept step). :func:`jax_run` runs any of them, and
:class:`~ppgen.inference.samplers.AnnealedLangevin` (whose step depends on its place in the
schedule), for a number of transitions from ``x0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ppgen.errors import EstimatorError
from ppgen.inference.samplers import HMC, MALA, AnnealedLangevin, BlockGibbs, Langevin

__all__ = ["JAX_SAMPLERS", "jax_run", "jax_transition"]

#: the samplers a NumPyro energy fit can draw with (contrastive divergence runs all but
#: annealed Langevin, whose step depends on its place in the schedule: ``fit.sample`` only)
JAX_SAMPLERS = (Langevin, MALA, HMC, BlockGibbs, AnnealedLangevin)
#: the fixed-kernel samplers: one transition ``move(x, key)`` (contrastive divergence)
JAX_TRANSITIONS = (Langevin, MALA, HMC, BlockGibbs)


def _rows(t: Any) -> Any:
    return t.reshape(t.shape[0], -1).sum(1)


def _view(v: Any, like: Any) -> Any:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def jax_transition(
    sampler: Any, energy: Callable[[Any], Any], gibbs: Callable[[Any, Any], Any] | None = None
) -> Callable[[Any, Any], Any]:
    """One transition of ``sampler`` on the energy ``energy(x) -> (N,)`` as a JAX function
    ``move(x, key) -> (x', accepted)``.

    :class:`~ppgen.inference.samplers.BlockGibbs` runs ``gibbs(x, key) -> x'``, the model's
    declared sweep (``block_gibbs_step``), instead of the energy; without one it is refused.

    Example: MALA keeps a standard Normal in place (and accepts most moves at a small step).

        >>> import jax, jax.numpy as jnp
        >>> move = jax_transition(MALA(0.5), lambda x: 0.5 * (x**2).sum(-1))
        >>> def run(x, k):
        ...     x, acc = move(x, k)
        ...     return x, acc.mean()
        >>> x0 = jax.random.normal(jax.random.PRNGKey(0), (4000, 2))
        >>> x, acc = jax.lax.scan(run, x0, jax.random.split(jax.random.PRNGKey(1), 50))
        >>> round(float(x.var()), 1), bool(acc.mean() > 0.8)
        (1.0, True)
    """
    import jax
    import jax.numpy as jnp

    if not isinstance(sampler, JAX_TRANSITIONS):
        raise EstimatorError(
            f"{type(sampler).__name__} is not a fixed transition kernel: on NumPyro programs "
            "contrastive divergence draws its negatives by Langevin, MALA, HMC or BlockGibbs "
            "(annealed Langevin changes its step along its schedule: use it to draw samples, "
            "`sample_sampler=AnnealedLangevin(...)`)."
        )
    if isinstance(sampler, BlockGibbs):
        if gibbs is None:
            raise EstimatorError(
                "The BlockGibbs sampler needs a model with conditional structure (a "
                "`block_gibbs_step(x, key)` method reading its parameters with "
                "`numpyro.param`); this program's energy has none. Use a gradient sampler: "
                "'langevin', 'mala' or 'hmc'."
            )

        def sweep(x: Any, key: Any) -> tuple[Any, Any]:
            y = gibbs(x, key)
            if getattr(y, "shape", None) != x.shape:
                raise EstimatorError(
                    f"BlockGibbs: block_gibbs_step(x, key) must return an array shaped like "
                    f"x, {tuple(x.shape)}; got {getattr(y, 'shape', type(y).__name__)}."
                )
            return y.astype(x.dtype), jnp.ones(x.shape[0], x.dtype)

        return sweep

    def value_and_grad(x: Any) -> tuple[Any, Any]:
        e, vjp = jax.vjp(energy, x)
        return e, vjp(jnp.ones_like(e))[0]  # each chain's energy and its own gradient

    def accept(x: Any, y: Any, log_ratio: Any, key: Any) -> tuple[Any, Any]:
        u = jax.random.uniform(key, log_ratio.shape, x.dtype)
        ok = jnp.log(u) < log_ratio  # a NaN ratio compares False: rejected
        return jnp.where(_view(ok, x), y, x), ok.astype(x.dtype)

    if isinstance(sampler, Langevin):
        h, scale = sampler.step_size, sampler.noise_scale

        def langevin(x: Any, key: Any) -> tuple[Any, Any]:
            _, g = value_and_grad(x)
            if sampler.clip_grad is not None:
                norm = jnp.sqrt(_rows(g * g))
                g = g * _view(jnp.minimum(1.0, sampler.clip_grad / (norm + 1e-12)), g)
            noise = jax.random.normal(key, x.shape, x.dtype)
            y = x - 0.5 * h * g + scale * (math.sqrt(h) * noise)
            if sampler.clip_x is not None:
                y = jnp.clip(y, *sampler.clip_x)
            return y, jnp.ones(x.shape[0], x.dtype)

        return langevin

    if isinstance(sampler, MALA):
        h = sampler.step_size

        def mala(x: Any, key: Any) -> tuple[Any, Any]:
            k_noise, k_acc = jax.random.split(key)
            e0, g0 = value_and_grad(x)
            noise = jax.random.normal(k_noise, x.shape, x.dtype)
            y = x - (h / 2) * g0 + math.sqrt(h) * noise
            e1, g1 = value_and_grad(y)
            back = x - y + (h / 2) * g1
            log_ratio = (e0 - e1) + (-_rows(back * back) / (2 * h) + 0.5 * _rows(noise * noise))
            return accept(x, y, log_ratio, k_acc)

        return mala

    step, n_steps, jitter = sampler.step_size, sampler.num_steps, sampler.jitter

    def hmc(x0: Any, key: Any) -> tuple[Any, Any]:
        k_h, k_p, k_acc = jax.random.split(key, 3)
        h: Any = step
        if jitter > 0:
            u = jax.random.uniform(k_h, (x0.shape[0],), x0.dtype)
            h = _view(step * (1 + jitter * (2 * u - 1)), x0)
        e0, g = value_and_grad(x0)
        p0 = jax.random.normal(k_p, x0.shape, x0.dtype)

        def leap(carry: tuple[Any, Any, Any, Any], i: Any) -> tuple[tuple, None]:
            x, p, _, g = carry
            x = x + h * p
            e, g = value_and_grad(x)
            p = p - jnp.where(i < n_steps - 1, 1.0, 0.5) * h * g
            return (x, p, e, g), None

        (x, p, e, _), _ = jax.lax.scan(leap, (x0, p0 - (h / 2) * g, e0, g), jnp.arange(n_steps))
        log_ratio = (e0 + 0.5 * _rows(p0 * p0)) - (e + 0.5 * _rows(p * p))
        return accept(x0, x, log_ratio, k_acc)

    return hmc


def jax_run(
    sampler: Any,
    target: Callable[..., Any],
    x0: Any,
    key: Any,
    num_steps: int,
) -> Any:
    """``num_steps`` transitions of ``sampler`` from ``x0`` (a batch of chains) as one
    ``jax.lax.scan``; jit the caller to compile it once.

    ``target`` is what the sampler needs (:attr:`~ppgen.inference.samplers.Sampler.needs`):
    the energy ``energy(x) -> (N,)`` for Langevin, MALA and HMC, the sweep
    ``block_gibbs_step(x, key) -> x'`` for block Gibbs, and the score
    ``score(x, sigma) -> like x`` for annealed Langevin, which takes the steps of its
    schedule in order (after its ``len(sigmas) * steps_per_sigma`` steps it stays at the last
    level, as the torch sampler does).

    Example: Song & Ermon's annealed Langevin on a standard Normal's perturbed score.

        >>> import jax
        >>> from ppgen.inference.samplers import geometric_sigmas
        >>> ald = AnnealedLangevin(geometric_sigmas(5.0, 0.1, 5), steps_per_sigma=50, eps=0.01)
        >>> x0 = 10 * jax.random.uniform(jax.random.PRNGKey(0), (4000, 2)) - 5
        >>> x = jax_run(ald, lambda x, s: -x / (1 + s**2), x0, jax.random.PRNGKey(1), 250)
        >>> bool(abs(x.mean()) < 0.1), bool(abs(x.var() - 1) < 0.15)
        (True, True)
    """
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, num_steps)
    if isinstance(sampler, AnnealedLangevin):
        sigmas = jnp.asarray(sampler.sigmas, x0.dtype)
        alphas = jnp.asarray([sampler.step_size(i) for i in range(len(sampler.sigmas))], x0.dtype)
        per, last = sampler.steps_per_sigma, len(sampler.sigmas) - 1

        def annealed(x: Any, inp: tuple[Any, Any]) -> tuple[Any, None]:
            k, t = inp
            level = jnp.minimum(t // per, last)
            s = target(x, sigmas[level])
            if getattr(s, "shape", None) != x.shape:
                raise EstimatorError(
                    f"AnnealedLangevin: score(x, sigma) must return an array shaped like x, "
                    f"{tuple(x.shape)}; got {getattr(s, 'shape', type(s).__name__)}."
                )
            a = alphas[level]
            noise = jax.random.normal(k, x.shape, x.dtype)
            return x + (a / 2) * jax.lax.stop_gradient(s) + jnp.sqrt(a) * noise, None

        return jax.lax.scan(annealed, x0, (keys, jnp.arange(num_steps)))[0]
    if isinstance(sampler, BlockGibbs):
        move = jax_transition(sampler, lambda v: v, gibbs=target)
    else:
        move = jax_transition(sampler, target)
    return jax.lax.scan(lambda x, k: (move(x, k)[0], None), x0, keys)[0]
