"""Exceptions raised by ppgen: each names the argument or site, expected vs given, and a fix."""

from __future__ import annotations

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
