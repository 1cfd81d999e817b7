"""Crash recovery: from what survived on disk, what to serve and how to go on.

Pure, like the machine: the shell reads the persisted state and which slots
are fit (self-test passed, bytes intact), and acts on the :class:`Recovery`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from edgefleet.agent.update.machine import Discard, Fetch, Point, RunSelfTest, Step, roll_back
from edgefleet.agent.update.state import (
    PRE_SWITCH,
    UNNUMBERED,
    UpdateState,
    clip_reason,
    event_for,
    other_slot,
)
from edgefleet.shared.messages import Event, EventKind, Name, Sha256, Slot, UpdatePhase, Version

# -- ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotModel:
    """A slot that passed its self-test and whose bytes still hash to its record."""

    model: Name
    version: Version
    sha256: Sha256


@dataclass(frozen=True, slots=True)
class SlotsView:
    """What is on disk at boot: the active pointer and the slots fit to serve."""

    pointer: Slot | None
    verified: Mapping[Slot, SlotModel]


@dataclass(frozen=True, slots=True)
class Recovery:
    boot: Slot | None
    """The slot to serve now: verified, or ``None`` (serve nothing) when none is."""
    step: Step


def recover(state: UpdateState, slots: SlotsView, *, now: float) -> Recovery:
    """Decide, from what survived a crash, what to serve and how to go on.

    * ``downloading``/``verifying``: the bytes were in memory; fetch again
      (chunks are retained) while the previous model serves;
    * ``staged``/``testing``: the file is on disk; test it again (its bytes
      are re-checked first) while the previous model serves;
    * ``active`` (probation): roll back to the previous model;
    * at rest: serve the pointer's slot if it is fit; else fall back to the
      other fit slot and report it, else serve nothing.
    """
    candidate = state.candidate
    if state.phase is UpdatePhase.ACTIVE and candidate is not None:
        boot = _fit(slots, state.previous, exclude=candidate.slot)
        rolled = roll_back(state, candidate, "interrupted: agent restarted during probation", now)
        return Recovery(boot, replace(rolled, actions=(Point(boot), Discard(candidate.slot))))
    if state.phase in PRE_SWITCH and candidate is not None:
        boot = _fit(slots, slots.pointer, exclude=candidate.slot) or _fit(
            slots, state.previous, exclude=candidate.slot
        )
        point = (Point(boot),) if boot is not slots.pointer else ()
        if state.phase in (UpdatePhase.DOWNLOADING, UpdatePhase.VERIFYING):
            resumed = replace(state, phase=UpdatePhase.DOWNLOADING, since=now)
            report = event_for(candidate, EventKind.DOWNLOADING, now, "resumed after restart", 0.0)
            return Recovery(boot, Step(resumed, (report,), (*point, Fetch(candidate))))
        restaged = replace(state, phase=UpdatePhase.STAGED, since=now, shadowing=False)
        return Recovery(boot, Step(restaged, (), (*point, RunSelfTest(candidate))))
    return _recover_at_rest(state, slots, now)


def _recover_at_rest(state: UpdateState, slots: SlotsView, now: float) -> Recovery:
    boot = _fit(slots, slots.pointer)
    if boot is not None or slots.pointer is None:
        return Recovery(boot, Step(state))
    fallback = _fit(slots, other_slot(slots.pointer))
    if fallback is None:
        return Recovery(None, Step(state, (), (Point(None),)))
    serving = slots.verified[fallback]
    report = Event(
        seq=UNNUMBERED,
        at=now,
        kind=EventKind.ROLLED_BACK,
        model=serving.model,
        version=serving.version,
        reason=clip_reason(
            f"slot_unusable: the active slot {slots.pointer.value} failed its integrity "
            f"check at boot; serving {serving.model} v{serving.version} from slot "
            f"{fallback.value}"
        ),
    )
    return Recovery(fallback, Step(state, (report,), (Point(fallback),)))


def _fit(slots: SlotsView, slot: Slot | None, *, exclude: Slot | None = None) -> Slot | None:
    if slot is None or slot is exclude or slot not in slots.verified:
        return None
    return slot
