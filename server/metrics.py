"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_received = Counter(
            "edgefleet_ingest_messages_received",
            "Device messages taken off the broker",
            ["channel"],
            registry=self.registry,
        )
        self.messages_rejected = Counter(
            "edgefleet_ingest_messages_rejected",
            "Device messages refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.rows_written = Counter(
            "edgefleet_ingest_rows_written",
            "Rows committed by the batch writer",
            ["table"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "edgefleet_ingest_duplicates",
            "Rows already stored (replays, redeliveries)",
            ["table"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "edgefleet_ingest_batch_messages",
            "Messages per committed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=self.registry,
        )
        self.ingest_lag = Histogram(
            "edgefleet_ingest_lag_seconds",
            "From arrival at the server to commit",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "edgefleet_ingest_queue_depth",
            "Messages waiting for the writer",
            registry=self.registry,
        )
        self.devices = Gauge(
            "edgefleet_devices", "Devices by state", ["state"], registry=self.registry
        )
        self.alerts = Counter(
            "edgefleet_alerts",
            "Drift and retraining alerts raised, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.alert_webhook_failures = Counter(
            "edgefleet_alert_webhook_failures",
            "Alerts the webhook did not take, by why",
            ["why"],
            registry=self.registry,
        )
        self.drift_flagged_devices = Gauge(
            "edgefleet_drift_flagged_devices",
            "Devices whose latest drift window is flagged, by model",
            ["model"],
            registry=self.registry,
        )
        self.retraining_runs = Counter(
            "edgefleet_retraining_runs",
            "Retraining runs by how they ended (or that they started)",
            ["outcome"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "edgefleet_api_request_seconds",
            "API request latency",
            ["method", "route", "status"],
            registry=self.registry,
        )
