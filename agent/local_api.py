"""The local inference API: applications on the device ask the served model over HTTP.

Stdlib only (``http.server``), on loopback TCP or a UNIX socket. A UNIX
socket is created under a temporary name, set to mode 0660 and renamed into
place, so there is no moment at which another user could connect; a stale
socket left by a dead agent is removed, a live one (another agent) or a file
that is not a socket is left alone and refused.

``POST /v1/predict`` takes ``{"inputs": ...}`` (one sample, or a batch with a
leading axis) and answers ``{"outputs", "model", "version", "latency_ms"}``;
with ``Content-Type: application/octet-stream`` it takes raw little-endian
float32 samples back to back and answers the outputs the same way (shape and
model in ``X-Edgefleet-*`` headers). ``GET /v1/model`` describes the served
model. Errors are ``{"error": reason, "detail": text}``.

A client cannot take the server down: bodies are capped before they are
read (``max_batch`` samples of the served model's input), sockets time out,
and every failure inside a handler becomes a 5xx answer and a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.errors import (
    InferenceFailedError,
    InferenceInputError,
    LocalApiError,
    NoModelError,
)
from edgefleet.agent.inference import ActiveModel, InferenceService
from edgefleet.shared import jsoncodec, schema
from edgefleet.shared.agent_config import InferenceSection
from edgefleet.shared.errors import MessageError

log = logging.getLogger(__name__)

JSON_BYTES_PER_VALUE = 32
"""Room per input value in a JSON body: ``-1.2345678901234567e-308,`` is 26 bytes."""
JSON_OVERHEAD = 4096
RAW = "application/octet-stream"
SOCKET_MODE = 0o660
REQUEST_TIMEOUT = 10.0
ROUTES = {"/v1/predict": "POST", "/v1/model": "GET"}


class _ApiError(Exception):
    def __init__(
        self, status: HTTPStatus, reason: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    server: _Server

    def do_GET(self) -> None:  # noqa: N802  (the name http.server dispatches to)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        path = self.path.partition("?")[0]
        try:
            self._route(method, path)()
        except _ApiError as err:
            self._send_error(err)
        except (ConnectionError, TimeoutError) as err:
            self._client_gone(err)
        except Exception:
            log.exception("local API: %s %s failed", method, path)
            self._send_error(
                _ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "the agent failed")
            )

    def _client_gone(self, err: OSError) -> None:
        self.close_connection = True
        log.debug("local API: the client went away or stalled: %s", err)

    def _route(self, method: str, path: str) -> Callable[[], None]:
        allowed = ROUTES.get(path)
        if allowed is None:
            raise _ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no route {path}")
        if method != allowed:
            raise _ApiError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                f"{path} takes {allowed}, not {method}",
                {"Allow": allowed},
            )
        return self._predict if path == "/v1/predict" else self._model

    def _model(self) -> None:
        self._send_json(HTTPStatus.OK, _describe(self._active()))

    # -- predict -----------------------------------------------------------------------

    def _predict(self) -> None:
        active = self._active()
        runner = active.runner
        sample_size = math.prod(runner.input_shape)
        max_batch = self.server.section.max_batch
        raw = self.headers.get_content_type() == RAW
        per_value = 4 if raw else JSON_BYTES_PER_VALUE
        body = self._body(cap=max_batch * sample_size * per_value + (0 if raw else JSON_OVERHEAD))
        if raw:
            if not body or len(body) % (4 * sample_size):
                raise _ApiError(
                    HTTPStatus.BAD_REQUEST,
                    "bad_size",
                    f"{len(body)} bytes is not a whole number of samples of "
                    f"{sample_size} float32 values ({4 * sample_size} bytes)",
                )
            array = np.frombuffer(body, dtype="<f4").reshape(-1, *runner.input_shape)
        else:
            array = _json_array(body, depth=len(runner.input_shape) + 3)
        single = array.shape == runner.input_shape
        if not single and array.ndim and array.shape[0] > max_batch:
            raise _ApiError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "batch_too_large",
                f"{array.shape[0]} samples in one request; the limit is {max_batch}",
            )
        started = time.perf_counter()
        outputs = self._serve(array)
        latency_ms = (time.perf_counter() - started) * 1000.0
        manifest = runner.manifest
        if raw:
            self._send(
                HTTPStatus.OK,
                outputs.astype("<f4").tobytes(),
                RAW,
                {
                    "X-Edgefleet-Model": manifest.model,
                    "X-Edgefleet-Version": str(manifest.version),
                    "X-Edgefleet-Output-Shape": ",".join(map(str, outputs.shape)),
                    "X-Edgefleet-Latency-Ms": f"{latency_ms:.3f}",
                },
            )
            return
        self._send_json(
            HTTPStatus.OK,
            {
                "outputs": (outputs[0] if single else outputs).tolist(),
                "model": manifest.model,
                "version": manifest.version,
                "latency_ms": latency_ms,
            },
        )

    def _serve(self, inputs: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        try:
            return self.server.service.predict(inputs)
        except NoModelError as err:
            raise _ApiError(HTTPStatus.SERVICE_UNAVAILABLE, err.reason, str(err)) from err
        except InferenceInputError as err:
            raise _ApiError(HTTPStatus.BAD_REQUEST, err.reason, str(err)) from err
        except InferenceFailedError as err:
            raise _ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, err.reason, str(err)) from err

    def _active(self) -> ActiveModel:
        active = self.server.service.active
        if active is None:
            raise _ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "no_model", "no model is active yet")
        return active

    def _body(self, *, cap: int) -> bytes:
        if "Transfer-Encoding" in self.headers:
            raise _ApiError(
                HTTPStatus.LENGTH_REQUIRED, "length_required", "send a Content-Length, not chunks"
            )
        text = self.headers.get("Content-Length")
        if text is None:
            raise _ApiError(HTTPStatus.LENGTH_REQUIRED, "length_required", "Content-Length missing")
        if not text.isdigit():
            raise _ApiError(HTTPStatus.BAD_REQUEST, "bad_length", f"Content-Length {text!r}")
        length = int(text)
        if length > cap:
            raise _ApiError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too_large",
                f"{length} bytes; requests to this model are capped at {cap}",
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise _ApiError(HTTPStatus.BAD_REQUEST, "truncated", "the body ended early")
        return body

    # -- answers -------------------------------------------------------------------

    def _send_error(self, err: _ApiError) -> None:
        # The body of a refused request may still be unread: this connection cannot go on.
        self.close_connection = True
        try:
            self._send_json(err.status, {"error": err.reason, "detail": err.detail}, err.headers)
        except (ConnectionError, TimeoutError) as gone:
            self._client_gone(gone)

    def _send_json(
        self, status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self._send(status, payload, "application/json", headers)

    def _send(
        self,
        status: HTTPStatus,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method) in our JSON shape."""
        status = HTTPStatus(code)
        self._send_error(_ApiError(status, status.phrase.lower().replace(" ", "_"), message or ""))

    def address_string(self) -> str:
        # A UNIX socket peer has no address: http.server would index an empty string.
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the stdlib's name)
        log.debug("local API %s: " + format, self.address_string(), *args)


