"""The operator's side of a scenario, over the REST API: versions, uploads and rollouts."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from edgefleet.server.cli.client import ApiClient, segment
from edgefleet.server.cli.errors import CliError
from edgefleet.server.errors import NotFoundError
from edgefleet.server.sim.provision import PROFILE
from edgefleet.shared.errors import EdgefleetError
from edgefleet.shared.manifest import Manifest

FINISHED = frozenset({"completed", "aborted"})
MOVING = frozenset({"scheduled", "running"})
"""States in which a rollout still changes devices by itself (a paused one waits for a person)."""

Say = Callable[[str], None]


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


@dataclass
class Launched:
    """A rollout this run started, and what became of it."""

    id: str
    group: str
    version: int
    flaw: str | None = None
    state: str = "running"
    reason: str | None = None


class Operator:
    """What the scenario's operator did: the rollouts it started, the broken versions it
    uploaded (deprecated at the end, so no later ``latest`` picks one)."""

    def __init__(self, api: ApiClient, model: str, *, latency_gate: float | None, say: Say) -> None:
        self._api = api
        self.model = model
        self._latency_gate = latency_gate
        self._say = say
        self.launched: list[Launched] = []
        self.broken: list[int] = []
        self.bad_models: dict[str, bytes] = {}

    def check(self, versions: Sequence[int]) -> int:
        """Refuse versions that cannot roll out; the latest approved one."""
        for version in versions:
            require_approved(self._api, self.model, version)
        return latest_approved(self._api, self.model)

    def roll_out(self, group: str, version: int | None, waves: Sequence[float], soak: float) -> str:
        if version is None:
            version = latest_approved(self._api, self.model, besides=self.broken)
        return self._launch(group, version, waves, soak, flaw=None)

    def roll_out_bad(self, group: str, flaw: str, waves: Sequence[float], soak: float) -> str:
        version = upload_approved(self._api, self.model, self.bad_models[flaw], flaw=flaw)
        self.broken.append(version)
        return self._launch(group, version, waves, soak, flaw=flaw)

    def _launch(
        self, group: str, version: int, waves: Sequence[float], soak: float, *, flaw: str | None
    ) -> str:
        rollout_id = start_rollout(
            self._api,
            group=group,
            model=self.model,
            version=version,
            waves=waves,
            soak=soak,
            latency_gate=self._latency_gate,
        )
        self.launched.append(Launched(rollout_id, group, version, flaw))
        return f"rollout {rollout_id} of {self.model} v{version} to {group} started"

    def moving(self) -> list[Launched]:
        """The rollouts that still change devices by themselves, their states brought up to date."""
        moving = []
        for launched in self.launched:
            if launched.state in FINISHED:
                continue
            found = rollout(self._api, launched.id)
            launched.state, launched.reason = found["state"], found.get("reason")
            if launched.state in MOVING:
                moving.append(launched)
        return moving

    def outcomes(self) -> list[dict[str, Any]]:
        return [dict(vars(launched)) for launched in self.launched]

    def retire_broken(self) -> None:
        for version in self.broken:
            try:
                set_stage(self._api, self.model, version, "deprecated")
            except (CliError, EdgefleetError) as err:
                self._say(f"warning: could not deprecate broken {self.model} v{version}: {err}")
