"""Bodies of the retraining routes (same families as :mod:`.schemas`).

The policy travels as a JSON object checked by
:func:`edgefleet.server.retraining.policy.policy_from_dict`, the one place its
rules live, so the API, the database column and the loop read it the same way.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from edgefleet.server.api.schemas import Strict
from edgefleet.server.db.models import RetrainingPolicyRecord, RetrainingRun
from edgefleet.server.retraining import triggers
from edgefleet.server.retraining.policy import policy_from_dict
from edgefleet.server.retraining.runs import run_snapshot

POLICY_HELP = (
    "enabled, group, drift ({score_threshold, consecutive_windows, min_devices, "
    "group_percent}), samples ({min_labelled}), schedule ({cron, timezone}), "
    "cooldown_seconds, data ({dataset, include_edge_samples, edge_weight, max_edge_samples}), "
    "comparison ({min_gain_points, forget_budget_points, min_holdout}), approval "
    "(automatic|manual), rollout_group, rollout_policy (a rollout policy object); "
    "omitted keys take their defaults"
)


class RetrainingPolicyPublic(BaseModel):
    model: str
    policy: dict[str, Any] = Field(description=POLICY_HELP)
    updated_at: float
    updated_by: str
    last_triggered_at: float | None
    last_checked_at: float | None
    cooldown_until: float | None = Field(
        description="while in the future, no trigger fires (cron slots before it are skipped)"
    )
    next_schedule: float | None = Field(
        description="the next cron slot that can fire; null without a schedule or when disabled"
    )

    @classmethod
    def of(cls, record: RetrainingPolicyRecord, *, now: float) -> RetrainingPolicyPublic:
        policy = policy_from_dict(record.policy)
        cooldown_until = (
            None
            if record.last_triggered_at is None
            else record.last_triggered_at + policy.cooldown_seconds
        )
        if cooldown_until is not None and cooldown_until <= now:
            cooldown_until = None
        # A slot exactly at the end of the cool-down fires, so look from just before it.
        after = now if cooldown_until is None else math.nextafter(cooldown_until, -math.inf)
        return cls(
            model=record.model.name,
            policy=record.policy,
            updated_at=record.updated_at,
            updated_by=record.updated_by,
            last_triggered_at=record.last_triggered_at,
            last_checked_at=record.last_checked_at,
            cooldown_until=cooldown_until,
            next_schedule=triggers.next_schedule(policy, after),
        )


class RetrainingDecline(Strict):
    reason: str = Field(description="why the challenger is not rolled out; at most 500 characters")


class RetrainingRunPublic(BaseModel):
    id: int
    model: str
    state: str
    trigger: dict[str, Any] = Field(description="reason (drift|samples|schedule), message, numbers")
    champion_version: int | None
    dataset: str | None
    dataset_version: int | None
    job_id: int | None
    challenger_version: int | None
    decision: dict[str, Any] | None = Field(
        description="promote, reason, gain_points, forgetting_points and what was measured"
    )
    rollout_id: str | None
    reason: str | None
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def of(cls, run: RetrainingRun) -> RetrainingRunPublic:
        return cls(
            **run_snapshot(run),
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
        )
