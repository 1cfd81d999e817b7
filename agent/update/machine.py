"""The update state machine, as pure functions over plain data.

::

    idle ─▶ downloading ─▶ verifying ─▶ staged ─▶ testing ─▶ active ─▶ committed
                 │              │          │          │         │
                 └──────────────┴──────────┴──────────┴─▶ failed └─▶ rolled_back

:func:`step` maps (persisted state, signal) to the next state, the events to
report and the actions for the shell to carry out. The shell persists the
state *before* it acts, so a crash at any point leaves a state that
:func:`recover` can judge. Invariants both functions keep:

* the candidate's slot is never the active one until ``active``, and the
  model it replaced (``previous``) stays on disk until the candidate commits
  or a newer update overwrites it;
* only a slot that passed its self-test with intact bytes is ever booted;
* a crash during probation counts against the candidate (a model that
  crashes the interpreter must not be kept by the restart it caused).

A finished update (``committed``, ``failed``, ``rolled_back``) rests like
``idle``. So does ``testing`` once a *shadow* candidate has passed its
self-test: it runs beside the served model until a new ``desired`` either
promotes it (same bytes, no shadow) or replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgefleet.agent.errors import UpdateStateError
from edgefleet.agent.update.state import (
    PRE_SWITCH,
    UNNUMBERED,
    Candidate,
    UpdateState,
    clip_reason,
    event_for,
)
from edgefleet.shared.messages import (
    Event,
    EventKind,
    Identifier,
    Name,
    ShadowSummary,
    Slot,
    UpdatePhase,
    Version,
)

# -- signals (what happened) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """A verified, admitted manifest for a version newer than the installed one."""

    candidate: Candidate
    active: Slot | None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """A ``desired`` deployment that must not be installed; nothing was written."""

    model: Name
    version: Version
    reason: str
    rollout_id: Identifier | None = None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """A ``desired`` revision that asks for nothing new (same version and bytes)."""

    revision: int


@dataclass(frozen=True, slots=True)
class Progress:
    fraction: float
    reason: str | None = None
    """Why the download went back (a refetch starts again at 0)."""


@dataclass(frozen=True, slots=True)
class Downloaded:
    pass


@dataclass(frozen=True, slots=True)
class Staged:
    pass


@dataclass(frozen=True, slots=True)
class SelfTestStarted:
    pass


@dataclass(frozen=True, slots=True)
class SelfTestPassed:
    pass


@dataclass(frozen=True, slots=True)
class ShadowReported:
    summary: ShadowSummary


@dataclass(frozen=True, slots=True)
class Fail:
    reason: str


@dataclass(frozen=True, slots=True)
class Keep:
    reason: str


@dataclass(frozen=True, slots=True)
class RollBack:
    reason: str


Signal = (
    Start
    | Refuse
    | Seen
    | Progress
    | Downloaded
    | Staged
    | SelfTestStarted
    | SelfTestPassed
    | ShadowReported
    | Fail
    | Keep
    | RollBack
)


# -- actions (what the shell must do) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetch:
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class StopFetch:
    pass


@dataclass(frozen=True, slots=True)
class Stage:
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class RunSelfTest:
    """Load the staged file in a fresh runner (re-checking its bytes) and run the vectors."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class Shadow:
    candidate: Candidate


@dataclass(frozen=True, slots=True)
class StopShadow:
    pass


@dataclass(frozen=True, slots=True)
class Activate:
    """Record the version against rollback, swap the active pointer, serve it."""

    candidate: Candidate


@dataclass(frozen=True, slots=True)
class Point:
    """Serve ``slot`` (``None``: no model) and point the active pointer at it."""

    slot: Slot | None


@dataclass(frozen=True, slots=True)
class Discard:
    slot: Slot


Action = Fetch | StopFetch | Stage | RunSelfTest | Shadow | StopShadow | Activate | Point | Discard


