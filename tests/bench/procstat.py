"""CPU time of processes other than ours (the broker, PostgreSQL's), from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.harness.broker import MosquittoBroker


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of ``pid`` (all its threads), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mosquitto_pid(broker: MosquittoBroker) -> int | None:
    marker = str(broker.directory).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


class PostgresCpu:
    """CPU of every server process PostgreSQL lists (backends, WAL writer, checkpointer...)."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(url, poolclass=NullPool)

    def sample(self) -> dict[int, float]:
        with self._engine.connect() as connection:
            pids = connection.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
            ).all()
        return {pid: cpu for pid in pids if (cpu := cpu_seconds(pid)) is not None}

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float | None:
        if not after:
            return None  # a server on another machine: its /proc is not ours
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())

    def close(self) -> None:
        self._engine.dispose()
