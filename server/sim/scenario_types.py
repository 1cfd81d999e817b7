"""What a scenario says, once parsed: the fleet, and the events on its clock.

Plain frozen data and the pure rules that read it (which devices an event
hits, how group shares become device counts), kept apart from the parser in
``scenario`` so the simulator can build these in code as well. Device picks
use a stable hash of the seed, the event and the device id, so a scenario
hits the same devices in every run and every process.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, TypeAlias

MAX_DEVICES = 100_000
SYNTHETIC = "synthetic"
PHASES = ("any", "downloading", "verifying", "staged", "testing", "active")
FLAWS = ("nan", "slow")
DEFAULT_WAVES = (10.0, 50.0, 100.0)


@dataclass(frozen=True)
class Selection:
    """A count, a percent, or (both ``None``) all of the pool: the fleet, or one group."""

    count: int | None = None
    percent: float | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.count is not None and self.percent is not None:
            raise ValueError("a selection is a count or a percent, not both")

    def size(self, pool: int) -> int:
        """How many of ``pool`` devices it picks; a percent rounds up and picks at least one."""
        if self.count is not None:
            return min(self.count, pool)
        if self.percent is None:
            return pool
        # Decimal arithmetic: 7% of 100 is 7, where binary floats say 7.000000000000001.
        return min(pool, max(1, math.ceil(Fraction(repr(self.percent)) * pool / 100)))

    def pick(
        self,
        devices: Sequence[str],
        groups: Mapping[str, Sequence[str]],
        *,
        seed: int,
        salt: str,
    ) -> tuple[str, ...]:
        """The first devices of the pool ranked by a hash that ``salt`` makes per event."""
        pool = devices if self.group is None else groups[self.group]
        ranked = sorted(pool, key=lambda d: hashlib.sha256(f"{seed}:{salt}:{d}".encode()).digest())
        return tuple(ranked[: self.size(len(pool))])

    def describe(self) -> str:
        of = "" if self.group is None else f" of {self.group}"
        if self.count is not None:
            return f"{self.count} device{'s' if self.count != 1 else ''}{of}"
        if self.percent is not None:
            return f"{self.percent:g}%{of}"
        return f"all devices{of}"


ALL = Selection()


@dataclass(frozen=True, kw_only=True)
class FleetSpec:
    devices: int
    model: str = "vibration"
    duration: float
    seed: int = 0
    inference_hz: float = 1.0
    window_seconds: float = 10.0
    data: str = SYNTHETIC
    groups: tuple[tuple[str, float | int], ...] = (("fleet", 1.0),)

    def group_sizes(self) -> dict[str, int]:
        """Devices per group: counts as written, shares by largest remainder (sum = devices)."""
        values = [value for _, value in self.groups]
        if all(isinstance(value, int) for value in values):
            sizes = [int(value) for value in values]
        else:
            total = sum(Fraction(value) for value in values)
            quotas = [Fraction(value) * self.devices / total for value in values]
            sizes = [math.floor(quota) for quota in quotas]
            order = sorted(range(len(quotas)), key=lambda i: quotas[i] - sizes[i], reverse=True)
            for i in order[: self.devices - sum(sizes)]:
                sizes[i] += 1
        return {name: size for (name, _), size in zip(self.groups, sizes, strict=True)}


def assign_groups(fleet: FleetSpec, device_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each group's devices: consecutive runs of ``device_ids``, groups in written order."""
    if len(device_ids) != fleet.devices:
        raise ValueError(f"the fleet has {fleet.devices} devices, got {len(device_ids)} ids")
    assigned: dict[str, tuple[str, ...]] = {}
    start = 0
    for name, size in fleet.group_sizes().items():
        assigned[name] = tuple(device_ids[start : start + size])
        start += size
    return assigned


def _seconds(value: float) -> str:
    return f"{value:g}s"


@dataclass(frozen=True, kw_only=True)
class _Timed:
    """What every event has: when it happens, and the line it was written on, for messages."""

    kind: ClassVar[str]
    at: float
    line: int


@dataclass(frozen=True, kw_only=True)
class _Targeted(_Timed):
    """An event that hits some of the devices: see :class:`Selection`."""

    selection: Selection = ALL


