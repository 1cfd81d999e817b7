"""The scenario's clock, played on a fake one: order, ticks, late additions, failures."""

from __future__ import annotations

import pytest

from edgefleet.server.errors import ConflictError
from edgefleet.server.sim.agenda import Agenda


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def make() -> tuple[Agenda, FakeTime, list[str]]:
    time, said = FakeTime(), list[str]()
    return Agenda(say=said.append, clock=time.clock, sleep=time.sleep), time, said


def test_actions_run_in_time_order_with_ticks_between() -> None:
    agenda, _time, said = make()
    ticks: list[float] = []
    agenda.at(7.0, "later", lambda: "done later")
    agenda.at(2.0, "first", lambda: "done first")
    agenda.at(2.0, "second", lambda: "done second")
    agenda.play(10.0, every=5.0, tick=ticks.append)
    assert said == [
        "   2.0s  first: done first",
        "   2.0s  second: done second",
        "   7.0s  later: done later",
    ]
    assert ticks == [5.0]
    assert agenda.elapsed() == 10.0


def test_an_action_can_add_a_later_one_past_the_end() -> None:
    agenda, _time, said = make()

    def stop() -> str:
        agenda.at(agenda.elapsed() + 4.0, "start", lambda: "started")
        return "stopped"

    agenda.at(8.0, "stop", stop)
    agenda.play(10.0, every=60.0, tick=lambda _t: None)
    assert said == ["   8.0s  stop: stopped", "  12.0s  start: started"]
    assert agenda.elapsed() == 12.0


def test_an_expected_failure_is_reported_and_the_rest_goes_on() -> None:
    agenda, _time, said = make()

    def refused() -> str:
        raise ConflictError("group has an active rollout")

    agenda.at(1.0, "rollout", refused)
    agenda.at(2.0, "drop", lambda: "ordered")
    agenda.play(3.0, every=60.0, tick=lambda _t: None)
    assert said == [
        "   1.0s  rollout: FAILED: group has an active rollout",
        "   2.0s  drop: ordered",
    ]
    assert agenda.failures == ["1s rollout: group has an active rollout"]


def test_an_unexpected_failure_stops_the_clock() -> None:
    agenda, _time, _said = make()

    def broken() -> str:
        raise KeyError("bug")

    agenda.at(1.0, "broken", broken)
    with pytest.raises(KeyError):
        agenda.play(3.0, every=60.0, tick=lambda _t: None)
