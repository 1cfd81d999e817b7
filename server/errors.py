"""The exception tree of ``edgefleet.server``.

Services raise these; exactly one place (the API's exception handlers) turns
them into HTTP responses, and the CLI turns them into exit codes. Errors from
``edgefleet.shared`` (a malformed message, an untrusted manifest) are
translated with ``raise ... from err`` where they cross into a service::

    EdgefleetError (edgefleet.shared.errors)
    └── ServerError
        ├── NotFoundError           404  no such device, group, model, version
        ├── ConflictError           409  exists already, wrong state for the action
        ├── InvalidInputError       422  well-formed request, unacceptable values
        ├── AuthenticationError     401  missing, unknown or expired token
        ├── PermissionDeniedError   403  token's role may not do this
        ├── BrokerError             503  broker unreachable or refused a command
        └── ConfigError                  settings or key material unusable at start-up
"""

from __future__ import annotations

from edgefleet.shared.errors import EdgefleetError


class ServerError(EdgefleetError):
    reason = "server_error"
    status_code = 500


class NotFoundError(ServerError):
    reason = "not_found"
    status_code = 404


class ConflictError(ServerError):
    reason = "conflict"
    status_code = 409


class InvalidInputError(ServerError):
    reason = "invalid"
    status_code = 422


class AuthenticationError(ServerError):
    reason = "unauthenticated"
    status_code = 401


class PermissionDeniedError(ServerError):
    reason = "forbidden"
    status_code = 403


class BrokerError(ServerError):
    reason = "broker_unavailable"
    status_code = 503


class ConfigError(ServerError):
    reason = "bad_config"
