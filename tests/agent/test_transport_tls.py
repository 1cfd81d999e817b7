"""TLS: with ``broker.tls_ca`` the agent connects only to a broker that CA vouches for.

A separate, minimal Mosquitto with a TLS listener (the fleet broker's test
harness has none); certificates are made here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import gc
import ipaddress
import os
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet.agent.backoff import Backoff
from edgefleet.agent.transport import BrokerAddress, Connected, MqttTransport, TransportEvent
from tests.harness._system import free_loopback_port

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="no mosquitto")


@dataclass(frozen=True)
class TlsBroker:
    port: int
    ca: Path
    other_ca: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    directory = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = _ca(directory, "ca")
    _ca(directory, "other-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("broker"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "broker.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "broker.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = free_loopback_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {directory / 'ca.pem'}\n"
        f"certfile {directory / 'broker.pem'}\n"
        f"keyfile {directory / 'broker.key'}\n"
        "allow_anonymous true\n"
    )
    executable = shutil.which("mosquitto") or "mosquitto"
    process = subprocess.Popen(
        [executable, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, process)
        yield TlsBroker(port, directory / "ca.pem", directory / "other-ca.pem")
    finally:
        process.terminate()
        process.wait(5)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        assert process.poll() is None, "mosquitto with TLS exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        else:
            return


def _transport(broker: TlsBroker, ca: Path) -> tuple[MqttTransport, queue.Queue[TransportEvent]]:
    events: queue.Queue[TransportEvent] = queue.Queue()
    address = BrokerAddress(
        host="127.0.0.1",
        port=broker.port,
        username="tls-device",
        password="not-checked-by-this-broker",
        client_id="tls-device",
        tls_ca=str(ca),
    )
    transport = MqttTransport(
        address,
        sink=events.put,
        will=lambda: ("ef/v1/d/tls-device/state", b"offline"),
        backoff=Backoff(initial=0.1, maximum=0.3),
    )
    return transport, events


def test_connects_to_a_broker_its_ca_vouches_for(tls_broker: TlsBroker) -> None:
    transport, events = _transport(tls_broker, tls_broker.ca)
    transport.start()
    try:
        assert isinstance(events.get(timeout=5), Connected)
        assert transport.connected
    finally:
        transport.stop()


# paho leaves the TLS socket of a failed handshake to the garbage collector, which closes
# it with a ResourceWarning; nothing is leaked. Sometimes a reference cycle (an exception's
# traceback) holds it, so collect here, where the warning is expected, not in a later test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_refuses_a_broker_another_ca_signed(tls_broker: TlsBroker) -> None:
    transport, events = _transport(tls_broker, tls_broker.other_ca)
    before = len(os.listdir("/proc/self/fd"))
    transport.start()
    try:
        assert not transport.wait_connected(1.5)
        assert events.empty()
    finally:
        transport.stop()
        gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before + 2  # paho's own socket pair at most
