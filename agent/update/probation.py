"""The probation judge: keep a freshly activated model, roll it back, or wait.

Pure: it sees counters, never the clock or the runtime. Two rules decide
early, the rest waits for evidence:

* **errors are decisive as soon as they can no longer be diluted**: with
  ``e`` errors, the candidate has breached once ``e`` exceeds what
  ``max_error_rate`` allows over ``max(inferences, min_inferences)``. A model
  that fails its first 10 of 10 calls is rolled back at once, not after the
  50 calls a rate would need;
* **latency** is compared as a p95 ratio against the model it replaced, and
  only once the candidate has ``min_inferences`` calls (a handful of cold
  calls say nothing about p95).

When the window ends without a breach the model is kept, also when traffic
was too thin to judge latency: a device with no callers must not hold an
update open forever, and nothing bad was seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edgefleet.shared.agent_config import UpdateSection


class Decision(StrEnum):
    KEEP = "keep"
    ROLL_BACK = "roll_back"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class ModelStats:
    """What one model did: counts since it became active, and its p95 latency."""

    inferences: int
    errors: int
    p95_ms: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.inferences:
            raise ValueError(f"{self.errors} errors out of {self.inferences} inferences")


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: str


def judge(
    *,
    candidate: ModelStats,
    previous: ModelStats | None,
    elapsed: float,
    rules: UpdateSection,
) -> Verdict:
    """Decide on the candidate after ``elapsed`` seconds of probation."""
    allowed = rules.max_error_rate * max(candidate.inferences, rules.probation_min_inferences)
    if candidate.errors > allowed:
        rate = candidate.errors / max(candidate.inferences, 1)
        return Verdict(
            Decision.ROLL_BACK,
            f"error_rate: {candidate.errors} errors in {candidate.inferences} inferences "
            f"({rate:.1%}, limit {rules.max_error_rate:.1%})",
        )
    enough = candidate.inferences >= rules.probation_min_inferences
    ratio = _latency_ratio(candidate, previous, rules.probation_min_inferences)
    if enough and ratio is not None and ratio > rules.max_latency_ratio:
        return Verdict(
            Decision.ROLL_BACK,
            f"latency: p95 {candidate.p95_ms:.3g} ms is {ratio:.2f}x the previous model's "
            f"{_p95(previous):.3g} ms (limit {rules.max_latency_ratio:g}x)",
        )
    if elapsed < rules.probation_seconds:
        return Verdict(Decision.WAIT, f"{elapsed:.0f} of {rules.probation_seconds:.0f} s")
    if not enough:
        return Verdict(
            Decision.KEEP,
            f"probation over with {candidate.inferences} inferences "
            f"(fewer than {rules.probation_min_inferences} to judge latency), no errors over limit",
        )
    return Verdict(
        Decision.KEEP,
        f"{candidate.inferences} inferences, {candidate.errors} errors"
        + ("" if ratio is None else f", p95 {ratio:.2f}x the previous model"),
    )


def _latency_ratio(
    candidate: ModelStats, previous: ModelStats | None, min_inferences: int
) -> float | None:
    """The p95 ratio, if both sides have a p95 worth comparing."""
    if previous is None or previous.inferences < max(1, min_inferences):
        return None
    old = previous.p95_ms
    if candidate.p95_ms is None or old is None or old <= 0:
        return None
    return candidate.p95_ms / old


def _p95(stats: ModelStats | None) -> float | None:
    return None if stats is None else stats.p95_ms
