"""PSI, KS, sketch checks, judging and pooling, on numbers worked out by hand."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from edgefleet.server.drift.statistics import (
    PROBABILITY_FLOOR,
    FeatureDrift,
    SketchMismatch,
    Thresholds,
    check_sketch,
    judge,
    ks,
    pool,
    psi,
)
from edgefleet.server.errors import InvalidInputError
from edgefleet.shared.manifest import Baseline, BaselineBins

X = BaselineBins(name="x", edges=(0.0, 1.0), probabilities=(0.25, 0.5, 0.25))
Y = BaselineBins(name="y", edges=(0.0,), probabilities=(0.5, 0.5))
OUT = BaselineBins(name="prediction", edges=(1.0, 2.0), probabilities=(0.5, 0.25, 0.25))
BASELINE = Baseline(features=(X, Y), output=OUT)
Statistic = Callable[[Sequence[int], Sequence[float]], float]
PSI_LIMIT, KS_LIMIT, OUTPUT_LIMIT = 0.5, 0.2, 0.05
LIMITS = Thresholds(
    count=100,
    psi=PSI_LIMIT,
    ks=KS_LIMIT,
    output_psi=OUTPUT_LIMIT,
    false_alarm_rate=0.01,
    replicates=4000,
)


def by_hand(shares: Sequence[float], reference: Sequence[float]) -> float:
    return sum((a - e) * math.log(a / e) for a, e in zip(shares, reference, strict=True))


def test_psi_smooths_each_bin_by_half_an_inference() -> None:
    shares = (30.5 / 101, 70.5 / 101)
    assert psi([30, 70], [0.5, 0.5]) == pytest.approx(by_hand(shares, (0.5, 0.5)))


def test_psi_of_pooled_counts_is_smoothed_for_the_inferences_behind_them() -> None:
    """320 positions counted from 10 inferences weigh like 10 inferences."""
    assert psi([96, 224], [0.5, 0.5], size=10) == pytest.approx(psi([3, 7], [0.5, 0.5]))
    assert psi([96, 224], [0.5, 0.5], size=10) < psi([96, 224], [0.5, 0.5])


def test_psi_is_zero_for_matching_uniform_shares_and_grows_with_the_gap() -> None:
    assert psi([25, 25, 25, 25], [0.25] * 4) == 0.0
    assert 0.0 < psi([40, 60], [0.5, 0.5]) < psi([20, 80], [0.5, 0.5])


def test_psi_does_not_depend_on_the_order_of_bins() -> None:
    counts, reference = [5, 30, 65], [0.2, 0.3, 0.5]
    assert psi(counts[::-1], reference[::-1]) == pytest.approx(psi(counts, reference))


def test_an_empty_bin_costs_a_bounded_amount() -> None:
    shares = (0.5 / 101, 100.5 / 101)
    assert psi([0, 100], [0.5, 0.5]) == pytest.approx(by_hand(shares, (0.5, 0.5)))


def test_a_reference_share_of_zero_is_raised_to_the_floor() -> None:
    shares = (50.5 / 101, 50.5 / 101)
    expected = by_hand(shares, (1.0, PROBABILITY_FLOOR))
    assert psi([50, 50], [1.0, 0.0]) == pytest.approx(expected)


def test_ks_is_the_largest_cumulative_gap_at_an_edge() -> None:
    assert ks([30, 70], [0.5, 0.5]) == pytest.approx(0.2)
    # Cumulative shares 0.1, 0.3, 0.6 against 0.25, 0.5, 0.75.
    assert ks([10, 20, 30, 40], [0.25] * 4) == pytest.approx(0.2)
    assert ks([25, 50, 25], [0.25, 0.5, 0.25]) == 0.0


def test_ks_is_symmetric_under_reversal_and_blind_to_scale() -> None:
    counts, reference = [10, 20, 30, 40], [0.4, 0.3, 0.2, 0.1]
    assert ks(counts[::-1], reference[::-1]) == pytest.approx(ks(counts, reference))
    assert ks([c * 32 for c in counts], reference) == pytest.approx(ks(counts, reference))


@pytest.mark.parametrize("statistic", [psi, ks])
@pytest.mark.parametrize(
    ("counts", "reference", "message"),
    [
        ([1, 2, 3], [0.5, 0.5], "3 counts against 2"),
        ([5], [1.0], "at least two"),
        ([0, 0], [0.5, 0.5], "at least one value counted"),
        ([-1, 3], [0.5, 0.5], "non-negative"),
    ],
)
def test_counts_that_do_not_fit_the_reference_are_refused(
    statistic: Statistic, counts: list[int], reference: list[float], message: str
) -> None:
    with pytest.raises(SketchMismatch, match=message):
        statistic(counts, reference)


def test_a_mismatch_is_an_invalid_input_with_its_own_reason() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_sketch(BASELINE, [], None)
    assert caught.value.reason == "sketch_mismatch"
    assert caught.value.status_code == 422


GOOD = [("x", [10, 20, 10]), ("y", [20, 20])]


@pytest.mark.parametrize(
    ("baseline", "features", "output", "message"),
    [
        (BASELINE, [], None, r"no feature counts; its baseline has 2 features \(x, y\)"),
        (BASELINE, GOOD[:1], None, r"missing \['y'\]"),
        (BASELINE, [*GOOD, ("z", [1, 1])], None, r"not in the baseline \['z'\]"),
        (BASELINE, GOOD[::-1], None, r"in the order \['y', 'x'\]"),
        (BASELINE, [("x", [10, 20]), GOOD[1]], None, "'x' has 2 counts; .* 2 edges, so 3 bins"),
        (BASELINE, [("x", [0, 0, 0]), GOOD[1]], None, "'x' counted nothing"),
        (BASELINE, [GOOD[0], ("y", [5, -1])], None, "'y' has negative counts"),
        (Baseline(features=(X, Y)), GOOD, ("prediction", [1, 1, 1]), "its baseline has none"),
        (BASELINE, GOOD, ("score", [1, 1, 1]), "output is 'score', the baseline's is 'pred"),
        (BASELINE, GOOD, ("prediction", [1, 1]), "output 'prediction' has 2 counts"),
        (BASELINE, GOOD, ("prediction", [0, 0, 0]), "output 'prediction' counted nothing"),
    ],
)
def test_check_sketch_refuses_counts_not_made_against_the_baseline(
    baseline: Baseline,
    features: list[tuple[str, list[int]]],
    output: tuple[str, list[int]] | None,
    message: str,
) -> None:
    with pytest.raises(SketchMismatch, match=message):
        check_sketch(baseline, features, output)


def test_check_sketch_accepts_what_the_agent_sends() -> None:
    check_sketch(BASELINE, GOOD, ("prediction", [20, 10, 10]))
    check_sketch(BASELINE, GOOD, None)
    check_sketch(Baseline(features=(), output=OUT), [], ("prediction", [1, 0, 0]))


def test_judge_scores_the_largest_statistic_over_its_limit() -> None:
    window = [("x", [10, 20, 10]), ("y", [30, 10])]
    judged = judge(BASELINE, window, ("prediction", [20, 10, 10]), LIMITS)
    # x and the output match their references; y's cumulative gap is 0.75 - 0.5,
    # over the KS limit (its PSI, about 0.27, is under 0.5).
    assert judged.features == (
        FeatureDrift(
            "x", psi([10, 20, 10], X.probabilities, size=100), ks([10, 20, 10], X.probabilities)
        ),
        FeatureDrift("y", psi([30, 10], Y.probabilities, size=100), 0.25),
    )
    assert judged.output_psi == pytest.approx(psi([20, 10, 10], OUT.probabilities, size=100))
    assert judged.score == pytest.approx(0.25 / KS_LIMIT)
    assert judged.flagged


def test_judge_does_not_flag_a_window_under_every_limit() -> None:
    judged = judge(BASELINE, GOOD, ("prediction", [20, 10, 10]), LIMITS)
    ratios = [f.psi / PSI_LIMIT for f in judged.features] + [
        f.ks / KS_LIMIT for f in judged.features
    ]
    assert judged.output_psi is not None
    ratios.append(judged.output_psi / OUTPUT_LIMIT)
    assert judged.score == pytest.approx(max(ratios))
    assert judged.score is not None
    assert judged.score <= 1.0
    assert not judged.flagged


def test_a_window_without_output_counts_is_judged_on_its_features() -> None:
    judged = judge(BASELINE, GOOD, None, LIMITS)
    assert judged.output_psi is None
    assert judged.score == pytest.approx(
        max(max(f.psi / PSI_LIMIT, f.ks / KS_LIMIT) for f in judged.features)
    )


def test_a_window_too_small_to_judge_keeps_its_statistics_but_no_score() -> None:
    judged = judge(BASELINE, GOOD, ("prediction", [20, 10, 10]), None)
    assert (judged.score, judged.flagged) == (None, False)
    assert judged.features[0] == FeatureDrift(
        "x", psi([10, 20, 10], X.probabilities), ks([10, 20, 10], X.probabilities)
    )


def test_judge_refuses_a_mismatched_window() -> None:
    with pytest.raises(SketchMismatch, match="missing"):
        judge(BASELINE, GOOD[:1], None, LIMITS)


def test_pool_sums_counts_bin_by_bin() -> None:
    first = [[1, 2, 3], [4, 5]]
    second = [[10, 0, 1], [0, 7]]
    assert pool([first, second]) == ((11, 2, 4), (4, 12))
    assert pool([first]) == ((1, 2, 3), (4, 5))
    assert pool([]) == ()


def test_pool_refuses_windows_over_other_bins() -> None:
    with pytest.raises(SketchMismatch, match="same bins"):
        pool([[[1, 2, 3], [4, 5]], [[1, 2], [4, 5]]])
