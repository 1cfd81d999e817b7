"""``edgefleet datasets``, ``train``, ``jobs`` and ``models compare`` against the running app.

``train --wait`` runs a real job: the app's runner starts a worker process
that trains, converts and registers, while the CLI draws its progress.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefleet.server.cli.training import progress_line
from tests.harness.models import TfliteModels
from tests.server.cli.conftest import Cli, lines

CSV = "temp,rpm,label\n" + "".join(
    f"{20 + i % 7},{1000 + 13 * i},{'hot' if i % 3 == 0 else 'ok'}\n" for i in range(60)
)


def fields(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines(text):
        key, sep, value = line.partition(":")
        if sep:
            found.setdefault(key.strip(), value.strip())
    return found


def test_datasets_import_list_show(remote: Cli, tmp_path: Path) -> None:
    data = tmp_path / "readings.csv"
    data.write_text(CSV)
    imported = remote.ok("datasets", "import", "heat", str(data), "--split-seed", "2")
    assert imported.stdout.startswith("imported heat v1")
    shown = fields(imported.stdout)
    assert shown["features"] == "temp,rpm"
    assert shown["labels"] == "hot,ok"
    assert shown["split"].startswith("seed 2: train ")
    again = remote.ok("datasets", "import", "heat", str(data), "--split-seed", "2")
    assert again.stdout.startswith("unchanged, the newest version is heat v1")
    remote.ok("datasets", "import", "digits", "--demo", "digits")
    table = lines(remote.ok("datasets", "list").stdout)
    assert table[0].split() == ["NAME", "LATEST", "SAMPLES", "KIND", "SHA256", "CREATED"]
    rows = {row.split()[0]: row.split()[1:4] for row in table[1:]}
    assert rows == {"digits": ["1", "1797", "image"], "heat": ["1", "60", "tabular"]}
    version = json.loads(remote.ok("datasets", "show", "heat", "--version", "1", "--json").stdout)
    assert version["sha256"] == fields(imported.stdout)["sha256"]


def test_datasets_bad_input_and_usage(remote: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("temp,rpm,label\n1,2,ok\n3,oops,hot\n")
    refused = remote.fails(1, "datasets", "import", "x", str(bad))
    assert refused.stderr == "error: row 2 (line 3), column 'rpm': 'oops' is not a number\n"
    assert "give a FILE" in remote.fails(2, "datasets", "import", "x").stderr
    assert remote.fails(1, "datasets", "show", "nope").stderr.startswith("error: no dataset")


def test_train_refusals(remote: Cli, tmp_path: Path) -> None:
    data = tmp_path / "readings.csv"
    data.write_text(CSV)
    remote.ok("datasets", "import", "heat", str(data))
    assert "--recipe or --keras" in remote.fails(2, "train", "--dataset", "heat").stderr
    mismatch = remote.fails(1, "train", "--dataset", "heat", "--recipe", "cnn1d")
    assert "takes timeseries samples" in mismatch.stderr
    bad_param = remote.fails(2, "train", "--dataset", "heat", "--recipe", "mlp", "--param", "x")
    assert "want KEY=VALUE" in bad_param.stderr
    assert remote.fails(1, "jobs", "show", "999").stderr == "error: no training job 999\n"


@pytest.mark.slow
def test_train_wait_shows_progress_then_variants_and_compare(
    remote: Cli, tmp_path: Path, tflite_models: TfliteModels
) -> None:
    synthetic = '{"count": 120, "window": 16, "seed": 1}'
    remote.ok("datasets", "import", "vib", "--synthetic", synthetic)
    trained = remote.ok(
        "train", "--dataset", "vib:1", "--recipe", "mlp", "--param", "epochs=4",
        "--param", "hidden=[32]", "--wait", "--poll-seconds", "0.1",
    )  # fmt: skip
    progress = trained.stderr.splitlines()
    assert any(" epoch " in line and "] trial 1/1" in line for line in progress), progress
    assert any(line.endswith("quantizing int8") for line in progress), progress
    report = trained.stdout
    assert fields(report)["state"] == "succeeded"
    assert fields(report)["version"] == "1"
    rows = {line.split()[0]: line.split()[1:] for line in lines(report)}
    assert {"float32", "float16", "dynamic_range", "int8"} <= rows.keys()
    assert rows["jetson-nano"] == ["float16"]
    job_id = fields(report)["job"]
    listed = lines(remote.ok("jobs", "list").stdout)
    assert listed[1].split()[:3] == [job_id, "succeeded", "vib"]
    assert "registered vib v1" in remote.ok("jobs", "logs", job_id).stdout
    done = remote.fails(1, "jobs", "cancel", job_id)
    assert done.stderr == f"error: training job {job_id} is succeeded already\n"
    model = tmp_path / "v2.tflite"
    model.write_bytes(tflite_models.float32)
    remote.ok("models", "upload", "vib", str(model), "--profile", "sim", "--variant", "float32")
    compared = json.loads(remote.ok("models", "compare", "vib", "1", "2", "--json").stdout)
    assert compared["a"]["training_run"] == f"job-{job_id}"
    assert compared["b"]["artifacts"]["sim"]["variant"] == "float32"
    side_by_side = lines(remote.ok("models", "compare", "vib", "1", "2").stdout)
    assert side_by_side[0].split() == ["v1", "v2"]
    sim = next(row.split() for row in side_by_side if row.startswith("sim"))
    assert sim[1:3] == [compared["a"]["artifacts"]["sim"]["variant"], "float32"]


def test_progress_line_draws_a_bar_over_all_trials() -> None:
    job = {
        "id": 3,
        "state": "running",
        "progress": {"phase": "training", "trial": 2, "trials": 2, "epoch": 5, "epochs": 10,
                     "loss": 0.5, "val_loss": 0.25, "other": 1},
    }  # fmt: skip
    line = progress_line(job)
    assert line == (
        "job 3: [##################......] trial 2/2 epoch 5/10 loss=0.5000 val_loss=0.2500"
    )
    job["progress"] = {"phase": "quantizing", "variant": "int8"}
    assert progress_line(job) == "job 3: quantizing int8"
