"""The CLI: check, exit codes, the example config and the systemd unit stay valid."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.cli import EXIT_CONFIG, EXIT_OK, main
from edgefleet.shared.agent_config import parse_agent_config, pinned_root_text
from tests.shared.factories import Fleet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "firmware_configs" / "examples" / "agent.toml"
UNIT = ROOT / "deploy" / "systemd" / "edgefleet-agent.service"
FLEET = Fleet()
PLACEHOLDER = 'root = "PASTE the pinned root from the provisioning bundle"'


@pytest.fixture(autouse=True)
def _keep_pytest_logging() -> Iterator[None]:
    """``main`` installs the agent's JSON log handler on the root logger; put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def example_with_a_root() -> str:
    text = EXAMPLE.read_text()
    assert PLACEHOLDER in text
    # A JSON string is a TOML basic string, as provisioning writes it.
    return text.replace(PLACEHOLDER, f"root = {json.dumps(pinned_root_text(FLEET.root_v1))}")


def test_the_example_documents_every_key_and_parses() -> None:
    config = parse_agent_config(example_with_a_root())
    assert config.device.id == "pump-0042"
    assert config.broker.tls_ca == "/etc/edgefleet/broker-ca.pem"
    text = EXAMPLE.read_text()
    for section in ("device", "broker", "trust", "telemetry", "inference", "update", "drift"):
        fields = type(getattr(config, section)).__dataclass_fields__
        for name in fields:
            assert f"\n{name} = " in text or f"\n# {name} = " in text, f"{section}.{name}"


def test_the_example_placeholder_root_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(EXAMPLE.read_text())
    assert main(["check", "--config", str(path)]) == EXIT_CONFIG


def test_check_prints_what_it_would_connect_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(example_with_a_root())
    path.chmod(0o644)
    profiles = ROOT / "firmware_configs"
    assert main(["check", "--config", str(path), "--profiles", str(profiles)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "device:      pump-0042" in out
    assert "broker:      mqtts://mqtt.example.com:8883 as pump-0042" in out
    assert f"profile:     rpi4 (4 thread(s), XNNPACK on; from {profiles / 'rpi4.toml'})" in out
    assert "pinned root: v1, 2 of 3 keys" in out
    assert "data dir:    /var/lib/edgefleet" in out
    assert "holds the broker password and is readable by others" in out


def test_check_without_a_profile_file_says_it_uses_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(example_with_a_root())
    path.chmod(0o600)
    assert main(["check", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "1 thread(s), XNNPACK on; from built-in defaults" in out
    assert "readable by others" not in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read"),
        ("[device\n", "not valid TOML"),
        ("[device]\nid = 'x'\nprofile = 'sim'\ncolour = 1\n", "unknown field"),
    ],
)
def test_bad_configs_exit_78_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    path = tmp_path / "agent.toml"
    if text is not None:
        path.write_text(text)
    assert main(["--config", str(path)]) == EXIT_CONFIG
    assert message in capsys.readouterr().err


def test_a_mistyped_pause_hook_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(example_with_a_root())
    monkeypatch.setenv("EDGEFLEET_AGENT_PAUSE_IN", "probation")
    assert main(["run", "--config", str(path)]) == EXIT_CONFIG


def test_help_documents_the_exit_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.agent.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for code in ("0", "1", "2", "75", "78"):
        assert f"\n  {code} " in done.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the unit, with ExecStart pointed at this agent."""
    agent = Path(sys.executable).with_name("edgefleet-agent")
    unit = tmp_path / "edgefleet-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgefleet/bin/edgefleet-agent", str(agent)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    text = UNIT.read_text()
    for line in (
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/edgefleet",
        "PrivateTmp=yes",
    ):
        assert f"\n{line}\n" in text
