"""Which devices go in which wave of a rollout.

The order is a hash of the rollout's seed (its id) and each device id, so the
same rollout always picks the same devices whatever order the database returns
them in, and a restarted server continues exactly where it was, while two
rollouts to the same group start on different devices (no device is always
the guinea pig). A re-plan (the group changed during the rollout) keeps every
device already planned in its wave and sends newcomers to the last wave: moving
a device between waves could touch it before its wave was judged, or skip it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.rollouts.policy import RolloutPolicy, WaveSpec


def stable_rank(seed: str, device_id: str) -> int:
    """The device's place in the rollout's order (lower goes first)."""
    digest = hashlib.sha256(f"{seed}\0{device_id}".encode()).digest()
    return int.from_bytes(digest, "big")


def plan(
    devices: Sequence[str],
    policy: RolloutPolicy,
    seed: str,
    existing: Mapping[str, int] | None = None,
) -> tuple[tuple[str, ...], ...]:
    """One tuple of device ids per wave, each in rank order.

    With ``existing`` (device -> wave index of an earlier plan) those devices
    keep their wave, devices no longer in ``devices`` drop out, and the rest
    join the last wave.
    """
    ordered = sorted(set(devices), key=lambda device: (stable_rank(seed, device), device))
    if existing is None:
        return _cut(ordered, policy.waves)
    last = len(policy.waves) - 1
    waves: list[list[str]] = [[] for _ in policy.waves]
    for device in ordered:
        index = existing.get(device, last)
        if not 0 <= index <= last:
            raise InvalidInputError(
                f"existing[{device!r}] is wave {index}, but the policy has {last + 1} waves"
            )
        waves[index].append(device)
    return tuple(tuple(wave) for wave in waves)


def _cut(ordered: Sequence[str], waves: Sequence[WaveSpec]) -> tuple[tuple[str, ...], ...]:
    total = len(ordered)
    cuts: list[tuple[str, ...]] = []
    start = 0
    for index, wave in enumerate(waves):
        if index == len(waves) - 1:
            end = total
        elif wave.percent is not None:
            end = math.ceil(_decimal(wave.percent) * total / 100)
        else:
            end = start + (wave.count or 0)
        end = min(total, max(end, start + 1))
        cuts.append(tuple(ordered[start:end]))
        start = end
    return tuple(cuts)


def _decimal(percent: float) -> Fraction:
    """The percent as the decimal an operator typed: 7% of 100 devices is 7, not
    ``ceil(0.07 * 100) == 8`` as binary floating point would have it."""
    return Fraction(repr(float(percent)))
