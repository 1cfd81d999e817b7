"""Device picks and group sizes: deterministic, independent per event, exact in sum."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.server.sim.scenario_types import (
    ALL,
    BrokerRestart,
    Drift,
    DropConnections,
    FleetSpec,
    PowerCut,
    Rollout,
    Scenario,
    Selection,
    assign_groups,
)

DEVICES = tuple(f"sim-{n:04d}" for n in range(200))
GROUPS = {"site-a": DEVICES[:50], "site-b": DEVICES[50:]}


def fleet(devices: int, *groups: tuple[str, float | int]) -> FleetSpec:
    return FleetSpec(devices=devices, duration=60.0, groups=groups or (("fleet", 1.0),))


def test_the_same_selection_picks_the_same_devices() -> None:
    first = Selection(percent=10.0).pick(DEVICES, GROUPS, seed=1, salt="0:drop_connections")
    again = Selection(percent=10.0).pick(DEVICES, GROUPS, seed=1, salt="0:drop_connections")
    assert first == again
    assert len(first) == 20


def test_the_pick_does_not_depend_on_the_order_devices_are_listed_in() -> None:
    shuffled = DEVICES[1::2] + DEVICES[0::2][::-1]
    assert sorted(shuffled) == sorted(DEVICES)
    selection = Selection(count=7)
    assert selection.pick(shuffled, GROUPS, seed=1, salt="s") == selection.pick(
        DEVICES, GROUPS, seed=1, salt="s"
    )


def test_different_salts_and_seeds_pick_independent_subsets() -> None:
    selection = Selection(percent=10.0)
    picks = [
        frozenset(selection.pick(DEVICES, GROUPS, seed=seed, salt=salt))
        for seed, salt in [(1, "0:drift"), (1, "1:drift"), (2, "0:drift")]
    ]
    assert len(set(picks)) == 3
    # Independent 20-of-200 draws share 2 devices on average; far more would mean correlation.
    assert all(len(a & b) < 10 for a in picks for b in picks if a is not b)


def test_a_pick_is_ranked_by_the_documented_hash() -> None:
    def rank(device: str) -> bytes:
        return hashlib.sha256(f"5:3:slow_link:{device}".encode()).digest()

    expected = tuple(sorted(DEVICES, key=rank)[:3])
    assert Selection(count=3).pick(DEVICES, GROUPS, seed=5, salt="3:slow_link") == expected


@pytest.mark.parametrize(
    ("percent", "pool", "size"),
    [
        (10.0, 200, 20),
        (7.0, 100, 7),
        (12.5, 10, 2),
        (10.0, 5, 1),
        (0.1, 50, 1),
        (33.3, 3, 1),
        (50.0, 3, 2),
        (100.0, 7, 7),
        (1.0, 0, 0),
    ],
)
def test_a_percent_rounds_up_and_picks_at_least_one(percent: float, pool: int, size: int) -> None:
    assert Selection(percent=percent).size(pool) == size
    assert len(Selection(percent=percent).pick(DEVICES[:pool], {}, seed=0, salt="x")) == size


def test_all_and_counts() -> None:
    assert sorted(ALL.pick(DEVICES, GROUPS, seed=0, salt="x")) == list(DEVICES)
    assert len(Selection(count=1).pick(DEVICES, GROUPS, seed=0, salt="x")) == 1


def test_a_group_restricts_the_pool() -> None:
    picked = Selection(percent=50.0, group="site-a").pick(DEVICES, GROUPS, seed=0, salt="x")
    assert len(picked) == 25
    assert set(picked) <= set(GROUPS["site-a"])
    everyone = Selection(group="site-b").pick(DEVICES, GROUPS, seed=0, salt="x")
    assert sorted(everyone) == sorted(GROUPS["site-b"])


def test_a_count_and_a_percent_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        Selection(count=3, percent=10.0)


@pytest.mark.parametrize(
    ("devices", "groups", "sizes"),
    [
        (200, (("site-a", 0.25), ("site-b", 0.75)), [50, 150]),
        (60, (("canary", 0.1), ("rest", 0.9)), [6, 54]),
        (10, (("a", 1 / 3), ("b", 1 / 3), ("c", 1 / 3)), [4, 3, 3]),
        (7, (("a", 0.5), ("b", 0.5)), [4, 3]),
        (101, (("x", 0.3), ("y", 0.3), ("z", 0.4)), [30, 30, 41]),
        (5, (("a", 2), ("b", 3)), [2, 3]),
        (3, (("fleet", 1.0),), [3]),
    ],
)
def test_group_sizes_by_largest_remainder(
    devices: int, groups: tuple[tuple[str, float | int], ...], sizes: list[int]
) -> None:
    assert list(fleet(devices, *groups).group_sizes().values()) == sizes


@given(
    weights=st.lists(st.floats(0.001, 1.0), min_size=1, max_size=8),
    devices=st.integers(1, 100_000),
)
def test_shares_sum_to_the_fleet_exactly(weights: list[float], devices: int) -> None:
    shares = tuple((f"g{i}", weight / sum(weights)) for i, weight in enumerate(weights))
    sizes = fleet(devices, *shares).group_sizes()
    assert sum(sizes.values()) == devices
    assert all(
        abs(size - share * devices) < 1
        for size, (_, share) in zip(sizes.values(), shares, strict=True)
    )


def test_assign_groups_hands_out_consecutive_runs_in_order() -> None:
    ids = [f"d{n}" for n in range(10)]
    assigned = assign_groups(fleet(10, ("a", 0.3), ("b", 0.7)), ids)
    assert assigned == {"a": ("d0", "d1", "d2"), "b": tuple(ids[3:])}


def test_assign_groups_refuses_the_wrong_number_of_ids() -> None:
    with pytest.raises(ValueError, match="has 10 devices, got 9 ids"):
        assign_groups(fleet(10), [f"d{n}" for n in range(9)])


def test_describe_lines() -> None:
    scenario = Scenario(
        fleet(200, ("site-a", 0.25), ("site-b", 0.75)),
        (
            DropConnections(at=30.0, line=5, selection=Selection(percent=10.0, group="site-b")),
            BrokerRestart(at=45.5, line=9),
            PowerCut(
                at=60.0, line=12, selection=Selection(count=3), during="downloading", within=30.0
            ),
            Drift(at=90.0, line=18, sigma=-1.5, channels=("temperature", "vibration_x")),
            Rollout(at=120.0, line=24, group="site-a", version=3, waves=(25.0, 100.0)),
        ),
        "scenario",
    )
    assert scenario.describe() == [
        "  30.0s  drop_connections  10% of site-b",
        "  45.5s  broker_restart  down for 5s",
        "  60.0s  power_cut  3 devices while downloading (within 30s), off for 3s",
        "  90.0s  drift  all devices, -1.5 sigma on temperature, vibration_x",
        " 120.0s  rollout  v3 to site-a, waves 25/100%, soak 10s",
    ]
