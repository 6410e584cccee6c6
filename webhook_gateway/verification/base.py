"""The interface every signature scheme implements."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

__all__ = [
    "Delivery",
    "Handshake",
    "SignedRequest",
    "Verified",
    "VerificationError",
    "Verifier",
    "constant_time_equals",
]


@dataclass(frozen=True)
class Delivery:
    """An inbound HTTP request as a scheme sees it.

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
        handshake: Set when the request is a platform handshake to answer directly.
    """

    body: bytes
    event_id: str | None = None
    handshake: Handshake | None = None


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
        reason: A stable code for metrics and the 401 answer, such as
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


def constant_time_equals(expected: str | bytes, candidates: Sequence[str | bytes]) -> bool:
    """Compare one value against candidates in constant time per candidate."""
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    matched = False
    for candidate in candidates:
        candidate_bytes = candidate.encode() if isinstance(candidate, str) else candidate
        # Every candidate is compared, so the time does not reveal which one matched.
        matched |= hmac.compare_digest(expected_bytes, candidate_bytes)
    return matched


def require_header(delivery: Delivery, name: str) -> str:
    """Return a header's value or raise `missing_header`."""
    value = delivery.headers.get(name)
    if value is None or value == "":
        raise VerificationError("missing_header", f"header {name!r} is missing")
    return value


def parse_options(options: Mapping[str, Any], allowed: set[str], scheme: str) -> None:
    """Raise ValueError for option names a scheme does not know."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"verification scheme {scheme!r} has unknown option(s) {unknown}; "
            f"allowed: {sorted(allowed)}"
        )
