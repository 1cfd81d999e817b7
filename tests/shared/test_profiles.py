from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.shared.errors import MessageError
from edgefleet.shared.profiles import Variant, parse_profile

CONFIGS = Path(__file__).resolve().parents[2] / "firmware_configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_profiles_parse_and_are_named_after_their_file(path: Path) -> None:
    profile = parse_profile(path.read_text())
    assert profile.name == path.stem
    assert profile.variants


def test_shipped_profiles_cover_the_documented_boards() -> None:
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    assert {"rpi4", "jetson-nano", "x86-gateway", "sim"} <= names
    assert parse_profile((CONFIGS / "rpi4.toml").read_text()).variants[0] is Variant.INT8


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('name = "rpi4"\nvariants = [', "bad_toml"),
        ('name = "Bad Name"\ndescription = ""\nvariants = ["int8"]', "bad_format"),
        ('name = "a"\ndescription = ""\nvariants = ["int4"]', "bad_enum"),
        ('name = "a"\ndescription = ""\nvariants = []', "bad_length"),
        ('name = "a"\ndescription = ""\nvariants = ["int8"]\nthreads = 0', "out_of_range"),
        ('name = "a"\ndescription = ""\nvariants = ["int8"]\ngpu = true', "unknown_field"),
    ],
    ids=["truncated", "bad-name", "unknown-variant", "no-variant", "zero-threads", "unknown-key"],
)
def test_bad_profiles_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_profile(text)
    assert caught.value.reason == reason
