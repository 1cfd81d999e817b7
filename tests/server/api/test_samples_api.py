"""Edge samples through the REST API on both databases: list, show, label, export, fold.

Samples are written as ingest writes them (``edge_samples`` rows); the MQTT
path that fills the table is tested with ingest.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from edgefleet.server.db.models import Role
from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.edge_data import LABELS, TRAIN_ROWS, Registered, add_samples, register

API = "/api/v1"


def registered(server: Server, tflite_models: TfliteModels) -> Registered:
    services = server.services
    with services.sessions() as session:
        return register(
            session,
            store=services.artifacts,
            signing=services.signing,
            catalog=services.catalog,
            tflite=tflite_models.float32,
            model=unique_id("m"),
            dataset=unique_id("ds"),
            now=services.clock(),
        )


def stored(server: Server, model: str, count: int, **fields: Any) -> list[int]:
    """``count`` samples of ``model`` v1 (values 10*i + column), as ingest stores them."""
    options: dict[str, Any] = {
        "version": 1,
        "device": "dev-a",
        "values": [[10.0 * i + c for c in range(4)] for i in range(count)],
        "received_at": server.services.clock(),
        **fields,
    }
    with server.services.sessions() as session:
        return add_samples(session, model=model, **options)


def get(server: Server, path: str, role: Role = Role.VIEWER, **params: Any) -> Any:
    return server.client.get(f"{API}{path}", headers=server.headers(role), params=params)


def post(server: Server, path: str, role: Role = Role.OPERATOR, **kwargs: Any) -> Any:
    return server.client.post(f"{API}{path}", headers=server.headers(role), **kwargs)


def refused(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in str(response.json()["detail"]), response.json()


def labels_of(server: Server, model: str) -> dict[int, str | None]:
    page = get(server, "/samples", model=model, limit=1000).json()
    return {s["id"]: s["label"] for s in page["items"]}


def test_list_and_show(server: Server, tflite_models: TfliteModels) -> None:
    model = registered(server, tflite_models).model
    plain = stored(server, model, 3)
    hard = stored(server, model, 2, device="dev-b", reason="low_confidence")

    page = get(server, "/samples", model=model, limit=2)
    assert page.status_code == 200, page.text
    body = page.json()
    assert [s["id"] for s in body["items"]] == plain[:2]
    assert body["next_after_id"] == plain[1]
    rest = get(server, "/samples", model=model, after_id=plain[1], limit=4).json()
    assert [s["id"] for s in rest["items"]] == [plain[2], *hard]
    assert rest["next_after_id"] is None
    item = rest["items"][1]
    assert (item["device_id"], item["reason"], item["confidence"], item["size"]) == (
        "dev-b",
        "low_confidence",
        0.5,
        4,
    )
    assert "values" not in item
    filtered = get(server, "/samples", model=model, device="dev-b", labelled="false").json()
    assert [s["id"] for s in filtered["items"]] == hard
    assert (
        get(server, "/samples", model=model, reason="low_confidence").json()["items"]
        == (filtered["items"])
    )

    shown = get(server, f"/samples/{plain[2]}").json()
    assert (shown["values"], shown["shape"]) == ([20.0, 21.0, 22.0, 23.0], [4])
    refused(get(server, "/samples/999999"), 404, "no edge sample 999999")
    refused(get(server, "/samples", model="nope"), 404, "no model")
    assert get(server, "/samples", model=model, reason="bored").status_code == 422
    assert get(server, "/samples", model=model, limit=1001).status_code == 422
    assert server.client.get(f"{API}/samples", params={"model": model}).status_code == 401


def test_labels_are_all_or_nothing(server: Server, tflite_models: TfliteModels) -> None:
    model = registered(server, tflite_models).model
    ids = stored(server, model, 4)

    def label(pairs: dict[int, str], role: Role = Role.OPERATOR) -> Any:
        body = {"labels": [{"id": i, "label": text} for i, text in pairs.items()]}
        return post(server, "/samples/labels", role, json=body)

    assert label({ids[0]: "idle"}, Role.VIEWER).status_code == 403
    refused(label({ids[0]: "idle", 999_999: "idle"}, Role.OPERATOR), 404, "no edge samples 999999")
    refused(label({ids[0]: "idle", ids[1]: "broken"}), 422, f"samples {ids[1]} of {model} v1")
    refused(label({ids[0]: ""}), 422, "labels.0.label")
    body = {"labels": [{"id": ids[0], "label": "idle"}, {"id": ids[0], "label": "fault"}]}
    refused(post(server, "/samples/labels", json=body), 422, f"sample {ids[0]} is labelled twice")
    too_many = {"labels": [{"id": i, "label": "idle"} for i in range(1, 10_002)]}
    refused(post(server, "/samples/labels", json=too_many), 422, "at most 10000")
    refused(post(server, "/samples/labels", json={"labels": []}), 422, "labels")
    assert set(labels_of(server, model).values()) == {None}

    done = label({ids[0]: "idle", ids[1]: "fault", ids[2]: "fault"})
    assert done.status_code == 200, done.text
    assert done.json() == {
        "labelled": 3,
        "relabelled": 0,
        "unchanged": 0,
        "first_id": ids[0],
        "last_id": ids[2],
    }
    again = label({ids[1]: "normal", ids[2]: "fault"}).json()
    assert (again["relabelled"], again["unchanged"]) == (1, 1)
    assert labels_of(server, model) == {
        ids[0]: "idle",
        ids[1]: "normal",
        ids[2]: "fault",
        ids[3]: None,
    }

    records = get(server, "/audit", Role.ADMIN, action="samples.label").json()
    mine = [r for r in records if r["target_id"] in (f"{ids[0]}-{ids[2]}", f"{ids[1]}-{ids[2]}")]
    assert [r["target_id"] for r in mine] == [f"{ids[1]}-{ids[2]}", f"{ids[0]}-{ids[2]}"]
    assert mine[0]["before"] == {"relabelled": {str(ids[1]): "fault"}}
    assert mine[0]["actor"] == "t-operator"


def test_labels_from_a_csv_upload(server: Server, tflite_models: TfliteModels) -> None:
    model = registered(server, tflite_models).model
    ids = stored(server, model, 3)

    def upload(text: bytes | str, role: Role = Role.OPERATOR) -> Any:
        data = text.encode() if isinstance(text, str) else text
        return post(
            server, "/samples/labels.csv", role, files={"file": ("l.csv", data, "text/csv")}
        )

    good = f"id,label\n{ids[0]},idle\n{ids[2]},fault\n"
    assert upload(good, Role.VIEWER).status_code == 403
    refused(upload(f"id,label\n{ids[0]},idle\n{ids[1]}\n"), 422, "label CSV line 3: want 2 fields")
    refused(upload(f"id,label\n{ids[0]},idle\n{ids[1]},nope\n"), 422, "outside the label set")
    refused(upload(b"id,label\n1,\xff\n"), 422, "not UTF-8")
    refused(upload("x" * (4 * 1024 * 1024 + 1)), 422, "at most 4194304 bytes")
    assert set(labels_of(server, model).values()) == {None}
    done = upload(good)
    assert done.status_code == 200, done.text
    assert done.json()["labelled"] == 2
    assert labels_of(server, model) == {ids[0]: "idle", ids[1]: None, ids[2]: "fault"}


def test_export_as_csv_and_npz(server: Server, tflite_models: TfliteModels) -> None:
    model = registered(server, tflite_models).model
    ids = stored(server, model, 3, label="fault") + stored(server, model, 1)

    text = get(server, "/samples/export", model=model, format="csv")
    assert text.status_code == 200, text.text
    assert text.headers["content-type"].startswith("text/csv")
    assert f'filename="{model}-samples.csv"' in text.headers["content-disposition"]
    assert "x-next-after-id" not in text.headers
    rows = text.text.splitlines()
    assert rows[0] == "id,device,model,version,reason,confidence,label,values"
    assert rows[2] == f"{ids[1]},dev-a,{model},1,reservoir,,fault,10.0 11.0 12.0 13.0"
    assert len(rows) == 5

    archive = get(server, "/samples/export", model=model, format="npz", labelled="true", limit=2)
    assert archive.headers["x-next-after-id"] == str(ids[1])
    arrays = np.load(io.BytesIO(archive.content), allow_pickle=False)
    assert arrays["x"].shape == (2, 4)
    assert arrays["ids"].tolist() == ids[:2]
    assert arrays["labels"].tolist() == ["fault", "fault"]
    rest = get(
        server, "/samples/export", model=model, format="npz", labelled="true", after_id=ids[1]
    )
    assert np.load(io.BytesIO(rest.content))["ids"].tolist() == [ids[2]]
    assert get(server, "/samples/export", model=model, format="xml").status_code == 422
    refused(get(server, "/samples/export", model="nope"), 404, "no model")


def test_fold_into_a_dataset(server: Server, tflite_models: TfliteModels) -> None:
    found = registered(server, tflite_models)
    model, dataset = found.model, found.dataset.dataset.name
    request = {"model": model, "dataset": dataset}
    refused(post(server, "/samples/fold", json=request), 409, "nothing to fold")
    ids = stored(server, model, 3, label=LABELS[0])
    (bare,) = stored(server, model, 1)
    assert post(server, "/samples/fold", Role.VIEWER, json=request).status_code == 403
    refused(
        post(server, "/samples/fold", json={**request, "ids": [ids[0], bare]}),
        422,
        f"samples {bare} have no label",
    )
    refused(post(server, "/samples/fold", json={**request, "extra": 1}), 422, "extra")

    made = post(server, "/samples/fold", json={**request, "ids": [ids[1]]})
    assert made.status_code == 201, made.text
    assert made.json()["folded"] == [ids[1]]
    assert made.json()["dataset"]["version"] == 2
    folded = post(server, "/samples/fold", json=request).json()
    assert folded["folded"] == [ids[0], ids[2]]
    version = folded["dataset"]
    assert (version["version"], version["samples"]) == (3, TRAIN_ROWS + 3)
    assert version["source"]["format"] == "edge_samples"
    assert version["split"]["segments"] == [TRAIN_ROWS, TRAIN_ROWS + 1]
    shown = get(server, f"/samples/{ids[2]}").json()
    assert shown["folded_into"] == f"{dataset}:3"
    refused(post(server, "/samples/fold", json=request), 409, "nothing to fold")
    assert get(server, f"/datasets/{dataset}").json()["versions"][-1]["version"] == 3
