"""Judging a wave: each device's state from its events, and the wave's verdict.

Both are pure, so the executor's tick can be replayed after a restart or a
duplicated event and reach the same answer. :func:`evaluate` always reports
every gate (the status view shows them all) and explains its verdict in a
sentence that names the gate, its value and its limit.

Shares are over the wave's devices less the skipped ones: a device that left
the group or was skipped while offline says nothing about the version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts.policy import RolloutPolicy, WaveSpec
from edgefleet.shared.messages import EventKind
from edgefleet.shared.sketch import histogram_quantile


class DeviceRolloutState(StrEnum):
    PENDING = "pending"
    """In a wave that has not started."""
    NOTIFIED = "notified"
    """Its desired state is published; no answer yet."""
    IN_PROGRESS = "in_progress"
    """Received, downloading, verified or installed."""
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    TIMED_OUT = "timed_out"
    """No final answer within the wave's device timeout; counts as failed."""
    SKIPPED = "skipped"
    """Offline at its wave under ``OfflinePolicy.SKIP``, or left the group."""
    REVERTED = "reverted"
    """Rolled back by the server after an abort."""


_S = DeviceRolloutState
ANSWERED = frozenset({_S.HEALTHY, _S.FAILED, _S.ROLLED_BACK, _S.TIMED_OUT})
"""Finished devices, the ones the error threshold waits for."""
SETTLED = ANSWERED | {_S.SKIPPED, _S.REVERTED}
"""States a wave can end in: once every device is in one, nothing more will come."""
ERRORED = frozenset({_S.FAILED, _S.ROLLED_BACK, _S.TIMED_OUT})

_PROGRESS = frozenset(
    {EventKind.RECEIVED, EventKind.DOWNLOADING, EventKind.VERIFIED, EventKind.INSTALLED}
)
_EARLY = frozenset({_S.PENDING, _S.NOTIFIED, _S.IN_PROGRESS})


def device_state_after(current: DeviceRolloutState, event_kind: str) -> DeviceRolloutState:
    """A device's state after one of its update events.

    ===================  ===========  =========  =========  ===========
    current              progress(*)  healthy    failed     rolled_back
    ===================  ===========  =========  =========  ===========
    pending, notified    in_progress  healthy    failed     rolled_back
    in_progress          in_progress  healthy    failed     rolled_back
    healthy              healthy      healthy    healthy    rolled_back
    timed_out            timed_out    healthy    timed_out  timed_out
    failed, rolled_back  unchanged    unchanged  unchanged  unchanged
    skipped, reverted    unchanged    unchanged  unchanged  unchanged
    ===================  ===========  =========  =========  ===========

    (*) received, downloading, verified, installed. A state never moves back to
    an earlier phase, so duplicates and late, reordered events change nothing.
    ``pending`` and ``notified`` take any answer: the event can beat the
    executor's own record that it published the desired state.
    ``healthy`` turns into ``rolled_back`` when the agent's probation fails
    after it; a ``failed`` after ``healthy`` can only be a reordered earlier
    event (the agent reports probation failures as ``rolled_back``). A late
    ``healthy`` after a timeout is believed: the device did take the version.
    """
    try:
        kind = EventKind(event_kind)
    except ValueError as err:
        raise InvalidInputError(f"unknown event kind {event_kind!r}") from err
    if current in _EARLY:
        if kind in _PROGRESS:
            return _S.IN_PROGRESS
        return _S(kind.value)
    if current is _S.HEALTHY and kind is EventKind.ROLLED_BACK:
        return _S.ROLLED_BACK
    if current is _S.TIMED_OUT and kind is EventKind.HEALTHY:
        return _S.HEALTHY
    return current


@dataclass(frozen=True, slots=True)
class VersionStats:
    """One version's telemetry on the wave's devices over the comparison period.

    Histograms follow the shared rule: ``counts[i]`` is below ``bounds[i]``,
    the last count is the rest (``len(bounds) + 1`` counts, or none at all).
    """

    inferences: int
    errors: int
    latency_bounds: tuple[float, ...] = ()
    latency_counts: tuple[int, ...] = ()
    confidence_bounds: tuple[float, ...] = ()
    confidence_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name, bounds, counts in (
            ("latency", self.latency_bounds, self.latency_counts),
            ("confidence", self.confidence_bounds, self.confidence_counts),
        ):
            if (bounds or counts) and (not bounds or len(counts) != len(bounds) + 1):
                raise InvalidInputError(
                    f"{name}_counts has {len(counts)} counts for {len(bounds)} bounds, "
                    "want at least one bound and one more count than bounds"
                )

    def error_rate(self) -> float | None:
        return self.errors / self.inferences if self.inferences else None

    def p95_ms(self) -> float | None:
        if not self.latency_bounds:
            return None
        return histogram_quantile(self.latency_bounds, self.latency_counts, 0.95)


