"""Each recipe trained once per session on small real or generated data (TensorFlow, seconds).

The runs go through :func:`edgefleet.server.training.pipeline.run`, the job's
own entry point: the real converter makes every variant and the device
runtime (tflite-runtime, in a child process) scores each one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgefleet.server import keys
from edgefleet.server.artifacts import ArtifactStore
from edgefleet.server.db import migrate
from edgefleet.server.db.engine import make_engine, make_sessionmaker
from edgefleet.server.db.models import ModelVersion, TrainingJob
from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.signing import SigningService
from edgefleet.server.training import demo_data, pipeline, synthetic
from edgefleet.server.training.datasets import Samples
from edgefleet.server.training.pipeline import PipelineResult, TrainingRequest
from edgefleet.server.training.search import Strategy
from edgefleet.server.training.worker import register

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Recorder:
    """A :class:`~edgefleet.server.training.progress.Progress` that keeps what it was told."""

    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def update(self, phase: str, **fields: Any) -> None:
        self.updates.append((phase, fields))

    def log(self, message: str) -> None:
        self.lines.append(message)


@dataclass
class Run:
    samples: Samples
    result: PipelineResult
    progress: Recorder


@pytest.fixture(scope="session")
def catalog() -> ProfileCatalog:
    return ProfileCatalog.load(REPO / "firmware_configs")


def train(
    catalog: ProfileCatalog, samples: Samples, **request: Any
) -> tuple[PipelineResult, Recorder]:
    profiles = tuple(catalog.get(name) for name in catalog.names())
    progress = Recorder()
    result = pipeline.run(TrainingRequest(profiles=profiles, **request), samples, progress)
    return result, progress


@dataclass
class Registry:
    version: ModelVersion
    signing: SigningService
    store: ArtifactStore


@contextmanager
def registered(
    folder: Path, result: PipelineResult, catalog: ProfileCatalog, model: str
) -> Iterator[Registry]:
    """``result`` registered as the job's worker does, in a fresh SQLite database and key set."""
    now = time.time()
    keys.init_keys(root_dir=folder / "root", signing_dir=folder / "signing", now=int(now))
    signing = SigningService.load(folder / "signing")
    store = ArtifactStore(folder / "artifacts")
    engine = make_engine(f"sqlite:///{folder / 'edgefleet.db'}")
    migrate.upgrade(engine)
    job = TrainingJob(
        id=7, model_name=model, request={"dataset": {"sha256": "ab" * 32}}, created_by="alice"
    )
    try:
        with make_sessionmaker(engine)() as session:
            version = register(
                session=session,
                job=job,
                result=result,
                store=store,
                signing=signing,
                catalog=catalog,
                now=now,
            )
            yield Registry(version, signing, store)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def digits() -> Samples:
    return demo_data.load_demo("digits")


@pytest.fixture(scope="session")
def digits_mlp(catalog: ProfileCatalog, digits: Samples) -> Run:
    """The demo: scikit-learn's handwritten digits through the mlp recipe."""
    result, progress = train(
        catalog, digits, recipe="mlp", params={"epochs": 12, "patience": 3}, seed=1
    )
    return Run(digits, result, progress)


@pytest.fixture(scope="session")
def digits_cnn2d(catalog: ProfileCatalog, digits: Samples) -> Run:
    result, progress = train(
        catalog, digits, recipe="cnn2d", params={"epochs": 3, "filters": [8, 16]}
    )
    return Run(digits, result, progress)


@pytest.fixture(scope="session")
def sensor_cnn1d(catalog: ProfileCatalog) -> Run:
    samples = synthetic.generate(400, seed=11, spec=synthetic.SensorSpec(window=32))
    result, progress = train(
        catalog,
        samples,
        recipe="cnn1d",
        params={"epochs": 6, "filters": [8, 16]},
        search_space={"kernel_size": [3]},
        trials=2,
        strategy=Strategy.GRID,
    )
    return Run(samples, result, progress)


@pytest.fixture(scope="session")
def sensor_autoencoder(catalog: ProfileCatalog) -> Run:
    samples = synthetic.generate(
        500, seed=12, spec=synthetic.SensorSpec(window=16), weights=[0.85, 0.05, 0.05, 0.05]
    )
    result, progress = train(
        catalog, samples, recipe="autoencoder", params={"epochs": 15, "hidden": [32]}
    )
    return Run(samples, result, progress)
