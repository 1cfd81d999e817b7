"""Small file systems of their own for the devices a ``fill_disk`` event fills.

A full disk must be the device's own, as on a board: filling the machine's
disk would stop the broker, the server and every other device with it. So
each target gets a 16 MiB tmpfs at ``DATA/disks/{id}`` (its data directory
inside), which needs root to mount; the simulator unmounts them at the end.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from edgefleet.server.atomic import make_dir
from edgefleet.server.errors import ConfigError

SIZE = "16m"
AGENT_DIR = "agent"


def can_mount() -> bool:
    return os.geteuid() == 0


def mount_point(data_dir: Path, device_id: str) -> Path:
    return data_dir / "disks" / device_id


def mount(data_dir: Path, device_ids: Iterable[str]) -> dict[str, Path]:
    """A fresh tmpfs per device; each device's mount point."""
    mounted: dict[str, Path] = {}
    try:
        for device_id in sorted(device_ids):
            point = mount_point(data_dir, device_id)
            make_dir(point, mode=0o700)
            if not os.path.ismount(point):
                _run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(point)])
            mounted[device_id] = point
    except BaseException:
        unmount(mounted.values())
        raise
    return mounted


def unmount(points: Iterable[Path]) -> list[str]:
    """Unmount each point; the ones that would not unmount, with why (nothing raised: the
    simulator is shutting down and reports them)."""
    problems = []
    for point in points:
        if os.path.ismount(point):
            try:
                _run(["umount", str(point)])
            except ConfigError as err:
                problems.append(str(err))
    return problems


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)  # noqa: S603
    except FileNotFoundError as err:
        raise ConfigError(f"{command[0]} is not installed (util-linux)") from err
    except subprocess.CalledProcessError as err:
        raise ConfigError(f"{' '.join(command)} failed: {err.stderr.strip()}") from err
