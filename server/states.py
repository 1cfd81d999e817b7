"""Device states, in a module of their own so pure code (the selector) can use them
without importing the database layer."""

from __future__ import annotations

from enum import StrEnum


class DeviceState(StrEnum):
    PROVISIONED = "provisioned"
    ONLINE = "online"
    OFFLINE = "offline"
    REVOKED = "revoked"
