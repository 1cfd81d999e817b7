"""The operator's side of a scenario, over the REST API: versions, uploads and rollouts."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from edgefleet.server.cli.client import ApiClient, segment
from edgefleet.server.errors import NotFoundError
from edgefleet.server.sim.provision import PROFILE
from edgefleet.shared.manifest import Manifest

FINISHED = frozenset({"completed", "aborted"})
MOVING = frozenset({"scheduled", "running"})
"""States in which a rollout still changes devices by itself (a paused one waits for a person)."""


def _model(model: str) -> str:
    return f"/models/{segment(model)}"


def latest_approved(api: ApiClient, model: str, *, besides: Collection[int] = ()) -> int:
    """The highest approved version of ``model`` that is not in ``besides``."""
    numbers = api.get(_model(model))["versions"]
    for number in sorted(numbers, reverse=True):
        if number in besides:
            continue
        if api.get(f"{_model(model)}/versions/{number}")["stage"] == "approved":
            return int(number)
    raise NotFoundError(f"model {model!r} has no approved version to roll out")


def require_approved(api: ApiClient, model: str, version: int) -> None:
    if api.get(f"{_model(model)}/versions/{version}")["stage"] != "approved":
        raise NotFoundError(f"{model} v{version} is not approved: only approved versions roll out")


def manifest(api: ApiClient, model: str, version: int) -> Manifest:
    """What simulated devices would receive for ``model`` ``version``."""
    envelope = api.get(f"{_model(model)}/versions/{version}/artifacts/{PROFILE}/manifest")
    return Manifest.from_signed(envelope["signed"])


def upload_approved(api: ApiClient, model: str, data: bytes, *, flaw: str) -> int:
    """``data`` as the next version of ``model``, approved (only approved versions roll out)."""
    created = api.post(
        f"{_model(model)}/versions",
        data={
            "profiles": PROFILE,
            "variant": "float32",
            "metrics": json.dumps({"simulated_flaw": flaw}),
        },
        files={"file": (f"{flaw}.tflite", data, "application/octet-stream")},
    )
    version = int(created["version"])
    set_stage(api, model, version, "approved")
    return version


def set_stage(api: ApiClient, model: str, version: int, stage: str) -> None:
    api.patch(f"{_model(model)}/versions/{version}", json={"stage": stage})


def start_rollout(
    api: ApiClient,
    *,
    group: str,
    model: str,
    version: int,
    waves: Sequence[float],
    soak: float,
    latency_gate: float | None,
) -> str:
    """A started rollout with the scenario's waves, the server's thresholds and gates, but for
    the p95 latency ratio: ``latency_gate``, None for none."""
    policy = {
        "waves": [{"percent": percent, "soak_seconds": soak} for percent in waves],
        "gates": {"max_p95_latency_ratio": latency_gate},
    }
    created = api.post(
        "/rollouts", json={"group": group, "model": model, "version": version, "policy": policy}
    )
    rollout_id = str(created["id"])
    api.post(f"/rollouts/{segment(rollout_id)}/start")
    return rollout_id


def rollout(api: ApiClient, rollout_id: str) -> dict[str, Any]:
    found: dict[str, Any] = api.get(f"/rollouts/{segment(rollout_id)}")
    return found
