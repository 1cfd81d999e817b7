"""What the simulator's parent process tells its host processes (pickled over a pipe).

Every order names devices by id; a host acts on those it runs and ignores
the rest, so the parent sends one order to every host.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.server.sim.data import DriftSetting
from edgefleet.shared.agent_config import AgentConfig


@dataclass(frozen=True, slots=True)
class HostDevice:
    config: AgentConfig
    group: str
    offset: int
    """Where this device starts in its row pool, so neighbours do not read the same rows."""
    disk: str | None = None
    """Mount point of the device's own small file system (only for ``fill_disk`` targets)."""


@dataclass(frozen=True, slots=True)
class HostSpec:
    devices: tuple[HostDevice, ...]
    profile_toml: str
    inference_hz: float
    data: str
    seed: int
    step_seconds: float = 0.5
    """How often each agent's loop runs when no message wakes it (a real agent: 0.2 s)."""
    log_level: str = "WARNING"


@dataclass(frozen=True, slots=True)
class Drop:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cut:
    ids: tuple[str, ...]
    phase: str | None
    """None: now; else when the update machine enters this phase, within ``within`` seconds."""
    within: float
    off_for: float


@dataclass(frozen=True, slots=True)
class Slow:
    ids: tuple[str, ...]
    latency: float
    duration: float


@dataclass(frozen=True, slots=True)
class Corrupt:
    ids: tuple[str, ...]
    chunks: int


@dataclass(frozen=True, slots=True)
class DriftOn:
    ids: tuple[str, ...]
    setting: DriftSetting
    duration: float | None


@dataclass(frozen=True, slots=True)
class FillDisk:
    ids: tuple[str, ...]
    duration: float


@dataclass(frozen=True, slots=True)
class Report:
    """Answered with every device's report row and the host's own figures."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop every agent cleanly; answered with the final report."""


Fault = Drop | Cut | Slow | Corrupt | DriftOn | FillDisk
Order = Fault | Report | Stop
