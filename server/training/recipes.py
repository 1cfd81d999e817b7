"""The Keras models behind each recipe (TensorFlow is imported here, lazily, and in quantize).

Every model starts with a ``Normalization`` layer adapted to the training
split, so devices feed raw sensor values and the scaling ships inside the
``.tflite``. Only built-in layers are used: a ``.keras`` file of them loads
with ``safe_mode`` on, which refuses arbitrary Python (``Lambda``).

The autoencoder trains to reconstruct the *normalized* input; what it
exports is the anomaly score, ``mean((normalized - reconstruction)**2)``,
one value per sample, so a device compares one number with the threshold.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import ConfigError
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema
from edgefleet.server.training.recipe_specs import Params, RecipeInfo, RecipeName, Task

INSTALL_HINT = "pip install 'tensorflow-cpu>=2.18' (part of edgefleet[server])"


def tensorflow() -> Any:
    """The ``tensorflow`` module, quiet; a missing install names the package to get."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as err:
        raise ConfigError(
            f"training needs TensorFlow: {INSTALL_HINT}", reason="missing_dependency"
        ) from err
    tf.get_logger().setLevel("ERROR")
    return tf


@dataclass(slots=True)
class Built:
    """A compiled model to fit, the model to deploy, and what the fit's targets are."""

    train: Any
    export: Any
    task: Task
    normalized: Any | None = None
    """Autoencoder only: raw input to flattened normalized input (the reconstruction target)."""

    def targets(self, x: npt.NDArray[np.float32], y: npt.NDArray[np.int32] | None) -> Any:
        if self.normalized is not None:
            return self.normalized.predict(x, batch_size=512, verbose=0)
        return y


def _classifier_head(keras: Any, hidden: Any, params: Params, classes: int) -> Any:
    if params["dropout"] > 0:
        hidden = keras.layers.Dropout(params["dropout"])(hidden)
    return keras.layers.Dense(classes, activation="softmax", name="probabilities")(hidden)


def _features(keras: Any, info: RecipeInfo, params: Params, normalized: Any, rank: int) -> Any:
    """The body of a classifier, from normalized input to its last hidden layer."""
    if info.name is RecipeName.MLP:
        hidden = keras.layers.Flatten()(normalized)
        for width in params["hidden"]:
            hidden = keras.layers.Dense(width, activation="relu")(hidden)
        return hidden
    conv, pool, size = (
        (keras.layers.Conv1D, keras.layers.MaxPooling1D, params["kernel_size"])
        if info.name is RecipeName.CNN1D
        else (keras.layers.Conv2D, keras.layers.MaxPooling2D, params["kernel_size"])
    )
    hidden = normalized
    for filters in params["filters"]:
        hidden = conv(filters, size, padding="same", activation="relu")(hidden)
        if min(hidden.shape[1:rank]) >= 2:
            hidden = pool(2)(hidden)
    if info.name is RecipeName.CNN1D:
        return keras.layers.GlobalAveragePooling1D()(hidden)
    return keras.layers.Flatten()(hidden)


def _compile(keras: Any, model: Any, params: Params, loss: str) -> Any:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params["learning_rate"]),
        loss=loss,
    )
    return model


def build(
    info: RecipeInfo, params: Params, schema: DatasetSchema, x_train: npt.NDArray[np.float32]
) -> Built:
    """A fresh model for ``info`` with ``params``; seed the RNGs before calling."""
    keras = tensorflow().keras
    normalization = keras.layers.Normalization(axis=-1, name="normalize")
    normalization.adapt(x_train)
    inputs = keras.Input(shape=schema.shape, name="input")
    normalized = normalization(inputs)
    if info.task is Task.CLASSIFIER:
        rank = {DatasetKind.TABULAR: 1, DatasetKind.TIMESERIES: 2, DatasetKind.IMAGE: 3}
        body = _features(keras, info, params, normalized, rank[schema.kind])
        model = keras.Model(inputs, _classifier_head(keras, body, params, len(schema.labels)))
        _compile(keras, model, params, "sparse_categorical_crossentropy")
        return Built(train=model, export=model, task=info.task)
    flat = keras.layers.Flatten(name="flat")(normalized)
    size = int(np.prod(schema.shape))
    code = flat
    for width in params["hidden"]:
        code = keras.layers.Dense(width, activation="relu")(code)
    code = keras.layers.Dense(params["code"], activation="relu", name="code")(code)
    for width in reversed(params["hidden"]):
        code = keras.layers.Dense(width, activation="relu")(code)
    reconstruction = keras.layers.Dense(size, name="reconstruction")(code)
    train = _compile(keras, keras.Model(inputs, reconstruction), params, "mse")
    error = keras.layers.Subtract()([flat, reconstruction])
    squared = keras.layers.Multiply()([error, error])
    score = keras.layers.GlobalAveragePooling1D(name="anomaly_score")(
        keras.layers.Reshape((size, 1))(squared)
    )
    return Built(
        train=train,
        export=keras.Model(inputs, score),
        task=info.task,
        normalized=keras.Model(inputs, flat),
    )


def predict(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(model.predict(x, batch_size=512, verbose=0), dtype=np.float32)
