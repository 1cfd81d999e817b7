from __future__ import annotations

import pytest

from edgefleet.server.retraining.compare import verdict
from edgefleet.server.retraining.policy import Comparison


def measured(new: tuple[int, float, float], old: tuple[int, float, float]) -> dict[str, object]:
    return {
        "metric": "accuracy",
        "new": {"samples": new[0], "champion": new[1], "challenger": new[2]},
        "old": {"samples": old[0], "champion": old[1], "challenger": old[2]},
    }


def test_a_challenger_that_wins_on_new_rows_and_keeps_the_old_is_promoted() -> None:
    found = verdict(Comparison(), measured((40, 0.60, 0.95), (200, 0.97, 0.965)))
    assert found.promote
    assert found.gain_points == pytest.approx(35.0)
    assert found.forgetting_points == pytest.approx(0.5)
    assert "gains +35.00 points of accuracy on 40 new rows" in found.reason


def test_a_gain_below_the_policy_minimum_keeps_the_champion() -> None:
    found = verdict(Comparison(min_gain_points=5.0), measured((40, 0.90, 0.93), (200, 0.97, 0.97)))
    assert not found.promote
    assert "the policy wants 5" in found.reason


def test_forgetting_more_than_the_budget_keeps_the_champion() -> None:
    found = verdict(Comparison(), measured((40, 0.5, 0.9), (200, 0.97, 0.90)))
    assert not found.promote
    assert found.forgetting_points == pytest.approx(7.0)
    assert "loses 7.00 points" in found.reason
    assert "budget is 2" in found.reason


def test_too_few_new_rows_is_no_verdict_for_the_challenger() -> None:
    found = verdict(Comparison(min_holdout=20), measured((5, 0.2, 1.0), (200, 0.9, 0.9)))
    assert not found.promote
    assert found.gain_points is None
    assert "only 5 new labelled test rows" in found.reason


def test_without_old_rows_only_the_gain_counts() -> None:
    found = verdict(Comparison(), {"new": {"samples": 30, "champion": 0.5, "challenger": 0.8}})
    assert found.promote
    assert found.forgetting_points is None
    assert "no old test rows" in found.reason
