"""Generic HMAC signatures: algorithm, encoding, header and signed content are options.

The signed content is a template over the raw body, for example `{timestamp}.{body}`
(the default is `{body}`). With `timestamp_header` set, the timestamp comes from that
header, is checked against `tolerance_seconds`, and fills `{timestamp}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Sequence
from typing import ClassVar

from webhook_gateway.verification.base import (
    Delivery,
    SignedRequest,
    VerificationError,
    Verified,
    check_timestamp,
    check_tolerance,
    constant_time_equals,
    parse_timestamp,
    require_header,
    require_secrets,
)

__all__ = ["HmacVerifier"]

DEFAULT_HEADER = "x-signature"
DEFAULT_SIGNED_CONTENT = "{body}"
DEFAULT_TOLERANCE_SECONDS = 300
ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
ENCODINGS = ("hex", "base64")
_PLACEHOLDER = re.compile(r"\{(body|timestamp)\}")


class HmacVerifier:
    """Verify an HMAC of a signed-content template over the raw body.

    Args:
        secrets: Active keys (UTF-8); a signature made with any of them is accepted.
        algorithm: `sha1`, `sha256` or `sha512`.
        encoding: `hex` (compared case-insensitively) or `base64`.
        header: Header that carries the signature.
        prefix: Text before the signature in the header, such as `sha256=`.
        signed_content: What is signed; `{body}` is the raw body and `{timestamp}`
            the value of `timestamp_header`.
        timestamp_header: Header with a Unix timestamp in seconds; unset means no
            timestamp check.
        tolerance_seconds: Allowed distance of that timestamp from the server clock,
            in both directions.
        event_id_header: Header whose value is the event id, such as a delivery id.
    """

    scheme: ClassVar[str] = "hmac"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        algorithm: str = "sha256",
        encoding: str = "hex",
        header: str = DEFAULT_HEADER,
        prefix: str = "",
        signed_content: str = DEFAULT_SIGNED_CONTENT,
        timestamp_header: str | None = None,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        event_id_header: str | None = None,
    ) -> None:
        require_secrets(secrets, self.scheme)
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"hmac: algorithm {algorithm!r} is not supported; use one of "
                f"{sorted(ALGORITHMS)}"
            )
        if encoding not in ENCODINGS:
            raise ValueError(
                f"hmac: encoding {encoding!r} is not supported; use 'hex' or 'base64'"
            )
        self._parts = _parse_signed_content(signed_content)
        uses_timestamp = "{timestamp}" in self._parts
        if uses_timestamp and not timestamp_header:
            raise ValueError(
                f"hmac: signed_content {signed_content!r} uses {{timestamp}}; "
                "set timestamp_header to the header that carries it"
            )
        self._secrets = [secret.encode() for secret in secrets]
        self._hash = ALGORITHMS[algorithm]
        self._encoding = encoding
        self._header = header.lower()
        self._prefix = prefix
        self._timestamp_header = timestamp_header.lower() if timestamp_header else None
        self._tolerance = check_tolerance(tolerance_seconds, self.scheme)
        self._event_id_header = event_id_header.lower() if event_id_header else None

    def _content(self, body: bytes, timestamp: str) -> bytes:
        values = {"{body}": body, "{timestamp}": timestamp.encode()}
        return b"".join(values.get(part, part.encode()) for part in self._parts)

    def _signature(self, secret: bytes, content: bytes) -> str:
        digest = hmac.new(secret, content, self._hash).digest()
        if self._encoding == "hex":
            return digest.hex()
        return base64.b64encode(digest).decode()

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        provided = require_header(delivery, self._header).strip()
        if self._prefix:
            if not provided.startswith(self._prefix):
                raise VerificationError(
                    "malformed_header",
                    f"header {self._header!r} does not start with {self._prefix!r}",
                )
            provided = provided[len(self._prefix) :]
        if self._encoding == "hex":
            provided = provided.lower()

        timestamp = ""
        if self._timestamp_header:
            timestamp = require_header(delivery, self._timestamp_header).strip()
            seconds = parse_timestamp(timestamp, f"header {self._timestamp_header!r}")
            check_timestamp(
                seconds,
                self._tolerance,
                now,
                header=f"header {self._timestamp_header!r}",
            )

        content = self._content(delivery.body, timestamp)
        expected = [self._signature(secret, content) for secret in self._secrets]
        if not constant_time_equals(provided, expected):
            raise VerificationError("signature_mismatch", "signature matches no secret")
        event_id = None
        if self._event_id_header:
            event_id = delivery.headers.get(self._event_id_header) or None
        return Verified(body=delivery.body, event_id=event_id)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        headers = {"content-type": "application/json"}
        timestamp = ""
        if self._timestamp_header:
            timestamp = str(int(time.time() if now is None else now))
            headers[self._timestamp_header] = timestamp
        signature = self._signature(self._secrets[0], self._content(body, timestamp))
        headers[self._header] = self._prefix + signature
        if self._event_id_header:
            headers[self._event_id_header] = uuid.uuid4().hex
        return SignedRequest(method="POST", body=body, headers=headers)


def _parse_signed_content(template: str) -> list[str]:
    """Split a signed-content template into literal text and placeholders."""
    if "{body}" not in template:
        raise ValueError(
            f"hmac: signed_content {template!r} must contain {{body}}, or the body "
            "would not be signed"
        )
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(template[position : match.start()])
        parts.append(match.group(0))
        position = match.end()
    parts.append(template[position:])
    leftover = [part for part in parts if not _PLACEHOLDER.fullmatch(part)]
    if any("{" in part or "}" in part for part in leftover):
        raise ValueError(
            f"hmac: signed_content {template!r} has an unknown placeholder; only "
            "{body} and {timestamp} exist"
        )
    return [part for part in parts if part]
