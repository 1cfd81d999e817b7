"""The server's one configuration object, read from ``EDGEFLEET_*`` variables.

Validated once at start-up; a production profile refuses settings that would
be convenient in a demo and dangerous on a network (no broker password, a
broker reached without TLS over a non-loopback address, an API open to every
interface without TLS in front of it is the operator's call and is logged).
"""

from __future__ import annotations

import ipaddress
import socket
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgefleet.server.errors import ConfigError

WEAK_SECRETS = frozenset({"", "changeme", "password", "edgefleet", "admin", "secret"})


class Profile(StrEnum):
    DEV = "dev"
    PROD = "prod"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_", extra="forbid", frozen=True)

    profile: Profile = Profile.PROD
    data_dir: Path = Path(".edgefleet")
    database_url: str | None = None
    """Defaults to a SQLite file in ``data_dir``."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)

    broker_host: str = "127.0.0.1"
    broker_port: int = Field(1883, ge=1, le=65535)
    broker_username: str = "_edgefleet-server"
    broker_password: SecretStr = SecretStr("")
    broker_admin_username: str = "_edgefleet-admin"
    broker_admin_password: SecretStr = SecretStr("")
    broker_tls_ca: Path | None = None
    broker_client_id: str = Field(
        default_factory=lambda: f"edgefleet-ingest-{socket.gethostname()}"[:64],
        min_length=1,
        max_length=64,
    )
    """The ingest connection's MQTT client id: stable across restarts, unique per replica."""
    broker_session_expiry: int = Field(3600, ge=0, le=7 * 86400)
    """How long the broker keeps queuing device messages for a stopped server (0: not at all)."""
    device_broker_host: str | None = None
    """Address devices use to reach the broker (written into device bundles)."""
    device_broker_port: int | None = Field(None, ge=1, le=65535)

    profiles_dir: Path = Path(__file__).resolve().parents[1] / "firmware_configs"
    """Hardware profiles (``*.toml``); the source tree's ``firmware_configs`` by default."""

    signing_dir: Path | None = None
    """Signing key, key list and root chain; defaults to ``data_dir/keys/signing``."""

    ingest_batch_size: int = Field(500, ge=1, le=100_000)
    ingest_flush_seconds: float = Field(0.5, gt=0, le=60)
    ingest_queue_size: int = Field(100_000, ge=100)
    ingest_shared: bool = False
    """Read device topics through the ``$share/edgefleet/...`` group, so replicas split them.

    Off by default: one server subscribes plainly, and its persistent session keeps
    those subscriptions, and what devices publish meanwhile, across a broker restart.
    Mosquitto 2.0.11 does not restore shared subscriptions from its persistence file,
    so with this on, device messages sent between a broker restart and the replicas'
    new SUBSCRIBE are acknowledged to the device and dropped.
    """

    rollout_tick_seconds: float = Field(5.0, gt=0, le=300)
    """How often running rollouts apply device events, judge waves and publish."""
    retraining_tick_seconds: float = Field(10.0, gt=0, le=3600)
    """How often retraining policies are checked and unfinished retraining runs moved on."""
    alert_webhook_url: str | None = Field(None, pattern=r"^https?://", max_length=2000)
    """Drift and retraining alerts are also POSTed here as JSON, when set."""

    training_workers: int = Field(1, ge=0, le=16)
    """Training jobs run at once, each in its own process; 0 leaves jobs queued here."""
    training_threads: int = Field(1, ge=1, le=64)
    """TensorFlow threads per training job."""
    training_cancel_grace_seconds: float = Field(30.0, gt=0, le=3600)
    quantization_budget_points: float = Field(1.0, ge=0, le=100)
    """A quantized variant ships only within this many points of the float model's metric."""
    upload_max_bytes: int = Field(256 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    """Largest dataset or Keras model upload."""
    ingest_in_process: bool = False
    """Decode and write ingest on a thread instead of a worker process (one-core boxes)."""

    @model_validator(mode="after")
    def _refuse_insecure(self) -> Self:
        if self.profile is Profile.DEV:
            return self
        problems = []
        if self.broker_password.get_secret_value() in WEAK_SECRETS:
            problems.append("EDGEFLEET_BROKER_PASSWORD is empty or a well-known default")
        if self.broker_admin_password.get_secret_value() in WEAK_SECRETS:
            problems.append("EDGEFLEET_BROKER_ADMIN_PASSWORD is empty or a well-known default")
        if not _is_loopback(self.broker_host) and self.broker_tls_ca is None:
            problems.append(
                f"broker {self.broker_host} is not on loopback but EDGEFLEET_BROKER_TLS_CA is "
                "unset: credentials would cross the network in clear text"
            )
        if problems:
            raise ValueError(
                "refusing insecure settings in the prod profile (set EDGEFLEET_PROFILE=dev "
                "for a local demo): " + "; ".join(problems)
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'edgefleet.db').resolve()}"

    @property
    def effective_signing_dir(self) -> Path:
        return self.signing_dir or self.data_dir / "keys" / "signing"

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and ``overrides``), or a :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as err:
        raise ConfigError(f"invalid settings: {err}") from err
