"""Checks the demo runs before it starts anything, reported all at once with their fixes.

A first-time user on a fresh machine should see every missing package and
every busy port in one message, each with the command that fixes it, rather
than one failure per attempt deep inside the start-up of the broker or the
server. The checks only look: nothing is created, installed or imported (the
TFLite runtime and TensorFlow are found with ``find_spec``, not loaded, so the
demo's own processes still decide which interpreter they load). The lookups
that depend on the machine are parameters, so tests can point them at a
missing program or plugin while the defaults check the real thing.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet.server.errors import ConfigError
from edgefleet.server.mosquitto import find_dynsec_plugin

MIN_FREE_BYTES = 500 * 1024 * 1024
"""Room for the database, the trained models and their artifacts, the broker's persistence."""
MIN_PYTHON = (3, 11)
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")
"""Debian installs the broker in /usr/sbin, which is not on a normal user's PATH."""
TFLITE_RUNTIMES = ("tflite_runtime", "ai_edge_litert")
BOOTSTRAP = "bash deploy/bootstrap.sh server"

Which = Callable[[str], str | None]
PluginFinder = Callable[[], str]
ModuleFinder = Callable[[str], object | None]


@dataclass(frozen=True)
class Problem:
    """One thing that stops the demo, and the command or choice that fixes it."""

    what: str
    fix: str


class PreflightError(ConfigError):
    """The host is not ready for the demo; the message lists every problem and its fix."""

    reason = "preflight"


def find_mosquitto(which: Which = shutil.which) -> str | None:
    """Path of the broker program, on PATH or where Debian puts it; ``None`` if neither."""
    for candidate in MOSQUITTO_CANDIDATES:
        found = which(candidate)
        if found is not None:
            return found
    return None


def preflight(
    *,
    data_dir: Path,
    api_port: int,
    broker_port: int,
    host: str = "127.0.0.1",
    which: Which = shutil.which,
    plugin_finder: PluginFinder = find_dynsec_plugin,
    module_finder: ModuleFinder = importlib.util.find_spec,
) -> list[Problem]:
    """Every problem that would stop the demo on this host; empty when it is ready."""
    problems = _python_problems(sys.version_info[:3])
    problems += _broker_problems(which, plugin_finder)
    problems += _port_problems(host, {"--port": api_port, "--broker-port": broker_port})
    problems += _data_dir_problems(data_dir)
    problems += _runtime_problems(module_finder)
    return problems


def require_ready(
    *, data_dir: Path, api_port: int, broker_port: int, host: str = "127.0.0.1"
) -> None:
    """:func:`preflight` with the real lookups; :class:`PreflightError` lists what it found."""
    problems = preflight(data_dir=data_dir, api_port=api_port, broker_port=broker_port, host=host)
    if problems:
        raise PreflightError(format_problems(problems))


def format_problems(problems: Sequence[Problem]) -> str:
    """A numbered list a person can work through from the top, one fix under each problem."""
    if not problems:
        return "the demo's preflight checks found no problems"
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    lines = [f"the demo cannot start ({count}):"]
    for number, problem in enumerate(problems, start=1):
        lines.append(f"  {number}. {problem.what}")
        lines.append(f"     fix: {problem.fix}")
    return "\n".join(lines)


def _python_problems(version: Sequence[int]) -> list[Problem]:
    if tuple(version[:2]) >= MIN_PYTHON:
        return []
    found = ".".join(str(part) for part in version[:3])
    return [
        Problem(
            f"Python {found} is too old; edgefleet needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer",
            f"install a newer python3 (Debian 12 ships 3.11), then run {BOOTSTRAP}",
        )
    ]


def _broker_problems(which: Which, plugin_finder: PluginFinder) -> list[Problem]:
    problems = []
    if find_mosquitto(which) is None:
        problems.append(
            Problem(
                "mosquitto, the MQTT broker, is neither on PATH nor in /usr/sbin",
                "apt-get install -y mosquitto",
            )
        )
    try:
        plugin_finder()
    except ConfigError as err:
        problems.append(Problem(str(err), "apt-get install -y mosquitto (version 2.0 or newer)"))
    return problems


