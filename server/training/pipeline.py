"""One training run, start to finish: the single entry point a job executes.

dataset -> split -> search/train (or an uploaded Keras model) -> float
score on the test split -> every TFLite variant, each scored by the device
runtime on the same split -> gate -> a variant per hardware profile ->
baseline bins and self-test inputs -> :class:`PipelineResult`.

No database, no registry: the worker registers the result, tests and the
benchmark call :func:`run` directly. A variant that fails to convert or
load is recorded with its reason and kept from every profile; only when no
profile is left with a variant does the run fail.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import baseline, datasets, keras_files, quantize, recipes, search
from edgefleet.server.training.datasets import Samples, SplitSpec
from edgefleet.server.training.evaluate import Judge, VariantError, run_tflite
from edgefleet.server.training.gate import GateDecision, decide
from edgefleet.server.training.progress import Progress
from edgefleet.server.training.quantize import ConversionError, VariantKey
from edgefleet.server.training.recipe_specs import Params, Task, recipe
from edgefleet.server.training.scoring import Metric, Scores
from edgefleet.shared import __version__
from edgefleet.shared.manifest import Baseline
from edgefleet.shared.profiles import HardwareProfile, Variant

SELF_TEST_VECTORS = 4
DEFAULT_BUDGET_POINTS = 1.0
MAX_EDGE_WEIGHT = 10


@dataclass(frozen=True, slots=True)
class TrainingRequest:
    """What to train (a recipe, or an uploaded ``.keras`` to evaluate and quantize) and for whom."""

    profiles: tuple[HardwareProfile, ...]
    recipe: str | None = None
    keras_model: bytes | None = None
    params: Params = field(default_factory=dict)
    search_space: dict[str, list[Any]] | None = None
    trials: int = 1
    strategy: search.Strategy = search.Strategy.RANDOM
    seed: int = 0
    split: SplitSpec = SplitSpec()
    budget_points: float = DEFAULT_BUDGET_POINTS
    metric: Metric = Metric.ACCURACY
    edge_weight: int = 1
    """How many times each training row of the newest split segment (edge samples folded
    into the dataset) counts in the fit."""
    baseline_x: npt.NDArray[np.float32] | None = None
    """Inputs the drift baseline is counted over instead of the training rows: a
    retrained model's devices should be compared with what they see now."""

    def __post_init__(self) -> None:
        if (self.recipe is None) == (self.keras_model is None):
            raise InvalidInputError("a training request names a recipe or carries a Keras model")
        if not self.profiles:
            raise InvalidInputError("a training request needs at least one hardware profile")
        if not 1 <= self.edge_weight <= MAX_EDGE_WEIGHT:
            raise InvalidInputError(f"edge_weight must be 1..{MAX_EDGE_WEIGHT}")
        if not 1 <= self.trials <= search.MAX_TRIALS:
            raise InvalidInputError(f"trials must be 1..{search.MAX_TRIALS}")
        if self.metric not in (Metric.ACCURACY, Metric.F1):
            raise InvalidInputError(
                f"a classifier is judged by accuracy or f1, not {self.metric.value} "
                "(anomaly models are judged by AUC on their own)"
            )


@dataclass(slots=True, eq=False)
class VariantResult:
    key: VariantKey
    gate: GateDecision
    data: bytes | None = None
    scores: Scores | None = None
    latency_ms: float | None = None
    latency_p50_ms: float | None = None

    def summary(self, float32_size: int | None) -> dict[str, Any]:
        size = None if self.data is None else len(self.data)
        return {
            "variant": self.key.variant.value,
            "int8_io": self.key.int8_io,
            "sha256": None if self.data is None else hashlib.sha256(self.data).hexdigest(),
            "size": size,
            "size_ratio": None if size is None or not float32_size else size / float32_size,
            "metrics": None if self.scores is None else self.scores.values,
            "latency_ms": self.latency_ms,
            "latency_p50_ms": self.latency_p50_ms,
            "publishable": self.gate.publishable,
            "loss_points": self.gate.loss_points,
            "gate": self.gate.reason,
        }


