"""A small, budgeted hyperparameter search with early stopping.

:func:`candidates` is pure: the recipe's defaults first, then other points
of the search space, in grid order (``grid``) or in a seeded random order
(``random``), until the trial budget is spent. :func:`run_search` trains
each candidate from the same seed, stops it when the validation loss stops
improving (restoring its best weights), and keeps the one with the best
validation score.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import recipes
from edgefleet.server.training.datasets import Samples, Split
from edgefleet.server.training.evaluate import Judge
from edgefleet.server.training.progress import Progress
from edgefleet.server.training.recipe_specs import Params, RecipeInfo, Task, normal_label
from edgefleet.server.training.scoring import Metric, Scores, best_f1_threshold, quantile_threshold

MAX_TRIALS = 32


class Strategy(StrEnum):
    GRID = "grid"
    RANDOM = "random"


def candidates(
    defaults: Params,
    space: Mapping[str, list[Any]],
    *,
    trials: int,
    strategy: Strategy,
    seed: int,
) -> list[Params]:
    """Up to ``trials`` distinct parameter sets, ``defaults`` first."""
    names = sorted(space)
    points = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(space[n] for n in names))
    ]
    if strategy is Strategy.RANDOM:
        order = np.random.default_rng(seed).permutation(len(points))
        points = [points[i] for i in order]
    chosen = [dict(defaults)]
    for point in points:
        if len(chosen) >= trials:
            break
        candidate = {**defaults, **point}
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


@dataclass(slots=True)
class Trial:
    params: Params
    built: recipes.Built
    judge: Judge
    validation: Scores
    epochs: int
    selection: float
    """Higher is better; unlabelled anomaly data has no score but its validation error."""

    def summary(self) -> dict[str, Any]:
        return {"params": self.params, "validation": self.validation.values, "epochs": self.epochs}


def _epoch_reporter(progress: Progress, trial: int, trials: int, epochs: int) -> Any:
    keras = recipes.tensorflow().keras

    class Report(keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            metrics = {k: round(float(v), 6) for k, v in (logs or {}).items()}
            progress.update(
                "training", trial=trial, trials=trials, epoch=epoch + 1, epochs=epochs, **metrics
            )

    return Report()


def _fit_rows(samples: Samples, indices: np.ndarray[Any, Any], task: Task) -> Samples:
    """What a model learns from: an autoencoder sees only normal samples."""
    normal = normal_label(samples.schema)
    part = samples.take(indices)
    if task is Task.ANOMALY and normal is not None and part.y is not None:
        return part.take(np.flatnonzero(part.y == normal))
    return part


def _judge(info: RecipeInfo, built: recipes.Built, params: Params, validation: Samples) -> Judge:
    """For an autoencoder, choose the threshold on the validation split here."""
    classes = len(validation.schema.labels)
    if info.task is Task.CLASSIFIER:
        return Judge(Task.CLASSIFIER, classes)
    scores = recipes.predict(built.export, validation.x).reshape(-1)
    normal = normal_label(validation.schema)
    anomalous = None if validation.y is None or normal is None else validation.y != normal
    if anomalous is not None and anomalous.any() and not anomalous.all():
        threshold = best_f1_threshold(anomalous, scores)
    else:
        threshold = quantile_threshold(scores, params["threshold_quantile"])
    return Judge(Task.ANOMALY, classes, normal=normal, threshold=threshold)


def train_one(
    info: RecipeInfo,
    params: Params,
    samples: Samples,
    split: Split,
    *,
    seed: int,
    progress: Progress,
    trial: int = 1,
    trials: int = 1,
) -> Trial:
    tf = recipes.tensorflow()
    tf.keras.utils.set_random_seed(seed)
    train = _fit_rows(samples, split.train, info.task)
    stop_on = _fit_rows(samples, split.validation, info.task)
    built = recipes.build(info, params, samples.schema, train.x)
    history = built.train.fit(
        train.x,
        built.targets(train.x, train.y),
        validation_data=(stop_on.x, built.targets(stop_on.x, stop_on.y)),
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        shuffle=True,
        verbose=0,
        callbacks=[
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=params["patience"], restore_best_weights=True
            ),
            _epoch_reporter(progress, trial, trials, params["epochs"]),
        ],
    )
    validation = samples.take(split.validation)
    judge = _judge(info, built, params, validation)
    outputs = recipes.predict(built.export, validation.x)
    scores = judge.score(outputs, validation.y)
    selection = -float(np.mean(outputs)) if scores.primary is Metric.INLIER_RATE else scores.value
    return Trial(params, built, judge, scores, len(history.history["loss"]), selection)


def run_search(
    info: RecipeInfo,
    plan: list[Params],
    samples: Samples,
    split: Split,
    *,
    seed: int,
    progress: Progress,
) -> tuple[Trial, list[dict[str, Any]]]:
    """The best of ``plan``'s trials and a summary of every one."""
    if not plan:
        raise InvalidInputError("a search needs at least one candidate")
    trials = []
    for number, params in enumerate(plan, 1):
        trial = train_one(
            info,
            params,
            samples,
            split,
            seed=seed,
            progress=progress,
            trial=number,
            trials=len(plan),
        )
        trials.append(trial)
        progress.log(
            f"trial {number}/{len(plan)}: {params} -> validation "
            f"{', '.join(f'{k}={v:.4f}' for k, v in trial.validation.values.items())}"
        )
    best = max(trials, key=lambda t: t.selection)  # the first of equals: the defaults win ties
    return best, [t.summary() for t in trials]
