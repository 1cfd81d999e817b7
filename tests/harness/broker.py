"""A real, throwaway Mosquitto broker configured exactly as the fleet's.

Its password file, ACL and config come from :mod:`edgefleet.server.mosquitto`,
so a test that passes here passes against the rules production renders.
Devices are provisioned the way the server will do it: rewrite the password
file, send SIGHUP, and (what the server cannot skip either) wait until the
broker actually answers with the new credentials.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.server.mosquitto import (
    SERVER_USER,
    hash_password,
    render_acl,
    render_config,
    render_password_file,
)
from edgefleet.shared.topics import validate_device_id
from tests.harness._system import Service, ServiceAccount, free_loopback_port, write_private

HOST = "127.0.0.1"
TIMEOUT = 5.0
"""Upper bound for every wait here; a healthy local broker answers in milliseconds."""


class BrokerError(RuntimeError):
    """The broker is missing, did not start, or did not apply a change in time."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


class MosquittoBroker(Service):
    """One ``mosquitto`` process on a free loopback port, in its own directory.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The
    directory (config, password file, ACL, log) is deleted on stop unless
    ``keep_files`` is set.
    """

    def __init__(self, *, keep_files: bool = False, verbose_log: bool = True) -> None:
        self.host = HOST
        self.port = 0
        self.server_credentials = Credentials(SERVER_USER, secrets.token_urlsafe(18))
        self._keep_files = keep_files
        self._verbose_log = verbose_log
        self._users: dict[str, tuple[Credentials, str]] = {}  # username -> (credentials, hash)
        self._account = ServiceAccount.for_root("mosquitto")
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise BrokerError("broker not started")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def start(self) -> Self:
        executable = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
        if executable is None:
            raise BrokerError(
                "mosquitto is not installed: apt-get install mosquitto mosquitto-clients "
                "(or brew install mosquitto)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="edgefleet-mosquitto-"))
        if self._account is not None:
            self._account.give(self._dir)
        self.port = free_loopback_port()
        self._set_user(self.server_credentials)
        write_private(self._dir / "acl", render_acl(SERVER_USER), self._account)
        config = render_config(
            host=self.host,
            port=self.port,
            password_file=str(self._dir / "passwd"),
            acl_file=str(self._dir / "acl"),
            log_file=None,
            persistence_dir=None,
            verbose_log=self._verbose_log,
        )
        write_private(self._dir / "mosquitto.conf", config, self._account)
        with self.log_path.open("wb") as log:
            # The child keeps its own copy of the descriptor; ours can close now.
            self._process = subprocess.Popen(
                [executable, "-c", str(self._dir / "mosquitto.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=None if self._account is None else self._account.uid,
                group=None if self._account is None else self._account.gid,
                extra_groups=None if self._account is None else [],
            )
        try:
            self._wait_until(
                lambda: self.connack(self.server_credentials).value == 0,
                "accept the server's credentials after start",
            )
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(self._users) - {SERVER_USER}

    def add_device(
        self, device_id: str, *, password: str | None = None, password_hash: str | None = None
    ) -> Credentials:
        """Provision ``device_id``; returns once the broker lets it log in.

        The password is random unless given; ``password_hash`` replaces our own
        hashing of it, for tests of hashes made elsewhere.
        """
        credentials = Credentials(
            validate_device_id(device_id), password or secrets.token_urlsafe(18)
        )
        self._set_user(credentials, password_hash)
        self.reload()
        self._wait_until(
            lambda: self.connack(credentials).value == 0,
            f"accept new device {device_id!r}",
        )
        return credentials

    def remove_device(self, device_id: str) -> None:
        """Deprovision ``device_id``; returns once the broker refuses it.

        Mosquitto 2.0 also disconnects the device's live sessions on that reload.
        """
        credentials, _ = self._users.pop(device_id)
        self._write_password_file()
        self.reload()
        self._wait_until(
            lambda: self.connack(credentials).is_failure,
            f"refuse removed device {device_id!r}",
        )

    def reload(self) -> None:
        """Ask mosquitto to re-read its config, password file and ACL (SIGHUP)."""
        self._require_running().send_signal(signal.SIGHUP)

    def connack(self, credentials: Credentials | None) -> ReasonCode:
        """Connect once (MQTT v5; ``None``: anonymously), disconnect, return the CONNACK reason."""
        client = new_client()
        if credentials is not None:
            client.username_pw_set(credentials.username, credentials.password)
        answers: list[ReasonCode] = []
        client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
        try:
            client.connect(self.host, self.port, keepalive=10)
            deadline = time.monotonic() + TIMEOUT
            while not answers and time.monotonic() < deadline:
                if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and not answers:
                    break
        except OSError as err:
            raise BrokerError(f"cannot reach the broker: {err}") from err
        finally:
            client.disconnect()
        if not answers:
            raise BrokerError("broker sent no CONNACK")
        return answers[0]

    def client(
        self, credentials: Credentials, *, protocol: MQTTProtocolVersion = mqtt.MQTTv5
    ) -> mqtt.Client:
        """Return a client that is connected, with its network thread running.

        It does not reconnect by itself: a test that loses its connection
        should see that, not a retry loop hiding it.
        """
        client = new_client(protocol=protocol)
        client.username_pw_set(credentials.username, credentials.password)
        connected = threading.Event()
        answers: list[ReasonCode] = []

        def on_connect(
            _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
        ) -> None:
            answers.append(reason)
            connected.set()

        client.on_connect = on_connect
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        if not connected.wait(TIMEOUT) or answers[0].is_failure:
            client.disconnect()
            client.loop_stop()
            answer = answers[0] if answers else "no CONNACK"
            raise BrokerError(f"{credentials.username!r} could not connect: {answer}")
        return client

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except (BrokerError, FileNotFoundError):
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None and not self._keep_files:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _set_user(self, credentials: Credentials, password_hash: str | None = None) -> None:
        password_hash = password_hash or hash_password(credentials.password)
        self._users[credentials.username] = (credentials, password_hash)
        self._write_password_file()

    def _write_password_file(self) -> None:
        hashes = {name: password_hash for name, (_, password_hash) in self._users.items()}
        write_private(self.directory / "passwd", render_password_file(hashes), self._account)

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise BrokerError("broker not started")
        if self._process.poll() is not None:
            raise BrokerError(
                f"mosquitto exited with status {self._process.returncode}; log:\n{self.log_tail()}"
            )
        return self._process

    def _wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            self._require_running()
            try:
                if condition():
                    return
            except BrokerError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self._require_running()  # an exit status explains more than a timeout
                raise BrokerError(
                    f"mosquitto did not {what} within {TIMEOUT:.0f} s; log:\n{self.log_tail()}"
                )
            time.sleep(0.02)


def new_client(*, protocol: MQTTProtocolVersion = mqtt.MQTTv5) -> mqtt.Client:
    """A paho client with the v2 callback API and no automatic reconnect."""
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        protocol=protocol,
        reconnect_on_failure=False,
    )