@dataclass(slots=True, eq=False)
class PipelineResult:
    task: Task
    metric: Metric
    float_scores: Scores
    variants: dict[str, VariantResult]
    selection: dict[str, str]
    """Hardware profile -> the variant name it gets."""
    unserved: dict[str, str]
    """Hardware profile -> why no variant fits it."""
    baseline: Baseline
    self_test_inputs: npt.NDArray[np.float32]
    keras_model: bytes
    lineage: dict[str, Any]
    threshold: float | None = None
    """Anomaly models: flag a sample whose score is above this."""
    train_mean_confidence: float | None = None
    """A classifier's mean top-class probability on its training rows: what a device's
    window mean confidence is compared with (a drop is a drift symptom)."""

    def metrics(self) -> dict[str, Any]:
        """What a registered version carries as its metrics: float and every variant."""
        float32 = self.variants.get(VariantKey(Variant.FLOAT32).name)
        reference = None if float32 is None or float32.data is None else len(float32.data)
        found: dict[str, Any] = {
            "metric": self.metric.value,
            "task": self.task.value,
            "float": self.float_scores.values,
            "variants": {n: v.summary(reference) for n, v in sorted(self.variants.items())},
        }
        if self.threshold is not None:
            found["threshold"] = self.threshold
        if self.train_mean_confidence is not None:
            found["train_mean_confidence"] = self.train_mean_confidence
        return found


def _keys(profiles: tuple[HardwareProfile, ...]) -> list[VariantKey]:
    """All four variants with float I/O, plus int8 with int8 I/O if a profile wants it."""
    keys = [VariantKey(v) for v in Variant]
    if any(p.int8_io and Variant.INT8 in p.variants for p in profiles):
        keys.append(VariantKey(Variant.INT8, int8_io=True))
    return keys


def select_variants(
    profiles: tuple[HardwareProfile, ...], variants: dict[str, VariantResult]
) -> tuple[dict[str, str], dict[str, str]]:
    """Each profile's first preferred variant that passed the gate, and why the rest got none."""
    selection: dict[str, str] = {}
    unserved: dict[str, str] = {}
    for profile in profiles:
        reasons = []
        for variant in profile.variants:
            key = VariantKey(variant, int8_io=profile.int8_io and variant is Variant.INT8)
            result = variants[key.name]
            if result.gate.publishable:
                selection[profile.name] = key.name
                break
            reasons.append(f"{key.name}: {result.gate.reason}")
        else:
            unserved[profile.name] = "; ".join(reasons)
    return selection, unserved


def _variant(
    model: Any,
    key: VariantKey,
    representative: npt.NDArray[np.float32],
    test: Samples,
    judge: Judge,
    reference: float,
    budget: float,
) -> VariantResult:
    try:
        data = quantize.convert(model, key, representative=representative)
        run = run_tflite(data, test.x)
    except (ConversionError, VariantError) as err:
        return VariantResult(
            key, decide(reference=reference, candidate=None, budget_points=budget, error=str(err))
        )
    scores = judge.score(run.outputs, test.y)
    gate = decide(reference=reference, candidate=scores.value, budget_points=budget)
    return VariantResult(key, gate, data, scores, run.latency_ms, run.latency_p50_ms)


def _weighted(parts: datasets.Split, request: TrainingRequest) -> datasets.Split:
    """``parts`` with the newest segment's training rows repeated ``edge_weight`` times."""
    if request.edge_weight <= 1 or not request.split.segments:
        return parts
    newest = parts.train[parts.train >= request.split.segments[-1]]
    train = np.sort(np.concatenate([parts.train, *([newest] * (request.edge_weight - 1))]))
    return datasets.Split(train=train, validation=parts.validation, test=parts.test)


def _trained(
    request: TrainingRequest, samples: Samples, split: datasets.Split, progress: Progress
) -> tuple[Any, Judge, dict[str, Any]]:
    """The float model, how to judge it, and what lineage says about how it came to be."""
    if request.keras_model is not None:
        progress.update("loading")
        model = keras_files.load_keras(request.keras_model)
        check_uploaded(model, samples.schema)
        judge = Judge(Task.CLASSIFIER, len(samples.schema.labels), primary=request.metric)
        return model, judge, {"source": "keras_upload"}
    info = recipe(request.recipe or "")
    info.check_fit(samples.schema)
    params = info.check_params(request.params)
    space = info.check_space(
        request.search_space if request.search_space is not None else dict(info.search_space)
    )
    plan = search.candidates(
        params, space, trials=request.trials, strategy=request.strategy, seed=request.seed
    )
    best, trials = search.run_search(
        info, plan, samples, split, seed=request.seed, progress=progress
    )
    judge = (
        best.judge
        if info.task is Task.ANOMALY
        else Judge(Task.CLASSIFIER, best.judge.classes, primary=request.metric)
    )
    lineage = {
        "source": "recipe",
        "recipe": info.name.value,
        "params": best.params,
        "search": {"strategy": request.strategy.value, "trials": trials, "space": space},
        "epochs": best.epochs,
    }
    return best.built.export, judge, lineage


