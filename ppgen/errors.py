"""Exceptions raised by ppgen: each names the argument or site, expected vs given, and a fix."""

from __future__ import annotations

import math
import numbers
import os
import sys

__all__ = [
    "PPGenError",
    "DataError",
    "ProgramError",
    "EstimatorError",
    "NonFiniteError",
    "CheckpointError",
    "CapabilityError",
    "ImplicitDensityError",
    "EnergySamplingError",
    "SamplerWarning",
    "ConvergenceWarning",
    "caller_stacklevel",
    "check_int",
    "check_nonnegative",
    "check_positive",
]


class PPGenError(ValueError):
    """Base class of ppgen's errors (a :class:`ValueError`, so ``except ValueError`` catches it)."""


class DataError(PPGenError):
    """The data given to a program does not fit its observed sites."""


class ProgramError(PPGenError):
    """The program itself is malformed (duplicate sites, plate mismatch, guide mismatch...)."""


class EstimatorError(PPGenError):
    """An estimator was asked for something it cannot do (unknown name, wrong backend...)."""


class NonFiniteError(PPGenError):
    """The loss or a parameter became NaN/inf during optimisation."""


class CheckpointError(PPGenError):
    """A saved run or checkpoint is missing, corrupt, or unsafe to load."""


class CapabilityError(PPGenError, NotImplementedError):
    """Something a program's kind or a fit cannot give (a density, forward samples, a group)."""


class ImplicitDensityError(CapabilityError):
    """The log-density of an ``Implicit`` site was asked for: a generator's output has none."""


class EnergySamplingError(CapabilityError):
    """Forward samples of an ``Unnormalized`` (energy) site were asked for: it has no sampler."""


class SamplerWarning(UserWarning):
    """An MCMC fit finished with signs its draws should not be trusted as they are.

    Divergent transitions, transitions that hit the maximum tree depth, R-hat > 1.01, bulk or
    tail ESS < 100 per chain, or a chain that never moved: one warning per fit lists them all,
    with the counts and what to do; ``fit.diagnostics`` holds the same numbers. Silence it with
    ``warnings.filterwarnings("ignore", category=SamplerWarning)``.

    Example:
        >>> issubclass(SamplerWarning, UserWarning)
        True
    """


class ConvergenceWarning(UserWarning):
    """An optimisation stopped before its objective stopped moving (see :class:`MLE`'s check).

    Example: turn it into an error, so that a fit that stopped short cannot pass unnoticed.

        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", ConvergenceWarning)
        ...     try:
        ...         warnings.warn("still moving", ConvergenceWarning)
        ...     except ConvergenceWarning as e:
        ...         print(type(e).__name__, e)
        ConvergenceWarning still moving
    """


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside ppgen, counted from this function's caller.

    A warning raised with it points at the user's line (the ``ppgen.fit`` call), not at ppgen.

    Example:
        >>> caller_stacklevel() >= 1
        True
    """
    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, or an :class:`EstimatorError` naming ``name``.

    Example:
        >>> check_int("thinning", 2, 1)
        2
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise EstimatorError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def check_positive(name: str, value: object, *, upper: float | None = None) -> float:
    """``value`` as a finite float ``> 0`` (and ``<= upper``), or an :class:`EstimatorError`.

    Example:
        >>> check_positive("lr_decay", 0.1, upper=1.0)
        0.1
    """
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    ok = ok and math.isfinite(value) and value > 0 and (upper is None or value <= upper)
    if not ok:
        bound = f"in (0, {upper}]" if upper is not None else "a finite number > 0"
        raise EstimatorError(f"`{name}` must be {bound}; got {value!r}.")
    return float(value)


def check_nonnegative(name: str, value: object) -> float:
    """``value`` as a finite float ``>= 0`` (a weight that may switch a term off), or an
    :class:`EstimatorError`.

    Example:
        >>> check_nonnegative("gamma", 0)
        0.0
    """
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if not (ok and math.isfinite(value) and value >= 0):
        raise EstimatorError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    return float(value)
