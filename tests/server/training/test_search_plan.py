"""The search plan: defaults first, then grid or seeded random points, within the budget."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training.datasets import DatasetKind, DatasetSchema
from edgefleet.server.training.recipe_specs import RECIPES, RecipeName, recipe
from edgefleet.server.training.search import Strategy, candidates

DEFAULTS: dict[str, Any] = {"hidden": [8], "learning_rate": 0.01, "epochs": 3}
SPACE: dict[str, list[Any]] = {"hidden": [[8], [16], [32]], "learning_rate": [0.01, 0.001]}


def test_grid_walks_the_space_in_order_after_the_defaults() -> None:
    plan = candidates(DEFAULTS, SPACE, trials=3, strategy=Strategy.GRID, seed=0)
    assert plan == [
        DEFAULTS,
        {**DEFAULTS, "learning_rate": 0.001},
        {**DEFAULTS, "hidden": [16]},
    ]


def test_random_is_seeded_distinct_and_bounded_by_the_space() -> None:
    plan = candidates(DEFAULTS, SPACE, trials=10, strategy=Strategy.RANDOM, seed=3)
    assert plan[0] == DEFAULTS
    assert len(plan) == 6  # the whole space: 3 x 2 points
    assert all(plan.count(p) == 1 for p in plan)
    again = candidates(DEFAULTS, SPACE, trials=4, strategy=Strategy.RANDOM, seed=3)
    assert again == plan[:4]


def test_recipes_check_parameters_and_datasets() -> None:
    mlp = recipe("mlp")
    assert mlp.check_params({"epochs": 5})["epochs"] == 5
    with pytest.raises(InvalidInputError, match="no hyperparameter"):
        mlp.check_params({"epoch": 5})
    with pytest.raises(InvalidInputError, match="outside"):
        mlp.check_params({"dropout": 1.5})
    with pytest.raises(InvalidInputError, match="list of 1..4 widths"):
        mlp.check_params({"hidden": 64})
    with pytest.raises(InvalidInputError, match="no recipe 'transformer'"):
        recipe("transformer")
    tabular = DatasetSchema(
        kind=DatasetKind.TABULAR, shape=(3,), feature_names=("a", "b", "c"), labels=("x", "y")
    )
    with pytest.raises(InvalidInputError, match=r"takes image samples.*tabular of shape \(3,\)"):
        RECIPES[RecipeName.CNN2D].check_fit(tabular)
    unlabelled = DatasetSchema(
        kind=DatasetKind.TABULAR, shape=(3,), feature_names=("a", "b", "c"), labels=()
    )
    with pytest.raises(InvalidInputError, match="no labels"):
        mlp.check_fit(unlabelled)
    RECIPES[RecipeName.AUTOENCODER].check_fit(unlabelled)
    with pytest.raises(InvalidInputError, match="class named 'normal'"):
        RECIPES[RecipeName.AUTOENCODER].check_fit(tabular)
