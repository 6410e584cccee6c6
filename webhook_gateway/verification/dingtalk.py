"""DingTalk enterprise-bot callback signatures.

DingTalk sends `timestamp` (milliseconds) and `sign`, the base64 HMAC-SHA256 keyed by
the app secret over `timestamp + "\\n" + app_secret`. The signature does not cover the
body, so a captured (timestamp, sign) pair can be replayed with another body within
the tolerance. The defence is the inbox's dedupe on the message id together with the
tolerance window; set the route's event id to `body.msgId`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import ClassVar

from webhook_gateway.verification.base import (
    Delivery,
    SignedRequest,
    VerificationError,
    Verified,
    constant_time_equals,
    require_header,
)

__all__ = ["DingTalkVerifier", "dingtalk_sign"]

DEFAULT_TOLERANCE_SECONDS = 3600


def dingtalk_sign(timestamp_ms: str, app_secret: str) -> str:
    """Compute DingTalk's `sign` header for a timestamp in milliseconds."""
    message = f"{timestamp_ms}\n{app_secret}".encode()
    digest = hmac.new(app_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkVerifier:
    """Verify DingTalk bot callbacks against one or more app secrets."""

    scheme: ClassVar[str] = "dingtalk"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        if not secrets:
            raise ValueError("the dingtalk scheme needs at least one app secret")
        if tolerance_seconds <= 0:
            raise ValueError(
                f"tolerance_seconds must be positive, got {tolerance_seconds!r}"
            )
        self._secrets = list(secrets)
        self._tolerance = tolerance_seconds

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        timestamp = require_header(delivery, "timestamp")
        provided = require_header(delivery, "sign")
        if not timestamp.isdigit():
            raise VerificationError(
                "malformed_header", f"header 'timestamp' is not milliseconds: {timestamp!r}"
            )
        current = time.time() if now is None else now
        if abs(current - int(timestamp) / 1000) > self._tolerance:
            raise VerificationError(
                "timestamp_expired",
                f"timestamp is more than {self._tolerance:g} s from the server clock",
            )
        expected = [dingtalk_sign(timestamp, secret) for secret in self._secrets]
        if not constant_time_equals(provided, expected):
            raise VerificationError("signature_mismatch", "sign matches no app secret")
        return Verified(body=delivery.body)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        current = time.time() if now is None else now
        timestamp = str(int(current * 1000))
        headers = {
            "content-type": "application/json",
            "timestamp": timestamp,
            "sign": dingtalk_sign(timestamp, self._secrets[0]),
        }
        return SignedRequest(method="POST", body=body, headers=headers)
