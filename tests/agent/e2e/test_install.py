"""An agent process installs a signed model from the broker, serves it, reports telemetry."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import numpy.typing as npt
import pytest

from edgefleet.shared.messages import DeviceStatus, EventKind, Slot
from tests.agent.e2e.conftest import DeviceMaker
from tests.agent.e2e.harness import wait_until
from tests.agent.signed_models import manifest_for
from tests.harness.models import TfliteModels

pytestmark = pytest.mark.slow


def tensorflow_outputs(model: bytes, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """TensorFlow's own interpreter on the same file: the reference the agent must match."""
    tf = importlib.import_module("tensorflow")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_content=model)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], inputs.astype(np.float32))
    interpreter.invoke()
    output: npt.NDArray[np.float32] = interpreter.get_tensor(
        interpreter.get_output_details()[0]["index"]
    )
    return output


def test_installs_serves_and_reports(make_device: DeviceMaker, tflite_models: TfliteModels) -> None:
    device = make_device()
    data = tflite_models.float32
    manifest = manifest_for(data, 1)
    device.agent.start().wait_api()
    status, body = device.agent.request("GET", "/v1/model")
    assert status == 503, body

    device.server.install(manifest, data)
    kinds = [e.kind for e in device.server.events()]
    assert kinds[0] is EventKind.RECEIVED
    assert kinds[-4:] == [
        EventKind.DOWNLOADING,
        EventKind.VERIFIED,
        EventKind.INSTALLED,
        EventKind.HEALTHY,
    ]
    seqs = [e.seq for e in device.server.events()]
    assert seqs == sorted(set(seqs))

    inputs = tflite_models.representative[:16]
    status, body = device.agent.predict(inputs.tolist())
    assert status == 200, body
    assert (body["model"], body["version"]) == ("vibration", 1)
    np.testing.assert_allclose(
        np.asarray(body["outputs"]), tensorflow_outputs(data, inputs), rtol=1e-5, atol=1e-6
    )

    def served_window() -> bool:
        return any(
            w.model == "vibration" and w.inferences >= 16
            for t in device.server.telemetry()
            for w in t.windows
        )

    wait_until(served_window, "a telemetry window counting the 16 inferences")
    windows = [w for t in device.server.telemetry() for w in t.windows]
    assert len({w.seq for w in windows}) == len(windows)
    assert any(w.memory_bytes for w in windows)

    state = wait_until(
        lambda: next((s for s in reversed(device.server.states()) if s.models), None),
        "a state naming the installed model",
    )
    assert state.status is DeviceStatus.ONLINE
    assert [(m.model, m.version, m.slot, m.active) for m in state.models] == [
        ("vibration", 1, Slot.A, True)
    ]

    assert device.agent.terminate() == 0
    offline = device.server.states()[-1]
    assert offline.status is DeviceStatus.OFFLINE
    log = device.agent.lines
    assert any('"logger": "edgefleet.agent.agent", "msg": "agent ' in line for line in log)
    assert [line for line in log if '"level": "error"' in line] == []
