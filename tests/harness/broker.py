"""A real, throwaway Mosquitto broker configured exactly as the fleet's.

Its config comes from :mod:`edgefleet.server.mosquitto`, its initial
dynamic-security file from :mod:`edgefleet.server.dynsec`, and devices are
provisioned and revoked through :class:`~edgefleet.server.broker_accounts.BrokerAccounts`
over an :class:`~edgefleet.server.mqtt.MqttTransport` logged in as the admin:
the server's own code path, so a test that passes here passes against the
rules production runs with. The plugin applies a change before it answers,
so there is nothing to wait for after ``add_device`` or ``remove_device``.
"""

from __future__ import annotations

import json
import secrets
import shutil
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

from edgefleet.server.broker_accounts import BrokerAccounts
from edgefleet.server.dynsec import ADMIN_USER, SERVER_USER, hash_password, initial_config
from edgefleet.server.mosquitto import find_dynsec_plugin, render_config
from edgefleet.server.mqtt import MqttTransport
from edgefleet.server.sim.broker import mosquitto_executable, terminate
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
    directory (config, dynamic-security file, log) is deleted on stop unless
    ``keep_files`` is set.
    """

    def __init__(self, *, keep_files: bool = False, verbose_log: bool = True) -> None:
        self.host = HOST
        self.port = 0
        self.server_credentials = Credentials(SERVER_USER, secrets.token_urlsafe(18))
        self.admin_credentials = Credentials(ADMIN_USER, secrets.token_urlsafe(18))
        self._keep_files = keep_files
        self._verbose_log = verbose_log
        self._devices: set[str] = set()
        self._account = ServiceAccount.for_root("mosquitto")
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: MqttTransport | None = None
        self._accounts: BrokerAccounts | None = None

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise BrokerError("broker not started")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def accounts(self) -> BrokerAccounts:
        """The server's account service, logged in as the broker admin."""
        if self._accounts is None:
            raise BrokerError("broker not started")
        return self._accounts

    def start(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix="edgefleet-mosquitto-"))
        if self._account is not None:
            # The plugin saves its file by writing a sibling and renaming it.
            self._account.give(self._dir)
        self.port = free_loopback_port()
        dynsec_file = self._dir / "dynamic-security.json"
        plugin_config = initial_config(
            admin=hash_password(self.admin_credentials.password),
            server=hash_password(self.server_credentials.password),
        )
        write_private(dynsec_file, json.dumps(plugin_config, indent=1), self._account)
        config = render_config(
            host=self.host,
            port=self.port,
            plugin_path=find_dynsec_plugin(),
            dynsec_file=str(dynsec_file),
            log_file=None,
            persistence_dir=None,
            verbose_log=self._verbose_log,
        )
        write_private(self._dir / "mosquitto.conf", config, self._account)
        try:
            self._launch()
            self._accounts = BrokerAccounts(self._connect_admin(), timeout=TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> None:
        """Stop and start the same broker (port, accounts); returns once the admin is back.

        Retained messages and sessions do not survive: persistence is off.
        """
        self._terminate()
        admin = self._require_admin()
        self._wait_until(lambda: not admin.connected, "drop the admin's connection", running=False)
        self._launch()
        if not admin.wait_connected(TIMEOUT):
            raise BrokerError(
                f"the admin did not reconnect after a restart; log:\n{self.log_tail()}"
            )

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(self._devices)

    def add_device(self, device_id: str) -> Credentials:
        """Provision ``device_id`` (or rotate its password); it may log in at once."""
        password = self.accounts.provision_device(device_id)
        self._devices.add(device_id)
        return Credentials(device_id, password)

    def remove_device(self, device_id: str) -> None:
        """Revoke ``device_id``; its sessions are already closed when this returns."""
        self.accounts.revoke_device(device_id)
        self._devices.discard(device_id)

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
        admin, self._admin, self._accounts = self._admin, None, None
        if admin is not None:
            admin.stop()
        self._terminate()
        if self._dir is not None and not self._keep_files:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _launch(self) -> None:
        executable = mosquitto_executable()
        with self.log_path.open("ab") as log:
            # The child keeps its own copy of the descriptor; ours can close now.
            self._process = subprocess.Popen(
                [executable, "-c", str(self.directory / "mosquitto.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=None if self._account is None else self._account.uid,
                group=None if self._account is None else self._account.gid,
                extra_groups=None if self._account is None else [],
            )
        self._wait_until(
            lambda: self.connack(self.server_credentials).value == 0,
            "accept the server's credentials after start",
        )

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate(process, TIMEOUT)

    def _connect_admin(self) -> MqttTransport:
        self._admin = MqttTransport(
            host=self.host,
            port=self.port,
            username=self.admin_credentials.username,
            password=self.admin_credentials.password,
            client_id=f"edgefleet-test-admin-{secrets.token_hex(4)}",
        )
        self._admin.start()
        if not self._admin.wait_connected(TIMEOUT):
            raise BrokerError(f"the admin could not log in; log:\n{self.log_tail()}")
        return self._admin

    def _require_admin(self) -> MqttTransport:
        if self._admin is None:
            raise BrokerError("broker not started")
        return self._admin

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise BrokerError("broker not started")
        if self._process.poll() is not None:
            raise BrokerError(
                f"mosquitto exited with status {self._process.returncode}; log:\n{self.log_tail()}"
            )
        return self._process

    def _wait_until(
        self, condition: Callable[[], bool], what: str, *, running: bool = True
    ) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if running:
                self._require_running()
            try:
                if condition():
                    return
            except BrokerError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                if running:
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
