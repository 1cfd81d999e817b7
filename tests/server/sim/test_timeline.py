"""Which devices an event hits, the order a fault becomes, what a scenario needs."""

from __future__ import annotations

import pytest

from edgefleet.server.sim import orders
from edgefleet.server.sim.data import DriftSetting
from edgefleet.server.sim.scenario import (
    BadModel,
    BrokerRestart,
    CorruptChunk,
    Drift,
    DropConnections,
    FillDisk,
    FleetSpec,
    PowerCut,
    Rollout,
    Scenario,
    Selection,
    SlowLink,
    assign_groups,
)
from edgefleet.server.sim.timeline import Targeted, fault_order, needs, salt, targets

IDS = tuple(f"sim-{n:05d}" for n in range(1, 41))
FLEET = FleetSpec(devices=40, duration=120.0, seed=3, groups=(("canary", 4), ("rest", 36)))
GROUPS = assign_groups(FLEET, IDS)


def scenario(*events: object) -> Scenario:
    return Scenario(FLEET, tuple(events), "test")  # type: ignore[arg-type]


def test_targets_are_the_selections_pick_salted_per_event() -> None:
    event = PowerCut(at=5.0, line=1, selection=Selection(percent=10.0, group="rest"))
    picked = targets(2, event, devices=IDS, groups=GROUPS, seed=3)
    assert picked == event.selection.pick(IDS, GROUPS, seed=3, salt="2:power_cut")
    assert salt(2, event) == "2:power_cut"
    assert len(picked) == 4
    assert set(picked) <= set(GROUPS["rest"])
    assert targets(3, event, devices=IDS, groups=GROUPS, seed=3) != picked


@pytest.mark.parametrize(
    ("event", "order"),
    [
        (DropConnections(at=1.0, line=1), orders.Drop(("a",))),
        (PowerCut(at=1.0, line=1, off_for=4.0), orders.Cut(("a",), None, 60.0, 4.0)),
        (
            PowerCut(at=1.0, line=1, during="downloading", within=30.0),
            orders.Cut(("a",), "downloading", 30.0, 3.0),
        ),
        (
            SlowLink(at=1.0, line=1, duration=20.0, latency_ms=800),
            orders.Slow(("a",), 0.8, 20.0),
        ),
        (CorruptChunk(at=1.0, line=1, chunks=2), orders.Corrupt(("a",), 2)),
        (FillDisk(at=1.0, line=1, duration=15.0), orders.FillDisk(("a",), 15.0)),
        (
            Drift(at=1.0, line=1, sigma=2.0, channels=("temperature",), duration=None),
            orders.DriftOn(("a",), DriftSetting(2.0, ("temperature",)), None),
        ),
    ],
    ids=lambda value: getattr(value, "kind", ""),
)
def test_each_fault_becomes_its_order(event: Targeted, order: orders.Fault) -> None:
    assert fault_order(event, ("a",)) == order


def test_a_quiet_scenario_needs_nothing_more() -> None:
    found = needs(scenario(DropConnections(at=1.0, line=1)), IDS, GROUPS)
    assert (found.broker, found.disks, found.model, found.flaws) == (False, frozenset(), False, ())


def test_what_a_busy_scenario_needs() -> None:
    fill = FillDisk(at=30.0, line=9, selection=Selection(count=3, group="canary"), duration=5.0)
    found = needs(
        scenario(
            Rollout(at=1.0, line=1, group="canary"),
            BrokerRestart(at=2.0, line=3),
            BadModel(at=3.0, line=5, group="rest", flaw="slow"),
            BadModel(at=4.0, line=7, group="rest", flaw="nan"),
            BadModel(at=5.0, line=8, group="canary", flaw="nan"),
            fill,
        ),
        IDS,
        GROUPS,
    )
    assert found.broker
    assert found.model
    assert found.flaws == ("nan", "slow")
    assert found.disks == frozenset(targets(5, fill, devices=IDS, groups=GROUPS, seed=3))
    assert len(found.disks) == 3