def _json_array(body: bytes, *, depth: int) -> npt.NDArray[Any]:
    try:
        parsed = jsoncodec.parse(body, max_bytes=len(body) or 1, max_depth=depth)
    except MessageError as err:
        raise _ApiError(HTTPStatus.BAD_REQUEST, "bad_json", str(err)) from err
    if not isinstance(parsed, dict) or set(parsed) != {"inputs"}:
        raise _ApiError(
            HTTPStatus.BAD_REQUEST, "bad_json", 'the body must be an object {"inputs": [...]}'
        )
    try:
        return np.asarray(parsed["inputs"])
    except ValueError as err:  # ragged nesting
        raise _ApiError(
            HTTPStatus.BAD_REQUEST, "bad_input", f"inputs are not a rectangular array: {err}"
        ) from err


def _describe(active: ActiveModel) -> dict[str, Any]:
    manifest = active.runner.manifest
    return {
        "model": manifest.model,
        "version": manifest.version,
        "hardware_profile": manifest.hardware_profile,
        "sha256": manifest.artifact.sha256,
        "inputs": [schema.to_json(t) for t in manifest.inputs],
        "outputs": [schema.to_json(t) for t in manifest.outputs],
        "slot": None if active.slot is None else active.slot.value,
        "since": active.since,
        "runtime": active.runner.runtime,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: Any, service: InferenceService, section: InferenceSection) -> None:
        self.service = service
        self.section = section
        super().__init__(address, _Handler)


class _Tcp6Server(_Server):
    address_family = socket.AF_INET6


class _UnixServer(_Server):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        final = str(self.server_address)
        temporary = f"{final}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        self.socket.bind(temporary)
        os.chmod(temporary, SOCKET_MODE)
        os.replace(temporary, final)
        self.server_name = "localhost"
        self.server_port = 0


class LocalApi:
    """The HTTP server on its own daemon thread; :meth:`start`, then :meth:`stop`."""

    def __init__(self, service: InferenceService, section: InferenceSection) -> None:
        self._service = service
        self._section = section
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | str:
        """Where it listens: ``(host, port)`` (the real port when 0 was asked) or a socket path."""
        if self._server is None:
            raise LocalApiError("the local API is not running")
        if isinstance(self._server, _UnixServer):
            return str(self._server.server_address)
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        section = self._section
        try:
            if section.unix_socket is not None:
                _clear_stale_socket(Path(section.unix_socket))
                server: _Server = _UnixServer(section.unix_socket, self._service, section)
            else:
                kind = _Tcp6Server if ":" in section.host else _Server
                server = kind((section.host, section.port), self._service, section)
        except OSError as err:
            where = section.unix_socket or f"{section.host}:{section.port}"
            raise LocalApiError(f"the local API cannot listen on {where}: {err}") from err
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgefleet-api"
        )
        self._thread.daemon = True
        self._thread.start()
        log.info("local inference API on %s", self.address)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if isinstance(server, _UnixServer):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(server.server_address))


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket nobody listens on; refuse a live one or anything that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise LocalApiError(f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        log.info("removed the stale socket %s", path)
        return
    finally:
        probe.close()
    raise LocalApiError(f"another process is serving on {path}")
