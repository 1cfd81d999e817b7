"""Which device ids may currently send: registered and not revoked.

Read on every message, so it is a set in memory. A miss asks the database
(a device provisioned by another server replica a moment ago must not lose
its first messages), at most once per id per ``recheck_seconds``; a full
reload every ``refresh_seconds`` drops devices revoked elsewhere.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine, Select, select

from edgefleet.server.db.models import Device
from edgefleet.server.services import Clock
from edgefleet.server.states import DeviceState


class DeviceDirectory:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        refresh_seconds: float = 30.0,
        recheck_seconds: float = 5.0,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._known: frozenset[str] = frozenset()
        self._misses: dict[str, float] = {}
        self._loaded_at = float("-inf")

    @staticmethod
    def _active() -> Select[str]:
        return select(Device.id).where(Device.state != DeviceState.REVOKED)

    def reload(self) -> None:
        with self._engine.connect() as connection:
            known: frozenset[str] = frozenset(connection.scalars(self._active()).all())
        with self._lock:
            self._known, self._misses, self._loaded_at = known, {}, self._clock()

    def forget(self, device_id: str) -> None:
        """Stop accepting a device now (revoked through this replica)."""
        with self._lock:
            self._known = self._known - {device_id}

    def __contains__(self, device_id: object) -> bool:
        if not isinstance(device_id, str):
            return False
        now = self._clock()
        if now - self._loaded_at >= self._refresh_seconds:
            self.reload()
        if device_id in self._known:
            return True
        if now - self._misses.get(device_id, float("-inf")) < self._recheck_seconds:
            return False
        with self._engine.connect() as connection:
            found = connection.scalar(self._active().where(Device.id == device_id)) is not None
        with self._lock:
            if found:
                self._known = self._known | {device_id}
            else:
                self._misses[device_id] = now
        return found
