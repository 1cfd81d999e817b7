"""What a scenario's events do to the fleet, decided before anything runs: pure, no I/O.

The runner asks here which devices an event hits, which simulator order a
fault becomes, and what the scenario needs from the machine (a broker it
may restart, root for the small disks, a model to roll out), so a scenario
that cannot run is refused before a single device is provisioned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgefleet.server.sim import orders
from edgefleet.server.sim.data import DriftSetting
from edgefleet.server.sim.scenario import (
    BadModel,
    CorruptChunk,
    Drift,
    DropConnections,
    Event,
    FillDisk,
    PowerCut,
    Rollout,
    Scenario,
    SlowLink,
)

Targeted = DropConnections | PowerCut | SlowLink | CorruptChunk | FillDisk | Drift


def salt(index: int, event: Event) -> str:
    """Per event, so two events with the same selection hit different devices."""
    return f"{index}:{event.kind}"


def targets(
    index: int,
    event: Targeted,
    *,
    devices: Sequence[str],
    groups: Mapping[str, Sequence[str]],
    seed: int,
) -> tuple[str, ...]:
    return event.selection.pick(devices, groups, seed=seed, salt=salt(index, event))


def fault_order(event: Targeted, ids: tuple[str, ...]) -> orders.Fault:
    """The order the simulator hosts carry out for a fault event on ``ids``."""
    if isinstance(event, DropConnections):
        return orders.Drop(ids)
    if isinstance(event, PowerCut):
        phase = None if event.during == "any" else event.during
        return orders.Cut(ids, phase, event.within, event.off_for)
    if isinstance(event, SlowLink):
        return orders.Slow(ids, event.latency_ms / 1000, event.duration)
    if isinstance(event, CorruptChunk):
        return orders.Corrupt(ids, event.chunks)
    if isinstance(event, FillDisk):
        return orders.FillDisk(ids, event.duration)
    return orders.DriftOn(ids, DriftSetting(event.sigma, event.channels), event.duration)


@dataclass(frozen=True)
class Needs:
    """What a scenario needs beyond a server and a fleet."""

    broker: bool
    """It restarts the broker, so the simulator must run it."""
    disks: frozenset[str]
    """Devices that get a small file system of their own (``fill_disk`` targets): needs root."""
    model: bool
    """It rolls out a version of the fleet's model."""
    flaws: tuple[str, ...]
    """The broken models it rolls out, to be built before the clock starts."""


def needs(scenario: Scenario, devices: Sequence[str], groups: Mapping[str, Sequence[str]]) -> Needs:
    disks: set[str] = set()
    for index, event in enumerate(scenario.events):
        if isinstance(event, FillDisk):
            disks.update(
                targets(index, event, devices=devices, groups=groups, seed=scenario.fleet.seed)
            )
    kinds = {event.kind for event in scenario.events}
    flaws = {event.flaw for event in scenario.events if isinstance(event, BadModel)}
    return Needs(
        broker="broker_restart" in kinds,
        disks=frozenset(disks),
        model=bool(kinds & {Rollout.kind, BadModel.kind}),
        flaws=tuple(sorted(flaws)),
    )
