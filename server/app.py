"""``create_app(settings)``: the composition root of the server.

Everything long-lived (engine, MQTT connections, ingest, scheduler, keys)
is built in the lifespan, in dependency order, and torn down in reverse;
importing this module creates nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edgefleet.server import devices, keys, web
from edgefleet.server.alerts import Alerts
from edgefleet.server.api import errors as api_errors
from edgefleet.server.api.routes import audit as audit_routes
from edgefleet.server.api.routes import datasets as dataset_routes
from edgefleet.server.api.routes import devices as device_routes
from edgefleet.server.api.routes import drift as drift_routes
from edgefleet.server.api.routes import events as event_routes
from edgefleet.server.api.routes import fleet as fleet_routes
from edgefleet.server.api.routes import groups as group_routes
from edgefleet.server.api.routes import models as model_routes
from edgefleet.server.api.routes import retraining as retraining_routes
from edgefleet.server.api.routes import rollouts as rollout_routes
from edgefleet.server.api.routes import samples as sample_routes
from edgefleet.server.api.routes import tokens as token_routes
from edgefleet.server.api.routes import training as training_routes
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.broker_accounts import BrokerAccounts
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.errors import ConfigError
from edgefleet.server.fleet import presence_rollup
from edgefleet.server.ingest.service import IngestService
from edgefleet.server.metrics import Metrics
from edgefleet.server.mqtt import MqttTransport, TlsSettings
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.retraining.loop import LoopParts, RetrainingLoop
from edgefleet.server.rollouts.executor import RolloutExecutor
from edgefleet.server.services import Clock, Services
from edgefleet.server.settings import Profile, Settings
from edgefleet.server.signing import SigningService
from edgefleet.server.training import runner

logger = logging.getLogger(__name__)

BROKER_WAIT_SECONDS = 10.0


@dataclass(slots=True)
class Runtime:
    """What the lifespan built beyond the request-facing :class:`Services`."""

    admin: MqttTransport
    server: MqttTransport
    ingest: IngestService
    scheduler: BackgroundScheduler
    publisher: MqttTransport
    rollouts: RolloutExecutor
    retraining: RetrainingLoop


def _signing(settings: Settings, clock: Clock) -> SigningService:
    signing_dir = settings.effective_signing_dir
    if not (signing_dir / "signing_keys.json").exists():
        if settings.profile is not Profile.DEV:
            raise ConfigError(
                f"no signing keys in {signing_dir}: run `edgefleet keys init` first "
                "(it creates the root key offline and the server's signing key)"
            )
        logger.warning(
            "dev profile: creating throwaway root and signing keys in %s",
            settings.data_dir / "keys",
        )
        keys.init_keys(
            root_dir=settings.data_dir / "keys" / "root", signing_dir=signing_dir, now=int(clock())
        )
    return SigningService.load(signing_dir)


def _transport(
    settings: Settings, username: str, password: str, role: str, *, ingest: bool = False
) -> MqttTransport:
    """The ingest connection keeps its session and acknowledges what is written; others don't."""
    tls = (
        None if settings.broker_tls_ca is None else TlsSettings(ca_file=str(settings.broker_tls_ca))
    )
    return MqttTransport(
        host=settings.broker_host,
        port=settings.broker_port,
        username=username,
        password=password,
        client_id=(
            settings.broker_client_id if ingest else f"edgefleet-{role}-{uuid.uuid4().hex[:12]}"
        ),
        tls=tls,
        session_expiry=settings.broker_session_expiry if ingest else 0,
        manual_ack=ingest,
    )


def _started(transport: MqttTransport, what: str) -> MqttTransport:
    transport.start()
    if not transport.wait_connected(BROKER_WAIT_SECONDS):
        logger.warning("%s: broker not reachable yet; retrying in the background", what)
    return transport


def _roll_up_presence(services: Services) -> None:
    with services.sessions() as session:
        presence_rollup.roll_up(session, services.clock())


def _refresh_gauges(services: Services, metrics: Metrics) -> None:
    with services.sessions() as session:
        for state, count in devices.count_by_state(session=session).items():
            metrics.devices.labels(state).set(count)


