"""The hardware profiles this server knows, loaded once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.shared.errors import MessageError
from edgefleet.shared.profiles import HardwareProfile, parse_profile


class ProfileCatalog:
    def __init__(self, profiles: Mapping[str, HardwareProfile]) -> None:
        self._profiles = dict(profiles)

    @classmethod
    def load(cls, directory: Path) -> ProfileCatalog:
        if not directory.is_dir():
            raise ConfigError(
                f"hardware profile directory {directory} does not exist "
                "(set EDGEFLEET_PROFILES_DIR to the firmware_configs folder)"
            )
        profiles: dict[str, HardwareProfile] = {}
        for path in sorted(directory.glob("*.toml")):
            try:
                profile = parse_profile(path.read_text(encoding="utf-8"))
            except MessageError as err:
                raise ConfigError(f"{path}: {err}") from err
            profiles[profile.name] = profile
        if not profiles:
            raise ConfigError(f"no hardware profiles (*.toml) in {directory}")
        return cls(profiles)

    def get(self, name: str) -> HardwareProfile:
        profile = self._profiles.get(name)
        if profile is None:
            known = ", ".join(sorted(self._profiles))
            raise InvalidInputError(
                f"unknown hardware profile {name[:80]!r}; known: {known}", reason="unknown_profile"
            )
        return profile

    def names(self) -> list[str]:
        return sorted(self._profiles)
