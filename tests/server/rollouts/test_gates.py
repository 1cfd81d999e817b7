"""Device states from events, PSI by hand, and every rule and boundary of the wave verdict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts.gates import (
    Decision,
    DeviceRolloutState,
    GateResult,
    GateStatus,
    Verdict,
    VersionStats,
    WaveStats,
    device_state_after,
    evaluate,
    psi,
)
from edgefleet.server.rollouts.policy import (
    BreachAction,
    Gates,
    RolloutPolicy,
    WaveSpec,
    validate,
)
from edgefleet.shared.messages import EventKind

S = DeviceRolloutState
E = EventKind
PROGRESS = (E.RECEIVED, E.DOWNLOADING, E.VERIFIED, E.INSTALLED)

# The documented table, row by row: (state, progress, healthy, failed, rolled_back).
TABLE = [
    (S.PENDING, S.IN_PROGRESS, S.HEALTHY, S.FAILED, S.ROLLED_BACK),
    (S.NOTIFIED, S.IN_PROGRESS, S.HEALTHY, S.FAILED, S.ROLLED_BACK),
    (S.IN_PROGRESS, S.IN_PROGRESS, S.HEALTHY, S.FAILED, S.ROLLED_BACK),
    (S.HEALTHY, S.HEALTHY, S.HEALTHY, S.HEALTHY, S.ROLLED_BACK),
    (S.TIMED_OUT, S.TIMED_OUT, S.HEALTHY, S.TIMED_OUT, S.TIMED_OUT),
    *(
        (state, state, state, state, state)
        for state in (S.FAILED, S.ROLLED_BACK, S.SKIPPED, S.REVERTED)
    ),
]


@pytest.mark.parametrize(
    ("current", "kind", "expected"),
    [
        (row[0], kind, row[1 + column])
        for row in TABLE
        for column, kinds in enumerate([PROGRESS, (E.HEALTHY,), (E.FAILED,), (E.ROLLED_BACK,)])
        for kind in kinds
    ],
)
def test_each_state_and_event_gives_the_documented_state(
    current: DeviceRolloutState, kind: EventKind, expected: DeviceRolloutState
) -> None:
    assert device_state_after(current, kind.value) is expected


def test_the_table_covers_every_state() -> None:
    assert {row[0] for row in TABLE} == set(DeviceRolloutState)


@pytest.mark.parametrize(
    ("current", "kind"), list(itertools.product(DeviceRolloutState, EventKind))
)
def test_a_duplicate_event_changes_nothing(current: DeviceRolloutState, kind: EventKind) -> None:
    once = device_state_after(current, kind.value)
    assert device_state_after(once, kind.value) is once


# What devices really report, in order; delivered in any order, with repeats,
# each must end where the ordered history ends.
HISTORIES = [
    ((E.RECEIVED, E.DOWNLOADING, E.VERIFIED, E.INSTALLED, E.HEALTHY), S.HEALTHY),
    ((E.RECEIVED, E.DOWNLOADING, E.VERIFIED, E.INSTALLED, E.HEALTHY, E.ROLLED_BACK), S.ROLLED_BACK),
    ((E.RECEIVED, E.DOWNLOADING, E.FAILED), S.FAILED),
    ((E.RECEIVED, E.DOWNLOADING, E.VERIFIED, E.INSTALLED, E.FAILED), S.FAILED),
    ((E.RECEIVED, E.DOWNLOADING, E.VERIFIED, E.INSTALLED, E.ROLLED_BACK), S.ROLLED_BACK),
]


@given(st.sampled_from(HISTORIES), st.data())
def test_reordered_and_repeated_events_end_in_the_same_state(
    history: tuple[tuple[EventKind, ...], DeviceRolloutState], data: st.DataObject
) -> None:
    events, final = history
    delivered = data.draw(st.permutations([*events, *data.draw(st.lists(st.sampled_from(events)))]))
    state = S.NOTIFIED
    for kind in delivered:
        state = device_state_after(state, kind.value)
    assert state is final


def test_an_unknown_event_kind_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown event kind 'exploded'"):
        device_state_after(S.NOTIFIED, "exploded")


def test_version_stats_read_error_rate_and_interpolated_p95() -> None:
    stats = VersionStats(
        inferences=200, errors=3, latency_bounds=(1.0, 2.0, 4.0), latency_counts=(0, 10, 0, 0)
    )
    assert stats.error_rate() == 0.015
    assert stats.p95_ms() == pytest.approx(1.95)  # 95% of the way through (1, 2]
    empty = VersionStats(inferences=0, errors=0)
    assert empty.error_rate() is None
    assert empty.p95_ms() is None


def test_version_stats_refuse_a_histogram_with_the_wrong_number_of_counts() -> None:
    with pytest.raises(InvalidInputError, match="latency_counts has 3 counts for 3 bounds"):
        VersionStats(
            inferences=1, errors=0, latency_bounds=(1.0, 2.0, 4.0), latency_counts=(1, 2, 3)
        )
    with pytest.raises(
        InvalidInputError,
        match="confidence_counts has 1 counts for 0 bounds, want at least one bound",
    ):
        VersionStats(inferences=1, errors=0, confidence_counts=(1,))


@pytest.mark.parametrize(
    ("expected", "actual", "value"),
    [
        ((50, 50), (50, 50), 0.0),
        ((1, 3), (10, 30), 0.0),  # shares, not counts
        # 0.4 * ln(0.9 / 0.5) + (-0.4) * ln(0.1 / 0.5) = 0.23511 + 0.64378
        ((50, 50), (90, 10), 0.878890),
        # an empty expected bin is floored at 1e-4:
        # (0.5 - 1) * ln(0.5 / 1) + (0.5 - 0.0001) * ln(0.5 / 0.0001) = 0.34657 + 4.25774
        ((100, 0), (50, 50), 4.604318),
        # 0.1 * ln(0.3 / 0.2) + 0 + (-0.1) * ln(0.2 / 0.3) = 2 * 0.1 * 0.405465
        ((20, 50, 30), (30, 50, 20), 0.081093),
    ],
)
def test_psi_matches_hand_computed_values(
    expected: tuple[int, ...], actual: tuple[int, ...], value: float
) -> None:
    assert psi(expected, actual) == pytest.approx(value, abs=1e-6)


def test_psi_floor_is_a_parameter() -> None:
    assert psi((100, 0), (50, 50), floor=0.01) == pytest.approx(
        -0.5 * math.log(0.5) + 0.49 * math.log(50), abs=1e-12
    )


@given(st.lists(st.tuples(st.integers(1, 1000), st.integers(1, 1000)), min_size=2, max_size=12))
def test_psi_is_symmetric_and_never_negative_without_empty_bins(
    pairs: list[tuple[int, int]],
) -> None:
    expected, actual = zip(*pairs, strict=True)
    assert psi(expected, actual) >= 0.0
    assert psi(expected, actual) == pytest.approx(psi(actual, expected))


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        ((1, 2), (1, 2, 3), "psi needs histograms over the same bins, got 2 and 3 counts"),
        ((0, 0), (1, 2), "psi needs at least one count on each side"),
        ((1, 2), (0, 0), "psi needs at least one count on each side"),
    ],
)
def test_psi_refuses_what_it_cannot_compare(
    expected: tuple[int, ...], actual: tuple[int, ...], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        psi(expected, actual)


# --- evaluate ------------------------------------------------------------------------

WAVE = WaveSpec(
    percent=100.0,
    soak_seconds=60.0,
    success_threshold=0.9,
    error_threshold=0.2,
    error_min_finished=2,
)
POLICY = validate(RolloutPolicy(waves=(WAVE,)))
LATENCY = (1.0, 2.0, 4.0, 8.0, 16.0)
CONFIDENCE = (0.5,)


def version(
    inferences: int = 100,
    errors: int = 0,
    latency: tuple[int, ...] = (0, 0, 100, 0, 0, 0),  # all in (2, 4]: p95 = 3.9 ms
    confidence: tuple[int, ...] = (50, 50),
    confidence_bounds: tuple[float, ...] = CONFIDENCE,
) -> VersionStats:
    return VersionStats(
        inferences=inferences,
        errors=errors,
        latency_bounds=LATENCY if latency else (),
        latency_counts=latency,
        confidence_bounds=confidence_bounds if confidence else (),
        confidence_counts=confidence,
    )


def judge(
    counts: Mapping[DeviceRolloutState, int],
    *,
    policy: RolloutPolicy = POLICY,
    soak_started_at: float | None = None,
    now: float = 1000.0,
    new: VersionStats | None = None,
    previous: VersionStats | None = None,
    shadow_agreement: float | None = None,
    shadow_samples: int = 0,
) -> Decision:
    return evaluate(
        WaveStats(
            index=0,
            counts=counts,
            now=now,
            soak_started_at=soak_started_at,
            new=new or version(),
            previous=previous or version(),
            shadow_agreement=shadow_agreement,
            shadow_samples=shadow_samples,
        ),
        policy,
    )


def gate(decision: Decision, name: str) -> GateResult:
    return next(result for result in decision.gates if result.name == name)


def test_every_gate_is_reported_in_a_fixed_order() -> None:
    names = [result.name for result in judge({S.PENDING: 10}).gates]
    assert names == [
        "success_share",
        "error_share",
        "error_rate_increase",
        "p95_latency_ratio",
        "output_psi",
        "shadow_agreement",
    ]


def test_a_wave_that_has_not_answered_waits() -> None:
    decision = judge({S.NOTIFIED: 7, S.IN_PROGRESS: 3})
    assert decision.verdict is Verdict.WAIT
    assert decision.reason == "0 of 10 healthy (0%), needs 90%"
    assert gate(decision, "success_share") == GateResult(
        "success_share", 0.0, 0.9, GateStatus.NO_DATA
    )
    assert gate(decision, "error_share") == GateResult("error_share", 0.0, 0.2, GateStatus.NO_DATA)


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        ({S.HEALTHY: 8, S.IN_PROGRESS: 2}, Verdict.WAIT),  # 80% < 90%
        ({S.HEALTHY: 9, S.IN_PROGRESS: 1}, Verdict.START_SOAK),  # exactly 90%
        ({S.HEALTHY: 10}, Verdict.START_SOAK),
        (
            {S.HEALTHY: 9, S.SKIPPED: 5, S.IN_PROGRESS: 1},
            Verdict.START_SOAK,
        ),  # 9 of 10, skipped left out
        ({S.HEALTHY: 8, S.SKIPPED: 1, S.NOTIFIED: 1}, Verdict.WAIT),  # 8 of 9 is 89% < 90%
    ],
)
def test_the_soak_starts_when_the_success_share_is_reached(
    counts: Mapping[DeviceRolloutState, int], verdict: Verdict
) -> None:
    assert judge(counts).verdict is verdict


@pytest.mark.parametrize(
    ("now", "verdict", "reason"),
    [
        (1030.0, Verdict.WAIT, "9 of 10 healthy (90%), soaking: 30 s left"),
        (1059.9, Verdict.WAIT, "9 of 10 healthy (90%), soaking: 1 s left"),
        (1060.0, Verdict.ADVANCE, "9 of 10 healthy (90%) and soaked 60 s"),
        (5000.0, Verdict.ADVANCE, "9 of 10 healthy (90%) and soaked 60 s"),
    ],
)
def test_a_healthy_wave_advances_once_it_has_soaked(
    now: float, verdict: Verdict, reason: str
) -> None:
    decision = judge({S.HEALTHY: 9, S.IN_PROGRESS: 1}, soak_started_at=1000.0, now=now)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_a_soak_does_not_end_while_the_success_share_is_below_its_threshold() -> None:
    decision = judge({S.HEALTHY: 8, S.ROLLED_BACK: 1, S.IN_PROGRESS: 1}, soak_started_at=0.0)
    assert decision.verdict is Verdict.WAIT


def test_a_zero_soak_still_starts_then_advances() -> None:
    policy = validate(RolloutPolicy(waves=(WaveSpec(percent=100.0, soak_seconds=0.0),)))
    assert judge({S.HEALTHY: 1}, policy=policy).verdict is Verdict.START_SOAK
    assert judge({S.HEALTHY: 1}, policy=policy, soak_started_at=1000.0).verdict is Verdict.ADVANCE


@pytest.mark.parametrize(
    ("counts", "status", "verdict"),
    [
        ({S.FAILED: 2, S.NOTIFIED: 8}, GateStatus.PASS, Verdict.WAIT),  # 20% is not above 20%
        ({S.FAILED: 3, S.NOTIFIED: 7}, GateStatus.FAIL, Verdict.ABORT),
        (
            {S.FAILED: 1, S.ROLLED_BACK: 1, S.TIMED_OUT: 1, S.NOTIFIED: 7},
            GateStatus.FAIL,
            Verdict.ABORT,
        ),
        # skipped devices are left out: 4 of 15 (27%), not 4 of 20 (20%)
        ({S.FAILED: 4, S.SKIPPED: 5, S.HEALTHY: 11}, GateStatus.FAIL, Verdict.ABORT),
        # 2 of 20 failed, 18 of 20 healthy (not 18 of 25)
        ({S.FAILED: 2, S.SKIPPED: 5, S.HEALTHY: 18}, GateStatus.PASS, Verdict.START_SOAK),
        ({S.FAILED: 1, S.NOTIFIED: 1}, GateStatus.NO_DATA, Verdict.WAIT),  # 1 finished < 2
        ({S.FAILED: 1, S.HEALTHY: 1}, GateStatus.FAIL, Verdict.ABORT),  # 2 finished: 50%
    ],
)
def test_the_error_share_breaches_above_its_threshold_once_enough_finished(
    counts: Mapping[DeviceRolloutState, int], status: GateStatus, verdict: Verdict
) -> None:
    decision = judge(counts)
    assert gate(decision, "error_share").status is status
    assert decision.verdict is verdict


def test_an_error_breach_names_share_limit_and_devices() -> None:
    decision = judge({S.FAILED: 2, S.TIMED_OUT: 1, S.NOTIFIED: 7})
    assert decision.reason == (
        "error_share 30% > 20% (3 of 10 devices failed, rolled back or timed out)"
    )


def test_the_breach_action_decides_pause_or_abort() -> None:
    pausing = validate(RolloutPolicy(waves=(WAVE,), breach_action=BreachAction.PAUSE))
    assert judge({S.FAILED: 3, S.NOTIFIED: 7}, policy=pausing).verdict is Verdict.PAUSE
    assert judge({S.FAILED: 3, S.NOTIFIED: 7}).verdict is Verdict.ABORT


@pytest.mark.parametrize(
    "counts",
    [
        {S.HEALTHY: 17, S.FAILED: 3},  # 85% healthy, 15% errors (under 20%)
        {S.HEALTHY: 17, S.TIMED_OUT: 1, S.REVERTED: 2},
        {S.HEALTHY: 17, S.ROLLED_BACK: 3, S.SKIPPED: 4},
    ],
)
def test_a_finished_wave_below_its_success_share_is_a_breach(
    counts: Mapping[DeviceRolloutState, int],
) -> None:
    decision = judge(counts)
    assert decision.verdict is Verdict.ABORT
    assert decision.reason == "wave finished with 85% healthy, needs 90%"
    assert gate(decision, "success_share").status is GateStatus.FAIL


def test_a_finished_wave_breaching_errors_is_reported_as_the_error_breach() -> None:
    decision = judge({S.HEALTHY: 7, S.FAILED: 3})
    assert decision.reason.startswith("error_share 30% > 20%")
    assert "wave finished" not in decision.reason


@pytest.mark.parametrize("counts", [{S.SKIPPED: 4}, {}])
def test_a_wave_without_active_devices_advances(counts: Mapping[DeviceRolloutState, int]) -> None:
    decision = judge(counts)
    assert decision.verdict is Verdict.ADVANCE
    assert gate(decision, "success_share").status is GateStatus.NO_DATA


HEALTHY = {S.HEALTHY: 10}


@pytest.mark.parametrize(
    ("name", "new", "limit_gates", "value", "status"),
    [
        # previous error rate 1%; the increase is judged against 0.01
        ("error_rate_increase", version(errors=2), Gates(), 0.01, GateStatus.PASS),
        ("error_rate_increase", version(errors=3), Gates(), 0.02, GateStatus.FAIL),
        ("error_rate_increase", version(errors=0), Gates(), -0.01, GateStatus.PASS),
        # previous p95 3.9 ms; all new latencies in (4, 8] make 7.8 ms, ratio 2
        ("p95_latency_ratio", version(latency=(0, 0, 0, 100, 0, 0)), Gates(), 2.0, GateStatus.FAIL),
        (
            "p95_latency_ratio",
            version(latency=(0, 0, 0, 100, 0, 0)),
            Gates(max_p95_latency_ratio=2.0),
            2.0,
            GateStatus.PASS,
        ),
        ("p95_latency_ratio", version(), Gates(), 1.0, GateStatus.PASS),
        ("output_psi", version(confidence=(90, 10)), Gates(), 0.87889, GateStatus.FAIL),
        (
            "output_psi",
            version(confidence=(90, 10)),
            Gates(max_output_psi=0.9),
            0.87889,
            GateStatus.PASS,
        ),
        ("output_psi", version(confidence=(5, 5)), Gates(), 0.0, GateStatus.PASS),
        # judged only from min_inferences on; the value is still shown
        (
            "p95_latency_ratio",
            version(inferences=49, latency=(0, 0, 0, 49, 0, 0)),
            Gates(),
            2.0,
            GateStatus.NO_DATA,
        ),
        (
            "p95_latency_ratio",
            version(inferences=50, latency=(0, 0, 0, 50, 0, 0)),
            Gates(),
            2.0,
            GateStatus.FAIL,
        ),
        (
            "error_rate_increase",
            version(inferences=20, errors=20),
            Gates(min_inferences=21),
            0.99,
            GateStatus.NO_DATA,
        ),
        # a gate that is off is shown, never judged
        (
            "p95_latency_ratio",
            version(latency=(0, 0, 0, 100, 0, 0)),
            Gates(max_p95_latency_ratio=None),
            2.0,
            GateStatus.OFF,
        ),
        (
            "output_psi",
            version(confidence=(90, 10)),
            Gates(max_output_psi=None),
            0.87889,
            GateStatus.OFF,
        ),
        # the new version has no latency or confidence histogram (every inference failed)
        ("p95_latency_ratio", version(latency=()), Gates(), None, GateStatus.NO_DATA),
        ("output_psi", version(confidence=()), Gates(), None, GateStatus.NO_DATA),
        # histograms over other bins cannot be compared
        ("output_psi", version(confidence_bounds=(0.6,)), Gates(), None, GateStatus.NO_DATA),
    ],
)
def test_telemetry_gates_compare_the_new_version_with_the_previous(
    name: str, new: VersionStats, limit_gates: Gates, value: float | None, status: GateStatus
) -> None:
    policy = validate(RolloutPolicy(waves=(WAVE,), gates=limit_gates))
    result = gate(judge(HEALTHY, policy=policy, new=new, previous=version(errors=1)), name)
    assert result.status is status
    assert result.value == (None if value is None else pytest.approx(value, abs=1e-5))


@pytest.mark.parametrize(
    "previous",
    [
        version(inferences=0, latency=(), confidence=()),  # nothing from the previous version
        version(latency=(0, 0, 0, 0, 0, 0), confidence=(0, 0)),
    ],
)
def test_without_previous_data_telemetry_gates_have_no_data(previous: VersionStats) -> None:
    decision = judge(HEALTHY, new=version(errors=50), previous=previous)
    statuses = [
        gate(decision, n).status for n in ("error_rate_increase", "p95_latency_ratio", "output_psi")
    ]
    if previous.inferences == 0:
        assert statuses == [GateStatus.NO_DATA] * 3
    else:  # inferences but no histograms: the error rate is still comparable
        assert statuses == [GateStatus.FAIL, GateStatus.NO_DATA, GateStatus.NO_DATA]


def test_a_failing_telemetry_gate_breaches_before_the_wave_is_healthy() -> None:
    slow = version(latency=(0, 0, 0, 0, 100, 0))  # (8, 16]: p95 15.6 ms, 4x
    decision = judge({S.HEALTHY: 2, S.IN_PROGRESS: 8}, new=slow)
    assert decision.verdict is Verdict.ABORT
    assert decision.reason == "p95_latency_ratio 4 > limit 1.5"


def test_every_breach_is_named_in_the_reason() -> None:
    bad = version(errors=10, latency=(0, 0, 0, 0, 100, 0), confidence=(90, 10))
    decision = judge({S.FAILED: 3, S.HEALTHY: 7}, new=bad)
    assert decision.reason == (
        "error_share 30% > 20% (3 of 10 devices failed, rolled back or timed out); "
        "error_rate_increase 0.1 > limit 0.01; p95_latency_ratio 4 > limit 1.5; "
        "output_psi 0.8789 > limit 0.25"
    )


def test_gates_without_data_do_not_hold_a_soaked_wave_back() -> None:
    decision = judge(
        HEALTHY, soak_started_at=0.0, new=version(inferences=3, latency=(0, 0, 0, 0, 3, 0))
    )
    assert decision.verdict is Verdict.ADVANCE
    assert gate(decision, "p95_latency_ratio").status is GateStatus.NO_DATA


SHADOW = validate(RolloutPolicy(waves=(WAVE,), shadow=True, gates=Gates(min_shadow_agreement=0.9)))


@pytest.mark.parametrize(
    ("agreement", "samples", "status", "verdict"),
    [
        (0.85, 100, GateStatus.FAIL, Verdict.ABORT),
        (0.9, 100, GateStatus.PASS, Verdict.START_SOAK),
        (0.5, 49, GateStatus.NO_DATA, Verdict.START_SOAK),  # fewer samples than min_inferences
        (None, 0, GateStatus.NO_DATA, Verdict.START_SOAK),
    ],
)
def test_shadow_agreement_must_reach_its_minimum(
    agreement: float | None, samples: int, status: GateStatus, verdict: Verdict
) -> None:
    decision = judge(HEALTHY, policy=SHADOW, shadow_agreement=agreement, shadow_samples=samples)
    assert gate(decision, "shadow_agreement").status is status
    assert decision.verdict is verdict
    if status is GateStatus.FAIL:
        assert decision.reason == "shadow_agreement 0.85 < limit 0.9"


def test_shadow_agreement_is_off_unless_asked_for() -> None:
    result = gate(judge(HEALTHY, shadow_agreement=0.1, shadow_samples=500), "shadow_agreement")
    assert result == GateResult("shadow_agreement", 0.1, None, GateStatus.OFF)


def test_a_wave_index_outside_the_policy_is_refused() -> None:
    stats = WaveStats(
        index=1, counts={}, now=0.0, soak_started_at=None, new=version(), previous=version()
    )
    with pytest.raises(InvalidInputError, match="wave index 1 is outside the policy's 1 waves"):
        evaluate(stats, POLICY)


def test_each_wave_is_judged_by_its_own_spec() -> None:
    policy = validate(
        RolloutPolicy(waves=(WaveSpec(count=1, success_threshold=1.0), WaveSpec(percent=100.0)))
    )
    counts = {S.HEALTHY: 19, S.IN_PROGRESS: 1}
    first = evaluate(WaveStats(0, counts, 0.0, None, version(), version()), policy)
    second = evaluate(WaveStats(1, counts, 0.0, None, version(), version()), policy)
    assert (first.verdict, second.verdict) == (Verdict.WAIT, Verdict.START_SOAK)


def test_a_previous_p95_of_zero_gives_no_ratio_instead_of_a_division_by_zero() -> None:
    zero = VersionStats(
        inferences=100, errors=0, latency_bounds=(0.0, 1.0), latency_counts=(100, 0, 0)
    )
    assert zero.p95_ms() == 0.0
    result = gate(judge(HEALTHY, previous=zero), "p95_latency_ratio")
    assert (result.value, result.status) == (None, GateStatus.NO_DATA)
