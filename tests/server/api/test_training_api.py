"""Datasets, Keras uploads and training jobs over the API (real broker, SQLite and PostgreSQL).

The server here runs no training worker (``training_workers=0``): jobs stay
queued, so what the API does with them is seen without a TensorFlow process.
Jobs that really run are in ``test_training_jobs_e2e``.
"""

from __future__ import annotations

import io
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.server.db.models import Role
from edgefleet.server.training import jobs
from tests.harness.broker import MosquittoBroker
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, running_server, server_settings

CSV = b"temp,rpm,label\n" + b"".join(
    f"{20 + i % 7},{1000 + 13 * i},{'hot' if i % 3 == 0 else 'ok'}\n".encode() for i in range(60)
)


@pytest.fixture
def server(broker: MosquittoBroker, db_url: str, tmp_path: Path) -> Iterator[Server]:
    settings = server_settings(broker, db_url, tmp_path / "data", training_workers=0)
    with running_server(settings) as running:
        yield running


def import_csv(server: Server, name: str, data: bytes, **form: str) -> Any:
    return server.client.post(
        f"/api/v1/datasets/{name}/versions",
        headers=server.headers(Role.OPERATOR),
        files={"file": ("data.csv", data, "text/csv")},
        data=form,
    )


def stored_files(server: Server) -> list[Path]:
    root = server.services.settings.artifact_dir
    return [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts]


def test_csv_import_makes_a_content_hashed_version_once(server: Server) -> None:
    first = import_csv(server, "sensors", CSV, split_seed="3")
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["dataset"], body["version"], body["samples"]) == ("sensors", 1, 60)
    assert body["sample_schema"]["feature_names"] == ["temp", "rpm"]
    assert body["sample_schema"]["labels"] == ["hot", "ok"]
    assert body["split"]["seed"] == 3
    assert sum(body["split"]["counts"].values()) == 60
    again = import_csv(server, "sensors", CSV.replace(b"\n", b"\r\n"), split_seed="3")
    assert again.status_code == 200
    assert (again.json()["version"], again.json()["created"]) == (1, False)
    shown = server.client.get("/api/v1/datasets/sensors", headers=server.headers(Role.VIEWER))
    assert [v["sha256"] for v in shown.json()["versions"]] == [body["sha256"]]
    audit = server.client.get(
        "/api/v1/audit", params={"target_type": "dataset"}, headers=server.headers()
    ).json()
    assert [(r["action"], r["target_id"]) for r in audit] == [("dataset.import", "sensors:1")]


@pytest.mark.parametrize(
    ("data", "form", "reason", "detail"),
    [
        (
            b"temp,rpm,label\n1,2,ok\n3,4\n",
            {},
            "wrong_column_count",
            "row 2 (line 3) has 2 columns",
        ),
        (b"temp,rpm,label\n1,2,ok\n3,nan,hot\n", {}, "not_finite", "column 'rpm': nan"),
        (b"temp,rpm,label\n1,2,ok\n3,4,\n", {}, "missing_label", "column 'label': missing label"),
        (b"temp,rpm,label\n1,2,ok\n3,4,ok\n", {}, "single_class", "single class ('ok')"),
        (CSV, {"label_column": "class"}, "missing_column", "no label column 'class'"),
        (CSV[:60], {}, "dataset_too_small", "too few to split"),
    ],
)
def test_bad_csv_is_a_422_naming_the_place_and_stores_nothing(
    server: Server, data: bytes, form: dict[str, str], reason: str, detail: str
) -> None:
    response = import_csv(server, "bad", data, **form)
    assert response.status_code == 422
    assert response.json()["error"] == reason
    assert detail in response.json()["detail"]
    assert server.client.get("/api/v1/datasets", headers=server.headers()).json() == []
    assert stored_files(server) == []


def test_demo_and_synthetic_imports_and_extending_a_dataset(server: Server) -> None:
    ops = server.headers(Role.OPERATOR)
    demo = server.client.post(
        "/api/v1/datasets/digits/versions", headers=ops, data={"format": "demo", "demo": "digits"}
    )
    assert demo.status_code == 201, demo.text
    assert demo.json()["sample_schema"]["shape"] == [8, 8, 1]
    synthetic = {"format": "synthetic", "synthetic": '{"count": 40, "window": 8, "seed": 1}'}
    first = server.client.post("/api/v1/datasets/vib/versions", headers=ops, data=synthetic)
    assert first.json()["samples"] == 40
    more = {**synthetic, "synthetic": '{"count": 20, "window": 8, "seed": 2}', "extend": "true"}
    second = server.client.post("/api/v1/datasets/vib/versions", headers=ops, data=more)
    assert (second.json()["version"], second.json()["samples"]) == (2, 60)
    assert second.json()["source"]["extends"] == 1
    unknown = server.client.post(
        "/api/v1/datasets/x/versions", headers=ops, data={"format": "demo", "demo": "mnist"}
    )
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_demo")


