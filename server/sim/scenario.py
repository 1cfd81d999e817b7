"""The simulator's scenario file (TOML): parsing and checking, with errors that point at a line.

A scenario is written by hand and then runs for minutes against hundreds of
agents, so everything is checked before anything starts: unknown keys, wrong
types and out-of-range values are errors naming the file, the line and the
reason, never a silent fallback to a default. Pure apart from
``load_scenario``, which reads the file. The parsed types live in
``scenario_types`` and are re-exported here, so callers import one module.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.sim.durations import parse_duration
from edgefleet.server.sim.scenario_types import (
    ALL,
    DEFAULT_WAVES,
    FLAWS,
    MAX_DEVICES,
    PHASES,
    SYNTHETIC,
    BadModel,
    BrokerRestart,
    CorruptChunk,
    Drift,
    DropConnections,
    Event,
    FillDisk,
    FleetSpec,
    PowerCut,
    Rollout,
    Scenario,
    Selection,
    SlowLink,
    assign_groups,
)
from edgefleet.server.sim.toml_lines import KeyLines, KeyPath
from edgefleet.server.training.synthetic import CHANNELS
from edgefleet.shared.messages import NAME_RE

__all__ = [
    "ALL",
    "DEFAULT_WAVES",
    "FLAWS",
    "MAX_DEVICES",
    "PHASES",
    "SYNTHETIC",
    "BadModel",
    "BrokerRestart",
    "CorruptChunk",
    "DropConnections",
    "Drift",
    "Event",
    "FillDisk",
    "FleetSpec",
    "PowerCut",
    "Rollout",
    "Scenario",
    "ScenarioError",
    "Selection",
    "SlowLink",
    "assign_groups",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]

SHARE_TOLERANCE = 1e-6
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


class ScenarioError(InvalidInputError):
    """A scenario the simulator must not start; ``line`` is None where no line is to blame
    (no ``[fleet]`` table, an unreadable file, a TOML syntax error: tomllib's message has it)."""

    reason = "bad_scenario"

    def __init__(
        self, source: str, detail: str, *, line: int | None = None, where: str = ""
    ) -> None:
        place = source if line is None else f"{source} line {line}"
        if where:
            place = f"{place} ({where})"
        super().__init__(f"{place}: {detail}", reason="bad_scenario")
        self.source = source
        self.line = line
        self.detail = detail


def parse_scenario(
    text: str, *, source: str = "scenario", base_dir: Path | None = None
) -> Scenario:
    """The scenario in ``text``; a relative dataset path is taken from ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(source, str(err)) from err
    reader = _Reader(source, text)
    _check_keys(data, ("fleet", "event"), "a scenario", reader.failer((), ""))
    fleet = _parse_fleet(data.get("fleet"), reader, base_dir)
    raw_events = data.get("event", [])
    if not isinstance(raw_events, list):
        raise reader.failer(("event",), "")(None, "event: must be an array of tables ([[event]])")
    events = [_parse_event(i, raw, fleet, reader) for i, raw in enumerate(raw_events)]
    return Scenario(fleet, tuple(sorted(events, key=lambda event: event.at)), source)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(str(path), f"cannot read the file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ScenarioError(str(path), f"not UTF-8 text: {err}") from err
    return parse_scenario(text, source=str(path), base_dir=path.parent)


Convert = Callable[[object], Any]
Fail = Callable[[str | None, str], ScenarioError]
_NAME = re.compile(NAME_RE)
_NAME_RULE = (
    "lowercase letters, digits, '_', '.' and '-', up to 63, starting with a letter or digit"
)
_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        DropConnections,
        BrokerRestart,
        SlowLink,
        PowerCut,
        CorruptChunk,
        FillDisk,
        Drift,
        Rollout,
        BadModel,
    )
}
_RENAMED = {"for": "duration"}


class _Reader:
    """Makes errors that point at the line of the key they are about."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = KeyLines(text)

    def failer(self, path: KeyPath, where: str) -> Fail:
        def fail(key: str | None, detail: str) -> ScenarioError:
            line = self.lines.find(path if key is None else (*path, key))
            return ScenarioError(self.source, detail, line=line, where=where)

        return fail


def _show(value: object) -> str:
    return json.dumps(value, default=str)


def _integer(low: int, high: int | None = None) -> Convert:
    bounds = f">= {low}" if high is None else f"from {low} to {high}"

    def convert(value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            raise ValueError(f"must be an integer {bounds}, got {_show(value)}")
        return value

    return convert


def _number(test: Callable[[float], bool], wanted: str) -> Convert:
    def convert(value: object) -> float:
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or not test(number):
            raise ValueError(f"must be {wanted}, got {_show(value)}")
        return float(number)

    return convert


def _choice(options: tuple[str, ...]) -> Convert:
    def convert(value: object) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {_show(value)}")
        return value

    return convert


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {_show(value)}")
    return seconds


def _name(value: object) -> str:
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ValueError(f"must be a name ({_NAME_RULE}), got {_show(value)}")
    return value


def _data(value: object) -> str:
    if not isinstance(value, str) or not (value == SYNTHETIC or value.endswith((".npz", ".csv"))):
        raise ValueError(f'must be "{SYNTHETIC}" or a .npz or .csv file, got {_show(value)}')
    return value


def _channels(value: object) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(channel, str) and channel for channel in value)
        or len(set(value)) != len(value)
    ):
        raise ValueError(f"must be a non-empty array of distinct channel names, got {_show(value)}")
    return tuple(value)


