"""What the scenario parser refuses, each at its line with its reason, and what it lets through."""

from __future__ import annotations

import re

import pytest

from edgefleet.server.sim.scenario import Drift, ScenarioError, SlowLink, parse_scenario


def test_a_toml_syntax_error_keeps_tomllib_line_and_column() -> None:
    with pytest.raises(ScenarioError, match=r"^broken\.toml: .*\(at line 3, column 9\)"):
        parse_scenario("[fleet]\ndevices = 3\nduration\n", source="broken.toml")


def test_a_missing_fleet_table_has_no_line_to_name() -> None:
    with pytest.raises(ScenarioError, match=r"^scenario \(\[fleet\]\): a scenario needs") as caught:
        parse_scenario('[[event]]\nat = 1\nkind = "broker_restart"\n')
    assert caught.value.line is None


FLEET = '[fleet]\ndevices = 20\nduration = "2m"\n[fleet.groups]\ncanary = 0.25\nrest = 0.75\n'


def fleet(*lines: str) -> str:
    return "[fleet]\n" + "".join(f"{line}\n" for line in lines)


def event(*lines: str) -> str:
    """FLEET, then one ``[[event]]`` on line 7 with ``lines`` from line 8 on."""
    return FLEET + "[[event]]\n" + "".join(f"{line}\n" for line in lines)


FLEET_ERRORS = [
    (
        fleet("devices = true", "duration = 5"),
        2,
        "devices: must be an integer from 1 to 100000, got true",
    ),
    (
        fleet("devices = 0", "duration = 5"),
        2,
        "devices: must be an integer from 1 to 100000, got 0",
    ),
    (fleet("devices = 100001", "duration = 5"), 2, "from 1 to 100000, got 100001"),
    (fleet("devices = 2.0", "duration = 5"), 2, "got 2.0"),
    (fleet("duration = 5"), 1, "missing required key 'devices'"),
    (fleet("devices = 1"), 1, "missing required key 'duration'"),
    (fleet("devices = 1", 'duration = "-5s"'), 3, "duration: a duration cannot be negative"),
    (fleet("devices = 1", 'duration = "5 minutes"'), 3, "duration: not a duration"),
    (fleet("devices = 1", "duration = 0"), 3, "duration: must be longer than 0"),
    (
        fleet("devices = 1", "duration = 5", "device_count = 3"),
        4,
        "unknown key 'device_count' for \\[fleet\\]; known: data, devices, duration, groups,"
        " inference_hz, model, seed, window_seconds",
    ),
    (fleet("devices = 1", "duration = 5", 'model = "Vibration Model"'), 4, "model: must be a name"),
    (fleet("devices = 1", "duration = 5", "seed = -1"), 4, "seed: must be an integer >= 0"),
    (
        fleet("devices = 1", "duration = 5", "inference_hz = -1"),
        4,
        "inference_hz: must be a number >= 0, got -1",
    ),
    (
        fleet("devices = 1", "duration = 5", 'inference_hz = "1"'),
        4,
        'inference_hz: must be a number >= 0, got "1"',
    ),
    (
        fleet("devices = 1", "duration = 5", "window_seconds = 0"),
        4,
        "window_seconds: must be a number of seconds > 0",
    ),
    (
        fleet("devices = 1", "duration = 5", 'data = "rows.parquet"'),
        4,
        'data: must be "synthetic" or a .npz or .csv file',
    ),
    (
        'title = "x"\n' + fleet("devices = 1", "duration = 5"),
        1,
        "unknown key 'title' for a scenario; known: event, fleet",
    ),
    (fleet("devices = 1", "duration = 5") + "[fleets]\n", 4, "unknown key 'fleets'"),
    ("fleet = 3\n", 1, "a scenario needs a \\[fleet\\] table"),
    ("fleet.devices = 3\n", 1, "missing required key 'duration'"),
]

GROUP_ERRORS = [
    (FLEET.replace("0.75", "0.65"), 4, "group shares sum to 0.9, not 1"),
    (
        FLEET.replace("0.25", "5").replace("0.75", "10"),
        4,
        "group counts sum to 15, not the fleet's 20 devices \\(write shares as floats",
    ),
    (FLEET.replace("0.25", "5"), 4, "groups mix shares \\(floats\\) and counts \\(integers\\)"),
    (
        FLEET.replace("0.25", "0.01").replace("0.75", "0.99"),
        5,
        "canary: its share is too small for a single device",
    ),
    (FLEET.replace("canary", '"Site A"'), 5, "group 'Site A': a group name has lowercase letters"),
    (FLEET.replace("0.25", "true"), 5, "canary: must be a share above 0 and up to 1 .* got true"),
    (FLEET.replace("0.25", "0.0").replace("0.75", "1.0"), 5, "canary: must be a share"),
    (
        FLEET.replace("0.25", "0").replace("0.75", "20"),
        5,
        "canary: .* or a device count >= 1 \\(an integer\\), got 0",
    ),
    (fleet("devices = 1", "duration = 5", "groups = 3"), 4, "groups: must be a table"),
    (fleet("devices = 1", "duration = 5", "groups = {}"), 4, "groups: must be a table"),
]

