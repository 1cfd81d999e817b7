"""Bring your own Keras model: checked without TensorFlow, evaluated and quantized with it.

Also the bad models of the issue: a corrupt or non-Keras file, a model whose
input does not fit the dataset, and one with an op the device runtime
cannot run in int8, which must keep that variant from being published.
"""

from __future__ import annotations

import importlib
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.training.datasets import Samples
from edgefleet.server.training.keras_files import inspect_keras, save_keras
from tests.server.training.conftest import registered, train

MAX = 16 * 1024 * 1024


def _keras_file(samples: Samples | None, *layers: Any, shape: tuple[int, ...] = (8, 8, 1)) -> bytes:
    """A small digits classifier, fitted for two epochs if ``samples`` are given, as .keras."""
    tf = importlib.import_module("tensorflow")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=shape)
    hidden = keras.layers.Flatten()(inputs)
    for layer in layers:
        hidden = layer(hidden)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
    if samples is not None:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(samples.x / 16.0, samples.y, epochs=2, verbose=0)
    return save_keras(model)


@pytest.fixture(scope="module")
def relu_model(digits: Samples) -> bytes:
    keras = importlib.import_module("tensorflow").keras
    return _keras_file(digits, keras.layers.Dense(32, activation="relu"))


@pytest.fixture(scope="module")
def softplus_model(digits: Samples) -> bytes:
    keras = importlib.import_module("tensorflow").keras
    return _keras_file(digits, keras.layers.Dense(32, activation="softplus"))


def test_inspection_reads_the_version_and_input_shape(relu_model: bytes) -> None:
    info = inspect_keras(relu_model, max_bytes=MAX)
    assert info.keras_version.startswith("3.")
    assert info.class_name == "Functional"
    assert info.input_shape == (8, 8, 1)


def _rezip(data: bytes, change: dict[str, bytes | None]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            replaced = change.get(name, source.read(name))
            if replaced is not None:
                target.writestr(name, replaced)
    return out.getvalue()


def test_corrupt_and_foreign_files_are_refused_with_the_reason(relu_model: bytes) -> None:
    keras = importlib.import_module("tensorflow").keras
    with_lambda = _keras_file(None, keras.layers.Lambda(lambda t: t * 2.0))
    flipped = bytearray(relu_model)
    member = relu_model.index(b"model.weights.h5") + 200  # inside the stored weights
    flipped[member] ^= 0xFF
    cases = {
        b"definitely not a model": "not a zip archive",
        relu_model[: len(relu_model) // 2]: "not a zip archive",
        b"\x89HDF\r\n\x1a\n" + b"\0" * 64: "legacy HDF5",
        _rezip(relu_model, {"model.weights.h5": None}): "lacks model.weights.h5",
        _rezip(relu_model, {"config.json": b"{not json"}): "JSON is unreadable",
        _rezip(relu_model, {"metadata.json": b'{"keras_version": "2.15.0"}'}): "Keras 3",
        _rezip(relu_model, {"model.weights.h5": b"not hdf5"}): "not an HDF5 file",
        bytes(flipped): "corrupt",
        with_lambda: "Lambda layer",
    }
    for data, reason in cases.items():
        with pytest.raises(InvalidInputError, match=reason) as caught:
            inspect_keras(data, max_bytes=MAX)
        assert caught.value.reason == "bad_keras_file"
    with pytest.raises(InvalidInputError, match="over the limit"):
        inspect_keras(relu_model, max_bytes=1024)


@pytest.mark.slow
def test_uploaded_model_is_evaluated_and_quantized(
    catalog: ProfileCatalog, digits: Samples, relu_model: bytes
) -> None:
    result, _ = train(catalog, digits, keras_model=relu_model)
    assert result.lineage["source"] == "keras_upload"
    assert set(result.selection) == {"jetson-nano", "rpi4", "sim", "x86-gateway"}
    float32 = result.variants["float32"]
    assert float32.scores is not None
    assert float32.scores.values == pytest.approx(result.float_scores.values)
    assert result.keras_model == relu_model


@pytest.mark.slow
def test_an_op_the_device_cannot_run_in_int8_keeps_int8_from_every_profile(
    catalog: ProfileCatalog, digits: Samples, softplus_model: bytes, tmp_path: Path
) -> None:
    result, _ = train(catalog, digits, keras_model=softplus_model)
    int8 = result.variants["int8"]
    assert not int8.gate.publishable
    assert "LOG" in int8.gate.reason  # softplus = log(1 + exp(x)): LOG has no int8 kernel there
    assert int8.data is None
    assert result.selection["rpi4"] == "dynamic_range"
    assert result.selection["sim"] == "float32"
    with registered(tmp_path, result, catalog, "softplus") as registry:
        assert "int8" not in {a.variant for a in registry.version.artifacts}
        assert registry.version.metrics["variants"]["int8"]["publishable"] is False


def test_a_model_whose_input_does_not_fit_the_dataset_is_refused(
    catalog: ProfileCatalog, digits: Samples
) -> None:
    wrong = _keras_file(None, shape=(30,))
    with pytest.raises(
        InvalidInputError, match=r"input \(30,\) does not take .* shape \(8, 8, 1\)"
    ):
        train(catalog, digits, keras_model=wrong)


@pytest.mark.slow
def test_same_seed_reproduces_the_metrics(catalog: ProfileCatalog) -> None:
    wine = importlib.import_module("edgefleet.server.training.demo_data").load_demo("wine")
    request: dict[str, Any] = {"recipe": "mlp", "params": {"epochs": 8, "hidden": [32]}, "seed": 5}
    first, _ = train(catalog, wine, **request)
    second, _ = train(catalog, wine, **request)
    assert second.float_scores.values == pytest.approx(first.float_scores.values, abs=1e-6)
    for name, variant in first.variants.items():
        again = second.variants[name]
        assert variant.scores is not None
        assert again.scores is not None
        assert again.scores.values == pytest.approx(variant.scores.values, abs=1e-6)
    np.testing.assert_array_equal(first.self_test_inputs, second.self_test_inputs)
