"""PSI and KS of one drift window against its baseline, judged by limits calibrated per window size.

* **PSI** compares the window's bin shares with the baseline's reference
  probabilities. Every bin of the window gets :data:`SMOOTHING`, half an
  inference (the Jeffreys prior), before it becomes a share, so a bin left
  empty by chance costs a bounded amount that shrinks as windows grow (a
  fixed share floor would cost ~0.7 at any size). Half an *inference*, not
  half a count: a pooled feature counts 32 positions per inference, and
  smoothing by counts would make its PSI another statistic than the one
  calibrated. A reference share of zero is raised to :data:`PROBABILITY_FLOOR`.
* **KS** is the largest gap between cumulative shares at the bin edges.
* **No magic thresholds.** How large either gets without drift depends on
  the window size, the bins, the features and the baseline's shares, so
  :func:`calibrate` measures it with a seeded parametric bootstrap:
  ``replicates`` windows of ``count`` inferences drawn as multinomial(count,
  p) per feature, and with ``reference_size`` the reference drawn too, as
  multinomial(reference_size, p) / reference_size (the baseline came from a
  finite training set; ignoring its own sampling error would let that pass
  for drift). The components are the largest feature PSI, the largest
  feature KS and the output PSI; each gets a scale (its ``1 - rate``
  quantile), and one factor on all scales makes the joint limits, so that
  few enough replicates have *any* component over its limit.
* **Bounded, not estimated, false alarms.** A finite bootstrap's sample
  quantile lands above the true one half of the time, which would break the
  target for half of all window sizes. The factor is the order statistic
  that keeps the true rate at or under ``false_alarm_rate`` with 95 %
  confidence (:mod:`~edgefleet.server.drift.bounds`; of 4,000 replicates,
  29 may exceed at 1 %, not 40).
* **The window size is the number of inferences** (``Drift.count``), not a
  feature's count total. The agent counts up to 32 positions of each sample
  of a pooled feature (a channel over a time window) and they are
  correlated; taken as independent draws they would understate the
  no-drift spread and raise false alarms. Such a feature's shares are a mean
  of ``n`` per-sample share vectors, each less spread than one draw with the
  same mean, and both statistics are convex in the shares: ``n`` independent
  draws overstate their spread, so ``n`` is conservative for pooled
  features (limits a little wide) and exact for tabular ones and the output.
* Features are drawn independently. Real ones tend to move together (two
  axes of one vibration), which makes their largest statistic smaller: this
  errs on the quiet side too.

:class:`Calibration` caches limits per baseline and window-size
:func:`bucket`, so ingest pays for a bootstrap once per model version and
bucket; the draws are seeded from ``seed`` and the count, so every server
replica arrives at the same numbers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgefleet.server.drift.bounds import allowed_exceedances
from edgefleet.server.drift.bounds import bucket as bucket
from edgefleet.server.errors import InvalidInputError
from edgefleet.shared.manifest import Baseline, BaselineBins

MIN_COUNT = 30
"""Fewer inferences than this make a window too small to judge (its score is None)."""
DEFAULT_REPLICATES = 4000
SMOOTHING = 0.5
"""Inferences added to every bin of a window before its PSI."""
PROBABILITY_FLOOR = 1e-4
"""The least reference share a PSI divides by."""

Floats = npt.NDArray[np.float64]
Sketch = tuple[str, Sequence[int]]


class SketchMismatch(InvalidInputError):
    """A window's counts do not fit the baseline they claim to be counted against."""

    reason = "sketch_mismatch"


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    name: str
    psi: float
    ks: float


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Limits for one baseline at one window size: a window over any of them is flagged.

    ``count`` is the window size they were calibrated for (a bucket's floor).
    A limit is None where the baseline has no such bins (no features, no output).
    """

    count: int
    psi: float | None
    ks: float | None
    output_psi: float | None
    false_alarm_rate: float
    replicates: int


@dataclass(frozen=True, slots=True)
class WindowDrift:
    """``score`` is the largest statistic over its limit; None when too small to judge."""

    features: tuple[FeatureDrift, ...]
    output_psi: float | None
    score: float | None
    flagged: bool


def _psi(counts: Floats, reference: Floats, size: float) -> Floats:
    """PSI over the last axis, any leading axes (one window, or a bootstrap's replicates).

    The window's shares are smoothed as if ``size`` inferences had made them.
    """
    raw = counts / counts.sum(axis=-1, keepdims=True)
    shares = (raw * size + SMOOTHING) / (size + SMOOTHING * counts.shape[-1])
    expected = np.maximum(reference, PROBABILITY_FLOOR)
    result: Floats = ((shares - expected) * np.log(shares / expected)).sum(axis=-1)
    return result


def _ks(counts: Floats, reference: Floats) -> Floats:
    """Largest gap of cumulative shares at the bin edges, over the last axis."""
    shares = counts / counts.sum(axis=-1, keepdims=True)
    gaps = np.cumsum(shares - reference, axis=-1)[..., :-1]
    result: Floats = np.abs(gaps).max(axis=-1)
    return result


def _pair(counts: Sequence[int], probabilities: Sequence[float]) -> tuple[Floats, Floats]:
    window = np.asarray(counts, dtype=np.float64)
    reference = np.asarray(probabilities, dtype=np.float64)
    if window.ndim != 1 or window.shape != reference.shape or window.size < 2:
        raise SketchMismatch(
            f"{window.size} counts against {reference.size} reference probabilities: "
            "a window and its baseline need the same bins, at least two"
        )
    if (window < 0).any() or window.sum() <= 0:
        raise SketchMismatch("a window needs non-negative counts with at least one value counted")
    return window, reference


def psi(counts: Sequence[int], probabilities: Sequence[float], *, size: int | None = None) -> float:
    """Population stability index of a window's ``counts`` against reference ``probabilities``.

    ``size`` is the number of inferences behind the counts (the smoothing is
    half of one per bin); by default, the counts' total.
    """
    window, reference = _pair(counts, probabilities)
    return float(_psi(window, reference, window.sum() if size is None else size))


def ks(counts: Sequence[int], probabilities: Sequence[float]) -> float:
    """Largest gap between the window's and the reference's cumulative shares at any bin edge."""
    return float(_ks(*_pair(counts, probabilities)))


def _check_counts(what: str, bins: BaselineBins, counts: Sequence[int]) -> None:
    if len(counts) != len(bins.edges) + 1:
        raise SketchMismatch(
            f"{what} {bins.name!r} has {len(counts)} counts; its baseline has "
            f"{len(bins.edges)} edges, so {len(bins.edges) + 1} bins"
        )
    if any(c < 0 for c in counts):
        raise SketchMismatch(f"{what} {bins.name!r} has negative counts: {list(counts)}")
    if not any(counts):
        raise SketchMismatch(
            f"{what} {bins.name!r} counted nothing: a window's counts must hold "
            "the values it saw (a sensor sending only NaN shows up here)"
        )


def check_sketch(baseline: Baseline, features: Sequence[Sketch], output: Sketch | None) -> None:
    """Refuse counts that were not made against ``baseline``'s bins, naming what differs."""
    expected = [f.name for f in baseline.features]
    sent = [name for name, _ in features]
    if expected and not sent:
        raise SketchMismatch(
            f"the window has no feature counts; its baseline has {len(expected)} "
            f"features ({', '.join(expected[:5])}{', ...' if len(expected) > 5 else ''})"
        )
    if sent != expected:
        missing = [n for n in expected if n not in sent]
        extra = [n for n in sent if n not in expected]
        detail = (
            f"missing {missing}, not in the baseline {extra}"
            if missing or extra
            else f"in the order {sent}, the baseline's is {expected}"
        )
        raise SketchMismatch(f"the window's features do not match the baseline's: {detail}")
    for bins, (_, counts) in zip(baseline.features, features, strict=True):
        _check_counts("feature", bins, counts)
    if output is None:
        return
    if baseline.output is None:
        raise SketchMismatch(f"the window has output counts {output[0]!r}; its baseline has none")
    if output[0] != baseline.output.name:
        raise SketchMismatch(
            f"the window's output is {output[0]!r}, the baseline's is {baseline.output.name!r}"
        )
    _check_counts("output", baseline.output, output[1])


def _null_draws(
    rng: np.random.Generator,
    bins: BaselineBins,
    count: int,
    reference_size: int | None,
    replicates: int,
) -> tuple[Floats, Floats]:
    """No-drift windows of ``count`` inferences and the references they are compared with."""
    p = np.asarray(bins.probabilities, dtype=np.float64)
    p /= p.sum()
    windows = rng.multinomial(count, p, size=replicates).astype(np.float64)
    if reference_size is None:
        return windows, p
    references = rng.multinomial(reference_size, p, size=replicates) / reference_size
    return windows, references.astype(np.float64)


def calibrate(
    baseline: Baseline,
    count: int,
    *,
    reference_size: int | None = None,
    false_alarm_rate: float = 0.01,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> Thresholds:
    """Limits for windows of ``count`` inferences against ``baseline`` (see the module notes)."""
    allowed = allowed_exceedances(replicates, false_alarm_rate)
    if count < 1 or (reference_size is not None and reference_size < 1) or seed < 0:
        raise InvalidInputError(
            f"calibration needs a window and a reference of at least one inference and "
            f"a seed of at least 0, got {count}, {reference_size} and {seed}"
        )
    if not baseline.features and baseline.output is None:
        raise InvalidInputError("the baseline has neither feature nor output bins to judge")
    rng = np.random.default_rng([seed, count])
    components: list[Floats] = []
    if baseline.features:
        largest_psi = np.zeros(replicates)
        largest_ks = np.zeros(replicates)
        for bins in baseline.features:
            windows, references = _null_draws(rng, bins, count, reference_size, replicates)
            np.maximum(largest_psi, _psi(windows, references, count), out=largest_psi)
            np.maximum(largest_ks, _ks(windows, references), out=largest_ks)
        components += [largest_psi, largest_ks]
    if baseline.output is not None:
        components.append(
            _psi(*_null_draws(rng, baseline.output, count, reference_size, replicates), count)
        )
    stats = np.stack(components)
    # A statistic that no replicate moves (all mass in one bin) keeps a tiny scale:
    # any movement at all is then drift.
    scales = np.maximum(np.quantile(stats, 1.0 - false_alarm_rate, axis=1), 1e-12)
    ratios = np.sort((stats / scales[:, np.newaxis]).max(axis=0))
    limits: list[float | None] = [float(s) for s in scales * ratios[replicates - 1 - allowed]]
    if not baseline.features:
        limits = [None, None, *limits]
    if baseline.output is None:
        limits.append(None)
    return Thresholds(
        count=count,
        psi=limits[0],
        ks=limits[1],
        output_psi=limits[2],
        false_alarm_rate=false_alarm_rate,
        replicates=replicates,
    )


def judge(
    baseline: Baseline,
    features: Sequence[Sketch],
    output: Sketch | None,
    thresholds: Thresholds | None,
) -> WindowDrift:
    """The window's statistics, and its score against ``thresholds`` (None: too small to judge).

    PSI is smoothed for the inferences the limits were calibrated for, so a
    judged window's statistic is the very one its limits describe; an
    unjudged window's is smoothed by its own counts' total.
    """
    check_sketch(baseline, features, output)
    size = None if thresholds is None else thresholds.count
    drifts = tuple(
        FeatureDrift(
            name=bins.name,
            psi=psi(counts, bins.probabilities, size=size),
            ks=ks(counts, bins.probabilities),
        )
        for bins, (_, counts) in zip(baseline.features, features, strict=True)
    )
    output_psi = (
        psi(output[1], baseline.output.probabilities, size=size)
        if output is not None and baseline.output is not None
        else None
    )
    score = None if thresholds is None else _score(drifts, output_psi, thresholds)
    return WindowDrift(
        features=drifts,
        output_psi=output_psi,
        score=score,
        flagged=score is not None and score > 1.0,
    )


def _score(
    drifts: Sequence[FeatureDrift], output_psi: float | None, thresholds: Thresholds
) -> float | None:
    pairs: list[tuple[float | None, float | None]] = [(output_psi, thresholds.output_psi)]
    pairs += [(d.psi, thresholds.psi) for d in drifts] + [(d.ks, thresholds.ks) for d in drifts]
    ratios = [value / limit for value, limit in pairs if value is not None and limit is not None]
    return max(ratios, default=None)


def pool(sketches: Iterable[Sequence[Sequence[int]]]) -> tuple[tuple[int, ...], ...]:
    """Counts summed bin by bin over windows (each a sequence of per-feature counts).

    A group's or the fleet's drift is one window over the pooled counts, with
    the windows' inference counts summed as its size.
    """
    total: list[npt.NDArray[np.int64]] | None = None
    for sketch in sketches:
        arrays = [np.asarray(counts, dtype=np.int64) for counts in sketch]
        if total is None:
            total = arrays
            continue
        if [a.shape for a in arrays] != [t.shape for t in total]:
            raise SketchMismatch(
                "pooled windows need the same bins: "
                f"{[len(t) for t in total]} counts per feature against {[len(a) for a in arrays]}"
            )
        total = [t + a for t, a in zip(total, arrays, strict=True)]
    return () if total is None else tuple(tuple(int(c) for c in t) for t in total)


class Calibration:
    """Thresholds per (key, window-size bucket), so ingest calibrates each baseline and bucket once.

    ``key`` must name one baseline for good (a model version's id): the
    cache does not look inside the baseline. Safe to share between threads;
    two threads missing the same entry both calibrate, to the same numbers.
    """

    def __init__(
        self,
        *,
        false_alarm_rate: float = 0.01,
        replicates: int = DEFAULT_REPLICATES,
        max_entries: int = 4096,
    ) -> None:
        allowed_exceedances(replicates, false_alarm_rate)
        if max_entries < 1:
            raise InvalidInputError(f"a cache holds at least one entry, got {max_entries}")
        self.false_alarm_rate = false_alarm_rate
        self.replicates = replicates
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Hashable, int, int | None], Thresholds] = OrderedDict()
        self._lock = threading.Lock()

    def thresholds(
        self, key: Hashable, baseline: Baseline, count: int, *, reference_size: int | None = None
    ) -> Thresholds | None:
        """Limits for a window of ``count`` inferences; None below :data:`MIN_COUNT`."""
        if count < MIN_COUNT:
            return None
        entry = (key, bucket(count), reference_size)
        with self._lock:
            found = self._entries.get(entry)
            if found is not None:
                self._entries.move_to_end(entry)
                return found
        made = calibrate(
            baseline,
            entry[1],
            reference_size=reference_size,
            false_alarm_rate=self.false_alarm_rate,
            replicates=self.replicates,
        )
        with self._lock:
            kept = self._entries.setdefault(entry, made)
            self._entries.move_to_end(entry)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return kept

    def __len__(self) -> int:
        return len(self._entries)
