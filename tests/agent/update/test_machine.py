"""The update state machine and its crash-recovery rule, as pure functions."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.agent.errors import UpdateStateError
from edgefleet.agent.update.machine import (
    Action,
    Activate,
    Discard,
    Downloaded,
    Fail,
    Fetch,
    Keep,
    Point,
    Progress,
    Refuse,
    RollBack,
    RunSelfTest,
    Seen,
    SelfTestPassed,
    SelfTestStarted,
    Shadow,
    ShadowReported,
    Signal,
    Stage,
    Staged,
    Start,
    Step,
    StopFetch,
    StopShadow,
    shadow_reason,
    step,
)
from edgefleet.agent.update.recovery import SlotModel, SlotsView, recover
from edgefleet.agent.update.state import Candidate, UpdateState
from edgefleet.shared.messages import Event, EventKind, ShadowSummary, Slot, UpdatePhase
from tests.fixtures.golden import golden_message
from tests.shared.factories import Fleet, manifest

FLEET = Fleet()
NOW = 1_800_000_000.0


def candidate(*, version: int = 2, slot: Slot = Slot.B, shadow: bool = False) -> Candidate:
    body = manifest(version=version, artifact=f"model-v{version}".encode() * 300)
    return Candidate(
        model=body.model,
        version=version,
        sha256=body.artifact.sha256,
        slot=slot,
        manifest=FLEET.sign(body),
        rollout_id="r-1",
        shadow=shadow,
    )


CANDIDATE = candidate()
SHADOW = candidate(shadow=True)


def kinds(result: Step) -> list[EventKind]:
    return [r.kind for r in result.events]


def run(state: UpdateState, *signals: Signal) -> Step:
    result = Step(state)
    for signal in signals:
        result = step(result.state, signal, now=NOW)
    return result


def at(phase: UpdatePhase, cand: Candidate = CANDIDATE, **changes: object) -> UpdateState:
    """A state in ``phase`` as the machine itself would have built it."""
    state = UpdateState(phase=phase, candidate=cand, previous=Slot.A, since=NOW, revision=7)
    return replace(state, **changes)  # type: ignore[arg-type]


# -- the forward path ----------------------------------------------------------------


def test_happy_path_reports_every_transition_and_asks_for_each_action() -> None:
    started = run(UpdateState(), Start(CANDIDATE, active=Slot.A, revision=7))
    assert started.state.phase is UpdatePhase.DOWNLOADING
    assert started.state.previous is Slot.A
    assert started.state.revision == 7
    assert kinds(started) == [EventKind.RECEIVED, EventKind.DOWNLOADING]
    assert started.events[1].progress == 0.0
    assert started.actions == (Fetch(CANDIDATE),)

    progress = step(started.state, Progress(0.5), now=NOW)
    assert progress.state == started.state
    assert progress.events[0].progress == 0.5

    expected: list[tuple[Signal, UpdatePhase, list[EventKind], tuple[Action, ...]]] = [
        (Downloaded(), UpdatePhase.VERIFYING, [], (Stage(CANDIDATE),)),
        (Staged(), UpdatePhase.STAGED, [EventKind.VERIFIED], (RunSelfTest(CANDIDATE),)),
        (SelfTestStarted(), UpdatePhase.TESTING, [], ()),
        (SelfTestPassed(), UpdatePhase.ACTIVE, [EventKind.INSTALLED], (Activate(CANDIDATE),)),
        (Keep("fine"), UpdatePhase.COMMITTED, [EventKind.HEALTHY], ()),
    ]
    state = started.state
    for signal, phase, reported, actions in expected:
        result = step(state, signal, now=NOW + 1)
        assert (result.state.phase, kinds(result), result.actions) == (phase, reported, actions)
        assert result.state.since == NOW + 1
        state = result.state
    assert state.resting
    event = result.events[0]
    assert (event.model, event.version, event.rollout_id, event.reason) == (
        "vibration",
        2,
        "r-1",
        "fine",
    )


def test_first_model_on_an_empty_device_goes_to_slot_a() -> None:
    first = candidate(version=1, slot=Slot.A)
    started = run(UpdateState(), Start(first, active=None))
    assert started.state.previous is None
    rolled = run(at(UpdatePhase.ACTIVE, first, previous=None), RollBack("bad"))
    assert rolled.actions == (Point(None), Discard(Slot.A))


def test_start_into_the_active_slot_is_a_bug() -> None:
    with pytest.raises(UpdateStateError, match="active slot"):
        step(UpdateState(), Start(CANDIDATE, active=Slot.B), now=NOW)


@pytest.mark.parametrize(
    "phase", [UpdatePhase.COMMITTED, UpdatePhase.FAILED, UpdatePhase.ROLLED_BACK]
)
def test_a_finished_update_rests_and_a_new_one_may_start(phase: UpdatePhase) -> None:
    newer = candidate(version=3, slot=Slot.A)
    result = step(at(phase), Start(newer, active=Slot.B, revision=8), now=NOW)
    assert result.state.phase is UpdatePhase.DOWNLOADING
    assert result.state.previous is Slot.B
    assert result.state.revision == 8


@pytest.mark.parametrize(
    "phase",
    [
        UpdatePhase.DOWNLOADING,
        UpdatePhase.VERIFYING,
        UpdatePhase.STAGED,
        UpdatePhase.TESTING,
        UpdatePhase.ACTIVE,
    ],
)
def test_no_second_update_while_one_is_in_flight(phase: UpdatePhase) -> None:
    with pytest.raises(UpdateStateError, match=f"while {phase.value}"):
        step(at(phase), Start(candidate(version=3), active=Slot.A), now=NOW)


# -- failures and rollbacks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "cleanup"),
    [
        (UpdatePhase.DOWNLOADING, (StopFetch(), Discard(Slot.B))),
        (UpdatePhase.VERIFYING, (Discard(Slot.B),)),
        (UpdatePhase.STAGED, (Discard(Slot.B),)),
        (UpdatePhase.TESTING, (Discard(Slot.B),)),
    ],
)
def test_failure_before_the_switch_discards_the_candidate_only(
    phase: UpdatePhase, cleanup: tuple[object, ...]
) -> None:
    result = step(at(phase), Fail("sha256_mismatch: no"), now=NOW)
    assert result.state.phase is UpdatePhase.FAILED
    assert result.state.reason == "sha256_mismatch: no"
    assert result.actions == cleanup
    assert [(r.kind, r.reason) for r in result.events] == [
        (EventKind.FAILED, "sha256_mismatch: no")
    ]
    assert all(not isinstance(a, Point) for a in result.actions)


def test_failure_after_the_switch_is_a_rollback_to_the_previous_slot() -> None:
    result = step(at(UpdatePhase.ACTIVE), Fail("storage_failed: EIO"), now=NOW)
    assert result.state.phase is UpdatePhase.ROLLED_BACK
    assert result.actions == (Point(Slot.A), Discard(Slot.B))
    assert kinds(result) == [EventKind.ROLLED_BACK]


def test_probation_breach_rolls_back_with_its_reason() -> None:
    result = step(at(UpdatePhase.ACTIVE), RollBack("error_rate: 9 errors"), now=NOW)
    assert result.state.phase is UpdatePhase.ROLLED_BACK
    assert result.events[0].reason == "error_rate: 9 errors"
    assert result.actions == (Point(Slot.A), Discard(Slot.B))


def test_long_reasons_are_clipped_to_what_an_event_carries() -> None:
    result = step(at(UpdatePhase.TESTING), Fail("x" * 2000), now=NOW)
    assert len(result.events[0].reason or "") == 500
    assert result.events[0].reason == result.state.reason


@pytest.mark.parametrize("phase", sorted(UpdatePhase))
def test_refusal_reports_and_never_changes_the_update_in_flight(phase: UpdatePhase) -> None:
    state = UpdateState() if phase is UpdatePhase.IDLE else at(phase)
    result = step(state, Refuse("vibration", 9, "bad_signature: forged", "r-2", 11), now=NOW)
    assert result.state == replace(state, revision=11)
    assert result.actions == ()
    [report] = result.events
    assert (report.kind, report.version, report.reason, report.rollout_id) == (
        EventKind.FAILED,
        9,
        "bad_signature: forged",
        "r-2",
    )


def test_revisions_only_grow() -> None:
    state = UpdateState(revision=10)
    assert step(state, Seen(4), now=NOW).state.revision == 10
    assert step(state, Seen(12), now=NOW).state.revision == 12


# -- shadow mode ----------------------------------------------------------------------------


def test_shadow_candidate_rests_in_testing_then_is_promoted_without_a_download() -> None:
    shadowing = step(at(UpdatePhase.TESTING, SHADOW), SelfTestPassed(), now=NOW)
    assert shadowing.state.shadowing
    assert shadowing.state.resting
    assert shadowing.actions == (Shadow(SHADOW),)

    summary = ShadowSummary(samples=200, agreement=0.99, latency_delta_ms=0.25)
    reported = step(shadowing.state, ShadowReported(summary), now=NOW)
    assert reported.events[0].kind is EventKind.VERIFIED
    assert reported.events[0].shadow == summary
    assert reported.events[0].reason == (
        "shadow: agreement 0.990 over 200 samples, latency delta +0.250 ms"
    )
    assert reported.actions == (StopShadow(),)

    again = step(reported.state, Start(SHADOW, active=Slot.A, revision=9), now=NOW)
    assert again.state == replace(reported.state, revision=9)
    assert again.events == ()

    serve = replace(SHADOW, shadow=False, rollout_id="r-2")
    promoted = step(reported.state, Start(serve, active=Slot.A, revision=10), now=NOW)
    assert promoted.state.phase is UpdatePhase.ACTIVE
    assert not promoted.state.shadowing
    assert kinds(promoted) == [EventKind.RECEIVED, EventKind.INSTALLED]
    assert promoted.actions == (StopShadow(), Activate(serve))
    assert promoted.state.candidate == serve


def test_another_version_replaces_a_shadow_candidate() -> None:
    shadowing = step(at(UpdatePhase.TESTING, SHADOW), SelfTestPassed(), now=NOW).state
    newer = candidate(version=3)
    result = step(shadowing, Start(newer, active=Slot.A), now=NOW)
    assert result.state.phase is UpdatePhase.DOWNLOADING
    assert not result.state.shadowing
    assert result.actions == (StopShadow(), Fetch(newer))


def test_a_shadow_candidate_that_finished_no_call_reports_no_latency_delta() -> None:
    shadowing = step(at(UpdatePhase.TESTING, SHADOW), SelfTestPassed(), now=NOW).state
    summary = ShadowSummary(samples=20, agreement=0.0)
    (event,) = step(shadowing, ShadowReported(summary), now=NOW).events
    assert (event.shadow, event.reason) == (
        summary,
        "shadow: agreement 0.000 over 20 samples, latency delta n/a",
    )


def test_the_golden_shadow_event_reads_as_the_machine_words_it() -> None:
    golden = golden_message("events_verified_shadow")
    assert isinstance(golden, Event)
    assert golden.kind is EventKind.VERIFIED
    assert golden.shadow is not None
    assert golden.reason == shadow_reason(golden.shadow)


def test_a_failing_shadow_candidate_stops_its_shadow() -> None:
    shadowing = step(at(UpdatePhase.TESTING, SHADOW), SelfTestPassed(), now=NOW).state
    result = step(shadowing, Fail("model_load_failed: gone"), now=NOW)
    assert result.actions == (StopShadow(), Discard(Slot.B))
    assert not result.state.shadowing


# -- signals that cannot happen -------------------------------------------------------------

SIGNALS: list[Signal] = [
    Progress(0.1),
    Downloaded(),
    Staged(),
    SelfTestStarted(),
    SelfTestPassed(),
    ShadowReported(ShadowSummary(samples=1, agreement=1.0)),
    Keep("x"),
    RollBack("x"),
    Fail("x"),
]
VALID: dict[UpdatePhase, set[type]] = {
    UpdatePhase.DOWNLOADING: {Progress, Downloaded, Fail},
    UpdatePhase.VERIFYING: {Staged, Fail},
    UpdatePhase.STAGED: {SelfTestStarted, Fail},
    UpdatePhase.TESTING: {SelfTestPassed, Fail},
    UpdatePhase.ACTIVE: {Keep, RollBack, Fail},
}


@pytest.mark.parametrize("phase", sorted(UpdatePhase))
@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: type(s).__name__)
def test_out_of_order_signals_are_refused(phase: UpdatePhase, signal: Signal) -> None:
    state = UpdateState() if phase is UpdatePhase.IDLE else at(phase)
    if type(signal) in VALID.get(phase, set()):
        step(state, signal, now=NOW)
        return
    with pytest.raises(UpdateStateError):
        step(state, signal, now=NOW)


# -- persistence ---------------------------------------------------------------------------


def test_state_round_trips_through_bytes() -> None:
    state = at(UpdatePhase.TESTING, SHADOW, shadowing=True, reason=None)
    assert UpdateState.from_bytes(state.to_bytes()) == state
    assert UpdateState.from_bytes(UpdateState().to_bytes()) == UpdateState()


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b'{"phase":"flying"}', b'{"phase":"active"}', b'{"phase":"idle","x":1}'],
)
def test_unreadable_state_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(UpdateStateError, match="persisted update state is invalid"):
        UpdateState.from_bytes(data)


# -- crash recovery ------------------------------------------------------------------------

OLD = SlotModel("vibration", 1, "1" * 64)
NEW = SlotModel("vibration", 2, CANDIDATE.sha256)
BOTH = SlotsView(pointer=Slot.A, verified={Slot.A: OLD, Slot.B: NEW})
OLD_ONLY = SlotsView(pointer=Slot.A, verified={Slot.A: OLD})


@pytest.mark.parametrize(
    ("phase", "slots", "resumed", "action"),
    [
        (UpdatePhase.DOWNLOADING, OLD_ONLY, UpdatePhase.DOWNLOADING, Fetch(CANDIDATE)),
        (UpdatePhase.VERIFYING, OLD_ONLY, UpdatePhase.DOWNLOADING, Fetch(CANDIDATE)),
        (UpdatePhase.STAGED, OLD_ONLY, UpdatePhase.STAGED, RunSelfTest(CANDIDATE)),
        # testing may have marked the slot as passed already: it is still not served
        (UpdatePhase.TESTING, BOTH, UpdatePhase.STAGED, RunSelfTest(CANDIDATE)),
    ],
)
def test_crash_before_the_switch_serves_the_old_model_and_resumes(
    phase: UpdatePhase, slots: SlotsView, resumed: UpdatePhase, action: object
) -> None:
    recovery = recover(at(phase), slots, now=NOW + 5)
    assert recovery.boot is Slot.A
    assert recovery.step.state.phase is resumed
    assert recovery.step.state.since == NOW + 5
    assert recovery.step.actions == (action,)


def test_crash_in_probation_rolls_back_to_the_previous_model() -> None:
    slots = SlotsView(pointer=Slot.B, verified={Slot.A: OLD, Slot.B: NEW})
    recovery = recover(at(UpdatePhase.ACTIVE), slots, now=NOW)
    assert recovery.boot is Slot.A
    assert recovery.step.state.phase is UpdatePhase.ROLLED_BACK
    assert recovery.step.actions == (Point(Slot.A), Discard(Slot.B))
    [report] = recovery.step.events
    assert report.kind is EventKind.ROLLED_BACK
    assert "restarted during probation" in (report.reason or "")


def test_crash_between_persisting_active_and_the_pointer_swap_still_rolls_back() -> None:
    recovery = recover(at(UpdatePhase.ACTIVE), BOTH, now=NOW)
    assert recovery.boot is Slot.A
    assert recovery.step.actions[0] == Point(Slot.A)


@pytest.mark.parametrize("phase", [UpdatePhase.IDLE, UpdatePhase.COMMITTED])
def test_at_rest_the_pointer_is_served(phase: UpdatePhase) -> None:
    state = UpdateState() if phase is UpdatePhase.IDLE else at(phase)
    recovery = recover(state, SlotsView(pointer=Slot.B, verified={Slot.B: NEW}), now=NOW)
    assert recovery.boot is Slot.B
    assert recovery.step == Step(state)


def test_a_corrupt_active_slot_falls_back_to_the_other_and_says_so() -> None:
    state = at(UpdatePhase.COMMITTED)
    recovery = recover(state, SlotsView(pointer=Slot.B, verified={Slot.A: OLD}), now=NOW)
    assert recovery.boot is Slot.A
    assert recovery.step.actions == (Point(Slot.A),)
    [report] = recovery.step.events
    assert report.kind is EventKind.ROLLED_BACK
    assert report.version == 1
    assert (report.reason or "").startswith("slot_unusable")


def test_nothing_fit_means_serving_nothing() -> None:
    recovery = recover(UpdateState(), SlotsView(pointer=Slot.A, verified={}), now=NOW)
    assert recovery.boot is None
    assert recovery.step.actions == (Point(None),)
    assert recover(UpdateState(), SlotsView(None, {}), now=NOW).boot is None


slots_views = st.builds(
    SlotsView,
    pointer=st.sampled_from([None, Slot.A, Slot.B]),
    verified=st.dictionaries(st.sampled_from([Slot.A, Slot.B]), st.just(OLD)),
)
states = st.builds(
    at,
    phase=st.sampled_from([p for p in UpdatePhase if p is not UpdatePhase.IDLE]),
    cand=st.sampled_from([CANDIDATE, candidate(slot=Slot.A), SHADOW]),
    previous=st.sampled_from([None, Slot.A, Slot.B]),
) | st.just(UpdateState())


@given(state=states, slots=slots_views)
def test_recovery_never_boots_an_untested_slot_nor_an_unswitched_candidate(
    state: UpdateState, slots: SlotsView
) -> None:
    recovery = recover(state, slots, now=NOW)
    assert recovery.boot is None or recovery.boot in slots.verified
    if state.candidate is not None and state.phase not in (
        UpdatePhase.COMMITTED,
        UpdatePhase.FAILED,
        UpdatePhase.ROLLED_BACK,
    ):
        assert recovery.boot is not state.candidate.slot
    points = [a.slot for a in recovery.step.actions if isinstance(a, Point)]
    assert points in ([], [recovery.boot])
    if recovery.boot is not slots.pointer:
        assert points == [recovery.boot]
