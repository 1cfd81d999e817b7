"""Uploading a real .tflite: signed manifests a device's own verifier accepts."""

from __future__ import annotations

import hashlib

from edgefleet.server.db.models import Role
from edgefleet.shared.admission import admit
from edgefleet.shared.agent_config import parse_agent_config
from edgefleet.shared.antirollback import AntiRollbackState
from edgefleet.shared.manifest import TensorDType
from edgefleet.shared.schema import from_json
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id


def upload(
    server: Server, name: str, data: bytes, profiles: str, variant: str, role: Role = Role.OPERATOR
) -> dict:  # type: ignore[type-arg]
    response = server.client.post(
        f"/api/v1/models/{name}/versions",
        headers=server.headers(role),
        files={"file": ("model.tflite", data, "application/octet-stream")},
        data={
            "profiles": profiles,
            "variant": variant,
            "metrics": '{"accuracy": 0.93}',
            "dataset_hash": "ab" * 32,
            "training_run": "run-1",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_uploaded_int8_model_is_verified_by_the_device_trust_chain(
    server: Server, tflite_models: TfliteModels
) -> None:
    first = upload(server, "vibration", tflite_models.int8, "rpi4,sim", "int8")
    assert (first["version"], first["stage"]) == (1, "candidate")
    assert [a["hardware_profile"] for a in first["artifacts"]] == ["rpi4", "sim"]
    assert first["artifacts"][0]["sha256"] == hashlib.sha256(tflite_models.int8).hexdigest()
    second = upload(server, "vibration", tflite_models.int8, "sim", "int8")
    assert second["version"] == 2

    device_id = unique_id("cam")
    bundle = server.client.post(
        "/api/v1/devices", headers=server.headers(), json={"id": device_id, "profile": "sim"}
    ).json()
    config = parse_agent_config(bundle["agent_config"])
    keys = from_json(
        SignedEnvelope,
        server.client.get(
            "/api/v1/models/vibration/versions/1/artifacts/sim/manifest", headers=server.headers()
        ).json(),
    )
    trust = TrustStore.pin(config.trust.root_envelope()).update_signing_keys(
        server.services.signing.trust_bundle().signing_keys, now=server.services.clock()
    )
    admission = admit(
        keys,
        trust=trust,
        installed=AntiRollbackState(),
        hardware_profile="sim",
        max_artifact_bytes=config.trust.max_artifact_bytes,
        now=server.services.clock(),
    )
    manifest = admission.manifest
    assert (manifest.model, manifest.version) == ("vibration", 1)
    assert manifest.inputs[0].dtype is TensorDType.INT8
    assert manifest.inputs[0].quantization is not None
    download = server.client.get(
        "/api/v1/models/vibration/versions/1/artifacts/sim/download", headers=server.headers()
    )
    assert hashlib.sha256(download.content).hexdigest() == manifest.artifact.sha256


def test_bad_uploads_are_refused_and_nothing_is_stored(
    server: Server, tflite_models: TfliteModels
) -> None:
    client, ops = server.client, server.headers(Role.OPERATOR)

    def post(data: bytes, **form: str) -> tuple[int, str]:
        response = client.post(
            "/api/v1/models/kws/versions",
            headers=ops,
            files={"file": ("m.tflite", data)},
            data={"profiles": "sim", "variant": "int8", **form},
        )
        return response.status_code, response.json()["error"]

    assert post(b"not a flatbuffer at all" * 10) == (422, "not_tflite")
    assert post(tflite_models.int8[:500])[0] == 422
    assert post(tflite_models.int8, variant="float16") == (422, "invalid")
    assert post(tflite_models.int8, profiles="toaster") == (422, "unknown_profile")
    assert post(tflite_models.int8, metrics="[1, 2]") == (422, "invalid")
    assert client.get("/api/v1/models", headers=ops).json() == []
    stored = server.services.settings.artifact_dir
    assert not [p for p in stored.rglob("*") if p.is_file() and ".tmp" not in p.parts]


def test_stage_changes_are_audited(server: Server, tflite_models: TfliteModels) -> None:
    upload(server, "kws", tflite_models.float32, "x86-gateway", "float32")
    response = server.client.patch(
        "/api/v1/models/kws/versions/1", headers=server.headers(), json={"stage": "approved"}
    )
    assert response.json()["stage"] == "approved"
    actions = [
        r["action"]
        for r in server.client.get(
            "/api/v1/audit", params={"target_type": "model"}, headers=server.headers()
        ).json()
    ]
    assert actions == ["version.stage", "version.create"]
