"""Errors the gateway responds with, each carrying its HTTP status.

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

FastAPI's own errors (unknown path, wrong method, invalid query parameter) are
turned into the same body by `describe_http_error` and `describe_validation_error`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
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
    "describe_http_error",
    "describe_validation_error",
]


class GatewayError(Exception):
    """An error sent as a response with `status_code` and a JSON body."""

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


def describe_http_error(
    status_code: int,
    detail: str,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Describe a routing error from Starlette as a gateway error body."""
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "HTTP error"
    error = phrase.lower().replace(" ", "_").replace("-", "_")
    if detail != phrase:
        message = detail
    elif status_code == 404:
        message = f"no endpoint at {path!r}; webhooks are delivered to /hooks/<route>"
    elif status_code == 405:
        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        allowed = lowered.get("allow", "")
        message = f"method {method} is not allowed on {path!r}"
        if allowed:
            message += f"; use one of: {allowed}"
    else:
        message = f"{method} {path!r} failed: {detail}"
    return {"error": error, "message": message}


def describe_validation_error(errors: Sequence[Mapping[str, Any]]) -> str:
    """Describe FastAPI's request validation errors in one message.

    Each error names the parameter, what it must be, and the value received, for
    example "query parameter 'limit' must be at most 500, got 100000".
    """
    return "; ".join(_describe_one_invalid(error) for error in errors)


def _describe_one_invalid(error: Mapping[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ())]
    kind = location[0] if location else "request"
    name = ".".join(location[1:])
    subject = {
        "query": f"query parameter {name!r}",
        "path": f"path parameter {name!r}",
        "header": f"header {name!r}",
        "cookie": f"cookie {name!r}",
    }.get(kind, f"{kind} field {name!r}" if name else kind)
    error_type = error.get("type", "")
    context = error.get("ctx") or {}
    if error_type == "missing":
        return f"{subject} is missing"
    if error_type == "less_than_equal":
        requirement = f"must be at most {context.get('le')}"
    elif error_type == "greater_than_equal":
        requirement = f"must be at least {context.get('ge')}"
    elif error_type == "int_parsing":
        requirement = "must be an integer"
    elif error_type.startswith(("datetime_", "date_")):
        requirement = (
            "must be an ISO 8601 date or date-time such as 2026-01-31 or "
            "2026-01-31T12:00:00Z"
        )
    elif error_type == "bool_parsing":
        requirement = "must be true or false"
    else:
        requirement = f"is invalid ({error.get('msg', 'invalid value')})"
    return f"{subject} {requirement}, got {_show_input(error.get('input'))}"


def _show_input(value: Any) -> str:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return value
    return repr(value)
