"""The wave planner: hand-checked cuts, and its promises as hypothesis properties."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts.planner import plan, stable_rank
from edgefleet.server.rollouts.policy import RolloutPolicy, WaveSpec, validate

DEFAULT = RolloutPolicy()
device_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:", min_size=1, max_size=10)
fleets = st.lists(device_ids, max_size=250, unique=True)
seeds = st.text(min_size=1, max_size=20)


@st.composite
def policies(draw: st.DrawFn) -> RolloutPolicy:
    """Valid wave lists: percent and count waves mixed, percents rising, ending at 100%."""
    kinds = draw(st.lists(st.sampled_from(["percent", "count"]), max_size=7))
    percents = sorted(
        draw(
            st.lists(
                st.floats(0.01, 99.99),
                min_size=kinds.count("percent"),
                max_size=kinds.count("percent"),
                unique=True,
            )
        )
    )
    waves = [
        WaveSpec(percent=percents.pop(0))
        if kind == "percent"
        else WaveSpec(count=draw(st.integers(1, 40)))
        for kind in kinds
    ]
    return validate(RolloutPolicy(waves=(*waves, WaveSpec(percent=100.0))))


def _sizes(waves: tuple[tuple[str, ...], ...]) -> list[int]:
    return [len(wave) for wave in waves]


def _fleet(count: int) -> list[str]:
    return [f"dev-{i:04d}" for i in range(count)]


@pytest.mark.parametrize(
    ("devices", "waves", "sizes"),
    [
        (20, DEFAULT.waves, [1, 1, 8, 10]),
        (1000, DEFAULT.waves, [10, 90, 400, 500]),
        (3, DEFAULT.waves, [1, 1, 1, 0]),  # every wave gets one while devices remain
        (1, DEFAULT.waves, [1, 0, 0, 0]),
        (0, DEFAULT.waves, [0, 0, 0, 0]),
        (
            100,
            (WaveSpec(percent=7.0), WaveSpec(percent=100.0)),
            [7, 93],
        ),  # not ceil(7.000000000000001)
        (1000, (WaveSpec(percent=33.3), WaveSpec(percent=100.0)), [333, 667]),
        (
            1000,
            (WaveSpec(percent=0.1), WaveSpec(percent=100.0)),
            [1, 999],
        ),  # binary 0.1 is above 0.1
        (
            10,
            (WaveSpec(count=3), WaveSpec(percent=50.0), WaveSpec(count=4), WaveSpec(percent=100.0)),
            [3, 2, 4, 1],
        ),
        (10, (WaveSpec(count=8), WaveSpec(percent=50.0), WaveSpec(percent=100.0)), [8, 1, 1]),
        (5, (WaveSpec(count=8), WaveSpec(percent=50.0), WaveSpec(percent=100.0)), [5, 0, 0]),
        (7, (WaveSpec(percent=100.0),), [7]),
    ],
)
def test_waves_are_cut_as_specified(
    devices: int, waves: tuple[WaveSpec, ...], sizes: list[int]
) -> None:
    policy = validate(RolloutPolicy(waves=waves))
    assert _sizes(plan(_fleet(devices), policy, "rollout-1")) == sizes


def test_stable_rank_is_the_sha256_of_seed_nul_device() -> None:
    """Stored plans rely on this exact hash: changing it would reorder a running rollout."""
    expected = int.from_bytes(hashlib.sha256(b"rollout-1\x00dev-7").digest(), "big")
    assert stable_rank("rollout-1", "dev-7") == expected


@given(fleets, policies(), seeds)
def test_every_device_lands_in_exactly_one_wave_in_rank_order(
    devices: list[str], policy: RolloutPolicy, seed: str
) -> None:
    waves = plan(devices, policy, seed)
    assert len(waves) == len(policy.waves)
    flat = [device for wave in waves for device in wave]
    assert sorted(flat) == sorted(devices)
    assert [stable_rank(seed, d) for d in flat] == sorted(stable_rank(seed, d) for d in devices)


@given(fleets, policies(), seeds, st.randoms(use_true_random=False))
def test_the_plan_ignores_input_order_and_duplicates(
    devices: list[str], policy: RolloutPolicy, seed: str, random: Random
) -> None:
    shuffled = [*devices, *devices[:5]]
    random.shuffle(shuffled)
    assert plan(shuffled, policy, seed) == plan(devices, policy, seed)


@given(fleets, policies(), seeds)
def test_wave_sizes_follow_the_cumulative_rule(
    devices: list[str], policy: RolloutPolicy, seed: str
) -> None:
    total = len(devices)
    reached = 0
    for index, (spec, wave) in enumerate(
        zip(policy.waves, plan(devices, policy, seed), strict=True)
    ):
        if index == len(policy.waves) - 1:
            target = total
        elif spec.percent is not None:
            target = math.ceil(Fraction(repr(spec.percent)) * total / 100)
        else:
            assert spec.count is not None
            target = reached + spec.count
        expected_end = min(total, max(target, reached + 1))
        assert reached + len(wave) == expected_end
        if reached < total and index < len(policy.waves) - 1:
            assert len(wave) >= 1
        reached = expected_end
    assert reached == total


@given(fleets, policies(), seeds, st.data())
def test_a_replan_never_moves_a_device_and_joiners_go_last(
    devices: list[str], policy: RolloutPolicy, seed: str, data: st.DataObject
) -> None:
    first = plan(devices, policy, seed)
    existing = {device: index for index, wave in enumerate(first) for device in wave}
    leaving = set(data.draw(st.lists(st.sampled_from(devices), max_size=20)) if devices else [])
    joining = [f"new-{d}" for d in data.draw(st.lists(device_ids, max_size=30, unique=True))]
    now = [d for d in devices if d not in leaving] + joining
    again = plan(now, policy, seed, existing)
    where = {device: index for index, wave in enumerate(again) for device in wave}
    assert sorted(where) == sorted(now)
    for device in now:
        assert where[device] == existing.get(device, len(policy.waves) - 1)
    for wave in again:
        assert [stable_rank(seed, d) for d in wave] == sorted(stable_rank(seed, d) for d in wave)


def test_with_an_empty_existing_plan_everyone_is_a_joiner() -> None:
    waves = plan(_fleet(5), DEFAULT, "r", existing={})
    assert _sizes(waves) == [0, 0, 0, 5]


def test_an_existing_wave_outside_the_policy_is_refused() -> None:
    with pytest.raises(
        InvalidInputError, match="existing\\['dev-0000'\\] is wave 4, but the policy has 4 waves"
    ):
        plan(_fleet(2), DEFAULT, "r", existing={"dev-0000": 4})


@given(st.tuples(seeds, seeds).filter(lambda pair: pair[0] != pair[1]))
def test_different_seeds_pick_different_devices(pair: tuple[str, str]) -> None:
    fleet = _fleet(200)
    one, two = (plan(fleet, RolloutPolicy(), seed) for seed in pair)
    assert one != two
    # The first 10% of 200: two random 20-device draws share 2 on average;
    # 12 or more happens with probability 2e-9 (hypergeometric tail).
    first_20 = ({*w[0], *w[1]} for w in (one, two))
    assert len(set.intersection(*first_20)) < 12
