"""The probation judge: decisive errors early, latency only with evidence, keep at the end."""

from __future__ import annotations

import pytest

from edgefleet.agent.update.probation import Decision, ModelStats, judge
from edgefleet.shared.agent_config import UpdateSection

RULES = UpdateSection(
    probation_seconds=60.0,
    probation_min_inferences=50,
    max_error_rate=0.05,
    max_latency_ratio=3.0,
)
OLD = ModelStats(inferences=1000, errors=1, p95_ms=2.0)


@pytest.mark.parametrize(
    ("candidate", "previous", "elapsed", "decision", "reason"),
    [
        # 3 errors can still be diluted below 5% of the 50-call minimum (2.5 allowed): roll back
        (ModelStats(3, 3), OLD, 1.0, Decision.ROLL_BACK, "error_rate"),
        # 2 errors in 2 calls: 2 <= 2.5, more evidence might still clear it
        (ModelStats(2, 2), OLD, 1.0, Decision.WAIT, ""),
        (ModelStats(100, 6, 2.0), OLD, 1.0, Decision.ROLL_BACK, "error_rate"),
        (ModelStats(100, 5, 2.0), OLD, 1.0, Decision.WAIT, ""),
        (ModelStats(100, 0, 6.1), OLD, 1.0, Decision.ROLL_BACK, "latency"),
        (ModelStats(100, 0, 6.0), OLD, 1.0, Decision.WAIT, ""),
        # slow but too few calls to trust a p95
        (ModelStats(49, 0, 60.0), OLD, 1.0, Decision.WAIT, ""),
        (ModelStats(100, 0, 2.1), OLD, 60.0, Decision.KEEP, "1.05x"),
        (ModelStats(3, 0, 90.0), OLD, 61.0, Decision.KEEP, "fewer than 50"),
        (ModelStats(0, 0), None, 60.0, Decision.KEEP, "0 inferences"),
        # first model on the device: nothing to compare latency with
        (ModelStats(500, 0, 90.0), None, 60.0, Decision.KEEP, "500 inferences"),
        # the previous model's p95 over a handful of calls is no yardstick
        (ModelStats(500, 0, 90.0), ModelStats(3, 0, 1.0), 60.0, Decision.KEEP, ""),
        (ModelStats(500, 0, 90.0), ModelStats(60, 0, 0.0), 60.0, Decision.KEEP, ""),
    ],
)
def test_judge(
    candidate: ModelStats,
    previous: ModelStats | None,
    elapsed: float,
    decision: Decision,
    reason: str,
) -> None:
    verdict = judge(candidate=candidate, previous=previous, elapsed=elapsed, rules=RULES)
    assert verdict.decision is decision
    assert reason in verdict.reason


def test_errors_roll_back_even_after_the_window() -> None:
    verdict = judge(candidate=ModelStats(100, 50), previous=OLD, elapsed=1e6, rules=RULES)
    assert verdict.decision is Decision.ROLL_BACK
    assert "50 errors in 100 inferences (50.0%, limit 5.0%)" in verdict.reason


def test_zero_tolerance_rules() -> None:
    strict = UpdateSection(probation_seconds=0.0, probation_min_inferences=0, max_error_rate=0.0)
    assert judge(candidate=ModelStats(1, 1), previous=None, elapsed=0, rules=strict).decision is (
        Decision.ROLL_BACK
    )
    assert judge(candidate=ModelStats(0, 0), previous=None, elapsed=0, rules=strict).decision is (
        Decision.KEEP
    )


def test_stats_refuse_more_errors_than_calls() -> None:
    with pytest.raises(ValueError, match="3 errors out of 2"):
        ModelStats(2, 3)
