"""Rendering of Mosquitto's config for a broker secured by the dynamic-security plugin.

What the plugin enforces is tested in ``test_dynsec`` (pure) and
``test_broker_acl`` (on the real broker, started from exactly this config).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.server.errors import ConfigError
from edgefleet.server.mosquitto import find_dynsec_plugin, render_config

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


def _config(**overrides: object) -> str:
    arguments: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 1883,
        "plugin_path": PLUGIN,
        "dynsec_file": "/var/lib/edgefleet/dynamic-security.json",
        "log_file": None,
        "persistence_dir": None,
        **overrides,
    }
    return render_config(**arguments)  # type: ignore[arg-type]


def test_config_has_one_listener_and_the_plugin_checks_every_login():
    lines = _config().splitlines()
    assert [line for line in lines if line.startswith("listener")] == ["listener 1883 127.0.0.1"]
    for line in [
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {PLUGIN}",
        "plugin_opt_config_file /var/lib/edgefleet/dynamic-security.json",
    ]:
        assert line in lines
    # The plugin is the only authority: a password file or ACL file beside it would also grant.
    assert not [line for line in lines if line.startswith(("password_file", "acl_file"))]


@pytest.mark.parametrize(
    ("overrides", "expected", "absent"),
    [
        ({}, ["log_dest stderr", "persistence false"], "persistence_location"),
        ({"log_file": "/var/log/m.log"}, ["log_dest file /var/log/m.log"], "log_dest stderr"),
        (
            {"persistence_dir": "/var/lib/m"},
            ["persistence true", "persistence_location /var/lib/m/"],
            "persistence false",
        ),
        ({"verbose_log": True}, ["log_type all"], "log_type error"),
    ],
    ids=["defaults", "log-file", "persistence", "verbose"],
)
def test_config_options(overrides: dict[str, object], expected: list[str], absent: str):
    rendered = _config(**overrides)
    for line in expected:
        assert line in rendered.splitlines()
    assert absent not in rendered


@pytest.mark.parametrize(
    "overrides",
    [
        {"port": 0},
        {"port": 65536},
        {"host": ""},
        {"plugin_path": "/tmp/p.so\nallow_anonymous true"},
        {"dynsec_file": "/tmp/my file.json"},
        {"dynsec_file": ""},
        {"log_file": "/tmp/log\n"},
        {"log_file": ""},
        {"persistence_dir": "/tmp/p dir"},
    ],
)
def test_config_refuses_values_that_would_break_a_line(overrides: dict[str, object]):
    with pytest.raises(ValueError, match="port|whitespace"):
        _config(**overrides)


def test_find_dynsec_plugin_takes_the_first_pattern_that_matches(tmp_path: Path):
    (tmp_path / "b").mkdir()
    plugin = tmp_path / "b" / "mosquitto_dynamic_security.so"
    plugin.touch()
    patterns = (str(tmp_path / "nowhere.so"), str(tmp_path / "*" / plugin.name))
    assert find_dynsec_plugin(patterns) == str(plugin)


def test_find_dynsec_plugin_says_what_to_install(tmp_path: Path):
    with pytest.raises(ConfigError, match="apt-get install mosquitto"):
        find_dynsec_plugin((str(tmp_path / "*.so"),))


def test_find_dynsec_plugin_finds_the_installed_one():
    # The broker tests need it anyway; this one says so without starting a broker.
    assert Path(find_dynsec_plugin()).is_file()