@dataclass(frozen=True, slots=True)
class WaveStats:
    index: int
    counts: Mapping[DeviceRolloutState, int]
    """Devices of this wave by state; missing states count 0."""
    now: float
    soak_started_at: float | None
    """When the wave first met its success threshold (the executor stores it)."""
    new: VersionStats
    previous: VersionStats
    shadow_agreement: float | None = None
    shadow_samples: int = 0


class Verdict(StrEnum):
    WAIT = "wait"
    START_SOAK = "start_soak"
    ADVANCE = "advance"
    PAUSE = "pause"
    ABORT = "abort"


class GateStatus(StrEnum):
    PASS = "pass"  # noqa: S105  a gate's verdict, not a password
    FAIL = "fail"
    NO_DATA = "no_data"
    """Not judged yet: too few devices finished or too few inferences."""
    OFF = "off"


@dataclass(frozen=True, slots=True)
class GateResult:
    """``value`` is shown whenever it can be computed, judged or not."""

    name: str
    value: float | None
    limit: float | None
    status: GateStatus


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str
    gates: tuple[GateResult, ...]


def psi(
    expected_counts: Sequence[int], actual_counts: Sequence[int], *, floor: float = 1e-4
) -> float:
    """Population stability index, sum of ``(a - e) * ln(a / e)`` over bins.

    Shares below ``floor`` are raised to it, so an empty bin on one side gives
    a large but finite index instead of infinity.
    """
    if len(expected_counts) != len(actual_counts):
        raise InvalidInputError(
            f"psi needs histograms over the same bins, got {len(expected_counts)} "
            f"and {len(actual_counts)} counts"
        )
    expected_total = sum(expected_counts)
    actual_total = sum(actual_counts)
    if expected_total <= 0 or actual_total <= 0:
        raise InvalidInputError("psi needs at least one count on each side")
    total = 0.0
    for e_count, a_count in zip(expected_counts, actual_counts, strict=True):
        e = max(e_count / expected_total, floor)
        a = max(a_count / actual_total, floor)
        total += (a - e) * math.log(a / e)
    return total


def _pct(share: float) -> str:
    return f"{share * 100:.4g}%"


def _num(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True, slots=True)
class _Shares:
    """The wave's device counts as the rules read them."""

    active: int
    healthy: int
    errored: int
    answered: int
    settled: bool

    @classmethod
    def of(cls, counts: Mapping[DeviceRolloutState, int]) -> _Shares:
        def count(states: frozenset[DeviceRolloutState]) -> int:
            return sum(counts.get(state, 0) for state in states)

        devices = sum(counts.values())
        return cls(
            active=devices - counts.get(_S.SKIPPED, 0),
            healthy=counts.get(_S.HEALTHY, 0),
            errored=count(ERRORED),
            answered=count(ANSWERED),
            settled=count(SETTLED) == devices,
        )


def _device_gates(shares: _Shares, wave: WaveSpec) -> tuple[GateResult, GateResult]:
    success = shares.healthy / shares.active if shares.active else None
    errors = shares.errored / shares.active if shares.active else None
    if success is None:
        success_status = GateStatus.NO_DATA
    elif success >= wave.success_threshold:
        success_status = GateStatus.PASS
    else:
        success_status = GateStatus.FAIL if shares.settled else GateStatus.NO_DATA
    if errors is None or shares.answered < wave.error_min_finished:
        error_status = GateStatus.NO_DATA
    else:
        error_status = GateStatus.FAIL if errors > wave.error_threshold else GateStatus.PASS
    return (
        GateResult("success_share", success, wave.success_threshold, success_status),
        GateResult("error_share", errors, wave.error_threshold, error_status),
    )


def _judged(
    name: str,
    value: float | None,
    limit: float | None,
    enough: bool,
    fails: Callable[[float, float], bool],
) -> GateResult:
    if limit is None:
        return GateResult(name, value, None, GateStatus.OFF)
    if value is None or not enough:
        return GateResult(name, value, limit, GateStatus.NO_DATA)
    return GateResult(
        name, value, limit, GateStatus.FAIL if fails(value, limit) else GateStatus.PASS
    )


