r"""Did an MLE/MAP fit stop at an optimum? A loss-history test and a per-parameter gradient test.

Both are measured in nats of the full-data loss, so neither depends on how a parameter is
scaled: a parameter in millimetres and one in kilometres pass or fail alike.

- The loss over the last tenth of the steps against the tenth before it (means over each
  window): a loss still falling by more than the tolerance is still moving.
- For each parameter tensor :math:`\theta_k` with gradient :math:`g_k` and curvature
  :math:`c_k = g_k^\top H_{kk} g_k` of the full-data loss at the final values, the decrease
  that an exact line search along :math:`-g_k` would still make on the local quadratic,
  :math:`|g_k|^4 / (2 c_k)` (the Cauchy decrement). For a Gaussian-shaped objective in one
  parameter it is the loss's excess over its minimum: a decrement of ``k**2 / 2`` nats means
  ``k`` standard deviations of the Laplace approximation from the optimum.

The tolerance is ``max(atol, rtol * |loss|)``: ``atol`` nats (0.01 by default: within about
0.14 standard deviations) and a relative floor for losses so large that float32 rounds them
coarser than that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["convergence_report", "ATOL", "RTOL", "WINDOW"]

#: nats of the full-data loss below which a change is no movement
ATOL = 0.01
#: relative floor of the tolerance (float32 rounding of a large loss)
RTOL = 1e-6
#: fraction of the steps in each of the two compared windows
WINDOW = 0.1


def convergence_report(
    losses: Sequence[float],
    gradients: Mapping[str, tuple[float, float]] | None,
    *,
    atol: float = ATOL,
    rtol: float = RTOL,
) -> dict[str, Any]:
    """The convergence diagnostics of a deterministic (full-batch) fit.

    Arguments:
        losses: the loss of every step (full-data scale, nats).
        gradients: ``{name: (|g|, g^T H g)}`` at the final parameters, or ``None`` when the
            engine cannot give them (the loss test alone decides then).
        atol, rtol: the tolerance ``max(atol, rtol * |final loss|)`` in nats.

    Returns:
        ``converged`` (bool), ``loss_change`` (mean loss of the window before the last minus
        that of the last, nats), ``rel_loss_change`` (that over ``max(|loss|, 1)``),
        ``window`` (steps per window), ``tol``, ``grad_norm`` and ``decrement`` per name, and
        ``moving``: the names whose decrement exceeds the tolerance, largest first (when only
        the loss test fails, the names with the largest decrement).

    Example:
        >>> r = convergence_report([10.0] * 50 + [5.0] * 50, {"a": (0.0, 1.0)})
        >>> r["converged"], r["loss_change"], r["moving"]
        (True, 0.0, [])
        >>> r = convergence_report(list(range(100, 0, -1)), {"a": (2.0, 1.0), "b": (1e-3, 1.0)})
        >>> r["converged"], r["loss_change"], r["decrement"]["a"], r["moving"]
        (False, 10.0, 8.0, ['a'])
    """
    n = len(losses)
    final = float(losses[-1]) if n else math.nan
    tol = max(atol, rtol * abs(final)) if n else atol
    window = max(1, min(n // 2, round(n * WINDOW)))
    change = math.nan
    if n >= 2:
        last = sum(losses[-window:]) / window
        prev = sum(losses[-2 * window : -window]) / window
        change = prev - last
    rel = change / max(abs(final), 1.0) if n >= 2 else math.nan
    loss_moving = n >= 2 and not abs(change) <= tol  # a NaN change is movement

    norms: dict[str, float] = {}
    decrement: dict[str, float] = {}
    for name, (g, c) in (gradients or {}).items():
        norms[name] = g
        if g == 0.0:
            decrement[name] = 0.0
        elif c > 0.0 and math.isfinite(c):
            decrement[name] = g**4 / (2.0 * c)
        else:  # flat or concave along the gradient: the quadratic model cannot say
            decrement[name] = math.nan
    by_size = sorted(decrement, key=lambda k: -_key(decrement[k]))
    moving = [k for k in by_size if decrement[k] > tol]
    if loss_moving and not moving:
        moving = [k for k in by_size if _key(decrement[k]) > 0.0][:3]
    return {
        "converged": not loss_moving and not any(decrement[k] > tol for k in decrement),
        "loss_change": change,
        "rel_loss_change": rel,
        "window": window,
        "tol": tol,
        "grad_norm": norms,
        "decrement": decrement,
        "moving": moving,
    }


def _key(v: float) -> float:
    return v if math.isfinite(v) else -1.0
