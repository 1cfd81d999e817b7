"""``edgefleet samples`` and ``edgefleet drift`` against the running app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.harness.models import TfliteModels
from tests.server.api.conftest import Server, unique_id
from tests.server.api.test_drift_api import window
from tests.server.api.test_samples_api import registered, stored
from tests.server.cli.conftest import Cli, lines
from tests.server.edge_data import TRAIN_ROWS

HOUR = 3600.0


def test_list_show_label_export_and_fold(
    server: Server, remote: Cli, tflite_models: TfliteModels, tmp_path: Path
) -> None:
    found = registered(server, tflite_models)
    model, dataset = found.model, found.dataset.dataset.name
    ids = stored(server, model, 3) + stored(
        server, model, 1, device="dev-b", reason="low_confidence"
    )

    table = lines(remote.ok("samples", "list", model, "--limit", "3").stdout)
    assert table[0].split() == [
        "ID",
        "DEVICE",
        "VERSION",
        "REASON",
        "CONFIDENCE",
        "LABEL",
        "FOLDED",
        "INTO",
        "RECEIVED",
    ]
    assert [row.split()[0] for row in table[1:4]] == [str(i) for i in ids[:3]]
    assert table[1].split()[1:6] == ["dev-a", "1", "reservoir", "-", "-"]
    assert table[-1] == f"more: --after-id {ids[2]}"
    page = json.loads(remote.ok("samples", "list", model, "--device", "dev-b", "--json").stdout)
    assert [s["id"] for s in page["items"]] == [ids[3]]
    shown = remote.ok("samples", "show", str(ids[1])).stdout
    assert "values:      10 11 12 13" in shown
    assert "shape:       (4,)" in shown

    done = remote.ok("samples", "label", f"{ids[0]}=idle", f"{ids[1]}=fault").stdout
    assert done.strip() == f"labelled 2, relabelled 0, unchanged 0 (ids {ids[0]}..{ids[1]})"
    labels = tmp_path / "labels.csv"
    labels.write_text(f"id,label\n{ids[1]},normal\n{ids[3]},idle\n")
    done = remote.ok("samples", "label", "--csv", str(labels)).stdout
    assert done.strip() == f"labelled 1, relabelled 1, unchanged 0 (ids {ids[1]}..{ids[3]})"
    refused = remote.fails(1, "samples", "label", f"{ids[2]}=idle", "999999=idle")
    assert "no edge samples 999999" in refused.stderr
    labels.write_text(f"id,label\n{ids[2]};idle\n")
    assert "label CSV line 2" in remote.fails(1, "samples", "label", "--csv", str(labels)).stderr
    assert "ID=LABEL" in remote.fails(2, "samples", "label", "12:idle").stderr
    assert "one of them" in remote.fails(2, "samples", "label").stderr
    both = remote.fails(2, "samples", "label", f"{ids[2]}=idle", "--csv", str(labels))
    assert "one of them" in both.stderr

    text = tmp_path / "all.csv"
    wrote = remote.ok("samples", "export", model, "--out", str(text)).stdout
    assert wrote.startswith(f"wrote {text} (")
    rows = text.read_text().splitlines()
    assert len(rows) == 5
    assert rows[1].endswith(",idle,0.0 1.0 2.0 3.0")
    arrays = tmp_path / "labelled.npz"
    more = remote.ok(
        "samples", "export", model, "--labelled", "--format", "npz", "--out", str(arrays)
    ).stdout
    assert "more:" not in more
    loaded = np.load(arrays, allow_pickle=False)
    assert loaded["ids"].tolist() == [ids[0], ids[1], ids[3]]
    assert loaded["x"].shape == (3, 4)

    folded = remote.ok("samples", "fold", model, dataset, "--id", str(ids[0])).stdout
    assert folded.strip() == f"folded 1 samples into {dataset} v2 ({TRAIN_ROWS + 1} samples)"
    rest = json.loads(remote.ok("samples", "fold", model, dataset, "--json").stdout)
    assert rest["folded"] == [ids[1], ids[3]]
    assert "nothing to fold" in remote.fails(1, "samples", "fold", model, dataset).stderr


def test_drift_status_and_series(server: Server, remote: Cli, tflite_models: TfliteModels) -> None:
    found = registered(server, tflite_models)
    model, baseline = found.model, found.baseline
    assert lines(remote.ok("drift", "status", model).stdout) == [
        "0 of 0 devices flagged",
        "no drift windows yet",
    ]
    devices = [unique_id("cd") for _ in range(3)]
    for device in devices:
        answer = server.client.post(
            "/api/v1/devices", headers=server.headers(), json={"id": device, "profile": "sim"}
        )
        assert answer.status_code == 201, answer.text
    rng = np.random.default_rng(1)
    now = server.services.clock()
    for device in devices:
        window(server, model, device, now - 2 * HOUR + 60, baseline, rng)
    window(server, model, devices[1], now - 600, baseline, rng, tilt=0.4, flagged=True)

    status = lines(remote.ok("drift", "status", model).stdout)
    assert status[0] == "1 of 3 devices flagged"
    assert status[1].split()[:4] == ["DEVICE", "VERSION", "SCORE", "FLAGGED"]
    assert status[2].split()[:4] == [devices[1], "1", "3.00", "yes"]
    shown = json.loads(remote.ok("drift", "status", model, "--json").stdout)
    assert shown["flagged_devices"] == 1

    table = lines(remote.ok("drift", "series", model, "--hours", "3").stdout)
    assert table[0].split()[:3] == ["START", "WINDOWS", "DEVICES"]
    assert len(table) == 4
    busy = [row for row in table[1:] if " 3 " in row]
    assert len(busy) == 1
    assert "v1" in busy[0]
    flagged = json.loads(
        remote.ok("drift", "series", model, "--device", devices[1], "--hours", "1", "--json").stdout
    )
    assert (flagged["scope"], flagged["name"]) == ("device", devices[1])
    assert [b["flagged_windows"] for b in flagged["buckets"]] == [1]
    assert (
        "not both"
        in remote.fails(2, "drift", "series", model, "--group", "g", "--device", "d").stderr
    )
    assert "no device" in remote.fails(1, "drift", "series", model, "--device", "nope").stderr