def test_reading_needs_a_token_and_changing_needs_an_operator(server: Server) -> None:
    viewer = server.headers(Role.VIEWER)
    for path in ("/api/v1/datasets", "/api/v1/training/jobs", "/api/v1/training/keras"):
        assert server.client.get(path).status_code == 401
        assert server.client.get(path, headers=viewer).status_code == 200
    changes: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/datasets/x/versions", {"data": {"format": "demo"}}),
        ("/api/v1/training/jobs", {"json": {"model": "m", "dataset": "x", "recipe": "mlp"}}),
        ("/api/v1/training/jobs/1/cancel", {}),
        ("/api/v1/training/keras", {"files": {"file": ("m.keras", b"x")}}),
    ]
    for path, body in changes:
        assert server.client.post(path, headers=viewer, **body).status_code == 403, path
    assert server.client.get("/api/v1/datasets", headers=viewer).json() == []


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"GIF89a not a model", "not a zip archive"),
        (_zip(**{"saved_model.pb": b"x"}), "SavedModel"),
        (_zip(**{"config.json": b"{}", "metadata.json": b"{}"}), "lacks model.weights.h5"),
    ],
)
def test_a_corrupt_or_foreign_keras_upload_is_refused_and_not_stored(
    server: Server, data: bytes, detail: str
) -> None:
    response = server.client.post(
        "/api/v1/training/keras",
        headers=server.headers(Role.OPERATOR),
        files={"file": ("model.keras", data)},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "bad_keras_file"
    assert detail in response.json()["detail"]
    assert stored_files(server) == []


def test_jobs_are_checked_queued_listed_and_cancelled_with_audit(server: Server) -> None:
    import_csv(server, "sensors", CSV)
    ops = server.headers(Role.OPERATOR)

    def create(**body: Any) -> Any:
        return server.client.post(
            "/api/v1/training/jobs",
            headers=ops,
            json={"model": "heat", "dataset": "sensors", "recipe": "mlp", **body},
        )

    assert create(recipe="cnn2d").json()["error"] == "shape_mismatch"
    assert "takes image samples" in create(recipe="cnn2d").json()["detail"]
    assert create(profiles=["toaster"]).status_code == 422
    assert create(params={"epochs": 0}).status_code == 422
    assert create(keras_sha256="ab" * 32, recipe=None).status_code == 404
    assert create(trials=99).json()["error"] == "invalid_request"
    queued = create(params={"epochs": 3}, seed=4, profiles=["sim"])
    assert queued.status_code == 201, queued.text
    job = queued.json()
    assert (job["state"], job["dataset"], job["dataset_version"]) == ("queued", "sensors", 1)
    assert job["request"]["params"] == {"epochs": 3}
    listed = server.client.get(
        "/api/v1/training/jobs", params={"state": "queued"}, headers=server.headers(Role.VIEWER)
    ).json()
    assert [j["id"] for j in listed] == [job["id"]]
    cancelled = server.client.post(f"/api/v1/training/jobs/{job['id']}/cancel", headers=ops)
    assert cancelled.json()["state"] == "cancelled"
    again = server.client.post(f"/api/v1/training/jobs/{job['id']}/cancel", headers=ops)
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    audit = server.client.get(
        "/api/v1/audit", params={"target_type": "training_job"}, headers=server.headers()
    ).json()
    assert [r["action"] for r in audit] == ["training_job.cancel", "training_job.create"]
    assert server.client.get("/api/v1/training/jobs/999", headers=ops).status_code == 404


def test_a_restart_fails_the_jobs_that_were_running(
    server: Server, broker: MosquittoBroker, db_url: str, tmp_path: Path
) -> None:
    import_csv(server, "sensors", CSV)
    job = server.client.post(
        "/api/v1/training/jobs",
        headers=server.headers(Role.OPERATOR),
        json={"model": "heat", "dataset": "sensors", "recipe": "mlp"},
    ).json()
    with server.services.sessions() as session:  # this host's runner took it, then died
        claimed = jobs.claim_next(
            session=session, now=server.services.clock(), runner=socket.gethostname()
        )
        assert claimed == job["id"]
    settings = server_settings(broker, db_url, tmp_path / "data", training_workers=1)
    with running_server(settings, names="restarted") as restarted:
        found = restarted.client.get(
            f"/api/v1/training/jobs/{job['id']}", headers=restarted.headers()
        ).json()
    assert found["state"] == "failed"
    assert found["error"] == "the server restarted while the job was running"


def test_recipes_are_listed_with_defaults_and_search_space(server: Server) -> None:
    recipes = server.client.get("/api/v1/training/recipes", headers=server.headers(Role.VIEWER))
    by_name = {r["name"]: r for r in recipes.json()}
    assert set(by_name) == {"mlp", "cnn1d", "cnn2d", "autoencoder"}
    assert by_name["autoencoder"]["task"] == "anomaly"
    assert by_name["cnn2d"]["kinds"] == ["image"]


def test_compare_shows_two_versions_side_by_side(
    server: Server, tflite_models: TfliteModels
) -> None:
    ops = server.headers(Role.OPERATOR)
    for data, variant, accuracy in (
        (tflite_models.float32, "float32", "0.90"),
        (tflite_models.int8, "int8", "0.88"),
    ):
        response = server.client.post(
            "/api/v1/models/kws/versions",
            headers=ops,
            files={"file": ("m.tflite", data)},
            data={"profiles": "sim", "variant": variant, "metrics": f'{{"accuracy": {accuracy}}}'},
        )
        assert response.status_code == 201, response.text
    compared = server.client.get(
        "/api/v1/models/kws/compare", params={"a": 1, "b": 2}, headers=server.headers(Role.VIEWER)
    ).json()
    assert compared["a"]["artifacts"]["sim"]["variant"] == "float32"
    assert compared["b"]["artifacts"]["sim"]["variant"] == "int8"
    assert compared["differences"]["metrics"]["accuracy"] == pytest.approx(-0.02)
    ratio = len(tflite_models.int8) / len(tflite_models.float32)
    assert compared["differences"]["profiles"]["sim"]["size_ratio"] == pytest.approx(ratio)
    missing = server.client.get("/api/v1/models/kws/compare", params={"a": 1, "b": 9}, headers=ops)
    assert missing.status_code == 404
