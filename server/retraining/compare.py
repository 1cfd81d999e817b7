"""Whether a challenger replaces its champion: the numbers a retraining job measured, judged.

Pure. The job (``training.challenge``) scores both models with the device
runtime on the newest rows (what the fleet sees now) and on the champion's
own test rows; the policy's ``Comparison`` says how much better on the new
data is worth it and how much worse on the old data is acceptable. Every
verdict carries its numbers, so a refusal says exactly why the champion
stayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgefleet.server.retraining.policy import Comparison
from edgefleet.server.training.gate import POINT


@dataclass(frozen=True, slots=True)
class Verdict:
    promote: bool
    reason: str
    gain_points: float | None
    """Challenger minus champion on the new rows, in percentage points."""
    forgetting_points: float | None
    """Champion minus challenger on the old rows (positive: the challenger forgot)."""

    def numbers(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "gain_points": self.gain_points,
            "forgetting_points": self.forgetting_points,
        }


def _scores(measured: Mapping[str, Any], part: str) -> tuple[int, float | None, float | None]:
    found = measured.get(part) or {}
    return int(found.get("samples", 0)), found.get("champion"), found.get("challenger")


def verdict(comparison: Comparison, measured: Mapping[str, Any]) -> Verdict:
    new_count, champion_new, challenger_new = _scores(measured, "new")
    old_count, champion_old, challenger_old = _scores(measured, "old")
    if new_count < comparison.min_holdout or champion_new is None or challenger_new is None:
        return Verdict(
            False,
            f"only {new_count} new labelled test rows; the policy wants "
            f"{comparison.min_holdout} to judge",
            None,
            None,
        )
    gain = (challenger_new - champion_new) / POINT
    forgetting = (
        None
        if old_count == 0 or champion_old is None or challenger_old is None
        else (champion_old - challenger_old) / POINT
    )
    metric = measured.get("metric", "score")
    if gain < comparison.min_gain_points:
        return Verdict(
            False,
            f"gains {gain:+.2f} points of {metric} on {new_count} new rows; "
            f"the policy wants {comparison.min_gain_points:g}",
            gain,
            forgetting,
        )
    if forgetting is not None and forgetting > comparison.forget_budget_points:
        return Verdict(
            False,
            f"loses {forgetting:.2f} points of {metric} on the {old_count} original test rows; "
            f"the budget is {comparison.forget_budget_points:g}",
            gain,
            forgetting,
        )
    kept = "no old test rows" if forgetting is None else f"{-forgetting:+.2f} on the old rows"
    return Verdict(
        True,
        f"gains {gain:+.2f} points of {metric} on {new_count} new rows, {kept}",
        gain,
        forgetting,
    )
