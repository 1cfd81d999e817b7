"""The scenario parser: every kind read back exactly, defaults, and each refusal at its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.sim import scenario as scenario_module
from edgefleet.server.sim.scenario import (
    ALL,
    BadModel,
    BrokerRestart,
    CorruptChunk,
    Drift,
    DropConnections,
    FillDisk,
    FleetSpec,
    PowerCut,
    Rollout,
    ScenarioError,
    Selection,
    SlowLink,
    load_scenario,
    parse_scenario,
)

SCENARIOS = Path(__file__).parents[3] / "deploy" / "scenarios"

FULL = """\
[fleet]
devices = 200
model = "vibration"
duration = "5m"
seed = 1
inference_hz = 2.5
window_seconds = 10
data = "data/field.npz"

[fleet.groups]
site-a = 0.25
site-b = 0.75

[[event]]
at = "30s"
kind = "drop_connections"
devices = "10%"
group = "site-b"

[[event]]
at = 20
kind = "broker_restart"
down_for = "500ms"

[[event]]
at = "1m"
kind = "slow_link"
devices = 12
for = "1m30s"
latency_ms = 250

[[event]]
at = "1m"
kind = "power_cut"
devices = "all"
group = "site-a"
during = "verifying"
within = "2m"
off_for = 0

[[event]]
at = "90s"
kind = "corrupt_chunk"
chunks = 3

[[event]]
at = "100s"
kind = "fill_disk"
devices = 1
for = "15s"

[[event]]
at = "2m"
kind = "drift"
devices = "12.5%"
sigma = -0.5
channels = ["temperature", "vibration_x"]
for = "1m"

[[event]]
at = "3m"
kind = "rollout"
group = "site-a"
version = 4
waves = [5, 25.5, 100]
soak = "30s"