def _waves(value: object) -> tuple[float, ...]:
    items = value if isinstance(value, list) else []
    waves = tuple(float(p) for p in items if isinstance(p, int | float) and not isinstance(p, bool))
    if (
        not waves
        or len(waves) != len(items)
        or not all(0 < wave <= 100 for wave in waves)
        or waves[-1] != 100
        or any(b <= a for a, b in itertools.pairwise(waves))
    ):
        raise ValueError(
            "must be percents above 0 and up to 100, strictly increasing and ending at 100"
            f" (e.g. [10, 50, 100]), got {_show(value)}"
        )
    return waves


def _version(value: object) -> int | None:
    if value == "latest":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'must be "latest" or a version number >= 1, got {_show(value)}')
    return value


_FLEET_KEYS: dict[str, Convert] = {
    "devices": _integer(1, MAX_DEVICES),
    "model": _name,
    "duration": _positive_duration,
    "seed": _integer(0),
    "inference_hz": _number(lambda hz: hz >= 0, "a number >= 0"),
    "window_seconds": _number(lambda seconds: seconds > 0, "a number of seconds > 0"),
    "data": _data,
}
_WAVE_KEYS: dict[str, Convert] = {"waves": _waves, "soak": parse_duration}
_EVENT_KEYS: dict[type[Event], dict[str, Convert]] = {
    DropConnections: {},
    BrokerRestart: {"down_for": _positive_duration},
    SlowLink: {"for": _positive_duration, "latency_ms": _integer(1, 60_000)},
    PowerCut: {"during": _choice(PHASES), "within": _positive_duration, "off_for": parse_duration},
    CorruptChunk: {"chunks": _integer(1)},
    FillDisk: {"for": _positive_duration},
    Drift: {
        "sigma": _number(lambda s: s != 0 and abs(s) <= 20, "a number from -20 to 20, not 0"),
        "channels": _channels,
        "for": _positive_duration,
    },
    Rollout: {"version": _version, **_WAVE_KEYS},
    BadModel: {"flaw": _choice(FLAWS), **_WAVE_KEYS},
}


def _check_keys(raw: Mapping[str, object], known: Iterable[str], what: str, fail: Fail) -> None:
    allowed = set(known)
    for key in raw:
        if key not in allowed:
            raise fail(key, f"unknown key {key!r} for {what}; known: {', '.join(sorted(allowed))}")


def _convert(
    raw: Mapping[str, object], table: Mapping[str, Convert], cls: type[Any], fail: Fail
) -> dict[str, Any]:
    """The converted values of ``table``'s keys; a key ``cls`` has no default for is required."""
    required = {f.name for f in fields(cls) if f.default is MISSING}
    values: dict[str, Any] = {}
    for key, convert in table.items():
        attribute = _RENAMED.get(key, key)
        if key in raw:
            try:
                values[attribute] = convert(raw[key])
            except ValueError as err:
                raise fail(key, f"{key}: {err}") from err
        elif attribute in required:
            raise fail(None, f"missing required key {key!r}")
    return values


