"""Which devices need attention, and in which order: pure rules."""

from __future__ import annotations

import pytest

from edgefleet.server.fleet.problems import Problem, order_key, problems_of


@pytest.mark.parametrize(
    ("state", "last_event", "drift", "expected"),
    [
        ("online", None, False, ()),
        ("online", "healthy", False, ()),
        ("online", "failed", False, (Problem.FAILED,)),
        ("online", "rolled_back", True, (Problem.ROLLED_BACK, Problem.DRIFT)),
        ("offline", "failed", True, (Problem.FAILED, Problem.OFFLINE, Problem.DRIFT)),
        ("provisioned", None, False, ()),
        ("revoked", "failed", True, ()),
    ],
)
def test_problems_of(
    state: str, last_event: str | None, drift: bool, expected: tuple[Problem, ...]
) -> None:
    assert problems_of(state=state, last_event=last_event, drift_flagged=drift) == expected


def test_order_puts_problems_first_then_the_most_urgent_then_ids() -> None:
    devices = {
        "a": (),
        "b": (Problem.DRIFT,),
        "c": (Problem.OFFLINE, Problem.DRIFT),
        "d": (Problem.FAILED,),
        "e": (Problem.OFFLINE,),
        "f": (),
    }
    ordered = sorted(devices, key=lambda d: order_key(d, devices[d]))
    assert ordered == ["d", "c", "e", "b", "a", "f"]
