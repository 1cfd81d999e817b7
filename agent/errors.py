"""The exception tree of ``edgefleet.agent``.

Refusals of an update itself (bad signature, rollback, wrong profile, bad
bytes) are :mod:`edgefleet.shared.errors` types, raised by the shared
verifiers; the agent reports their ``reason`` unchanged. What can only go
wrong on the device lives here::

    AgentError
    ├── AgentConfigError         config file missing, unreadable or invalid
    ├── RuntimeUnavailableError  no TFLite interpreter package importable
    ├── ModelLoadError           a slot's file is not a model the interpreter runs
    ├── InferenceInputError      a predict request of the wrong shape, dtype or size
    ├── SelfTestError            a candidate's outputs miss its self-test vectors
    ├── StorageError             the data directory cannot be written (disk full, ...)
    ├── OutboxError              the telemetry outbox database is unusable
    ├── NoModelError             a prediction asked for before any model is active
    ├── InferenceFailedError     the interpreter failed or gave non-finite outputs
    ├── UpdateStateError         a persisted update state is unreadable, or a transition
    │                            the state machine does not allow (a bug, never acted on)
    ├── TransportError           the broker refused or failed a connection or a publish
    └── LocalApiError            the local inference API cannot listen where configured

Each carries a stable ``reason`` slug for ``failed(reason)`` events and
counters, like the shared tree.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of everything ``edgefleet.agent`` raises on purpose."""

    reason = "agent_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class AgentConfigError(AgentError):
    reason = "bad_config"


class RuntimeUnavailableError(AgentError):
    reason = "runtime_unavailable"


class ModelLoadError(AgentError):
    reason = "model_load_failed"


class InferenceInputError(AgentError):
    reason = "bad_input"


class SelfTestError(AgentError):
    reason = "self_test_failed"


class StorageError(AgentError):
    reason = "storage_failed"


class OutboxError(AgentError):
    reason = "outbox_failed"


class NoModelError(AgentError):
    reason = "no_model"


class InferenceFailedError(AgentError):
    """The model's fault, not the caller's: counted as an error against the model."""

    reason = "inference_failed"


class UpdateStateError(AgentError):
    reason = "bad_update_state"


class TransportError(AgentError):
    reason = "transport_failed"


class LocalApiError(AgentError):
    reason = "local_api_failed"
