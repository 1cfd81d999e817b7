"""A rollout's progress as operators read it: per wave counts by state, gates, and an ETA."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgefleet.server.db.models import Rollout, RolloutDevice, RolloutState, WaveState
from edgefleet.server.rollouts.policy import RolloutPolicy, WaveSpec
from edgefleet.server.rollouts.service import policy_of


@dataclass(frozen=True, slots=True)
class WaveProgress:
    index: int
    state: str
    target: str
    devices: int
    by_state: dict[str, int]
    started_at: float | None
    soak_started_at: float | None
    soak_seconds: float
    finished_at: float | None
    gates: list[dict[str, object]]
    reason: str | None


@dataclass(frozen=True, slots=True)
class RolloutProgress:
    rollout: Rollout
    waves: list[WaveProgress]
    by_state: dict[str, int]
    eta_seconds: float | None


def _target(spec: WaveSpec) -> str:
    return f"{spec.percent:g}%" if spec.percent is not None else f"{spec.count} devices"


def eta_seconds(
    policy: RolloutPolicy,
    current: int,
    durations: Sequence[float],
    soak_left: float | None,
) -> float | None:
    """Seconds to completion: the current wave's soak left, then each later wave taking as
    long as the finished ones did on average (or its soak, before any finished)."""
    later = policy.waves[current + 1 :]
    if soak_left is None and durations:
        soak_left = sum(durations) / len(durations)
    if soak_left is None:
        return None
    typical = sum(durations) / len(durations) if durations else None
    return soak_left + sum(typical or spec.soak_seconds for spec in later)


def progress(*, session: Session, rollout: Rollout, now: float) -> RolloutProgress:
    policy = policy_of(rollout)
    counts: dict[int, dict[str, int]] = {}
    for wave, state, count in session.execute(
        select(RolloutDevice.wave, RolloutDevice.state, func.count())
        .where(RolloutDevice.rollout_id == rollout.id)
        .group_by(RolloutDevice.wave, RolloutDevice.state)
    ):
        counts.setdefault(wave, {})[state] = count
    waves = [
        WaveProgress(
            index=w.index,
            state=w.state,
            target=_target(policy.waves[w.index]),
            devices=sum(counts.get(w.index, {}).values()),
            by_state=counts.get(w.index, {}),
            started_at=w.started_at,
            soak_started_at=w.soak_started_at,
            soak_seconds=policy.waves[w.index].soak_seconds,
            finished_at=w.finished_at,
            gates=list(w.gates),
            reason=w.reason,
        )
        for w in rollout.waves
    ]
    return RolloutProgress(
        rollout=rollout,
        waves=waves,
        by_state=_total(counts.values()),
        eta_seconds=_eta(rollout, policy, waves, now),
    )


def _total(per_wave: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in per_wave:
        for state, count in counts.items():
            total[state] = total.get(state, 0) + count
    return total


def _eta(
    rollout: Rollout, policy: RolloutPolicy, waves: Sequence[WaveProgress], now: float
) -> float | None:
    if rollout.state != RolloutState.RUNNING:
        return None
    durations = [
        w.finished_at - w.started_at
        for w in waves
        if w.finished_at is not None and w.started_at is not None
    ]
    wave = waves[rollout.current_wave]
    soak_left = None
    if wave.state == WaveState.SOAKING and wave.soak_started_at is not None:
        soak_left = max(0.0, wave.soak_seconds - (now - wave.soak_started_at))
    return eta_seconds(policy, rollout.current_wave, durations, soak_left)
