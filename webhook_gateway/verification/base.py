"""The interface every signature scheme implements."""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

__all__ = [
    "Delivery",
    "Handshake",
    "HandshakeSigner",
    "SignedRequest",
    "VerificationError",
    "Verified",
    "Verifier",
    "check_timestamp",
    "check_tolerance",
    "constant_time_equals",
    "parse_json_object",
    "parse_options",
    "parse_timestamp",
    "require_header",
    "require_secrets",
]

# At most 16 digits: milliseconds until the year 2286, and no huge int() parses.
_DECIMAL = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True)
class Delivery:
    """An inbound HTTP request, as passed to a scheme.

    Header names are lower-cased by the caller, so schemes look them up in lower case.
    """

    method: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Handshake:
    """A response a scheme sends itself, without storing an event.

    Feishu's `url_verification`, WeCom's URL check and GitHub's `ping` are handshakes.
    """

    content: bytes
    media_type: str = "application/json"
    status_code: int = 200


@dataclass(frozen=True)
class Verified:
    """The outcome of a successful verification.

    Attributes:
        body: The payload to store, decrypted where the scheme encrypts it.
        event_id: The delivery id carried by the scheme itself (for example
            `webhook-id`), or None when the route's event-id template decides.
        handshake: Set when the request is a platform handshake that gets a direct response.
        secret_headers: Lower-case names of headers that carry a credential (an API
            key) and must not be stored with the event.
    """

    body: bytes
    event_id: str | None = None
    handshake: Handshake | None = None
    secret_headers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SignedRequest:
    """A request signed by a scheme, used to print a ready-to-run curl command."""

    method: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


class VerificationError(Exception):
    """A delivery failed verification.

    Attributes:
        reason: A stable code for metrics and the 401 response, such as
            `signature_mismatch`, `timestamp_expired` or `missing_header`.
        detail: A sentence for the log. It never contains a secret or a signature.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Verifier(Protocol):
    """A signature scheme configured for one route.

    Implementations take the route's active secrets (several during a rotation, any
    of which may match) and scheme options, and never import FastAPI.
    """

    scheme: ClassVar[str]

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        """Check a delivery and return its payload, or raise VerificationError."""
        ...

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        """Sign a body with the first active secret, as the sender would."""
        ...


class HandshakeSigner(Protocol):
    """A verifier whose platform also sends a handshake (URL check, ping)."""

    def sign_handshake(self, *, now: float | None = None) -> SignedRequest:
        """Build the handshake request the platform sends, signed."""
        ...


def constant_time_equals(
    expected: str | bytes, candidates: Sequence[str | bytes]
) -> bool:
    """Compare one value against candidates in constant time per candidate."""
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    matched = False
    for candidate in candidates:
        candidate_bytes = (
            candidate.encode() if isinstance(candidate, str) else candidate
        )
        # Every candidate is compared, so the time does not reveal which one matched.
        matched |= hmac.compare_digest(expected_bytes, candidate_bytes)
    return matched


def require_header(delivery: Delivery, name: str) -> str:
    """Return a header's value or raise `missing_header`."""
    value = delivery.headers.get(name)
    if value is None or value == "":
        raise VerificationError("missing_header", f"header {name!r} is missing")
    return value


def require_secrets(secrets: Sequence[str], scheme: str, what: str = "secret") -> None:
    """Raise ValueError when a scheme that needs secrets got none or an empty one."""
    if not secrets:
        raise ValueError(
            f"the {scheme} scheme needs at least one {what}; list it under 'secrets'"
        )
    if any(not secret for secret in secrets):
        raise ValueError(f"the {scheme} scheme got an empty {what}")


def check_timestamp(
    timestamp: float, tolerance: float, now: float | None, *, header: str
) -> None:
    """Raise `timestamp_expired` when a timestamp (seconds) is outside the tolerance.

    The window is symmetric: a timestamp too far in the future fails as well, so a
    sender's clock skew shows up as the same reason.
    """
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise VerificationError(
            "timestamp_expired",
            f"{header} is {current - timestamp:+.0f} s from the server clock, "
            f"outside the tolerance of {tolerance:g} s",
        )


def parse_timestamp(value: str, header: str) -> int:
    """Parse an ASCII decimal timestamp or raise `malformed_header`."""
    if not _DECIMAL.fullmatch(value):
        raise VerificationError(
            "malformed_header", f"{header} is not a decimal timestamp: {value[:32]!r}"
        )
    return int(value)


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """Return the body as a JSON object, or None when it is not one."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def check_tolerance(value: float, scheme: str) -> float:
    """Validate a `tolerance_seconds` option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(
            f"{scheme}: tolerance_seconds must be a positive number, got {value!r}"
        )
    return float(value)


def parse_options(options: Mapping[str, Any], allowed: set[str], scheme: str) -> None:
    """Raise ValueError for option names a scheme does not know."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"verification scheme {scheme!r} has unknown option(s) {unknown}; "
            f"allowed: {sorted(allowed)}"
        )