def _above(value: float, limit: float) -> bool:
    return value > limit


def _below(value: float, limit: float) -> bool:
    return value < limit


def _telemetry_gates(stats: WaveStats, policy: RolloutPolicy) -> tuple[GateResult, ...]:
    gates = policy.gates
    new, old = stats.new, stats.previous
    enough = new.inferences >= gates.min_inferences
    new_rate, old_rate = new.error_rate(), old.error_rate()
    rate_increase = None if new_rate is None or old_rate is None else new_rate - old_rate
    new_p95, old_p95 = new.p95_ms(), old.p95_ms()
    ratio = None if new_p95 is None or old_p95 is None or old_p95 <= 0 else new_p95 / old_p95
    comparable = (
        new.confidence_bounds == old.confidence_bounds
        and sum(new.confidence_counts) > 0
        and sum(old.confidence_counts) > 0
    )
    output_psi = psi(old.confidence_counts, new.confidence_counts) if comparable else None
    return (
        _judged(
            "error_rate_increase", rate_increase, gates.max_error_rate_increase, enough, _above
        ),
        _judged("p95_latency_ratio", ratio, gates.max_p95_latency_ratio, enough, _above),
        _judged("output_psi", output_psi, gates.max_output_psi, enough, _above),
        _judged(
            "shadow_agreement",
            stats.shadow_agreement,
            gates.min_shadow_agreement,
            stats.shadow_samples >= gates.min_inferences,
            _below,
        ),
    )


def _breach(gate: GateResult) -> tuple[float, float] | None:
    """A failed gate's value and limit; ``None`` for a gate that did not fail."""
    if gate.status is GateStatus.FAIL and gate.value is not None and gate.limit is not None:
        return gate.value, gate.limit
    return None


def _breaches(results: Sequence[GateResult], shares: _Shares) -> list[str]:
    """Reasons for every breach; a low success share only when errors do not explain it."""
    success, errors, *telemetry = results
    reasons = []
    if failed := _breach(errors):
        reasons.append(
            f"error_share {_pct(failed[0])} > {_pct(failed[1])} ({shares.errored} of "
            f"{shares.active} devices failed, rolled back or timed out)"
        )
    elif failed := _breach(success):
        reasons.append(f"wave finished with {_pct(failed[0])} healthy, needs {_pct(failed[1])}")
    for gate in telemetry:
        if failed := _breach(gate):
            relation = "<" if gate.name == "shadow_agreement" else ">"
            reasons.append(f"{gate.name} {_num(failed[0])} {relation} limit {_num(failed[1])}")
    return reasons


def evaluate(stats: WaveStats, policy: RolloutPolicy) -> Decision:
    """The wave's verdict: breach first, then soak, then wait."""
    if not 0 <= stats.index < len(policy.waves):
        raise InvalidInputError(
            f"wave index {stats.index} is outside the policy's {len(policy.waves)} waves"
        )
    wave = policy.waves[stats.index]
    shares = _Shares.of(stats.counts)
    results = (*_device_gates(shares, wave), *_telemetry_gates(stats, policy))

    def decide(verdict: Verdict, reason: str) -> Decision:
        return Decision(verdict, reason, results)

    if shares.active == 0:
        return decide(Verdict.ADVANCE, f"wave {stats.index} has no device to wait for")
    breaches = _breaches(results, shares)
    if breaches:
        return decide(Verdict(policy.breach_action.value), "; ".join(breaches))
    healthy = (
        f"{shares.healthy} of {shares.active} healthy ({_pct(shares.healthy / shares.active)})"
    )
    if results[0].status is not GateStatus.PASS:
        return decide(Verdict.WAIT, f"{healthy}, needs {_pct(wave.success_threshold)}")
    if stats.soak_started_at is None:
        return decide(Verdict.START_SOAK, f"{healthy}: soak of {wave.soak_seconds:g} s starts")
    soaked = stats.now - stats.soak_started_at
    if soaked < wave.soak_seconds:
        left = math.ceil(wave.soak_seconds - soaked)
        return decide(Verdict.WAIT, f"{healthy}, soaking: {left} s left")
    return decide(Verdict.ADVANCE, f"{healthy} and soaked {wave.soak_seconds:g} s")
