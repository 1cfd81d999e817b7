"""The demo's preflight against this machine's real broker install, ports, disk and packages.

Only the lookups are swapped, and only to make something missing: ``which``
with an empty PATH, the real plugin finder over an empty folder, a module
finder that hides one package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.server.demo.preflight import (
    BOOTSTRAP,
    PreflightError,
    Problem,
    _data_dir_problems,
    _python_problems,
    find_mosquitto,
    format_problems,
    preflight,
    require_ready,
    sockets_on_port,
)
from edgefleet.server.errors import ConfigError
from edgefleet.server.mosquitto import find_dynsec_plugin
from tests.harness._system import free_loopback_port


@pytest.fixture
def ports() -> tuple[int, int]:
    api = free_loopback_port()
    broker = free_loopback_port()
    while broker == api:
        broker = free_loopback_port()
    return api, broker


@pytest.fixture
def listening() -> Iterator[int]:
    """A port this test process holds, as a server would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def check(tmp_path: Path, ports: tuple[int, int], **lookups: Any) -> list[Problem]:
    return preflight(data_dir=tmp_path / "demo", api_port=ports[0], broker_port=ports[1], **lookups)


def test_this_machine_is_ready_for_the_demo(tmp_path: Path, ports: tuple[int, int]) -> None:
    assert check(tmp_path, ports) == []
    assert not (tmp_path / "demo").exists(), "preflight only looks"