def _parse_fleet(raw: object, reader: _Reader, base_dir: Path | None) -> FleetSpec:
    fail = reader.failer(("fleet",), "[fleet]")
    if not isinstance(raw, dict):
        raise fail(None, "a scenario needs a [fleet] table (with at least devices and duration)")
    _check_keys(raw, (*_FLEET_KEYS, "groups"), "[fleet]", fail)
    values = _convert(raw, _FLEET_KEYS, FleetSpec, fail)
    data = values.get("data", SYNTHETIC)
    if data != SYNTHETIC and base_dir is not None and not Path(data).is_absolute():
        values["data"] = str(base_dir / data)
    groups_fail = reader.failer(("fleet", "groups"), "[fleet.groups]")
    if "groups" in raw:
        values["groups"] = _parse_groups(raw["groups"], values["devices"], groups_fail)
    fleet = FleetSpec(**values)
    for name, size in fleet.group_sizes().items():
        if size == 0:
            raise groups_fail(name, f"{name}: its share is too small for a single device")
    return fleet


def _parse_groups(raw: object, devices: int, fail: Fail) -> tuple[tuple[str, float | int], ...]:
    """Shares (floats summing to 1) or counts (integers summing to ``devices``), as written."""
    if not isinstance(raw, dict) or not raw:
        raise fail(None, "groups: must be a table of group name = share or device count")
    for name, value in raw.items():
        if _NAME.fullmatch(name) is None:
            raise fail(name, f"group {name!r}: a group name has {_NAME_RULE}")
        counts = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        share = isinstance(value, float) and 0 < value <= 1
        if not (counts or share):
            raise fail(
                name,
                f"{name}: must be a share above 0 and up to 1 (a float, e.g. 0.25)"
                f" or a device count >= 1 (an integer), got {_show(value)}",
            )
    values = list(raw.values())
    total = sum(values)
    if all(isinstance(value, int) for value in values):
        if total != devices:
            raise fail(
                None,
                f"group counts sum to {total}, not the fleet's {devices} devices"
                " (write shares as floats, e.g. 1.0)",
            )
    elif any(isinstance(value, int) for value in values):
        raise fail(None, "groups mix shares (floats) and counts (integers): use one kind")
    elif abs(total - 1) > SHARE_TOLERANCE:
        raise fail(None, f"group shares sum to {total:g}, not 1")
    return tuple(raw.items())


def _parse_event(index: int, raw: object, fleet: FleetSpec, reader: _Reader) -> Event:
    path: KeyPath = ("event", index)
    where = f"[[event]] #{index + 1}"
    if not isinstance(raw, dict):
        raise reader.failer(path, where)(None, "an event must be a table")
    kind = raw.get("kind")
    if isinstance(kind, str):
        where = f"{where}, kind {kind!r}"
    fail = reader.failer(path, where)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        problem = "missing key 'kind'" if kind is None else "unknown event kind"
        raise fail(
            None if kind is None else "kind", f"{problem}; known: {', '.join(sorted(_KINDS))}"
        )
    table = {"at": parse_duration, **_EVENT_KEYS[cls]}
    attributes = {f.name for f in fields(cls)}
    selects = "selection" in attributes
    targets = selects or "group" in attributes
    extra = ("devices", "group") if selects else ("group",) if targets else ()
    _check_keys(raw, (*table, "kind", *extra), str(kind), fail)
    values = _convert(raw, table, cls, fail)
    if values["at"] >= fleet.duration:
        raise fail(
            "at", f"at: {values['at']:g}s is not before the scenario's end ({fleet.duration:g}s)"
        )
    sizes = fleet.group_sizes()
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or group not in sizes):
        raise fail("group", f"group: no group {_show(group)}; known: {', '.join(sizes)}")
    if selects:
        values["selection"] = _selection(raw.get("devices", "all"), group, sizes, fleet, fail)
    elif targets:
        if group is None:
            raise fail(None, "missing required key 'group' (the fleet group it targets)")
        values["group"] = group
    if "within" in raw and values.get("during", "any") == "any":
        raise fail("within", 'within: only applies with a during other than "any"')
    if fleet.data == SYNTHETIC and set(values.get("channels", ())) - set(CHANNELS):
        raise fail("channels", f"channels: the synthetic data has {', '.join(CHANNELS)}")
    return cls(line=reader.lines.find(path) or 0, **values)


def _selection(
    value: object, group: str | None, sizes: Mapping[str, int], fleet: FleetSpec, fail: Fail
) -> Selection:
    pool = fleet.devices if group is None else sizes[group]
    if value == "all":
        return Selection(group=group)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= pool:
        return Selection(count=value, group=group)
    percent = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    if percent is not None and 0 < float(percent[1]) <= 100:
        return Selection(percent=float(percent[1]), group=group)
    whole = "the fleet" if group is None else f"group {group}"
    raise fail(
        "devices",
        f'devices: must be "all", a count from 1 to {pool} ({whole}) or a percent such as "10%",'
        f" got {_show(value)}",
    )
