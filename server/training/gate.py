"""The quantization gate: a variant ships only if it is nearly as good as the float model.

Pure. Metrics here are fractions in [0, 1]; one *point* is 0.01, so the
default budget of 1 point lets an int8 model with 97.2% accuracy through
next to a float model with 98.0%, and stops one with 96.9%.
"""

from __future__ import annotations

from dataclasses import dataclass

POINT = 0.01
_SLACK = 1e-9
"""Float noise: a loss of exactly the budget passes."""


@dataclass(frozen=True, slots=True)
class GateDecision:
    publishable: bool
    loss_points: float | None
    """Reference minus candidate, in points (negative: the variant did better)."""
    reason: str


def decide(
    *, reference: float, candidate: float | None, budget_points: float, error: str | None = None
) -> GateDecision:
    """Whether a variant scoring ``candidate`` may ship next to a float model scoring ``reference``.

    ``error`` (the variant failed to convert, load or run) or a missing
    score always blocks it.
    """
    if error is not None or candidate is None:
        return GateDecision(False, None, error or "no score: the variant was not evaluated")
    loss = (reference - candidate) / POINT
    if loss <= budget_points + _SLACK:
        return GateDecision(True, loss, f"within budget: {loss:+.2f} of {budget_points:g} points")
    return GateDecision(
        False, loss, f"loses {loss:.2f} points against the float model; budget {budget_points:g}"
    )
