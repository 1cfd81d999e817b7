"""Real data that ships inside scikit-learn, so the demo needs no download.

``digits`` (1,797 handwritten digits, 8x8 grey levels 0..16; UCI) is the demo
dataset: an image set for ``cnn2d`` and, flattened by the recipe, ``mlp``.
``breast-cancer`` (569 samples, 30 measurements) and ``wine`` (178 samples,
13 measurements) are tabular. Features stay in their raw units: the recipes
put normalization inside the model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from edgefleet.server.errors import ConfigError, InvalidInputError
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema, Samples

INSTALL_HINT = "pip install 'scikit-learn>=1.4,<1.6' (part of edgefleet[server])"


def _sklearn_datasets() -> Any:
    try:
        return importlib.import_module("sklearn.datasets")
    except ImportError as err:
        raise ConfigError(
            f"the demo datasets need scikit-learn: {INSTALL_HINT}", reason="missing_dependency"
        ) from err


def _digits() -> Samples:
    bunch = _sklearn_datasets().load_digits()
    x = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 8, 8, 1)
    schema = DatasetSchema(
        kind=DatasetKind.IMAGE,
        shape=(8, 8, 1),
        feature_names=("intensity",),
        labels=tuple(str(int(t)) for t in bunch.target_names),
    )
    return Samples(schema, x, np.asarray(bunch.target, dtype=np.int32))


def _tabular(loader: str) -> Callable[[], Samples]:
    def load() -> Samples:
        bunch = getattr(_sklearn_datasets(), loader)()
        x = np.asarray(bunch.data, dtype=np.float32)
        names = tuple(str(n).replace(" ", "_") for n in bunch.feature_names)
        schema = DatasetSchema(
            kind=DatasetKind.TABULAR,
            shape=(x.shape[1],),
            feature_names=names,
            labels=tuple(str(t) for t in bunch.target_names),
        )
        return Samples(schema, x, np.asarray(bunch.target, dtype=np.int32))

    return load


DEMOS: dict[str, Callable[[], Samples]] = {
    "digits": _digits,
    "breast-cancer": _tabular("load_breast_cancer"),
    "wine": _tabular("load_wine"),
}
DEFAULT_DEMO = "digits"


def load_demo(name: str) -> Samples:
    loader = DEMOS.get(name)
    if loader is None:
        raise InvalidInputError(
            f"no demo dataset {name[:40]!r}; known: {', '.join(sorted(DEMOS))}",
            reason="unknown_demo",
        )
    return loader()
