"""Training jobs that really run: a worker process per job, TensorFlow in it, the real broker.

SQLite only (the queue itself is tested on both databases in
``tests/server/training/test_jobs.py``); each test starts one worker.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edgefleet.server.db.models import Role
from edgefleet.server.training import jobs
from edgefleet.server.training.keras_files import save_keras
from edgefleet.shared import schema
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore
from tests.server.api.conftest import Server

pytestmark = pytest.mark.slow

SYNTHETIC = '{"count": 120, "window": 16, "seed": 3}'


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'edgefleet.db'}"


def wait_for(server: Server, job_id: int, done: Any, timeout: float = 180.0) -> dict[str, Any]:
    """Poll the job until ``done(job)`` holds; fail with the job's logs if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = server.client.get(
            f"/api/v1/training/jobs/{job_id}", headers=server.headers(Role.VIEWER)
        ).json()
        if done(job):
            return job
        time.sleep(0.2)
    logs = server.client.get(f"/api/v1/training/jobs/{job_id}/logs", headers=server.headers())
    pytest.fail(f"job {job_id} never got there: {job}\n{logs.json()}")


def post_dataset(server: Server, name: str, form: dict[str, str]) -> dict[str, Any]:
    response = server.client.post(
        f"/api/v1/datasets/{name}/versions", headers=server.headers(Role.OPERATOR), data=form
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def start_job(server: Server, **body: Any) -> int:
    response = server.client.post(
        "/api/v1/training/jobs", headers=server.headers(Role.OPERATOR), json=body
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def worker_pid(server: Server, job_id: int) -> int | None:
    with server.services.sessions() as session:
        return jobs.get_job(session=session, job_id=job_id).worker_pid


def test_an_uploaded_keras_model_is_evaluated_quantized_and_registered(server: Server) -> None:
    digits = post_dataset(server, "digits", {"format": "demo", "demo": "digits"})
    keras = importlib.import_module("tensorflow").keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 16),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    upload = server.client.post(
        "/api/v1/training/keras",
        headers=server.headers(Role.OPERATOR),
        files={"file": ("digits.keras", save_keras(model))},
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["input_shape"] == [8, 8, 1]
    job_id = start_job(
        server, model="digits-byo", dataset="digits", keras_sha256=upload.json()["sha256"]
    )
    job = wait_for(server, job_id, lambda j: j["state"] not in ("queued", "running"))
    assert job["state"] == "succeeded", job["error"]
    assert job["model_version"] == 1
    assert set(job["result"]["selection"]) == {"jetson-nano", "rpi4", "sim", "x86-gateway"}
    version = server.client.get(
        "/api/v1/models/digits-byo/versions/1", headers=server.headers()
    ).json()
    assert version["training_run"] == f"job-{job_id}"
    assert version["dataset_hash"] == digits["sha256"]
    assert set(version["metrics"]["variants"]) == {"float32", "float16", "dynamic_range", "int8"}
    bundle = server.services.signing.trust_bundle()
    trust = TrustStore.pin(bundle.roots[0]).update_signing_keys(
        bundle.signing_keys, now=time.time()
    )
    for artifact in version["artifacts"]:
        envelope = server.client.get(
            f"/api/v1/models/digits-byo/versions/1/artifacts/{artifact['hardware_profile']}"
            "/manifest",
            headers=server.headers(),
        ).json()
        manifest = trust.verify_manifest(
            schema.from_json(SignedEnvelope, envelope), now=time.time()
        )
        assert manifest.baseline is not None
    logs = server.client.get(f"/api/v1/training/jobs/{job_id}/logs", headers=server.headers())
    assert any("registered digits-byo v1" in line["message"] for line in logs.json())


def test_a_killed_worker_fails_its_job_with_the_reason(server: Server) -> None:
    post_dataset(server, "vib", {"format": "synthetic", "synthetic": SYNTHETIC})
    job_id = start_job(
        server, model="vib", dataset="vib", recipe="cnn1d", params={"epochs": 500, "patience": 100}
    )
    deadline = time.monotonic() + 30
    while (pid := worker_pid(server, job_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    job = wait_for(server, job_id, lambda j: j["state"] != "running", timeout=30)
    assert job["state"] == "failed"
    assert job["error"] == "the worker process was killed by SIGKILL"
    assert server.client.get("/api/v1/models", headers=server.headers()).json() == []


def test_cancel_stops_a_running_job_and_registers_nothing(server: Server) -> None:
    post_dataset(server, "vib", {"format": "synthetic", "synthetic": SYNTHETIC})
    job_id = start_job(
        server, model="vib", dataset="vib", recipe="cnn1d", params={"epochs": 500, "patience": 100}
    )
    training = wait_for(server, job_id, lambda j: j["progress"].get("phase") == "training")
    assert training["progress"]["epochs"] == 500
    response = server.client.post(
        f"/api/v1/training/jobs/{job_id}/cancel", headers=server.headers(Role.OPERATOR)
    )
    assert response.json()["cancel_requested"] is True
    job = wait_for(server, job_id, lambda j: j["state"] != "running", timeout=60)
    assert (job["state"], job["error"]) == ("cancelled", "cancelled on request")
    assert job["progress"]["epoch"] < 500
    assert server.client.get("/api/v1/models", headers=server.headers()).json() == []