def check_uploaded(model: Any, schema: datasets.DatasetSchema) -> None:
    """An uploaded model must take the dataset's samples and give one score per class."""
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if shape != schema.shape:
        raise InvalidInputError(
            f"the model's input {shape} does not take the dataset's samples of shape "
            f"{schema.shape}",
            reason="shape_mismatch",
        )
    outputs = tuple(model.outputs[0].shape[1:]) if len(model.outputs) == 1 else None
    if outputs is None or int(np.prod(outputs)) != len(schema.labels):
        raise InvalidInputError(
            f"the model's output {outputs} is not one score per class of the dataset's "
            f"{len(schema.labels)} ({', '.join(schema.labels[:10])})",
            reason="shape_mismatch",
        )


def _versions() -> dict[str, str]:
    found = {"edgefleet": __version__, "python": platform.python_version()}
    for package in (
        "tensorflow-cpu",
        "tensorflow",
        "keras",
        "numpy",
        "tflite-runtime",
        "ai-edge-litert",
    ):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def run(request: TrainingRequest, samples: Samples, progress: Progress) -> PipelineResult:
    """Train (or load), convert, score, gate and select; raise if no profile gets a variant."""
    # Same seed, same data, same code: same weights (kernels that cannot promise it raise).
    recipes.tensorflow().config.experimental.enable_op_determinism()
    parts = datasets.split(samples, request.split)
    model, judge, lineage = _trained(request, samples, _weighted(parts, request), progress)
    test, train = samples.take(parts.test), samples.take(parts.train)
    progress.update("evaluating", variant="float")
    float_scores = judge.score(recipes.predict(model, test.x), test.y)
    progress.log(f"float model on the test split: {float_scores.values}")
    representative = quantize.representative_rows(train.x, seed=request.seed)
    variants: dict[str, VariantResult] = {}
    for key in _keys(request.profiles):
        progress.update("quantizing", variant=key.name)
        result = _variant(
            model, key, representative, test, judge, float_scores.value, request.budget_points
        )
        variants[key.name] = result
        progress.log(f"{key.name}: {result.gate.reason}")
    selection, unserved = select_variants(request.profiles, variants)
    if not selection:
        raise InvalidInputError(
            "no variant passed the gate for any profile: "
            + " | ".join(f"{p}: {why}" for p, why in unserved.items()),
            reason="gate_failed",
        )
    reference_x = train.x if request.baseline_x is None else request.baseline_x
    train_outputs = recipes.predict(model, reference_x)
    reference = baseline.compute(
        x=reference_x,
        feature_names=samples.schema.feature_names,
        outputs=train_outputs,
        classes=judge.classes if judge.task is Task.CLASSIFIER else 0,
    )
    picks = np.random.default_rng(request.seed).permutation(len(test))[:SELF_TEST_VECTORS]
    lineage.update(
        seeds={"training": request.seed, "split": request.split.seed},
        split={
            **parts.counts(),
            "validation_fraction": request.split.validation,
            "test_fraction": request.split.test,
        },
        budget_points=request.budget_points,
        versions=_versions(),
        edge_weight=request.edge_weight,
        baseline_rows=len(reference_x),
    )
    return PipelineResult(
        task=judge.task,
        metric=float_scores.primary,
        float_scores=float_scores,
        variants=variants,
        selection=selection,
        unserved=unserved,
        baseline=reference,
        self_test_inputs=test.x[np.sort(picks)],
        keras_model=request.keras_model or keras_files.save_keras(model),
        lineage=lineage,
        threshold=judge.threshold if judge.task is Task.ANOMALY else None,
        train_mean_confidence=float(
            train_outputs.reshape(len(train_outputs), -1).max(axis=1).mean()
        )
        if judge.task is Task.CLASSIFIER
        else None,
    )