@dataclass(frozen=True, slots=True)
class Step:
    state: UpdateState
    events: tuple[Event, ...] = ()
    actions: tuple[Action, ...] = ()


# -- transitions ----------------------------------------------------------------------


def step(state: UpdateState, signal: Signal, *, now: float) -> Step:
    """The next state, events and actions; :class:`UpdateStateError` if ``signal`` cannot
    happen in ``state`` (a bug in the shell, never a reason to touch the disk)."""
    if isinstance(signal, Start):
        return _start(state, signal, now)
    if isinstance(signal, Refuse):
        report = Event(
            seq=UNNUMBERED,
            at=now,
            kind=EventKind.FAILED,
            model=signal.model,
            version=signal.version,
            rollout_id=signal.rollout_id,
            reason=clip_reason(signal.reason),
        )
        return Step(_seen(state, signal.revision), (report,))
    if isinstance(signal, Seen):
        return Step(_seen(state, signal.revision))
    candidate = _require_candidate(state, signal)
    if isinstance(signal, Fail):
        return _fail(state, candidate, signal.reason, now)
    if isinstance(signal, RollBack):
        _expect(state, signal, UpdatePhase.ACTIVE)
        return roll_back(state, candidate, signal.reason, now)
    return _advance(state, candidate, signal, now)


def _advance(state: UpdateState, candidate: Candidate, signal: Signal, now: float) -> Step:
    """The forward path: one signal per phase."""
    if isinstance(signal, Progress):
        _expect(state, signal, UpdatePhase.DOWNLOADING)
        fraction = min(max(signal.fraction, 0.0), 1.0)
        report = event_for(candidate, EventKind.DOWNLOADING, now, signal.reason, fraction)
        return Step(state, (report,))
    if isinstance(signal, Downloaded):
        _expect(state, signal, UpdatePhase.DOWNLOADING)
        return Step(_enter(state, UpdatePhase.VERIFYING, now), (), (Stage(candidate),))
    if isinstance(signal, Staged):
        _expect(state, signal, UpdatePhase.VERIFYING)
        return Step(
            _enter(state, UpdatePhase.STAGED, now),
            (event_for(candidate, EventKind.VERIFIED, now),),
            (RunSelfTest(candidate),),
        )
    if isinstance(signal, SelfTestStarted):
        _expect(state, signal, UpdatePhase.STAGED)
        return Step(_enter(state, UpdatePhase.TESTING, now))
    if isinstance(signal, SelfTestPassed):
        _expect(state, signal, UpdatePhase.TESTING)
        if candidate.shadow:
            return Step(replace(state, shadowing=True, since=now), (), (Shadow(candidate),))
        return _activate(state, candidate, now)
    if isinstance(signal, ShadowReported):
        if not state.shadowing:
            raise UpdateStateError(f"a shadow report while {state.phase.value}, not in shadow")
        summary = signal.summary
        verified = event_for(
            candidate, EventKind.VERIFIED, now, reason=shadow_reason(summary), shadow=summary
        )
        return Step(state, (verified,), (StopShadow(),))
    if isinstance(signal, Keep):
        _expect(state, signal, UpdatePhase.ACTIVE)
        return Step(
            _enter(state, UpdatePhase.COMMITTED, now),
            (event_for(candidate, EventKind.HEALTHY, now, reason=signal.reason),),
        )
    raise UpdateStateError(f"unexpected signal {signal!r}")  # pragma: no cover


def shadow_reason(summary: ShadowSummary) -> str:
    """The shadow result in words, for people reading the event log."""
    delta = summary.latency_delta_ms
    return (
        f"shadow: agreement {summary.agreement:.3f} over {summary.samples} samples, "
        f"latency delta {'n/a' if delta is None else f'{delta:+.3f} ms'}"
    )


