"""What a benchmark ran on: a figure means little without the machine and the load beside it.

Taken at a bench's start (:func:`machine_info`), so the load average is what
other work put on the machine, not the bench itself. Package versions come
from the installed distributions' metadata: nothing heavy (TensorFlow) is
imported to learn its version.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.harness.postgres import PostgresError, find_bindir

PACKAGES = (
    "paho-mqtt",
    "numpy",
    "tflite-runtime",
    "ai-edge-litert",
    "tensorflow",
    "tensorflow-cpu",
    "sqlalchemy",
    "psycopg",
)
"""Distributions whose versions move the figures; those not installed are left out."""


def machine_info() -> dict[str, Any]:
    """The machine, its load and the versions of what is measured.

    PostgreSQL's is the installed server binaries' version: the benches run the
    test harness's throwaway cluster, which starts those binaries.
    """
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_bytes": _ram_bytes(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _packages(),
        "mosquitto": _first_line(["mosquitto", "-h"]) or _first_line(["/usr/sbin/mosquitto", "-h"]),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": _postgres_binaries_version(),
    }


def print_machine(info: dict[str, Any]) -> None:
    cores = f"{info['logical_cores']} cores ({info['usable_cores']} usable)"
    ram = f"{info['ram_bytes'] / 2**30:.1f} GiB RAM" if info["ram_bytes"] else "RAM unknown"
    load = ", ".join(f"{v:.2f}" for v in info["load_average_at_start"])
    versions = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    print(f"machine: {info['cpu_model'] or 'unknown CPU'}, {cores}, {ram}, load {load}")
    print(f"         Python {info['python']} on {info['platform']}")
    print(f"         {versions}")
    print(
        f"         {info['mosquitto'] or 'mosquitto not found'}, SQLite {info['sqlite']}, "
        f"PostgreSQL {info['postgresql'] or 'unknown'}",
        flush=True,
    )


def _proc_field(path: str, name: str) -> str | None:
    """The value of the first ``name: value`` line of a /proc file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _ram_bytes() -> int | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24683656 kB"
    return None if total is None else int(total.split()[0]) * 1024


def _packages() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def _postgres_binaries_version() -> str | None:
    try:
        bindir = find_bindir()
    except (PostgresError, OSError, subprocess.TimeoutExpired):
        return None
    line = _first_line([str(bindir / "postgres"), "--version"])
    return None if line is None else line.removeprefix("postgres (PostgreSQL) ")
