"""What each training recipe is, accepts and may be tuned on: pure, no TensorFlow.

The API checks a job against these before queueing it (a recipe that cannot
take the dataset's samples is refused at once, not minutes later in the
worker); :mod:`edgefleet.server.training.recipes` builds the Keras models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema

Params = dict[str, Any]


class RecipeName(StrEnum):
    MLP = "mlp"
    CNN1D = "cnn1d"
    CNN2D = "cnn2d"
    AUTOENCODER = "autoencoder"


class Task(StrEnum):
    CLASSIFIER = "classifier"
    ANOMALY = "anomaly"


@dataclass(frozen=True, slots=True)
class Param:
    """One hyperparameter: an int, a float, or a list of 1..4 ints (layer widths)."""

    kind: type
    low: float
    high: float
    layers: bool = False

    def check(self, name: str, value: Any) -> Any:
        if self.layers:
            if not isinstance(value, list | tuple) or not 1 <= len(value) <= 4:
                raise InvalidInputError(f"hyperparameter {name!r}: want a list of 1..4 widths")
            return [Param(int, self.low, self.high).check(name, v) for v in value]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"hyperparameter {name!r}: want a number, got {value!r}")
        if self.kind is int and value != int(value):
            raise InvalidInputError(f"hyperparameter {name!r}: want an integer, got {value!r}")
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise InvalidInputError(
                f"hyperparameter {name!r}: {value!r} is outside {self.low:g}..{self.high:g}"
            )
        return int(value) if self.kind is int else float(value)


_COMMON: dict[str, Param] = {
    "epochs": Param(int, 1, 500),
    "batch_size": Param(int, 1, 4096),
    "learning_rate": Param(float, 1e-6, 1.0),
    "patience": Param(int, 1, 100),
    "dropout": Param(float, 0.0, 0.9),
}
_WIDTHS = Param(int, 1, 4096, layers=True)
_FIT = {"dropout": 0.1, "epochs": 30, "batch_size": 32, "patience": 4}
"""Fitting defaults the classifiers share."""


@dataclass(frozen=True, slots=True)
class RecipeInfo:
    name: RecipeName
    task: Task
    kinds: frozenset[DatasetKind]
    description: str
    defaults: Mapping[str, Any]
    search_space: Mapping[str, tuple[Any, ...]]
    """What a search varies by default; a job may pass its own."""
    params: Mapping[str, Param] = field(default_factory=dict)

    def check_params(self, given: Mapping[str, Any]) -> Params:
        """``given`` over the defaults, every value validated; unknown names refused."""
        known = {**_COMMON, **self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise InvalidInputError(
                f"recipe {self.name.value} has no hyperparameter(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(known))}"
            )
        merged = {**self.defaults, **given}
        return {name: known[name].check(name, value) for name, value in merged.items()}

    def check_space(self, space: Mapping[str, Any]) -> dict[str, list[Any]]:
        checked: dict[str, list[Any]] = {}
        for name, values in space.items():
            if not isinstance(values, list | tuple) or not 1 <= len(values) <= 16:
                raise InvalidInputError(f"search space {name!r}: want a list of 1..16 values")
            checked[name] = [self.check_params({name: v})[name] for v in values]
        return checked

    def check_fit(self, schema: DatasetSchema) -> None:
        """Refuse a dataset whose samples this recipe cannot take, saying what it needs."""
        if schema.kind not in self.kinds:
            wanted = " or ".join(sorted(k.value for k in self.kinds))
            raise InvalidInputError(
                f"recipe {self.name.value} takes {wanted} samples; the dataset's are "
                f"{schema.kind.value} of shape {schema.shape}",
                reason="shape_mismatch",
            )
        if self.task is Task.CLASSIFIER and not schema.labelled:
            raise InvalidInputError(
                f"recipe {self.name.value} is a classifier and the dataset has no labels "
                "(use the autoencoder recipe for unlabelled data)",
                reason="needs_labels",
            )
        if self.task is Task.ANOMALY and schema.labelled and "normal" not in schema.labels:
            raise InvalidInputError(
                f"recipe {self.name.value} learns the class named 'normal' (the others count "
                f"as anomalies); the dataset's classes are {', '.join(schema.labels[:10])}",
                reason="needs_normal_class",
            )


RECIPES: dict[RecipeName, RecipeInfo] = {
    RecipeName.MLP: RecipeInfo(
        name=RecipeName.MLP,
        task=Task.CLASSIFIER,
        kinds=frozenset(DatasetKind),
        description="dense layers for tabular features (other samples are flattened)",
        defaults={**_FIT, "hidden": [256, 128], "learning_rate": 1e-3},
        search_space={"hidden": ([256, 128], [128, 64]), "learning_rate": (1e-3, 3e-3)},
        params={"hidden": _WIDTHS},
    ),
    RecipeName.CNN1D: RecipeInfo(
        name=RecipeName.CNN1D,
        task=Task.CLASSIFIER,
        kinds=frozenset({DatasetKind.TIMESERIES}),
        description="1-D convolutions over multichannel time windows",
        defaults={**_FIT, "filters": [16, 32], "kernel_size": 5, "learning_rate": 2e-3},
        search_space={"filters": ([16, 32], [8, 16]), "kernel_size": (5, 9)},
        params={"filters": _WIDTHS, "kernel_size": Param(int, 2, 64)},
    ),
    RecipeName.CNN2D: RecipeInfo(
        name=RecipeName.CNN2D,
        task=Task.CLASSIFIER,
        kinds=frozenset({DatasetKind.IMAGE}),
        description="2-D convolutions for small images",
        defaults={**_FIT, "filters": [16, 32], "kernel_size": 3, "learning_rate": 2e-3},
        search_space={"filters": ([16, 32], [8, 16]), "learning_rate": (2e-3, 5e-3)},
        params={"filters": _WIDTHS, "kernel_size": Param(int, 2, 7)},
    ),
    RecipeName.AUTOENCODER: RecipeInfo(
        name=RecipeName.AUTOENCODER,
        task=Task.ANOMALY,
        kinds=frozenset(DatasetKind),
        description="dense autoencoder trained on normal samples; outputs an anomaly score",
        defaults={
            **_FIT,
            "dropout": 0.0,
            "epochs": 40,
            "patience": 5,
            "hidden": [64],
            "code": 8,
            "learning_rate": 2e-3,
            "threshold_quantile": 0.99,
        },
        search_space={"code": (8, 4), "hidden": ([64], [32])},
        params={
            "hidden": _WIDTHS,
            "code": Param(int, 1, 1024),
            "threshold_quantile": Param(float, 0.5, 0.9999),
        },
    ),
}


def recipe(name: str) -> RecipeInfo:
    try:
        return RECIPES[RecipeName(name)]
    except ValueError as err:
        raise InvalidInputError(
            f"no recipe {name[:40]!r}; known: {', '.join(r.value for r in RecipeName)}",
            reason="unknown_recipe",
        ) from err


def normal_label(schema: DatasetSchema) -> int | None:
    """The class an autoencoder learns: ``normal``; None for unlabelled data (all is normal)."""
    return schema.labels.index("normal") if "normal" in schema.labels else None