def _start(state: UpdateState, signal: Start, now: float) -> Step:
    candidate = signal.candidate
    staged = state.candidate
    if state.shadowing and staged is not None and _same_bytes(staged, candidate):
        if candidate.shadow:
            return Step(_seen(state, signal.revision))
        # The shadow candidate is promoted: it passed its self-test, the bytes are staged.
        promoted = replace(staged, shadow=False, rollout_id=candidate.rollout_id)
        ready = replace(
            state, candidate=promoted, shadowing=False, revision=_newer(state, signal.revision)
        )
        received = (event_for(promoted, EventKind.RECEIVED, now),)
        activated = _activate(ready, promoted, now)
        return replace(
            activated,
            events=received + activated.events,
            actions=(StopShadow(), *activated.actions),
        )
    if not state.resting:
        raise UpdateStateError(
            f"cannot start {candidate.model} v{candidate.version} while {state.phase.value}"
        )
    if candidate.slot is signal.active and signal.active is not None:
        raise UpdateStateError(f"candidate targets the active slot {candidate.slot.value}")
    stop = (StopShadow(),) if state.shadowing else ()
    started = UpdateState(
        phase=UpdatePhase.DOWNLOADING,
        candidate=candidate,
        previous=signal.active,
        since=now,
        revision=_newer(state, signal.revision),
    )
    return Step(
        started,
        (
            event_for(candidate, EventKind.RECEIVED, now),
            event_for(candidate, EventKind.DOWNLOADING, now, None, 0.0),
        ),
        (*stop, Fetch(candidate)),
    )


def _activate(state: UpdateState, candidate: Candidate, now: float) -> Step:
    return Step(
        _enter(state, UpdatePhase.ACTIVE, now),
        (event_for(candidate, EventKind.INSTALLED, now),),
        (Activate(candidate),),
    )


def _fail(state: UpdateState, candidate: Candidate, reason: str, now: float) -> Step:
    if state.phase is UpdatePhase.ACTIVE:
        return roll_back(state, candidate, reason, now)
    if state.phase not in PRE_SWITCH:
        raise UpdateStateError(f"nothing to fail while {state.phase.value}")
    cleanup: tuple[Action, ...] = (StopShadow(),) if state.shadowing else ()
    if state.phase is UpdatePhase.DOWNLOADING:
        cleanup += (StopFetch(),)
    failed = replace(_enter(state, UpdatePhase.FAILED, now), reason=clip_reason(reason))
    return Step(
        failed,
        (event_for(candidate, EventKind.FAILED, now, reason=reason),),
        (*cleanup, Discard(candidate.slot)),
    )


def roll_back(state: UpdateState, candidate: Candidate, reason: str, now: float) -> Step:
    rolled = replace(_enter(state, UpdatePhase.ROLLED_BACK, now), reason=clip_reason(reason))
    return Step(
        rolled,
        (event_for(candidate, EventKind.ROLLED_BACK, now, reason=reason),),
        (Point(state.previous), Discard(candidate.slot)),
    )


def _enter(state: UpdateState, phase: UpdatePhase, now: float) -> UpdateState:
    return replace(state, phase=phase, since=now, reason=None, shadowing=False)


def _seen(state: UpdateState, revision: int | None) -> UpdateState:
    return replace(state, revision=_newer(state, revision))


def _newer(state: UpdateState, revision: int | None) -> int | None:
    if revision is None:
        return state.revision
    return revision if state.revision is None else max(state.revision, revision)


def _same_bytes(a: Candidate, b: Candidate) -> bool:
    return (a.model, a.version, a.sha256) == (b.model, b.version, b.sha256)


def _require_candidate(state: UpdateState, signal: Signal) -> Candidate:
    if state.candidate is None:
        raise UpdateStateError(f"{type(signal).__name__} with no update in progress")
    return state.candidate


def _expect(state: UpdateState, signal: Signal, phase: UpdatePhase) -> None:
    if state.phase is not phase or state.shadowing:
        raise UpdateStateError(
            f"{type(signal).__name__} needs phase {phase.value}, the update is {state.phase.value}"
            + (" (in shadow)" if state.shadowing else "")
        )
