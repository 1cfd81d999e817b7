"""What both server harnesses share: the start/stop protocol, a port and an account."""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self


class Service:
    """A throwaway server process: ``start()``/``stop()``, or a ``with`` block."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), so parallel test runs do not collide;
    the short window before the server binds it is the accepted price.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The unprivileged account a server runs as when the tests run as root.

    Both servers refuse root (initdb outright; mosquitto drops to its own user
    and then cannot read root's files), so their files must belong to it.
    """

    name: str
    uid: int
    gid: int

    @classmethod
    def for_root(cls, name: str) -> ServiceAccount | None:
        """``None`` when not root: then the server simply runs as us."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(
                f"running as root, but there is no {name!r} user to run the server as; "
                f"create it (useradd --system {name}) or run the tests as a normal user"
            ) from None
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def give(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


def write_private(path: Path, text: str, account: ServiceAccount | None) -> None:
    """Replace ``path`` atomically with an owner-only file the server can read.

    Atomic because a server reloading mid-write must see the old file or the
    new one, never half of one.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)
    if account is not None:
        account.give(tmp)
    tmp.replace(path)