def test_missing_mosquitto_is_reported_with_the_apt_command(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    problems = check(tmp_path, ports, which=lambda name: None)
    assert len(problems) == 1
    assert "mosquitto" in problems[0].what
    assert problems[0].fix == "apt-get install -y mosquitto"


def test_mosquitto_off_the_path_is_found_where_debian_puts_it(tmp_path: Path) -> None:
    if not os.access("/usr/sbin/mosquitto", os.X_OK):
        pytest.skip("mosquitto is not installed in /usr/sbin on this machine")
    empty_path = str(tmp_path)
    assert find_mosquitto(lambda name: shutil.which(name, path=empty_path)) == (
        "/usr/sbin/mosquitto"
    )


def test_missing_dynsec_plugin_is_reported(tmp_path: Path, ports: tuple[int, int]) -> None:
    nowhere = (str(tmp_path / "lib" / "*.so"),)
    problems = check(tmp_path, ports, plugin_finder=lambda: find_dynsec_plugin(nowhere))
    assert len(problems) == 1
    assert "dynamic-security plugin is not installed" in problems[0].what
    assert "apt-get install -y mosquitto" in problems[0].fix


@pytest.mark.parametrize(("which", "option"), [(0, "--port"), (1, "--broker-port")])
def test_a_port_in_use_is_reported_with_the_process_holding_it(
    tmp_path: Path, ports: tuple[int, int], listening: int, which: int, option: str
) -> None:
    busy = list(ports)
    busy[which] = listening
    problems = check(tmp_path, (busy[0], busy[1]))
    assert problems == [
        Problem(
            f"port {listening} on 127.0.0.1 is in use (by pid {os.getpid()})",
            f"choose another with {option}, or stop the process using it",
        )
    ]


def test_one_port_for_both_servers_is_refused(tmp_path: Path, ports: tuple[int, int]) -> None:
    problems = check(tmp_path, (ports[0], ports[0]))
    assert [problem.what for problem in problems] == ["--port and --broker-port name the same port"]


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_out_of_range_is_refused(tmp_path: Path, ports: tuple[int, int], port: int) -> None:
    problems = check(tmp_path, (ports[0], port))
    assert [problem.what for problem in problems] == [f"port {port} is out of range (1-65535)"]


def test_a_file_where_a_parent_directory_should_be(tmp_path: Path, ports: tuple[int, int]) -> None:
    (tmp_path / "demo").write_text("not a directory")
    problems = preflight(
        data_dir=tmp_path / "demo" / "data", api_port=ports[0], broker_port=ports[1]
    )
    assert len(problems) == 1
    assert problems[0].what == (
        f"cannot create {tmp_path / 'demo' / 'data'}: {tmp_path / 'demo'} is not a directory"
    )
    assert "--data-dir" in problems[0].fix


def test_a_file_where_the_data_directory_should_be(tmp_path: Path, ports: tuple[int, int]) -> None:
    (tmp_path / "demo").write_text("not a directory")
    assert [problem.what for problem in check(tmp_path, ports)] == [
        f"{tmp_path / 'demo'} is not a directory"
    ]


def test_too_little_free_space_is_reported_in_mib(tmp_path: Path) -> None:
    free_mib = shutil.disk_usage(tmp_path).free // 2**20
    problems = _data_dir_problems(tmp_path / "demo", min_free_bytes=(free_mib + 1024) * 2**20)
    assert len(problems) == 1
    assert f"MiB free where {tmp_path / 'demo'} would be" in problems[0].what
    assert "--data-dir" in problems[0].fix


def test_missing_tflite_runtime_and_tensorflow_point_to_bootstrap(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    problems = check(tmp_path, ports, module_finder=lambda name: None)
    assert len(problems) == 2
    assert "no TFLite runtime" in problems[0].what
    assert "TensorFlow" in problems[1].what
    assert {problem.fix for problem in problems} == {BOOTSTRAP}


def test_either_tflite_runtime_will_do(tmp_path: Path, ports: tuple[int, int]) -> None:
    def only_litert(name: str) -> object | None:
        if name == "tflite_runtime":
            return None
        if name == "ai_edge_litert":
            return importlib.util.find_spec("edgefleet.server")  # any spec stands for "found"
        return importlib.util.find_spec(name)

    assert check(tmp_path, ports, module_finder=only_litert) == []


def test_the_runtimes_are_found_without_being_imported(tmp_path: Path) -> None:
    """They would pin this process to one interpreter and cost seconds of start-up."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from edgefleet.server.demo.preflight import preflight\n"
        f"problems = preflight(data_dir=Path({str(tmp_path)!r}), api_port=1, broker_port=2)\n"
        "assert not [p for p in problems if 'TFLite' in p.what or 'TensorFlow' in p.what]\n"
        "loaded = {'tensorflow', 'tflite_runtime', 'ai_edge_litert'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_python_older_than_3_11_is_refused() -> None:
    assert _python_problems((3, 11, 0)) == []
    [problem] = _python_problems((3, 10, 12))
    assert problem.what == "Python 3.10.12 is too old; edgefleet needs 3.11 or newer"


def test_every_problem_is_reported_at_once_with_its_fix(
    tmp_path: Path, listening: int, ports: tuple[int, int]
) -> None:
    (tmp_path / "demo").write_text("not a directory")
    problems = check(
        tmp_path,
        (listening, ports[1]),
        which=lambda name: None,
        plugin_finder=lambda: find_dynsec_plugin((str(tmp_path / "*.so"),)),
        module_finder=lambda name: None,
    )
    assert len(problems) == 6
    text = format_problems(problems)
    assert text.splitlines()[0] == "the demo cannot start (6 problems):"
    assert text.splitlines()[1:3] == [f"  1. {problems[0].what}", f"     fix: {problems[0].fix}"]
    assert text.count("     fix: ") == 6


def test_require_ready_raises_the_formatted_problems(
    tmp_path: Path, listening: int, ports: tuple[int, int]
) -> None:
    (tmp_path / "demo").write_text("not a directory")
    args: dict[str, Any] = {
        "data_dir": tmp_path / "demo",
        "api_port": listening,
        "broker_port": ports[1],
    }
    with pytest.raises(PreflightError) as raised:
        require_ready(**args)
    assert isinstance(raised.value, ConfigError)
    assert raised.value.reason == "preflight"
    assert str(raised.value) == format_problems(preflight(**args))


def test_a_ready_host_passes_require_ready(tmp_path: Path, ports: tuple[int, int]) -> None:
    require_ready(data_dir=tmp_path, api_port=ports[0], broker_port=ports[1])


def test_sockets_are_matched_by_local_port_in_both_tables() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000"
        "     0        0 4343 1 0000000000000000 20 4 30 10 -1\n"
        "   2: 0100007F:1F90 0100007F:D432 06 00000000:00000000 03:00000123 00000000"
        "     0        0 0 3 0000000000000000\n"
        "   3: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A"
        " 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0"
        " 10 0\n"
    )
    # 0x1F90 is 8080; row 1 only talks to it, row 2 is a TIME_WAIT without a socket (inode 0).
    assert sockets_on_port(table, 8080) == {"4242", "4444"}
    assert sockets_on_port(table, 1883) == set()
