"""Named errors for an optimisation step that failed inside a distribution.

torch validates a distribution's arguments and values and raises a bare ``ValueError``
("Expected parameter scale ... but found invalid values") that names neither the site nor the
step. An engine finds the site at fault (Pyro: :func:`ppgen.backends._pyro_trace.find_fault`;
NumPyro, which does not validate: :func:`ppgen.backends._numpyro_ops.find_proposal_fault`); this
module turns that into ppgen's error: a guide proposal outside the model site's support or a
parameter outside its constraint is a :class:`~ppgen.errors.ProgramError`, a NaN is the NaN
guard's :class:`~ppgen.errors.NonFiniteError`. Every message names the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ppgen.backends._checks import first_line
from ppgen.errors import NonFiniteError, PPGenError, ProgramError

if TYPE_CHECKING:
    from ppgen.backends._checks import Fault

__all__ = ["is_validation_error", "validation_nan", "step_error", "NAN_ADVICE"]

NAN_ADVICE = (
    "Lower the learning rate, check the data scale, or give the failing site a better initial "
    "value. The last checkpoint (if any) holds finite values."
)

_VALIDATION = ("Expected parameter", "Expected value argument", "within the support")


def is_validation_error(err: BaseException) -> bool:
    """Whether ``err`` is torch's (or Pyro's) validation of a distribution's arguments/value."""
    return (
        isinstance(err, ValueError)
        and not isinstance(err, PPGenError)
        and any(w in str(err) for w in _VALIDATION)
    )


def validation_nan(err: BaseException) -> bool:
    """Whether a validation error reports NaN among the invalid values."""
    msg = str(err)
    if not is_validation_error(err) or "found invalid values" not in msg:
        return False
    return "nan" in msg.split("found invalid values", 1)[1].lower()


def step_error(
    fault: Fault | None, when: str, err: BaseException | None = None
) -> PPGenError | None:
    """ppgen's error for a step that failed ``when`` (``"at step 7"``) at ``fault``.

    ``err`` is the validation error raised inside the step, or ``None`` when the step's loss
    came out non-finite (then only a proposal or parameter fault gets its own error: a NaN is
    left to the loop's NaN guard, which names the parameters and the site).
    """
    said = f" (Pyro said: {first_line(err)})" if err is not None else ""
    if fault is None:
        if err is not None and validation_nan(err):
            return NonFiniteError(
                f"The loss became NaN {when}: a distribution was given NaN and argument "
                f"validation stopped the step{said}. {NAN_ADVICE}"
            )
        return None
    if fault.kind == "proposal":
        return ProgramError(
            f"Site `{fault.site}`: {when}, {fault.detail}. The guide's proposal is outside the "
            "site's support, so the model cannot score it. Give the guide's site a distribution "
            "on that support (e.g. LogNormal or Gamma for a positive site, with positive "
            "parameters from `param(..., constraint=constraints.positive)`), or use an "
            f"autoguide such as AutoNormal, which maps its proposals onto the support{said}."
        )
    if fault.kind == "parameter":
        return ProgramError(
            f"Site `{fault.site}`: {when}, {fault.detail}. Constrain what computes it: "
            "`param(..., constraint=constraints.positive)` for a positive parameter, or a "
            f"transform (softplus, exp, sigmoid) of an unconstrained value{said}."
        )
    if err is None:
        return None
    what = (
        f"factor `{fault.site}` is NaN (check the expression passed to `factor`)"
        if fault.factor
        else f"at site `{fault.site}`, {fault.detail}"
    )
    return NonFiniteError(f"The loss became NaN {when}: {what}{said}. {NAN_ADVICE}")
