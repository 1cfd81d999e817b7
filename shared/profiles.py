"""Hardware profiles (``firmware_configs/*.toml``): which model variant a board runs.

Both sides read them: the server to pick the artifact variant per device, the
agent to configure its interpreter (threads, XNNPACK). Parsing is pure; the
caller reads the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from edgefleet.shared import schema
from edgefleet.shared.errors import MessageError
from edgefleet.shared.messages import Name
from edgefleet.shared.schema import Length, Range


class Variant(StrEnum):
    """Quantization variants the training pipeline can produce."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC_RANGE = "dynamic_range"
    INT8 = "int8"


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    name: Name
    description: Annotated[str, Length(max=200)]
    variants: Annotated[tuple[Variant, ...], Length(min=1, max=4)]
    """Acceptable variants, preferred first."""
    threads: Annotated[int, Range(1, 64)] = 1
    xnnpack: bool = True
    int8_io: bool = False
    """Feed and read int8 tensors directly (no float conversion in the graph)."""
    max_artifact_bytes: Annotated[int, Range(1024, 2**31)] = 64 * 1024 * 1024
    memory_bytes: Annotated[int, Range(0, 2**40)] | None = None


def parse_profile(text: str) -> HardwareProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MessageError(f"hardware profile is not valid TOML: {err}", reason="bad_toml") from err
    return schema.from_json(HardwareProfile, data)