EVENT_ERRORS = [
    ("event = 3\n" + FLEET, 1, "event: must be an array of tables"),
    ("event = [3]\n" + FLEET, 1, "\\(\\[\\[event\\]\\] #1\\): an event must be a table"),
    (event("at = 1"), 7, "\\(\\[\\[event\\]\\] #1\\): missing key 'kind'; known: bad_model, "),
    (event("at = 1", "kind = 3"), 9, "\\(\\[\\[event\\]\\] #1\\): unknown event kind; known: "),
    (event('kind = "drop_connections"'), 7, "missing required key 'at'"),
    (
        event('at = "2m"', 'kind = "drop_connections"'),
        8,
        "at: 120s is not before the scenario's end \\(120s\\)",
    ),
    (event('at = "-1s"', 'kind = "drop_connections"'), 8, "at: a duration cannot be negative"),
    (event("at = true", 'kind = "drop_connections"'), 8, "at: expected a duration"),
    (
        event("at = 1", 'kind = "drop_connections"', "latency_ms = 5"),
        10,
        "unknown key 'latency_ms' for drop_connections; known: at, devices, group, kind",
    ),
    (
        event("at = 1", 'kind = "broker_restart"', "devices = 3"),
        10,
        "unknown key 'devices' for broker_restart; known: at, down_for, kind",
    ),
    (
        event("at = 1", 'kind = "broker_restart"', "down_for = 0"),
        10,
        "down_for: must be longer than 0",
    ),
    (
        event("at = 1", 'kind = "slow_link"', "latency_ms = 5"),
        7,
        "kind 'slow_link'\\): missing required key 'for'",
    ),
    (event("at = 1", 'kind = "slow_link"', "for = 5"), 7, "missing required key 'latency_ms'"),
    (
        event("at = 1", 'kind = "slow_link"', "for = 5", "latency_ms = 0"),
        11,
        "latency_ms: must be an integer from 1 to 60000, got 0",
    ),
    (event("at = 1", 'kind = "slow_link"', "for = 5", "latency_ms = 60001"), 11, "got 60001"),
    (event("at = 1", 'kind = "slow_link"', "for = 5", "latency_ms = 1.5"), 11, "got 1.5"),
    (
        event("at = 1", 'kind = "power_cut"', 'during = "sleeping"'),
        10,
        "during: must be one of any, downloading, verifying, staged, testing, active;"
        ' got "sleeping"',
    ),
    (
        event("at = 1", 'kind = "power_cut"', 'within = "10s"'),
        10,
        'within: only applies with a during other than "any"',
    ),
    (
        event("at = 1", 'kind = "power_cut"', 'off_for = "-1s"'),
        10,
        "off_for: a duration cannot be negative",
    ),
    (
        event("at = 1", 'kind = "corrupt_chunk"', "chunks = 0"),
        10,
        "chunks: must be an integer >= 1, got 0",
    ),
    (event("at = 1", 'kind = "fill_disk"'), 7, "missing required key 'for'"),
    (event("at = 1", 'kind = "drift"'), 7, "missing required key 'sigma'"),
    (
        event("at = 1", 'kind = "drift"', "sigma = 0"),
        10,
        "sigma: must be a number from -20 to 20, not 0, got 0",
    ),
    (event("at = 1", 'kind = "drift"', "sigma = -21"), 10, "got -21"),
    (
        event("at = 1", 'kind = "drift"', "sigma = 1", "channels = []"),
        11,
        "channels: must be a non-empty array of distinct channel names",
    ),
    (event("at = 1", 'kind = "drift"', "sigma = 1", 'channels = ["a", "a"]'), 11, "distinct"),
    (
        event("at = 1", 'kind = "drift"', "sigma = 1", 'channels = ["humidity"]'),
        11,
        "channels: the synthetic data has vibration_x, vibration_y, temperature",
    ),
    (
        event("at = 1", 'kind = "drift"', "sigma = 1", 'for = "0s"'),
        11,
        "for: must be longer than 0",
    ),
    (
        event("at = 1", 'kind = "rollout"'),
        7,
        "missing required key 'group' \\(the fleet group it targets\\)",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "nowhere"'),
        10,
        'group: no group "nowhere"; known: canary, rest',
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "devices = 3"),
        11,
        "unknown key 'devices' for rollout; known: at, group, kind, soak, version, waves",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "version = 0"),
        11,
        'version: must be "latest" or a version number >= 1, got 0',
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', 'version = "newest"'),
        11,
        'got "newest"',
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "waves = [50, 10, 100]"),
        11,
        "waves: must be percents above 0 and up to 100, strictly increasing and ending at 100"
        " \\(e.g. \\[10, 50, 100\\]\\), got \\[50, 10, 100\\]",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "waves = [10, 50]"),
        11,
        "waves: must be percents",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "waves = [0, 100]"),
        11,
        "waves: must be percents",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "waves = [10, 100, 100]"),
        11,
        "waves: must be percents",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "waves = [10, 150]"),
        11,
        "waves: must be percents",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', 'waves = [10, "100"]'),
        11,
        "waves: must be percents",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', "waves = []"),
        11,
        "waves: must be percents",
    ),
    (
        event("at = 1", 'kind = "rollout"', 'group = "rest"', 'soak = "-1s"'),
        11,
        "soak: a duration cannot be negative",
    ),
    (event("at = 1", 'kind = "bad_model"', 'group = "rest"'), 7, "missing required key 'flaw'"),
    (
        event("at = 1", 'kind = "bad_model"', 'group = "rest"', 'flaw = "broken"'),
        11,
        "flaw: must be one of nan, slow",
    ),
]

