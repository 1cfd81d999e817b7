"""Every recipe trains on small data and ships four TFLite variants the device runtime runs."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.server.training.quantize import VariantKey
from edgefleet.shared.profiles import Variant
from tests.server.training.conftest import Run

pytestmark = pytest.mark.slow

RECIPES = ["digits_mlp", "digits_cnn2d", "sensor_cnn1d", "sensor_autoencoder"]


@pytest.mark.parametrize("fixture", RECIPES)
def test_recipe_trains_and_converts_all_four_variants(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(fixture)
    result = run.result
    for variant in Variant:
        converted = result.variants[VariantKey(variant).name]
        assert converted.data is not None, converted.gate.reason
        assert converted.data[4:8] == b"TFL3"
        assert converted.scores is not None  # it ran through tflite-runtime on the test split
        assert converted.latency_ms is not None
        assert converted.latency_ms > 0
    assert set(result.selection) == {"jetson-nano", "rpi4", "sim", "x86-gateway"}
    assert result.unserved == {}
    epochs = [f for phase, f in run.progress.updates if phase == "training"]
    assert epochs[0]["epoch"] == 1
    assert epochs[-1]["epoch"] >= 2
    assert "loss" in epochs[-1]
    assert "val_loss" in epochs[-1]


def test_classifiers_learn_their_task(
    digits_mlp: Run, digits_cnn2d: Run, sensor_cnn1d: Run
) -> None:
    assert digits_mlp.result.float_scores.values["accuracy"] > 0.9
    assert digits_cnn2d.result.float_scores.values["accuracy"] > 0.8
    assert sensor_cnn1d.result.float_scores.values["accuracy"] > 0.6  # 4 classes, 6 epochs


def test_a_search_trains_each_candidate_and_keeps_the_best(sensor_cnn1d: Run) -> None:
    search = sensor_cnn1d.result.lineage["search"]
    tried = [t["params"]["kernel_size"] for t in search["trials"]]
    assert tried == [5, 3]  # the defaults first, then the grid
    best = max(search["trials"], key=lambda t: t["validation"]["accuracy"])
    assert sensor_cnn1d.result.lineage["params"] == best["params"]
    trials = {f["trial"] for phase, f in sensor_cnn1d.progress.updates if phase == "training"}
    assert trials == {1, 2}
    assert any(line.startswith("trial 2/2: ") for line in sensor_cnn1d.progress.lines)


def test_autoencoder_scores_anomalies_above_normal_windows(sensor_autoencoder: Run) -> None:
    result = sensor_autoencoder.result
    assert result.metric.value == "auc"
    assert result.float_scores.values["auc"] > 0.9
    assert result.threshold is not None
    assert result.threshold > 0
    int8 = result.variants["int8"]
    assert int8.scores is not None
    assert int8.scores.values["auc"] > 0.9
    assert result.baseline.output is not None
    assert result.baseline.output.name == "anomaly_score"


def test_int8_is_under_three_tenths_of_float32_and_within_budget(digits_mlp: Run) -> None:
    """The performance target on the real demo dataset: size <= 0.30x, loss <= 1 point."""
    result = digits_mlp.result
    float32, int8 = result.variants["float32"], result.variants["int8"]
    assert float32.data is not None
    assert int8.data is not None
    assert len(int8.data) <= 0.30 * len(float32.data)
    assert int8.gate.publishable, int8.gate.reason
    assert int8.gate.loss_points is not None
    assert int8.gate.loss_points <= 1.0
    assert result.selection["rpi4"] == "int8"
    assert result.selection["jetson-nano"] == "float16"
    summary = result.metrics()["variants"]["int8"]
    assert summary["size_ratio"] == len(int8.data) / len(float32.data)


def test_float32_tflite_scores_like_the_keras_model(digits_mlp: Run) -> None:
    float32 = digits_mlp.result.variants["float32"]
    assert float32.scores is not None
    assert float32.scores.values == pytest.approx(digits_mlp.result.float_scores.values)


def test_lineage_records_what_reproduces_the_run(digits_mlp: Run) -> None:
    lineage = digits_mlp.result.lineage
    assert lineage["recipe"] == "mlp"
    assert lineage["params"]["epochs"] == 12
    assert lineage["seeds"] == {"training": 1, "split": 0}
    assert lineage["versions"]["tensorflow-cpu"].startswith("2.")
    assert lineage["versions"]["tflite-runtime"]
    assert lineage["split"]["test"] == 269


def test_baseline_and_self_test_inputs_come_from_the_data(digits_mlp: Run) -> None:
    result = digits_mlp.result
    assert [b.name for b in result.baseline.features] == ["intensity"]
    assert result.baseline.output is not None
    assert result.baseline.output.edges == tuple(float(c) for c in range(1, 10))
    assert result.self_test_inputs.shape == (4, 8, 8, 1)
    assert np.isin(result.self_test_inputs, digits_mlp.samples.x).all()
