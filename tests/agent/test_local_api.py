"""The local inference API over real TCP and UNIX sockets, serving the real test models."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.errors import LocalApiError
from edgefleet.agent.inference import InferenceService
from edgefleet.agent.local_api import LocalApi
from edgefleet.shared.agent_config import InferenceSection
from edgefleet.shared.messages import Slot
from tests.agent.conftest import ServedModel, tensorflow_outputs
from tests.harness.models import TfliteModels

MAX_BATCH = 64


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self._path)


class Client:
    def __init__(self, api: LocalApi) -> None:
        self.address = api.address

    def connection(self) -> http.client.HTTPConnection:
        if isinstance(self.address, str):
            return UnixConnection(self.address)
        host, port = self.address
        return http.client.HTTPConnection(host, port, timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, dict[str, Any]]:
        payload = None if body is None else json.dumps(body).encode()
        status, _, data = self.request(method, path, payload, headers)
        return status, json.loads(data)


@pytest.fixture
def service() -> Iterator[InferenceService]:
    running = InferenceService()
    yield running
    running.close()


def serving(service: InferenceService, section: InferenceSection) -> Iterator[Client]:
    api = LocalApi(service, section)
    api.start()
    try:
        yield Client(api)
    finally:
        api.stop()


@pytest.fixture
def client(service: InferenceService) -> Iterator[Client]:
    yield from serving(service, InferenceSection(port=0, max_batch=MAX_BATCH))


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "edgefleet.sock"


@pytest.fixture
def unix_client(service: InferenceService, socket_path: Path) -> Iterator[Client]:
    socket_path.parent.mkdir()
    yield from serving(service, InferenceSection(unix_socket=str(socket_path), max_batch=MAX_BATCH))


@pytest.fixture(scope="module")
def samples(tflite_models: TfliteModels) -> Any:
    return tflite_models.representative[:8].astype(np.float64)


def test_no_model_yet_is_503(client: Client) -> None:
    assert client.json("GET", "/v1/model") == (
        503,
        {"error": "no_model", "detail": "no model is active yet"},
    )
    status, body = client.json("POST", "/v1/predict", {"inputs": [0.1, 0.2, 0.3, 0.4]})
    assert (status, body["error"]) == (503, "no_model")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_json_predictions_match_tensorflow(
    request: pytest.FixtureRequest,
    transport: str,
    service: InferenceService,
    int8_model: ServedModel,
    samples: Any,
) -> None:
    active: Client = request.getfixturevalue("client" if transport == "tcp" else "unix_client")
    service.activate(int8_model.load(), slot=Slot.B)
    expected = tensorflow_outputs(int8_model.data, samples.astype(np.float32))
    status, single = active.json("POST", "/v1/predict", {"inputs": samples[0].tolist()})
    assert status == 200
    assert (single["model"], single["version"]) == ("vibration", 2)
    assert single["latency_ms"] > 0
    np.testing.assert_allclose(single["outputs"], expected[0], atol=1e-6)
    status, batch = active.json("POST", "/v1/predict", {"inputs": samples.tolist()})
    assert status == 200
    np.testing.assert_allclose(batch["outputs"], expected, atol=1e-6)
    assert service.counters().inferences == 9


def test_raw_float32_in_and_out(
    client: Client, service: InferenceService, float_model: ServedModel, samples: Any
) -> None:
    service.activate(float_model.load())
    status, headers, body = client.request(
        "POST",
        "/v1/predict",
        samples.astype("<f4").tobytes(),
        {"Content-Type": "application/octet-stream"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Edgefleet-Output-Shape"] == "8,3"
    assert (headers["X-Edgefleet-Model"], headers["X-Edgefleet-Version"]) == ("vibration", "1")
    outputs = np.frombuffer(body, dtype="<f4").reshape(8, 3)
    np.testing.assert_allclose(
        outputs, tensorflow_outputs(float_model.data, samples.astype(np.float32)), atol=1e-6
    )


def test_model_description(
    client: Client, service: InferenceService, int8_model: ServedModel
) -> None:
    service.activate(int8_model.load(), slot=Slot.A)
    status, body = client.json("GET", "/v1/model")
    assert status == 200
    assert (body["model"], body["version"], body["slot"], body["runtime"]) == (
        "vibration",
        2,
        "a",
        "tflite_runtime",
    )
    assert body["sha256"] == int8_model.manifest.artifact.sha256
    assert body["inputs"][0]["dtype"] == "int8"
    assert body["inputs"][0]["shape"] == [1, 4]
    assert body["since"] > 0


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "bad_json"),
        (b'{"inputs": [0.1, 0.2, 0.3, 0.4], "extra": 1}', 400, "bad_json"),
        (b"[0.1, 0.2, 0.3, 0.4]", 400, "bad_json"),
        (b'{"inputs": [0.1, 0.2, 0.3]}', 400, "bad_shape"),
        (b'{"inputs": [[0.1, 0.2, 0.3, 0.4], [0.1]]}', 400, "bad_input"),
        (b'{"inputs": ["a", "b", "c", "d"]}', 400, "bad_dtype"),
        (b'{"inputs": [0.1, NaN, 0.3, 0.4]}', 400, "bad_json"),
        (b'{"inputs": [1e39, 0, 0, 0]}', 400, "non_finite_input"),
        (json.dumps({"inputs": [[0.0] * 4] * (MAX_BATCH + 1)}).encode(), 413, "batch_too_large"),
    ],
)
def test_bad_requests_get_a_reason_and_the_server_keeps_serving(
    client: Client,
    service: InferenceService,
    float_model: ServedModel,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    service.activate(float_model.load())
    got, _, answer = client.request(
        "POST", "/v1/predict", body, {"Content-Type": "application/json"}
    )
    assert (got, json.loads(answer)["error"]) == (status, reason)
    assert client.json("POST", "/v1/predict", {"inputs": [0.1, 0.2, 0.3, 0.4]})[0] == 200


def test_protocol_level_refusals(
    client: Client, service: InferenceService, float_model: ServedModel
) -> None:
    service.activate(float_model.load())
    assert client.json("GET", "/v1/nothing")[1]["error"] == "not_found"
    status, headers, body = client.request("GET", "/v1/predict")
    assert (status, headers["Allow"], json.loads(body)["error"]) == (
        405,
        "POST",
        "method_not_allowed",
    )
    raw = {"Content-Type": "application/octet-stream"}
    assert client.request("POST", "/v1/predict", b"\x00" * 12, raw)[0] == 400  # 3 floats
    # A body over the cap is refused from its Content-Length, before a byte is read.
    connection = client.connection()
    connection.putrequest("POST", "/v1/predict")
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(10**9))
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["error"]) == (413, "too_large")
    connection.close()
    # Chunked bodies have no length to check against the cap.
    # Headers and body go out in one send: the server answers (and closes) after the
    # headers, and a second send would race that close.
    connection = client.connection()
    connection.putrequest("POST", "/v1/predict")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders(b"2\r\n{}\r\n0\r\n\r\n")
    assert connection.getresponse().status == 411
    connection.close()


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GARBAGE\r\n\r\n", b"bad_request"),
        (b"\x00\xff" * 100 + b"\r\n\r\n", b"bad_request"),
        (b"GET / HTTP/9.9\r\n\r\n", b"http_version_not_supported"),
        (b"BREW /v1/predict HTTP/1.1\r\n\r\n", b"not_implemented"),
    ],
)
def test_garbage_on_the_socket_gets_an_answer_not_a_crash(
    client: Client,
    service: InferenceService,
    float_model: ServedModel,
    garbage: bytes,
    reason: bytes,
) -> None:
    service.activate(float_model.load())
    assert isinstance(client.address, tuple)
    with socket.create_connection(client.address, timeout=10) as raw:
        raw.sendall(garbage)
        answer = b"".join(iter(lambda: raw.recv(4096), b""))  # the server closes after an error
    # (A one-word request line is HTTP/0.9 to http.server: answered without a status line.)
    assert b'{"error":"' + reason + b'"' in answer
    assert client.json("POST", "/v1/predict", {"inputs": [0.1, 0.2, 0.3, 0.4]})[0] == 200


def test_a_stalled_client_does_not_block_the_others(
    client: Client, service: InferenceService, float_model: ServedModel
) -> None:
    service.activate(float_model.load())
    assert isinstance(client.address, tuple)
    with socket.create_connection(client.address, timeout=10) as stalled:
        stalled.sendall(b"POST /v1/predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        assert client.json("POST", "/v1/predict", {"inputs": [0.1, 0.2, 0.3, 0.4]})[0] == 200


def test_keep_alive_and_concurrent_clients(
    client: Client, service: InferenceService, float_model: ServedModel, samples: Any
) -> None:
    service.activate(float_model.load())
    failures: list[int] = []

    def call() -> None:
        connection = client.connection()
        for row in samples:
            connection.request("POST", "/v1/predict", body=json.dumps({"inputs": row.tolist()}))
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
        connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert service.counters().inferences == 32


def test_a_model_failing_is_a_500_with_its_reason(
    client: Client, service: InferenceService, nan_model: ServedModel
) -> None:
    service.activate(nan_model.load())
    status, body = client.json("POST", "/v1/predict", {"inputs": [1.0, -1.0, 1.0, 1.0]})
    assert (status, body["error"]) == (500, "inference_failed")
    assert service.counters().errors == 1


def test_unix_socket_is_0660_and_gone_after_stop(
    service: InferenceService, socket_path: Path
) -> None:
    socket_path.parent.mkdir()
    api = LocalApi(service, InferenceSection(unix_socket=str(socket_path)))
    api.start()
    assert stat.S_ISSOCK(socket_path.lstat().st_mode)
    assert stat.S_IMODE(socket_path.lstat().st_mode) == 0o660
    assert list(socket_path.parent.iterdir()) == [socket_path]  # no temporary name left
    api.stop()
    assert not socket_path.exists()


def test_a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not(
    service: InferenceService, socket_path: Path
) -> None:
    socket_path.parent.mkdir()
    section = InferenceSection(unix_socket=str(socket_path))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path))
    dead.close()  # the file stays, nobody listens: what a killed agent leaves
    first = LocalApi(service, section)
    first.start()
    with pytest.raises(LocalApiError, match="another process is serving"):
        LocalApi(service, section).start()
    first.stop()
    socket_path.write_text("precious")
    with pytest.raises(LocalApiError, match="is not a socket"):
        LocalApi(service, section).start()
    assert socket_path.read_text() == "precious"


def test_a_port_in_use_is_a_clear_error(service: InferenceService) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalApiError, match=f"cannot listen on 127.0.0.1:{port}"):
            LocalApi(service, InferenceSection(port=port)).start()


def test_a_client_hanging_up_mid_body_is_not_an_error(
    client: Client,
    service: InferenceService,
    float_model: ServedModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service.activate(float_model.load())
    assert isinstance(client.address, tuple)
    for _ in range(3):
        with socket.create_connection(client.address, timeout=10) as leaving:
            leaving.sendall(b"POST /v1/predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n[0.1")
    assert client.json("POST", "/v1/predict", {"inputs": [0.1, 0.2, 0.3, 0.4]})[0] == 200
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