@dataclass(frozen=True, kw_only=True)
class _Staged(_Timed):
    """An operator's staged rollout to a fleet group, in waves with a soak time between."""

    group: str
    waves: tuple[float, ...] = DEFAULT_WAVES
    soak: float = 10.0

    def _plan(self) -> str:
        return f"waves {'/'.join(f'{w:g}' for w in self.waves)}%, soak {_seconds(self.soak)}"


@dataclass(frozen=True, kw_only=True)
class DropConnections(_Targeted):
    """Connections cut without a DISCONNECT; the agents reconnect on their own."""

    kind: ClassVar[str] = "drop_connections"

    def describe(self) -> str:
        return self.selection.describe()


@dataclass(frozen=True, kw_only=True)
class BrokerRestart(_Timed):
    kind: ClassVar[str] = "broker_restart"
    down_for: float = 5.0

    def describe(self) -> str:
        return f"down for {_seconds(self.down_for)}"


@dataclass(frozen=True, kw_only=True)
class SlowLink(_Targeted):
    kind: ClassVar[str] = "slow_link"
    duration: float
    latency_ms: int

    def describe(self) -> str:
        return f"{self.selection.describe()}, +{self.latency_ms} ms for {_seconds(self.duration)}"


@dataclass(frozen=True, kw_only=True)
class PowerCut(_Targeted):
    """Power lost at ``at``, or armed then and cut when the device's update is in ``during``."""

    kind: ClassVar[str] = "power_cut"
    during: str = "any"
    within: float = 60.0
    off_for: float = 3.0

    def describe(self) -> str:
        when = "" if self.during == "any" else f" while {self.during} (within {self.within:g}s)"
        return f"{self.selection.describe()}{when}, off for {_seconds(self.off_for)}"


@dataclass(frozen=True, kw_only=True)
class CorruptChunk(_Targeted):
    """The next ``chunks`` artifact chunks each device receives arrive with one byte flipped."""

    kind: ClassVar[str] = "corrupt_chunk"
    chunks: int = 1

    def describe(self) -> str:
        return f"{self.selection.describe()}, next {self.chunks} chunk(s)"


@dataclass(frozen=True, kw_only=True)
class FillDisk(_Targeted):
    kind: ClassVar[str] = "fill_disk"
    duration: float

    def describe(self) -> str:
        return f"{self.selection.describe()} for {_seconds(self.duration)}"


@dataclass(frozen=True, kw_only=True)
class Drift(_Targeted):
    """Inputs shifted by ``sigma`` standard deviations; ``duration`` None lasts to the end."""

    kind: ClassVar[str] = "drift"
    sigma: float
    channels: tuple[str, ...] = ("temperature",)
    duration: float | None = None

    def describe(self) -> str:
        until = "" if self.duration is None else f" for {_seconds(self.duration)}"
        shift = f"{self.sigma:+g} sigma on {', '.join(self.channels)}"
        return f"{self.selection.describe()}, {shift}{until}"


@dataclass(frozen=True, kw_only=True)
class Rollout(_Staged):
    """An operator's staged rollout of ``version`` (None: the latest) to a fleet group."""

    kind: ClassVar[str] = "rollout"
    version: int | None = None

    def describe(self) -> str:
        version = "latest" if self.version is None else f"v{self.version}"
        return f"{version} to {self.group}, {self._plan()}"


@dataclass(frozen=True, kw_only=True)
class BadModel(_Staged):
    """A rollout of a model that is signed and valid but broken (``flaw``), for the gates."""

    kind: ClassVar[str] = "bad_model"
    flaw: str

    def describe(self) -> str:
        return f"'{self.flaw}' model to {self.group}, {self._plan()}"


Event: TypeAlias = (
    DropConnections
    | BrokerRestart
    | SlowLink
    | PowerCut
    | CorruptChunk
    | FillDisk
    | Drift
    | Rollout
    | BadModel
)


@dataclass(frozen=True)
class Scenario:
    fleet: FleetSpec
    events: tuple[Event, ...]
    source: str

    def describe(self) -> list[str]:
        """One line per event, for the CLI's dry run."""
        return [f"{e.at:6.1f}s  {e.kind}  {e.describe()}" for e in self.events]
