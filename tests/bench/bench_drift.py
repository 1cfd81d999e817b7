"""The drift target on fresh synthetic sensor data at several window sizes (DESIGN.md targets).

    python -m tests.bench.bench_drift [--sizes 50 100 200 400] [--null-windows 3000] [--trials 500]

Target: at most 1 false alarm per 100 windows without drift, and a 0.5
sigma mean shift in one feature detected within 2 windows in at least 95 %
of trials. Every window here is made of samples the generator has not
produced before (no pool is reused, unlike the fast unit test): the baseline
comes from ``N_TRAIN`` training samples (``reference_size``); windows are
counted by the agent's ``DriftSketch`` and judged with the limits of a
``Calibration`` with its defaults, exactly as in
``tests/server/drift/simulation.py``. For each window size (inferences per
window) it measures

* **false alarms**: ``--null-windows`` windows with no drift, the share flagged;
* **detection**: ``--trials`` trials per drifting channel, each two
  consecutive windows with the channel's mean shifted by 0.5 of its standard
  deviation; the share of trials in which either window is flagged.

The smallest measured size meeting both is reported, with its figures (the
largest size's when none meets both). Results go to ``bench-results/drift.json``
(:mod:`tests.bench.results`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from edgefleet.server.drift.statistics import Calibration, calibrate
from edgefleet.server.training.baseline import MAX_FEATURES
from edgefleet.shared.manifest import Baseline
from tests.bench.machine import machine_info, print_machine
from tests.bench.results import Figure, write_results
from tests.server.drift.simulation import (
    KEY,
    N_TRAIN,
    SHIFT,
    Device,
    fit_baseline,
    fresh_samples,
    seed_for,
)

FALSE_ALARM_LIMIT = 0.01
DETECTION_GOAL = 0.95
WINDOWS_PER_TRIAL = 2
CHANNELS = ("temperature", "vibration_x", "vibration_y")
_NULL, _DRIFT = 1, 2


def flags(device: Device, size: int, windows: int, *, seed: int, **drift: Any) -> list[bool]:
    """Whether each of ``windows`` fresh windows of ``size`` inferences was flagged."""
    flagged: list[bool] = []
    for x, labels in fresh_samples(windows * size, seed=seed, multiple=size, **drift):
        flagged += [w.flagged for w in device.windows(x, labels, size)]
    return flagged


def measure_size(
    calibration: Calibration, device: Device, size: int, null_windows: int, trials: int, seed: int
) -> dict[str, Any]:
    started = time.perf_counter()
    null = flags(device, size, null_windows, seed=seed_for(seed, _NULL, size))
    detection: dict[str, float] = {}
    for index, channel in enumerate(CHANNELS):
        drifting = flags(
            device,
            size,
            trials * WINDOWS_PER_TRIAL,
            seed=seed_for(seed, _DRIFT, size, index),
            drift=SHIFT,
            channels=(channel,),
        )
        detected = np.asarray(drifting).reshape(trials, WINDOWS_PER_TRIAL).any(axis=1)
        detection[channel] = float(detected.mean())
    thresholds = calibration.thresholds(KEY, device.baseline, size, reference_size=N_TRAIN)
    false_alarm_rate = sum(null) / len(null)
    return {
        "size": size,
        "thresholds": None if thresholds is None else asdict(thresholds),
        "null_windows": len(null),
        "false_alarms": sum(null),
        "false_alarm_rate": false_alarm_rate,
        "trials": trials,
        "detection": detection,
        "met": false_alarm_rate <= FALSE_ALARM_LIMIT and min(detection.values()) >= DETECTION_GOAL,
        "seconds": time.perf_counter() - started,
    }


def calibration_seconds(baseline: Baseline, features: int, size: int) -> float:
    """One uncached calibration of a baseline with ``features`` copies of the sensors' bins."""
    copies = tuple(
        dataclasses.replace(baseline.features[i % len(baseline.features)], name=f"f{i}")
        for i in range(features)
    )
    wide = dataclasses.replace(baseline, features=copies)
    started = time.perf_counter()
    calibrate(wide, size, reference_size=N_TRAIN)
    return time.perf_counter() - started


