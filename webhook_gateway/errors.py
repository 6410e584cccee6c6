"""Errors the gateway answers with, each carrying its HTTP status.

GatewayError
├── RouteNotFoundError      404
├── SignatureError          401
├── PayloadError            400
├── PayloadTooLargeError    413
├── TemplateError           422
├── EventNotFoundError      404
├── InvalidQueryError       400
├── ReplayConflictError     409
├── AdminTokenError         401
└── AdminDisabledError      503
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AdminDisabledError",
    "AdminTokenError",
    "EventNotFoundError",
    "GatewayError",
    "InvalidQueryError",
    "PayloadError",
    "PayloadTooLargeError",
    "ReplayConflictError",
    "RouteNotFoundError",
    "SignatureError",
    "TemplateError",
]


class GatewayError(Exception):
    """An error answered with `status_code` and a JSON body."""

    status_code = 500
    error = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


class RouteNotFoundError(GatewayError):
    status_code = 404
    error = "route_not_found"


class SignatureError(GatewayError):
    status_code = 401
    error = "verification_failed"


class PayloadError(GatewayError):
    status_code = 400
    error = "invalid_payload"


class PayloadTooLargeError(GatewayError):
    status_code = 413
    error = "payload_too_large"


class TemplateError(GatewayError):
    status_code = 422
    error = "template_failed"


class EventNotFoundError(GatewayError):
    status_code = 404
    error = "event_not_found"


class InvalidQueryError(GatewayError):
    status_code = 400
    error = "invalid_query"


class ReplayConflictError(GatewayError):
    status_code = 409
    error = "replay_conflict"


class AdminTokenError(GatewayError):
    status_code = 401
    error = "admin_token_invalid"


class AdminDisabledError(GatewayError):
    status_code = 503
    error = "admin_api_disabled"


class MethodNotAllowedError(GatewayError):
    status_code = 405
    error = "method_not_allowed"
