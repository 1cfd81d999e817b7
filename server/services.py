"""The composition root's product: every long-lived object a request may need.

Built once by the app's lifespan (or a test) and handed to handlers through
``request.app.state``; nothing here is created at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from edgefleet.server.alerts import Alerts
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.devices import BrokerAddress, DeviceAccounts, Provisioning
from edgefleet.server.metrics import Metrics
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.settings import Settings
from edgefleet.server.signing import SigningService

Clock = Callable[[], float]


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    catalog: ProfileCatalog
    accounts: DeviceAccounts
    signing: SigningService
    artifacts: ArtifactStore
    metrics: Metrics
    broker_address: BrokerAddress
    alerts: Alerts

    @property
    def provisioning(self) -> Provisioning:
        return Provisioning(
            accounts=self.accounts,
            trust=self.signing,
            catalog=self.catalog,
            broker=self.broker_address,
        )