def measure(sizes: list[int], null_windows: int, trials: int, seed: int) -> dict[str, Any]:
    baseline = fit_baseline()
    timing = {
        f"{n}_features_{s}_inferences": calibration_seconds(baseline, n, s)
        for n in (len(baseline.features), MAX_FEATURES)
        for s in (sizes[0], sizes[-1])
    }
    calibration = Calibration()
    device = Device(baseline, calibration, seed=seed_for(seed, 0))
    rows = [measure_size(calibration, device, s, null_windows, trials, seed) for s in sizes]
    smallest = next((r["size"] for r in rows if r["met"]), None)
    return {
        "target": {"false_alarm_rate": FALSE_ALARM_LIMIT, "detection": DETECTION_GOAL},
        "setup": {
            "training_samples": N_TRAIN,
            "shift_sigma": SHIFT,
            "windows_per_trial": WINDOWS_PER_TRIAL,
            "false_alarm_rate_calibrated": calibration.false_alarm_rate,
            "replicates": calibration.replicates,
            "seed": seed,
        },
        "sizes": rows,
        "smallest_size_met": smallest,
        "calibration_seconds": timing,
    }


def figures(results: dict[str, Any]) -> list[Figure]:
    rows = results["sizes"]
    chosen = next((r for r in rows if r["met"]), rows[-1])
    window = f"windows of {chosen['size']} inferences"
    false_alarm_goal = f"<= {FALSE_ALARM_LIMIT * 100:g}"
    return [
        Figure(
            "drift: smallest window meeting both targets"
            + ("" if results["smallest_size_met"] is not None else " (none: largest measured)"),
            chosen["size"],
            "inferences",
        ),
        Figure(
            f"drift: false alarms per 100 windows without drift, {window}",
            chosen["false_alarm_rate"] * 100,
            goal=false_alarm_goal,
        ),
        Figure(
            f"drift: false alarms per 100 windows, worst of {len(rows)} window sizes",
            max(r["false_alarm_rate"] for r in rows) * 100,
            goal=false_alarm_goal,
        ),
        Figure(
            f"drift: 0.5σ mean shift detected within {WINDOWS_PER_TRIAL} windows, "
            f"least detected channel, {window}",
            min(chosen["detection"].values()) * 100,
            "%",
            goal=f">= {DETECTION_GOAL * 100:g}",
        ),
    ]


def table(results: dict[str, Any]) -> str:
    lines = [
        "| window (inferences) | false alarms | rate | "
        + " | ".join(f"detected, {c}" for c in CHANNELS)
        + " | met |",
        "|---:|---:|---:|" + "---:|" * len(CHANNELS) + "---|",
    ]
    for row in results["sizes"]:
        detected = " | ".join(f"{row['detection'][c]:.1%}" for c in CHANNELS)
        lines.append(
            f"| {row['size']} | {row['false_alarms']}/{row['null_windows']} "
            f"| {row['false_alarm_rate']:.2%} | {detected} | {'yes' if row['met'] else 'no'} |"
        )
    lines.append(
        f"\nSmallest window meeting both targets: {results['smallest_size_met']} inferences "
        f"({results['sizes'][0]['trials']} trials of {WINDOWS_PER_TRIAL} windows per channel)."
    )
    lines.append(
        f"One calibration, {results['setup']['replicates']} replicates: "
        + ", ".join(
            f"{name.replace('_', ' ')} {seconds * 1000:.0f} ms"
            for name, seconds in results["calibration_seconds"].items()
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[50, 100, 150, 181, 197, 215, 234, 300, 400]
    )
    parser.add_argument("--null-windows", type=int, default=3000)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    machine = machine_info()
    print_machine(machine)
    results = measure(sorted(args.sizes), args.null_windows, args.trials, args.seed)
    write_results("drift", figures(results), results, machine=machine)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
