"""Time buckets and pooled group drift over judged windows: pure, no database."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from edgefleet.server.drift.aggregate import (
    MAX_BUCKETS,
    VersionReference,
    WindowPoint,
    bucket_count,
    pooled_drift,
    series,
)
from edgefleet.server.drift.statistics import MIN_COUNT, Calibration, SketchMismatch, judge
from edgefleet.server.errors import InvalidInputError
from edgefleet.shared.manifest import Baseline, BaselineBins

BASELINE = Baseline(
    features=(
        BaselineBins(name="a", edges=(-1.0, 0.0, 1.0), probabilities=(0.25, 0.25, 0.25, 0.25)),
        BaselineBins(name="b", edges=(0.0, 2.0), probabilities=(0.2, 0.5, 0.3)),
    ),
    output=BaselineBins(name="prediction", edges=(1.0, 2.0), probabilities=(0.5, 0.3, 0.2)),
)
REFERENCE = VersionReference(BASELINE, reference_size=5000)
T0 = 1_767_225_600.0


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return Calibration()


def point(
    *,
    device: str = "d1",
    version: int = 1,
    end: float = T0 + 10,
    count: int = 100,
    a: Sequence[int] = (25, 25, 25, 25),
    b: Sequence[int] = (20, 50, 30),
    output: Sequence[int] | None = (50, 30, 20),
    score: float | None = None,
    flagged: bool = False,
    change: float | None = None,
) -> WindowPoint:
    return WindowPoint(
        device=device,
        version=version,
        window_end=end,
        count=count,
        score=score,
        flagged=flagged,
        confidence_change=change,
        counts={
            "features": {"a": list(a), "b": list(b)},
            "output": None if output is None else list(output),
        },
    )


def draws(
    rng: np.random.Generator, probabilities: Sequence[float], count: int, tilt: float = 0.0
) -> list[int]:
    """``count`` inferences from ``probabilities``, ``tilt`` of the mass moved to the last bin."""
    p = np.asarray(probabilities) * (1 - tilt)
    p[-1] += tilt
    drawn: list[int] = rng.multinomial(count, p / p.sum()).tolist()
    return drawn


@pytest.mark.parametrize(
    ("since", "until", "seconds", "words"),
    [
        (T0, T0, 60, "since < until"),
        (T0 + 1, T0, 60, "since < until"),
        (math.nan, T0, 60, "since < until"),
        (T0, math.inf, 60, "since < until"),
        (T0, T0 + 60, 0, "more than 0 seconds"),
        (T0, T0 + 60, math.nan, "more than 0 seconds"),
        (T0, T0 + 60 * (MAX_BUCKETS + 1), 60, f"at most {MAX_BUCKETS}"),
    ],
)
def test_bad_spans_are_refused(since: float, until: float, seconds: float, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        bucket_count(since, until, seconds)


def test_bucket_count_rounds_a_partial_last_bucket_up() -> None:
    assert bucket_count(T0, T0 + 60 * MAX_BUCKETS, 60) == MAX_BUCKETS
    assert bucket_count(T0, T0 + 61, 60) == 2
    assert bucket_count(T0, T0 + 0.5, 60) == 1


def test_windows_land_in_the_bucket_their_end_falls_in(calibration: Calibration) -> None:
    windows = [
        point(end=T0, device="edge-start"),
        point(end=T0 + 59.999, device="inside"),
        point(end=T0 + 60, device="second"),
        point(end=T0 + 150, device="last-partial"),
        point(end=T0 - 0.001, device="before"),
        point(end=T0 + 150.5, device="at-until"),
    ]
    buckets = series(
        windows,
        since=T0,
        until=T0 + 150.5,
        bucket_seconds=60,
        references=None,
        calibration=calibration,
    )
    assert [(b.start, b.end) for b in buckets] == [
        (T0, T0 + 60),
        (T0 + 60, T0 + 120),
        (T0 + 120, T0 + 150.5),
    ]
    assert [b.windows for b in buckets] == [2, 1, 1]
    assert [b.devices for b in buckets] == [2, 1, 1]
    assert all(b.pooled == () for b in buckets)


def test_bucket_counts_scores_and_confidence(calibration: Calibration) -> None:
    windows = [
        point(device="d1", score=0.5, change=-0.1),
        point(device="d1", score=1.5, flagged=True, change=-0.3),
        point(device="d2", score=2.5, flagged=True),
        point(device="d3", score=None, change=0.1),
        point(device="d3", score=0.2),
    ]
    (bucket,) = series(
        windows,
        since=T0,
        until=T0 + 60,
        bucket_seconds=60,
        references=None,
        calibration=calibration,
    )
    assert (bucket.windows, bucket.devices) == (5, 3)
    assert (bucket.flagged_windows, bucket.flagged_devices) == (2, 2)
    assert bucket.mean_score == pytest.approx((0.5 + 1.5 + 2.5 + 0.2) / 4)
    assert bucket.max_score == 2.5
    assert bucket.mean_confidence_change == pytest.approx(-0.1)


def test_an_empty_bucket_is_kept_with_nothing_in_it(calibration: Calibration) -> None:
    first, empty, last = series(
        [point(end=T0 + 1, score=0.3), point(end=T0 + 130, score=0.4)],
        since=T0,
        until=T0 + 180,
        bucket_seconds=60,
        references={1: REFERENCE},
        calibration=calibration,
    )
    assert (first.windows, last.windows) == (1, 1)
    assert (empty.windows, empty.devices, empty.flagged_windows, empty.flagged_devices) == (
        0,
        0,
        0,
        0,
    )
    assert (empty.mean_score, empty.max_score, empty.mean_confidence_change) == (None, None, None)
    assert empty.pooled == ()
    assert len(first.pooled) == len(last.pooled) == 1


def test_pooled_drift_is_the_judgement_of_the_summed_counts(calibration: Calibration) -> None:
    windows = [
        point(device="d1", count=40, a=(10, 10, 10, 10), b=(8, 20, 12), output=(20, 12, 8)),
        point(device="d2", count=50, a=(5, 15, 20, 10), b=(10, 30, 10), output=(30, 10, 10)),
        point(device="d2", count=30, a=(9, 6, 9, 6), b=(6, 15, 9), output=(15, 9, 6)),
    ]
    pooled = pooled_drift(1, windows, REFERENCE, calibration)
    assert (pooled.version, pooled.windows, pooled.devices, pooled.count) == (1, 3, 2, 120)
    thresholds = calibration.thresholds(BASELINE, BASELINE, 120, reference_size=5000)
    expected = judge(
        BASELINE,
        [("a", (24, 31, 39, 26)), ("b", (24, 65, 31))],
        ("prediction", (65, 31, 24)),
        thresholds,
    )
    assert pooled.features == expected.features
    assert pooled.output_psi == expected.output_psi
    assert (pooled.score, pooled.flagged) == (expected.score, expected.flagged)


def test_a_pool_of_windows_too_small_alone_is_judged(calibration: Calibration) -> None:
    small = MIN_COUNT // 2
    alone = pooled_drift(1, [point(count=small)], REFERENCE, calibration)
    assert alone.score is None
    assert not alone.flagged
    together = pooled_drift(
        1, [point(device=f"d{i}", count=small) for i in range(4)], REFERENCE, calibration
    )
    assert together.count == 4 * small
    assert together.score is not None


def test_a_group_drifts_before_any_of_its_devices_is_sure(calibration: Calibration) -> None:
    """Twenty small windows, each with a shift too small to flag alone, flag when pooled."""
    rng = np.random.default_rng(3)
    count = 60
    windows = []
    for i in range(20):
        a = draws(rng, BASELINE.features[0].probabilities, count, tilt=0.12)
        b = draws(rng, BASELINE.features[1].probabilities, count)
        output = draws(rng, BASELINE.output.probabilities, count)  # type: ignore[union-attr]
        single = judge(
            BASELINE,
            [("a", a), ("b", b)],
            ("prediction", output),
            calibration.thresholds(BASELINE, BASELINE, count, reference_size=5000),
        )
        windows.append(
            point(
                device=f"d{i}",
                count=count,
                a=a,
                b=b,
                output=output,
                score=single.score,
                flagged=single.flagged,
            )
        )
    assert sum(w.flagged for w in windows) <= 2
    pooled = pooled_drift(1, windows, REFERENCE, calibration)
    assert pooled.flagged, pooled


def test_pooled_windows_without_drift_stay_quiet(calibration: Calibration) -> None:
    rng = np.random.default_rng(11)
    quiet = 0
    for _ in range(20):
        windows = [
            point(
                device=f"d{i}",
                count=80,
                a=draws(rng, BASELINE.features[0].probabilities, 80),
                b=draws(rng, BASELINE.features[1].probabilities, 80),
                output=draws(rng, BASELINE.output.probabilities, 80),  # type: ignore[union-attr]
            )
            for i in range(25)
        ]
        quiet += not pooled_drift(1, windows, REFERENCE, calibration).flagged
    assert quiet >= 19, f"{20 - quiet} of 20 pools of 2,000 inferences without drift flagged"


def test_versions_are_pooled_apart_and_only_with_a_baseline(calibration: Calibration) -> None:
    other = Baseline(
        features=(
            BaselineBins(name="a", edges=(0.0,), probabilities=(0.5, 0.5)),
            BaselineBins(name="b", edges=(0.0,), probabilities=(0.5, 0.5)),
        )
    )
    windows = [
        point(version=1, device="d1"),
        point(version=2, device="d2", a=(50, 50), b=(60, 40), output=None),
        point(version=2, device="d3", a=(40, 60), b=(50, 50), output=None),
        point(version=3, device="d4"),
    ]
    (bucket,) = series(
        windows,
        since=T0,
        until=T0 + 60,
        bucket_seconds=60,
        references={1: REFERENCE, 2: VersionReference(other, None)},
        calibration=calibration,
    )
    assert [(p.version, p.windows, p.devices, p.count) for p in bucket.pooled] == [
        (1, 1, 1, 100),
        (2, 2, 2, 200),
    ]
    assert bucket.pooled[1].output_psi is None


def test_output_is_pooled_only_when_every_window_has_it(calibration: Calibration) -> None:
    both = pooled_drift(1, [point(), point(device="d2")], REFERENCE, calibration)
    assert both.output_psi is not None
    one = pooled_drift(1, [point(), point(device="d2", output=None)], REFERENCE, calibration)
    assert one.output_psi is None
    assert one.features == both.features


@pytest.mark.parametrize(
    "counts",
    [
        {"features": {"a": [1, 2, 3, 4]}, "output": None},
        {"features": {"a": [1, 2, 3, 4], "b": [1, 2, 3], "c": [1, 1]}, "output": None},
        {"features": {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}, "output": None},
    ],
    ids=["missing", "extra", "bins"],
)
def test_windows_that_do_not_fit_the_baseline_are_refused(
    calibration: Calibration, counts: dict[str, Any]
) -> None:
    odd = WindowPoint("d9", 1, T0, 100, None, False, None, counts)
    with pytest.raises(SketchMismatch):
        pooled_drift(1, [point(), odd], REFERENCE, calibration)
