"""A model with an uploaded version and a trained one, made through the real API.

v1 is the harness's real TFLite file uploaded with the flat metrics an uploader
gives; v2 comes from a real training job (the live server's runner, a worker
process with TensorFlow) on a small synthetic dataset, so its per-variant
numbers and lineage are the pipeline's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.browser.conftest import LiveServer
from tests.harness.models import TfliteModels
from tests.server.api.conftest import unique_id

SYNTHETIC = '{"count": 120, "window": 16, "seed": 3}'
JOB_SECONDS = 180.0
UPLOADED_METRICS = '{"accuracy": 0.91}'


@dataclass(frozen=True)
class SeededModel:
    name: str
    dataset: str
    job_id: int


def add_dataset(live: LiveServer) -> str:
    name = unique_id("ui-vib")
    response = live.http.post(
        f"/api/v1/datasets/{name}/versions",
        headers=live.headers(),
        data={"format": "synthetic", "synthetic": SYNTHETIC},
    )
    assert response.status_code == 201, response.text
    return name


def wait_finished(live: LiveServer, job_id: int) -> dict[str, Any]:
    """The job once it has left the queue and the runner; fails with its log if it failed."""
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        job: dict[str, Any] = live.api(f"/training/jobs/{job_id}")
        if job["state"] not in ("queued", "running"):
            if job["state"] != "succeeded":
                pytest.fail(
                    f"job {job_id} {job['state']}: {live.api(f'/training/jobs/{job_id}/logs')}"
                )
            return job
        time.sleep(0.25)
    pytest.fail(f"job {job_id} did not finish in {JOB_SECONDS} s")


def start_job(live: LiveServer, model: str, dataset: str) -> int:
    response = live.http.post(
        "/api/v1/training/jobs",
        headers=live.headers(),
        json={"model": model, "dataset": dataset, "recipe": "cnn1d", "params": {"epochs": 1}},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def seed_model(live: LiveServer, tflite: TfliteModels, dataset: str) -> SeededModel:
    name = unique_id("ui-models")
    uploaded = live.http.post(
        f"/api/v1/models/{name}/versions",
        headers=live.headers(),
        files={"file": ("model.tflite", tflite.float32, "application/octet-stream")},
        data={"profiles": "rpi4,sim", "variant": "float32", "metrics": UPLOADED_METRICS},
    )
    assert uploaded.status_code == 201, uploaded.text
    job_id = start_job(live, name, dataset)
    assert wait_finished(live, job_id)["model_version"] == 2
    return SeededModel(name=name, dataset=dataset, job_id=job_id)
