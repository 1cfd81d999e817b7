"""What the update machine persists, and the events it makes: plain, serialisable data.

:class:`UpdateState` is written atomically before the agent acts on any
transition, so it must round-trip through bytes exactly and refuse anything
that is not a state the machine could have produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from edgefleet.agent.errors import AgentError, UpdateStateError
from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.errors import EdgefleetError, MessageError
from edgefleet.shared.messages import (
    Event,
    EventKind,
    Identifier,
    Name,
    Seq,
    Sha256,
    ShadowSummary,
    Slot,
    Timestamp,
    UpdatePhase,
    Version,
)
from edgefleet.shared.schema import Length, require
from edgefleet.shared.signed import SignedEnvelope

STATE_MAX_BYTES = 512 * 1024
REASON_MAX = 500

RESTING = frozenset(
    {UpdatePhase.IDLE, UpdatePhase.COMMITTED, UpdatePhase.FAILED, UpdatePhase.ROLLED_BACK}
)
"""Phases with no update in flight."""
PRE_SWITCH = frozenset(
    {UpdatePhase.DOWNLOADING, UpdatePhase.VERIFYING, UpdatePhase.STAGED, UpdatePhase.TESTING}
)
"""Phases where the candidate exists but the previous model still serves."""


def other_slot(slot: Slot | None) -> Slot:
    """The slot an update goes into: never the active one."""
    return Slot.B if slot is Slot.A else Slot.A


def clip_reason(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


def reason_of(err: AgentError | EdgefleetError) -> str:
    """``"slug: message"``: the slug for counters and gates, the message for people."""
    return f"{err.reason}: {err}"


# -- state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """The model version being installed, and where it goes."""

    model: Name
    version: Version
    sha256: Sha256
    slot: Slot
    manifest: SignedEnvelope
    """The signed manifest, kept so a resumed update re-verifies what it installs."""
    rollout_id: Identifier | None = None
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class UpdateState:
    """What the agent persists (atomically) before acting on any transition."""

    phase: UpdatePhase = UpdatePhase.IDLE
    candidate: Candidate | None = None
    previous: Slot | None = None
    """The slot that served before the candidate (``None``: the device had no model)."""
    since: Timestamp = 0.0
    """When the phase began, by the wall clock: probation outlives a restart."""
    revision: Seq | None = None
    """The last ``desired`` revision acted on; older or equal copies are stale."""
    shadowing: bool = False
    """The candidate passed its self-test and runs in shadow (``testing`` only)."""
    reason: Annotated[str, Length(max=REASON_MAX)] | None = None

    def __post_init__(self) -> None:
        require(
            (self.candidate is None) == (self.phase is UpdatePhase.IDLE),
            f"phase {self.phase.value} {'needs' if self.candidate is None else 'has no'} candidate",
        )
        require(
            not self.shadowing or self.phase is UpdatePhase.TESTING,
            "only a candidate under test runs in shadow",
        )

    @property
    def resting(self) -> bool:
        """True when a new update may start now."""
        return self.phase in RESTING or self.shadowing

    def to_bytes(self) -> bytes:
        return jsoncodec.canonical(schema.to_json(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> UpdateState:
        try:
            return schema.from_json(cls, jsoncodec.parse(data, max_bytes=STATE_MAX_BYTES))
        except MessageError as err:
            raise UpdateStateError(f"persisted update state is invalid: {err}") from err


# -- what a step yields -------------------------------------------------------------------------


UNNUMBERED = 0
"""The ``seq`` of an event the machine made: the shell numbers it from the outbox."""


def event_for(
    candidate: Candidate,
    kind: EventKind,
    at: float,
    reason: str | None = None,
    progress: float | None = None,
    shadow: ShadowSummary | None = None,
) -> Event:
    return Event(
        seq=UNNUMBERED,
        at=at,
        kind=kind,
        model=candidate.model,
        version=candidate.version,
        rollout_id=candidate.rollout_id,
        reason=None if reason is None else clip_reason(reason),
        progress=progress,
        shadow=shadow,
    )
