"""Bodies of the rollout routes (same families as :mod:`.schemas`).

The policy travels as a JSON object checked by
:func:`edgefleet.server.rollouts.policy.policy_from_dict`, the one place its
rules live, so the API and the database column cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from edgefleet.server.api.schemas import ShortText, Strict
from edgefleet.server.db.models import Rollout, RolloutDevice
from edgefleet.server.rollouts.status import RolloutProgress, WaveProgress

POLICY_HELP = (
    "waves (list of {percent|count, soak_seconds, success_threshold, error_threshold, "
    "error_min_finished, device_timeout_seconds}, last at percent 100), gates "
    "({max_error_rate_increase, max_p95_latency_ratio, max_output_psi, min_shadow_agreement, "
    "min_inferences}), breach_action (pause|abort), abort_mode (leave|rollback), "
    "approval_between_waves, shadow, offline (wait|skip), maintenance ({cron, "
    "duration_seconds, timezone}); omitted keys take their defaults"
)


class RolloutCreate(Strict):
    group: ShortText
    model: ShortText
    version: Annotated[int, Field(ge=1)]
    policy: dict[str, Any] = Field(default_factory=dict, description=POLICY_HELP)


class RolloutAction(Strict):
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class RolloutPublic(BaseModel):
    id: str
    group: str
    model: str
    version: int
    state: str
    current_wave: int
    reason: str | None
    rollback_version: int | None
    policy: dict[str, Any]
    created_at: float
    created_by: str
    started_at: float | None
    finished_at: float | None

    @classmethod
    def of(cls, rollout: Rollout) -> RolloutPublic:
        return cls(
            id=rollout.id,
            group=rollout.group_name,
            model=rollout.model_name,
            version=rollout.version,
            state=rollout.state,
            current_wave=rollout.current_wave,
            reason=rollout.reason,
            rollback_version=rollout.rollback_version,
            policy=rollout.policy,
            created_at=rollout.created_at,
            created_by=rollout.created_by,
            started_at=rollout.started_at,
            finished_at=rollout.finished_at,
        )


class RolloutStatus(RolloutPublic):
    waves: list[WaveProgress] = Field(
        description="per wave: target, state, devices by state, gates"
    )
    by_state: dict[str, int]
    eta_seconds: float | None

    @classmethod
    def of_progress(cls, progress: RolloutProgress) -> RolloutStatus:
        return cls(
            **RolloutPublic.of(progress.rollout).model_dump(),
            waves=progress.waves,
            by_state=progress.by_state,
            eta_seconds=progress.eta_seconds,
        )


class RolloutDevicePublic(BaseModel):
    device_id: str
    wave: int
    state: str
    profile: str
    previous_version: int | None
    notified_at: float | None
    updated_at: float
    reason: str | None

    @classmethod
    def of(cls, device: RolloutDevice) -> RolloutDevicePublic:
        return cls(
            device_id=device.device_id,
            wave=device.wave,
            state=device.state,
            profile=device.profile,
            previous_version=device.previous_version,
            notified_at=device.notified_at,
            updated_at=device.updated_at,
            reason=device.reason,
        )