def _port_problems(host: str, ports: dict[str, int]) -> list[Problem]:
    """``ports`` maps each port's command-line option to its value, for the fix to name."""
    problems = []
    if len(set(ports.values())) < len(ports):
        options = " and ".join(ports)
        problems.append(
            Problem(f"{options} name the same port", f"give {options} different values")
        )
    checked = set()
    for option, port in ports.items():
        what = None if port in checked else _port_trouble(host, port)
        checked.add(port)
        if what is not None:
            problems.append(
                Problem(what, f"choose another with {option}, or stop the process using it")
            )
    return problems


def _port_trouble(host: str, port: int) -> str | None:
    """Why the demo could not listen on ``host:port``, found by trying what its servers do."""
    if not 0 < port < 65536:
        return f"port {port} is out of range (1-65535)"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As Mosquitto and uvicorn do: a connection of a previous run in TIME_WAIT is no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                return f"cannot listen on {host}:{port}: {err.strerror or err}"
            pids = _pids_holding(_socket_inodes(port))
            owner = f" (by pid {', '.join(map(str, pids))})" if pids else ""
            return f"port {port} on {host} is in use{owner}"
    return None


def _socket_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets bound to ``port``, from the kernel's tables (Linux only)."""
    inodes: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            inodes |= sockets_on_port(table.read_text(), port)
        except OSError:
            continue
    return inodes


def sockets_on_port(table: str, port: int) -> set[str]:
    """Inodes of the sockets in a ``/proc/net/tcp``-style ``table`` whose local port is ``port``.

    Each row reads ``sl local_address rem_address st ... uid timeout inode``,
    the local address as ``HEXADDR:HEXPORT``.
    """
    inodes = set()
    for row in table.splitlines()[1:]:
        fields = row.split()
        if len(fields) < 10 or ":" not in fields[1]:
            continue
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
            inodes.add(fields[9])
    return inodes


def _pids_holding(inodes: Iterable[str]) -> list[int]:
    """Processes with one of these sockets open; only those we may look into are found."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    if not wanted:
        return []
    pids = []
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            fds = list((process / "fd").iterdir())
        except OSError:  # not ours to read, or gone already
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                pids.append(int(process.name))
                break
    return sorted(pids)


def _data_dir_problems(data_dir: Path, min_free_bytes: int = MIN_FREE_BYTES) -> list[Problem]:
    fix = "choose another with --data-dir, one you can create and write to"
    existing = data_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == data_dir.absolute() else f"cannot create {data_dir}: "
        return [Problem(f"{where}{existing} is not a directory", fix)]
    if not os.access(existing, os.W_OK | os.X_OK):
        verb = "write to" if existing == data_dir.absolute() else f"create {data_dir} in"
        return [Problem(f"cannot {verb} {existing}: permission denied or read-only", fix)]
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        return [
            Problem(
                f"only {free // 2**20} MiB free where {data_dir} would be; "
                f"the demo needs {min_free_bytes // 2**20} MiB",
                f"free some space, or {fix} on another filesystem",
            )
        ]
    return []


def _runtime_problems(module_finder: ModuleFinder) -> list[Problem]:
    problems = []
    if all(module_finder(name) is None for name in TFLITE_RUNTIMES):
        problems.append(
            Problem(
                "no TFLite runtime for the simulated devices "
                f"(neither {' nor '.join(TFLITE_RUNTIMES)} is installed)",
                BOOTSTRAP,
            )
        )
    if module_finder("tensorflow") is None:
        problems.append(
            Problem(
                "TensorFlow (to train and quantize the demo's model) is not installed", BOOTSTRAP
            )
        )
    return problems