def create_app(settings: Settings, *, clock: Clock = time.time) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            engine = make_engine(settings.effective_database_url)
            stack.callback(engine.dispose)
            migrate.upgrade(engine)
            signing = _signing(settings, clock)
            admin = _started(
                _transport(
                    settings,
                    settings.broker_admin_username,
                    settings.broker_admin_password.get_secret_value(),
                    "admin",
                ),
                "broker admin",
            )
            stack.callback(admin.stop)
            server = _transport(
                settings,
                settings.broker_username,
                settings.broker_password.get_secret_value(),
                "server",
                ingest=True,
            )
            stack.callback(server.stop)
            alerts = Alerts(metrics, settings.alert_webhook_url)
            alerts.start()
            stack.callback(alerts.stop)
            services = Services(
                settings=settings,
                engine=engine,
                sessions=make_sessionmaker(engine),
                clock=clock,
                catalog=ProfileCatalog.load(settings.profiles_dir),
                accounts=BrokerAccounts(admin),
                signing=signing,
                artifacts=ArtifactStore(settings.artifact_dir),
                metrics=metrics,
                broker_address=devices.BrokerAddress(
                    host=settings.device_broker_host or settings.broker_host,
                    port=settings.device_broker_port or settings.broker_port,
                    tls_ca=None if settings.broker_tls_ca is None else "/etc/edgefleet/ca.pem",
                ),
                alerts=alerts,
            )
            ingest = IngestService(
                transport=server,
                database_url=settings.effective_database_url,
                clock=clock,
                metrics=metrics,
                batch_size=settings.ingest_batch_size,
                flush_seconds=settings.ingest_flush_seconds,
                queue_size=settings.ingest_queue_size,
                in_process=settings.ingest_in_process,
                shared=settings.ingest_shared,
            )
            ingest.start()
            stack.callback(ingest.stop)
            # Connected only once ingest listens: a resumed session delivers what it
            # queued at once, and a message nobody takes is never acknowledged.
            _started(server, "broker ingest")
            # Desired messages and artifact chunks go out on a connection of their own, so
            # a large fan-out never queues behind ingest acknowledgements.
            publisher = _started(
                _transport(
                    settings,
                    settings.broker_username,
                    settings.broker_password.get_secret_value(),
                    "publisher",
                ),
                "broker publisher",
            )
            stack.callback(publisher.stop)
            rollouts = RolloutExecutor(
                sessions=services.sessions,
                publisher=publisher,
                store=services.artifacts,
                signing=signing,
                clock=clock,
                connected=lambda: publisher.connected,
            )
            scheduler = BackgroundScheduler(timezone="UTC")
            scheduler.add_job(
                rollouts.tick,
                "interval",
                seconds=settings.rollout_tick_seconds,
                id="rollouts",
                coalesce=True,
                max_instances=1,
            )
            scheduler.add_job(
                _refresh_gauges,
                "interval",
                seconds=15,
                args=(services, metrics),
                id="device-gauges",
                coalesce=True,
                max_instances=1,
            )
            scheduler.add_job(
                _roll_up_presence,
                "interval",
                seconds=30,
                args=(services,),
                id="presence-rollup",
                coalesce=True,
                max_instances=1,
            )
            training = runner.from_settings(settings, services.sessions, clock)
            retraining = RetrainingLoop(
                LoopParts(
                    sessions=services.sessions,
                    store=services.artifacts,
                    catalog=services.catalog,
                    alerts=alerts,
                    metrics=metrics,
                    clock=clock,
                    wake_training=training.wake,
                )
            )
            scheduler.add_job(
                retraining.tick,
                "interval",
                seconds=settings.retraining_tick_seconds,
                id="retraining",
                coalesce=True,
                max_instances=1,
            )
            scheduler.start()
            stack.callback(scheduler.shutdown, wait=False)
            training.start()
            stack.callback(training.stop)
            app.state.training = training
            app.state.services = services
            app.state.runtime = Runtime(
                admin=admin,
                server=server,
                ingest=ingest,
                scheduler=scheduler,
                publisher=publisher,
                rollouts=rollouts,
                retraining=retraining,
            )
            yield

    app = FastAPI(
        title="edgefleet",
        version=_version(),
        lifespan=lifespan,
        description="Fleet manager for ML models on edge devices.",
    )
    api_errors.install(app)
    for router in (
        device_routes.router,
        group_routes.router,
        model_routes.router,
        audit_routes.router,
        token_routes.router,
        dataset_routes.router,
        training_routes.router,
        training_routes.compare_router,
        rollout_routes.router,
        retraining_routes.policy_router,
        retraining_routes.router,
        sample_routes.router,
        drift_routes.router,
        fleet_routes.router,
        event_routes.router,
    ):
        app.include_router(router, prefix="/api/v1")
    web.mount(app)

    @app.middleware("http")
    async def time_requests(request: Request, call_next: Callable[[Request], object]) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)  # type: ignore[misc]
        metrics.api_latency.labels(
            request.method, _route_label(request), str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _route_label(request: Request) -> str:
    """The route template with its router prefix (``/api/v1/devices/{device_id}``).

    Labels must not carry ids (one time series per device would swamp
    Prometheus); an included router's route only knows its own suffix, so
    the prefix is recovered from the concrete path.
    """
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    try:
        rendered = template.format(**request.path_params)
    except (KeyError, IndexError, ValueError):
        return template
    path = request.url.path
    prefix = path[: len(path) - len(rendered)] if path.endswith(rendered) else ""
    return prefix + template


def _version() -> str:
    from edgefleet.shared import __version__

    return __version__
