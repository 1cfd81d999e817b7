"""A Mosquitto process the demo and the simulator run themselves, so they can also stop it.

It runs the directory ``edgefleet broker init`` wrote (its config, its
dynamic-security file, which the broker keeps up to date, and its persistence
directory), so a restart keeps every device account; retained messages
survive as far as Mosquitto's autosave had written them.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from edgefleet.server.broker_setup import BrokerFiles
from edgefleet.server.demo.preflight import find_mosquitto
from edgefleet.server.errors import BrokerError

START_SECONDS = 15.0


def mosquitto_executable() -> str:
    found = find_mosquitto()
    if found is None:
        raise BrokerError("mosquitto is not installed: apt-get install -y mosquitto")
    return found


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (Mosquitto then saves its persistence file), SIGKILL if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LocalBroker:
    def __init__(self, files: BrokerFiles, *, host: str, port: int, log_path: Path) -> None:
        self._files = files
        self.host = host
        self.port = port
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker; return once it accepts TCP connections."""
        if self.running:
            return
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603  our own executable and config
            [mosquitto_executable(), "-c", str(self._files.conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        while not self._accepts():
            if self._process.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with code {self._process.returncode} at start; "
                    f"see {self._log_path}"
                )
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False
