"""A model with drift across the seeded fleet's two groups, a retraining policy and runs.

The model is registered by the server's own registry (a real converted
``.tflite`` with a signed manifest carrying a baseline), its second version
uploaded through the API, the policy PUT through the API. Drift windows go
in as ingest stores them (:func:`tests.server.edge_data.add_window`, counts
drawn from the baseline), so the series' pooled drift is computed by the real
statistics. Runs are written as the retraining loop leaves them: the loop
itself would train a challenger, which takes far longer than a page test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefleet.server.db.models import RetrainingRun, RetrainingState, Role
from edgefleet.shared.manifest import Baseline
from tests.browser.conftest import LiveServer
from tests.harness.models import TfliteModels
from tests.server.api.conftest import unique_id
from tests.server.edge_data import Registered, add_window, draw, register

HOUR = 3600.0
WINDOW_INFERENCES = 200
QUIET = {"a1": 0.21, "a2": 0.34, "a3": 0.45, "a4": 0.12}
"""Site A's devices and their latest score: none drifts."""
DRIFTING = {"b1": 3.4, "b2": 2.9, "b3": 2.1}
"""Site B's devices: their latest windows are tilted and flagged."""
SCHEDULE = "0 3 1 1 *"
"""Once a year: the live server's loop must not start a real run during a test."""


@dataclass(frozen=True)
class DriftSeed:
    model: str
    """Registered with drift windows, a policy and runs."""
    bare_model: str
    """Registered with nothing else: no windows, no policy."""
    baseline: Baseline
    rejected_run: int


def add_drift_window(
    live: LiveServer,
    model: str,
    baseline: Baseline,
    device: str,
    *,
    end: float,
    score: float,
    flagged: bool = False,
) -> None:
    """A window of version 1 as ingest stores it; a flagged one has a share of its
    inferences moved to each feature's top bin, so pooled drift sees it too."""
    rng = np.random.default_rng(int(end))
    with live.services.sessions() as session:
        add_window(
            session,
            model=model,
            version=1,
            device=device,
            end=end,
            count=WINDOW_INFERENCES,
            features=draw(baseline, WINDOW_INFERENCES, rng, tilt=0.4 if flagged else 0.0),
            score=score,
            flagged=flagged,
            confidence_change=-0.2 if flagged else 0.0,
        )


def _windows(live: LiveServer, found: Registered, now: float) -> None:
    """Three quiet hours for every device, then a last window where site B drifts."""
    latest = {**QUIET, **DRIFTING}
    for hours_ago in (5, 3, 1):
        for plan in latest:
            device = live.fleet.ids[plan]
            add_drift_window(
                live, found.model, found.baseline, device, end=now - hours_ago * HOUR, score=0.3
            )
    for plan, score in latest.items():
        device = live.fleet.ids[plan]
        flagged = plan in DRIFTING
        add_drift_window(
            live, found.model, found.baseline, device, end=now - 600, score=score, flagged=flagged
        )


def add_run(live: LiveServer, model: str, state: RetrainingState, **fields: Any) -> int:
    """A run as the loop leaves it in ``state``; one awaiting approval holds the model's slot."""
    now = time.time()
    with live.services.sessions() as session:
        run = RetrainingRun(
            model_name=model,
            state=state,
            active_key=model if state is RetrainingState.AWAITING_APPROVAL else None,
            champion_version=1,
            created_at=now,
            updated_at=now,
            **fields,
        )
        session.add(run)
        session.commit()
        return run.id


def awaiting_run(live: LiveServer, model: str) -> int:
    """The model's run awaiting approval: the one there is, or a new one."""
    for run in live.api("/retraining/runs", model=model):
        if run["state"] == RetrainingState.AWAITING_APPROVAL:
            return int(run["id"])
    return add_run(
        live,
        model,
        RetrainingState.AWAITING_APPROVAL,
        trigger={"reason": "drift", "message": "drift: 3 devices of site-b over 1.0"},
        challenger_version=2,
        decision={"promote": True, "reason": "gains +6.00 points", "gain_points": 6.0},
    )


def _upload_challenger(live: LiveServer, model: str, tflite: bytes) -> None:
    response = live.http.post(
        f"/api/v1/models/{model}/versions",
        headers=live.headers(Role.OPERATOR),
        files={"file": ("model.tflite", tflite, "application/octet-stream")},
        data={"profiles": "sim", "variant": "float32", "metrics": '{"accuracy": 0.95}'},
    )
    response.raise_for_status()


def seed_drift(live: LiveServer, tflite_models: TfliteModels) -> DriftSeed:
    now = time.time()
    services = live.services
    with services.sessions() as session:
        found = register(
            session,
            store=services.artifacts,
            signing=services.signing,
            catalog=services.catalog,
            tflite=tflite_models.float32,
            model=unique_id("drift"),
            dataset=unique_id("ds"),
            now=now,
        )
    _upload_challenger(live, found.model, tflite_models.float32)
    _windows(live, found, now)
    policy = {
        "group": live.fleet.groups["site-a"],
        "drift": {"score_threshold": 50, "consecutive_windows": 2, "min_devices": 2},
        "schedule": {"cron": SCHEDULE},
        "cooldown_seconds": 1800,
        "approval": "manual",
    }
    live.http.put(
        f"/api/v1/models/{found.model}/retraining-policy",
        headers=live.headers(Role.OPERATOR),
        json=policy,
    ).raise_for_status()
    rejected = add_run(
        live,
        found.model,
        RetrainingState.REJECTED,
        trigger={"reason": "schedule", "message": "schedule: slot 0 3 1 1 *"},
        challenger_version=None,
        decision={"promote": False, "reason": "gains +0.20 points, needs +1.00"},
        reason="challenger did not beat the champion",
        finished_at=now,
    )
    bare = unique_id("bare")
    live.http.post(
        "/api/v1/models", headers=live.headers(Role.OPERATOR), json={"name": bare}
    ).raise_for_status()
    awaiting_run(live, found.model)
    return DriftSeed(
        model=found.model, bare_model=bare, baseline=found.baseline, rejected_run=rejected
    )
