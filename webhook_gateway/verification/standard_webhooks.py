"""Standard Webhooks signatures (the specification at standardwebhooks.com).

Headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
space-separated list of `v1,<base64>` entries. Each entry is the base64 HMAC-SHA256
of `id.timestamp.body`, keyed by the base64-decoded secret after its `whsec_` prefix.
`webhook-id` is the event id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
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

__all__ = ["StandardWebhooksVerifier", "decode_secret", "standard_signature"]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def decode_secret(secret: str) -> bytes:
    """Return the signing key: the base64-decoded secret after `whsec_`.

    Raises:
        ValueError: The secret is not base64 (the message never shows it).
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "standard-webhooks: a secret is not base64 after its 'whsec_' prefix; "
            "copy it exactly as the sender shows it"
        ) from None
    if not key:
        raise ValueError("standard-webhooks: a secret decodes to an empty key")
    return key


def standard_signature(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """Compute one `v1,<base64>` entry."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class StandardWebhooksVerifier:
    """Verify Standard Webhooks deliveries against one or more `whsec_` secrets.

    Args:
        secrets: Active secrets; any signature made with any of them is accepted.
        tolerance_seconds: Allowed distance of `webhook-timestamp` from the server
            clock, in both directions (the specification uses 5 minutes).
    """

    scheme: ClassVar[str] = "standard-webhooks"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        require_secrets(secrets, self.scheme)
        self._keys = [decode_secret(secret) for secret in secrets]
        self._tolerance = check_tolerance(tolerance_seconds, self.scheme)

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        message_id = require_header(delivery, ID_HEADER)
        timestamp = require_header(delivery, TIMESTAMP_HEADER).strip()
        provided = _parse_signatures(require_header(delivery, SIGNATURE_HEADER))
        seconds = parse_timestamp(timestamp, f"header {TIMESTAMP_HEADER!r}")
        check_timestamp(
            seconds, self._tolerance, now, header=f"header {TIMESTAMP_HEADER!r}"
        )

        matched = False
        for key in self._keys:
            expected = standard_signature(key, message_id, timestamp, delivery.body)
            matched |= constant_time_equals(expected, provided)
        if not matched:
            raise VerificationError(
                "signature_mismatch", "no v1 signature matches a secret"
            )
        return Verified(body=delivery.body, event_id=message_id)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        message_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(time.time() if now is None else now))
        headers = {
            "content-type": "application/json",
            ID_HEADER: message_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: standard_signature(
                self._keys[0], message_id, timestamp, body
            ),
        }
        return SignedRequest(method="POST", body=body, headers=headers)


def _parse_signatures(value: str) -> list[str]:
    """Return the `v1,...` entries of the signature header."""
    entries = value.split()
    for entry in entries:
        version, separator, signature = entry.partition(",")
        if not separator or not version or not signature:
            raise VerificationError(
                "malformed_header",
                f"header {SIGNATURE_HEADER!r} has an entry that is not "
                "'<version>,<signature>'",
            )
    # Other versions (v1a is the asymmetric variant) are skipped, as the
    # specification requires.
    signatures = [entry for entry in entries if entry.startswith("v1,")]
    if not signatures:
        raise VerificationError(
            "malformed_header", f"header {SIGNATURE_HEADER!r} has no v1 signature"
        )
    return signatures
