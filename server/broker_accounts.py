"""Device accounts on the broker, changed at runtime through the dynamic-security plugin.

Every change takes effect before the plugin answers: a provisioned device can
log in as soon as :meth:`BrokerAccounts.provision_device` returns, and a
revoked or disabled one has already been disconnected when its call returns.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from edgefleet.server import dynsec
from edgefleet.server.errors import BrokerError, InvalidInputError, NotFoundError
from edgefleet.shared.errors import TopicError
from edgefleet.shared.topics import validate_device_id

PASSWORD_BYTES = 24
"""192 random bits: nothing to guess, so the broker's cheap hash costs no safety."""

_CLIENT_NOT_FOUND = "Client not found"


class ControlChannel(Protocol):
    """What the accounts need of a transport (:class:`~edgefleet.server.mqtt.MqttTransport`)."""

    def request(
        self,
        topic: str,
        payload: bytes,
        response_topic: str,
        *,
        timeout: float = ...,
        matches: Callable[[bytes], bool] | None = ...,
    ) -> bytes: ...


class BrokerAccounts:
    """Provision, rotate, disable and revoke device logins.

    ``transport`` must be logged in as :data:`~edgefleet.server.dynsec.ADMIN_USER`.
    Every method is idempotent, so a caller that got a :class:`BrokerError`
    (the broker was away) can simply call again.
    """

    def __init__(self, transport: ControlChannel, *, timeout: float = 5.0) -> None:
        self._transport = transport
        self._timeout = timeout

    def provision_device(self, device_id: str) -> str:
        """Create the device's login and role, or reset them; return its new password.

        Re-provisioning a known device rotates its password (the old one is
        refused, its sessions are dropped), re-enables it and rewrites its ACLs.
        """
        username = _device(device_id)
        role = dynsec.device_role(username)
        acls = dynsec.device_acls(username)
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        created_role, created_client = self._run(
            [
                dynsec.create_role(role, acls),
                dynsec.create_client(username, password, roles=[role]),
            ],
            tolerate={"Role already exists", "Client already exists"},
        )
        repairs = []
        if created_role.error is not None:
            repairs.append(dynsec.modify_role(role, acls))
        if created_client.error is not None:
            repairs += [
                dynsec.modify_client(username, password, roles=[role]),
                dynsec.enable_client(username),
            ]
        if repairs:
            self._run(repairs)
        return password

    def revoke_device(self, device_id: str) -> None:
        """Delete the device's login and role; its live sessions are dropped at once."""
        username = _device(device_id)
        self._run(
            [dynsec.delete_client(username), dynsec.delete_role(dynsec.device_role(username))],
            tolerate={_CLIENT_NOT_FOUND, "Role not found"},
        )

    def disable_device(self, device_id: str) -> None:
        """Refuse the device's logins and drop its sessions, keeping its account.

        :meth:`provision_device` enables it again, with a new password.
        """
        username = _device(device_id)
        [answer] = self._run([dynsec.disable_client(username)], tolerate={_CLIENT_NOT_FOUND})
        if answer.error is not None:
            raise NotFoundError(f"no broker account for device {device_id!r}")

    def device_exists(self, device_id: str) -> bool:
        [answer] = self._run([dynsec.get_client(_device(device_id))], tolerate={_CLIENT_NOT_FOUND})
        return answer.error is None

    def list_devices(self) -> list[str]:
        """Every device with a broker account, sorted (the server's and admin's are not devices)."""
        [answer] = self._run([dynsec.list_clients()])
        clients = answer.data.get("clients")
        if not isinstance(clients, list):
            raise BrokerError("dynamic-security listClients answered without a client list")
        return sorted(
            name for name in clients if isinstance(name, str) and dynsec.is_device_username(name)
        )

    def _run(
        self, commands: Sequence[dynsec.Command], *, tolerate: Collection[str] = ()
    ) -> list[dynsec.Response]:
        """Send ``commands`` in one control message; errors not in ``tolerate`` raise."""
        token = secrets.token_hex(16)
        answer = self._transport.request(
            dynsec.CONTROL_TOPIC,
            dynsec.request_payload(commands, token),
            dynsec.RESPONSE_TOPIC,
            timeout=self._timeout,
            matches=lambda payload: dynsec.answers(payload, token),
        )
        responses = dynsec.parse_responses(answer, token, len(commands))
        for response in responses:
            if response.error is not None and response.error not in tolerate:
                raise BrokerError(
                    f"broker refused {response.command}: {response.error}", reason="broker_refused"
                )
        return responses


def _device(device_id: str) -> str:
    try:
        return validate_device_id(device_id)
    except TopicError as err:
        raise InvalidInputError(str(err)) from err