SELECTION_ERRORS = [
    ('"0%"', "", 'got "0%"'),
    ('"150%"', "", 'got "150%"'),
    (
        '"ten"',
        "",
        'devices: must be "all", a count from 1 to 20 \\(the fleet\\) or a percent such as "10%",'
        ' got "ten"',
    ),
    ('" 10%"', "", 'got " 10%"'),
    ("21", "", "got 21"),
    ("6", 'group = "canary"', "a count from 1 to 5 \\(group canary\\) .* got 6"),
    ("true", "", "got true"),
    ("2.5", "", "got 2.5"),
    ("0", "", "got 0"),
]


def assert_refused(text: str, line: int, pattern: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    message = str(caught.value)
    assert caught.value.line == line, message
    assert message.startswith(f"scenario line {line}"), message
    assert re.search(pattern, message), message


@pytest.mark.parametrize(("text", "line", "pattern"), FLEET_ERRORS + GROUP_ERRORS)
def test_fleet_errors_name_their_line(text: str, line: int, pattern: str) -> None:
    assert_refused(text, line, pattern)


@pytest.mark.parametrize(("text", "line", "pattern"), EVENT_ERRORS)
def test_event_errors_name_their_line(text: str, line: int, pattern: str) -> None:
    assert_refused(text, line, pattern)


@pytest.mark.parametrize(("devices", "group", "pattern"), SELECTION_ERRORS)
def test_selection_errors_name_their_line(devices: str, group: str, pattern: str) -> None:
    assert_refused(
        event("at = 1", 'kind = "drop_connections"', group, f"devices = {devices}"), 11, pattern
    )


def test_an_unknown_group_in_a_selection() -> None:
    text = event("at = 1", 'kind = "fill_disk"', "for = 1", 'group = "nowhere"')
    assert_refused(text, 11, 'group: no group "nowhere"; known: canary, rest')


def test_drift_channels_are_free_when_the_data_is_a_file() -> None:
    text = event("at = 1", 'kind = "drift"', "sigma = 1", 'channels = ["humidity"]').replace(
        'duration = "2m"', 'duration = "2m"\ndata = "rows.csv"'
    )
    (drift,) = parse_scenario(text).events
    assert isinstance(drift, Drift)
    assert drift.channels == ("humidity",)


def test_an_event_may_run_past_the_end_if_it_starts_before_it() -> None:
    text = event('at = "119s"', 'kind = "slow_link"', 'for = "10m"', "latency_ms = 5")
    (slow,) = parse_scenario(text).events
    assert isinstance(slow, SlowLink)
    assert (slow.at, slow.duration) == (119.0, 600.0)


def test_events_written_as_an_inline_array_point_at_the_array() -> None:
    text = FLEET.replace(
        "[fleet]", 'event = [{ at = 1, kind = "drop_connections" },\n  { at = 2 }]\n[fleet]'
    )
    assert_refused(text, 1, "\\(\\[\\[event\\]\\] #2\\): missing key 'kind'")
    fixed = text.replace("{ at = 2 }", '{ at = 2, kind = "broker_restart" }')
    events = parse_scenario(fixed).events
    assert [(event.kind, event.line) for event in events] == [
        ("drop_connections", 1),
        ("broker_restart", 1),
    ]
