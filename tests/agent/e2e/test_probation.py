"""A model that breaches probation on live traffic is rolled back by the agent alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgefleet.shared.messages import Deployment, EventKind
from tests.agent.e2e.conftest import DeviceMaker
from tests.agent.e2e.harness import FAST_UPDATES, FLEET, wait_until, write_config
from tests.agent.signed_models import nan_model
from tests.harness.models import TfliteModels

pytestmark = pytest.mark.slow


def test_nan_outputs_on_live_inputs_roll_the_model_back(
    make_serving: DeviceMaker, tflite_models: TfliteModels
) -> None:
    device = make_serving()
    assert device.agent.terminate() == 0
    # From now on the operator wants a long, watchful probation.
    strict = dataclasses.replace(FAST_UPDATES, probation_seconds=300.0, probation_min_inferences=20)
    write_config(dataclasses.replace(device.config, update=strict), device.config_path)
    device.restart().wait_api()
    for row in tflite_models.representative[:40]:
        assert device.agent.predict(row.tolist())[0] == 200  # the yardstick for probation

    data, bad = nan_model()
    device.server.publish_chunks(data)
    device.server.deploy(Deployment(bad.model, FLEET.sign(bad)))
    device.server.wait_event(EventKind.INSTALLED, bad.version)
    assert device.agent.model_version() == bad.version

    statuses = []
    for row in np.random.default_rng(7).uniform(-1.0, 1.0, (12, 4)):
        status, body = device.agent.predict(row.tolist())
        statuses.append(status)
        if status != 200:
            assert body["error"] == "inference_failed", body
    assert 200 in statuses
    assert any(s >= 500 for s in statuses)

    event = device.server.wait_event(EventKind.ROLLED_BACK, bad.version)
    assert (event.reason or "").startswith("error_rate: "), event.reason
    wait_until(lambda: device.agent.model_version() == 1, "v1 served again")
    status, body = device.agent.predict(tflite_models.representative[0].tolist())
    assert (status, body["version"]) == (200, 1)
    assert not (device.data_dir / "slots" / "b" / "model.tflite").exists()
    assert device.agent.terminate() == 0
