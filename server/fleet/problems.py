"""What makes a device need an operator's eye, and in which order to show them. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from edgefleet.server.states import DeviceState


class Problem(StrEnum):
    """Most urgent first: this order is the order of the fleet's device list."""

    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    OFFLINE = "offline"
    DRIFT = "drift"


_RANK = {problem: rank for rank, problem in enumerate(Problem)}
_EVENT_PROBLEMS = {"failed": Problem.FAILED, "rolled_back": Problem.ROLLED_BACK}


def problems_of(*, state: str, last_event: str | None, drift_flagged: bool) -> tuple[Problem, ...]:
    """A device's problems now: its last update event (a later ``healthy`` clears a
    failure), its presence, and whether its latest drift window of any model is flagged.
    A revoked device was cut off on purpose and is nobody's problem."""
    if state == DeviceState.REVOKED:
        return ()
    found = [] if last_event is None else [_EVENT_PROBLEMS.get(last_event)]
    found.append(Problem.OFFLINE if state == DeviceState.OFFLINE else None)
    found.append(Problem.DRIFT if drift_flagged else None)
    return tuple(sorted((p for p in found if p is not None), key=_RANK.__getitem__))


def order_key(device_id: str, problems: Iterable[Problem]) -> tuple[int, int, str]:
    """Devices with problems first, the most urgent first, then by id."""
    ranks = sorted(_RANK[p] for p in problems)
    return (0 if ranks else 1, ranks[0] if ranks else 0, device_id)
