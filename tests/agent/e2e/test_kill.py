"""SIGKILL in every update phase: on restart exactly one verified model serves, and which one.

The agent is stopped dead by a test hook (``EDGEFLEET_AGENT_PAUSE_IN``) once it
has entered the phase, so the kill lands there every time. What the kill
left on disk is judged by the same pure recovery rule the agent uses, then
the agent is restarted for real.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from edgefleet.agent.storage import Storage
from edgefleet.agent.update.recovery import recover
from edgefleet.shared.messages import Deployment, EventKind, Slot, State, UpdatePhase
from tests.agent.e2e.conftest import DeviceMaker
from tests.agent.e2e.harness import (
    FLEET,
    AgentProcess,
    Server,
    agent_config,
    short_dir,
    wait_until,
    write_config,
)
from tests.agent.signed_models import manifest_for
from tests.harness.broker import MosquittoBroker
from tests.harness.models import TfliteModels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serving_v1(
    broker: MosquittoBroker,
    tflite_models: TfliteModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A data directory left by an agent that installed v1 and stopped cleanly."""
    credentials = broker.add_device("kill-template")
    directory = tmp_path_factory.mktemp("template")
    with short_dir() as sockets:
        config = agent_config(broker, credentials, directory / "data", sockets / "api.sock")
        agent = AgentProcess(write_config(config, directory / "agent.toml"), sockets / "api.sock")
        client = broker.client(broker.server_credentials)
        server = Server(broker, client, credentials.username)
        try:
            agent.start().wait_api()
            server.install(manifest_for(tflite_models.float32, 1), tflite_models.float32)
            assert agent.terminate() == 0
        finally:
            agent.stop()
            server.clear()
            client.disconnect()
            client.loop_stop()
            broker.remove_device(credentials.username)
    return directory / "data"


@pytest.mark.parametrize(
    ("phase", "final"),
    [
        pytest.param(UpdatePhase.DOWNLOADING, 2, id="downloading"),
        pytest.param(UpdatePhase.VERIFYING, 2, id="verifying"),
        pytest.param(UpdatePhase.STAGED, 2, id="staged"),
        pytest.param(UpdatePhase.TESTING, 2, id="testing"),
        pytest.param(UpdatePhase.ACTIVE, 1, id="probation"),
    ],
)
def test_sigkill_in_each_phase(
    make_device: DeviceMaker,
    serving_v1: Path,
    tmp_path: Path,
    tflite_models: TfliteModels,
    phase: UpdatePhase,
    final: int,
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(serving_v1, data_dir)
    device = make_device(data_dir=data_dir)
    device.server.revision = 100  # the copied directory has seen the template's revisions
    agent = device.restart(pause_in=phase.value)
    agent.wait_api()
    assert agent.model_version() == 1
    v2 = manifest_for(tflite_models.int8, 2)
    device.server.publish_chunks(tflite_models.int8)
    device.server.deploy(Deployment("vibration", FLEET.sign(v2)))
    agent.wait_line(f"paused in {phase.value}")
    agent.kill()

    storage = Storage(data_dir)
    left = storage.read_update_state()
    assert left.phase is phase
    view = storage.view()
    decision = recover(left, view, now=time.time())
    assert decision.boot is Slot.A  # v1, the model that passed its self-test before
    assert view.verified[Slot.A].version == 1
    assert storage.pointer() is (Slot.B if phase is UpdatePhase.ACTIVE else Slot.A)

    agent = device.restart()
    agent.wait_api()
    if phase is UpdatePhase.ACTIVE:
        event = device.server.wait_event(EventKind.ROLLED_BACK, 2)
        assert "restarted during probation" in (event.reason or "")
    else:
        device.server.wait_event(EventKind.HEALTHY, 2)
    assert agent.model_version() == final
    settled = (UpdatePhase.COMMITTED, UpdatePhase.ROLLED_BACK)

    def after_update() -> State | None:
        for state in reversed(device.server.states()):
            if state.update and state.update.version == 2 and state.update.phase in settled:
                return state
        return None

    state = wait_until(after_update, "a state after the update settled")
    active = [(m.version, m.slot) for m in state.models if m.active]
    assert active == [(final, Slot.A if final == 1 else Slot.B)]
    assert agent.terminate() == 0