[[event]]
at = "4m"
kind = "bad_model"
group = "site-b"
flaw = "nan"
"""


def test_every_kind_is_read_back_exactly() -> None:
    scenario = parse_scenario(FULL, source="full.toml", base_dir=Path("/scenarios"))
    assert scenario.source == "full.toml"
    assert scenario.fleet == FleetSpec(
        devices=200,
        model="vibration",
        duration=300.0,
        seed=1,
        inference_hz=2.5,
        window_seconds=10.0,
        data="/scenarios/data/field.npz",
        groups=(("site-a", 0.25), ("site-b", 0.75)),
    )
    assert scenario.events == (
        BrokerRestart(at=20.0, line=20, down_for=0.5),
        DropConnections(at=30.0, line=14, selection=Selection(percent=10.0, group="site-b")),
        SlowLink(at=60.0, line=25, selection=Selection(count=12), duration=90.0, latency_ms=250),
        PowerCut(
            at=60.0,
            line=32,
            selection=Selection(group="site-a"),
            during="verifying",
            within=120.0,
            off_for=0.0,
        ),
        CorruptChunk(at=90.0, line=41, selection=ALL, chunks=3),
        FillDisk(at=100.0, line=46, selection=Selection(count=1), duration=15.0),
        Drift(
            at=120.0,
            line=52,
            selection=Selection(percent=12.5),
            sigma=-0.5,
            channels=("temperature", "vibration_x"),
            duration=60.0,
        ),
        Rollout(at=180.0, line=60, group="site-a", version=4, waves=(5.0, 25.5, 100.0), soak=30.0),
        BadModel(at=240.0, line=68, group="site-b", flaw="nan"),
    )


def test_defaults() -> None:
    scenario = parse_scenario(
        '[fleet]\ndevices = 3\nduration = "1m"\n'
        + "".join(
            f'[[event]]\nat = 1\nkind = "{kind}"\n{extra}'
            for kind, extra in [
                ("drop_connections", ""),
                ("broker_restart", ""),
                ("power_cut", ""),
                ("corrupt_chunk", ""),
                ("drift", "sigma = 1\n"),
                ("rollout", 'group = "fleet"\n'),
                ("bad_model", 'group = "fleet"\nflaw = "slow"\n'),
            ]
        )
    )
    assert scenario.fleet == FleetSpec(
        devices=3,
        model="vibration",
        duration=60.0,
        seed=0,
        inference_hz=1.0,
        window_seconds=10.0,
        data="synthetic",
        groups=(("fleet", 1.0),),
    )
    assert scenario.events == (
        DropConnections(at=1.0, line=4, selection=ALL),
        BrokerRestart(at=1.0, line=7, down_for=5.0),
        PowerCut(at=1.0, line=10, selection=ALL, during="any", within=60.0, off_for=3.0),
        CorruptChunk(at=1.0, line=13, selection=ALL, chunks=1),
        Drift(at=1.0, line=16, selection=ALL, sigma=1.0, channels=("temperature",), duration=None),
        Rollout(at=1.0, line=20, group="fleet", version=None, waves=(10.0, 50.0, 100.0), soak=10.0),
        BadModel(at=1.0, line=24, group="fleet", flaw="slow", waves=(10.0, 50.0, 100.0), soak=10.0),
    )


def test_no_events_is_a_fleet_that_just_runs() -> None:
    assert parse_scenario("[fleet]\ndevices = 1\nduration = 5\n").events == ()


def test_events_are_sorted_by_time_keeping_the_written_order_on_ties() -> None:
    text = "[fleet]\ndevices = 5\nduration = 60\n" + "".join(
        f'[[event]]\nat = {at}\nkind = "drop_connections"\ndevices = {n}\n'
        for n, at in enumerate([30, 10, 30, 0, 10], start=1)
    )
    events = parse_scenario(text).events
    assert [(e.at, e.selection.count) for e in events if isinstance(e, DropConnections)] == [
        (0.0, 4),
        (10.0, 2),
        (10.0, 5),
        (30.0, 1),
        (30.0, 3),
    ]


@pytest.mark.parametrize(
    ("data", "base_dir", "resolved"),
    [
        ("synthetic", Path("/base"), "synthetic"),
        ("rows.csv", Path("/base"), "/base/rows.csv"),
        ("../shared/rows.npz", Path("/base/scenarios"), "/base/scenarios/../shared/rows.npz"),
        ("/abs/rows.npz", Path("/base"), "/abs/rows.npz"),
        ("rows.csv", None, "rows.csv"),
    ],
)
def test_a_relative_dataset_is_taken_from_the_scenario_directory(
    data: str, base_dir: Path | None, resolved: str
) -> None:
    text = f'[fleet]\ndevices = 1\nduration = 5\ndata = "{data}"\n'
    assert parse_scenario(text, base_dir=base_dir).fleet.data == resolved


def test_the_error_names_source_line_event_and_the_known_kinds() -> None:
    text = FULL.replace('kind = "broker_restart"', 'kind = "meltdown"')
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="scenario.toml")
    assert str(caught.value) == (
        "scenario.toml line 22 ([[event]] #2, kind 'meltdown'): unknown event kind; known: "
        "bad_model, broker_restart, corrupt_chunk, drift, drop_connections, fill_disk, "
        "power_cut, rollout, slow_link"
    )
    assert caught.value.line == 22
    assert caught.value.reason == "bad_scenario"
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.status_code == 422


def test_load_scenario_reads_the_file_and_resolves_data_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[fleet]\ndevices = 2\nduration = 5\ndata = "rows.npz"\n', encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.source == str(path)
    assert scenario.fleet.data == str(tmp_path / "rows.npz")


def test_load_scenario_names_the_file_in_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[fleet]\ndevices = 2\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=f"^{re.escape(str(path))} line 1 "):
        load_scenario(path)


def test_an_unreadable_file_gives_the_os_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioError, match="cannot read the file: No such file or directory"):
        load_scenario(missing)
    with pytest.raises(ScenarioError, match="cannot read the file: Is a directory"):
        load_scenario(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[fleet]\nmodel = "caf\xe9"\n')
    with pytest.raises(ScenarioError, match="not UTF-8 text"):
        load_scenario(latin)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda path: path.name)
def test_every_shipped_scenario_parses(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.events
    assert len(scenario.describe()) == len(scenario.events)


def test_the_shipped_scenarios_are_the_ones_described() -> None:
    smoke = load_scenario(SCENARIOS / "smoke.toml")
    assert (smoke.fleet.devices, smoke.fleet.duration) == (20, 60.0)
    assert {event.kind for event in smoke.events} == {"drop_connections", "drift"}
    chaos = load_scenario(SCENARIOS / "chaos.toml")
    assert (chaos.fleet.devices, chaos.fleet.duration) == (60, 240.0)
    assert chaos.fleet.group_sizes() == {"canary": 6, "rest": 54}
    assert {event.kind for event in chaos.events} == {
        "rollout",
        "power_cut",
        "broker_restart",
        "corrupt_chunk",
        "slow_link",
        "fill_disk",
        "drop_connections",
    }


def test_the_module_exports_resolve() -> None:
    for name in scenario_module.__all__:
        assert getattr(scenario_module, name) is not None, name


def test_the_parser_loads_no_server_machinery() -> None:
    """The CLI's dry run and the simulator's hosts parse scenarios without a server stack."""
    probe = (
        "import sys, edgefleet.server.sim.scenario\n"
        "heavy = ('tensorflow', 'sqlalchemy', 'fastapi', 'paho', 'pydantic', 'apscheduler')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
