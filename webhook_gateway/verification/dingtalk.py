"""DingTalk enterprise-bot callback signatures.

DingTalk sends `timestamp` (milliseconds) and `sign`, the base64 HMAC-SHA256 keyed by
the app secret over `timestamp + "\\n" + app_secret`.

The signature does not cover the body, so anyone who captures one (timestamp, sign)
pair can send other bodies with it until the timestamp leaves the one-hour window.
Two defences work together:

- The event id is the body's `msgId`, and the inbox stores one event per id, so a
  replayed body with the same `msgId` starts no second run.
- This verifier remembers every (timestamp, sign) pair it accepted, with a digest of
  the body, until the pair leaves the window. The same pair with the same body (a
  redelivery) passes on to the dedupe; the same pair with another body fails with
  `replayed_signature`.

NOTE: the pair memory is per process. Several gateways behind one load balancer do
not share it, so there the `msgId` dedupe and the window are the only defence.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
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
    parse_json_object,
    parse_timestamp,
    require_header,
    require_secrets,
)

__all__ = ["DingTalkVerifier", "dingtalk_sign"]

DEFAULT_TOLERANCE_SECONDS = 3600
# Pairs remembered at most; the oldest are forgotten first beyond this.
MAX_REMEMBERED_SIGNATURES = 100_000


def dingtalk_sign(timestamp_ms: str, app_secret: str) -> str:
    """Compute DingTalk's `sign` header for a timestamp in milliseconds."""
    message = f"{timestamp_ms}\n{app_secret}".encode()
    digest = hmac.new(app_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkVerifier:
    """Verify DingTalk bot callbacks against one or more app secrets.

    Args:
        secrets: Active app secrets; any of them may match.
        tolerance_seconds: Allowed distance of `timestamp` from the server clock, in
            both directions (default one hour).
        reject_reused_sign: Reject a (timestamp, sign) pair seen before with another
            body.
    """

    scheme: ClassVar[str] = "dingtalk"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        reject_reused_sign: bool = True,
    ) -> None:
        require_secrets(secrets, self.scheme, "app secret")
        self._secrets = list(secrets)
        self._tolerance = check_tolerance(tolerance_seconds, self.scheme)
        self._reject_reused_sign = bool(reject_reused_sign)
        # (timestamp, sign) -> (body digest, expiry), oldest first.
        self._seen: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        timestamp = require_header(delivery, "timestamp").strip()
        provided = require_header(delivery, "sign").strip()
        milliseconds = parse_timestamp(timestamp, "header 'timestamp'")
        current = time.time() if now is None else now
        check_timestamp(
            milliseconds / 1000, self._tolerance, current, header="header 'timestamp'"
        )
        expected = [dingtalk_sign(timestamp, secret) for secret in self._secrets]
        if not constant_time_equals(provided, expected):
            raise VerificationError("signature_mismatch", "sign matches no app secret")
        if self._reject_reused_sign:
            self._remember(timestamp, provided, delivery.body, current)

        payload = parse_json_object(delivery.body)
        message_id = payload.get("msgId") if payload else None
        return Verified(
            body=delivery.body,
            event_id=message_id if isinstance(message_id, str) and message_id else None,
        )

    def _remember(self, timestamp: str, sign: str, body: bytes, now: float) -> None:
        digest = hashlib.sha256(body).digest()
        key = (timestamp, sign)
        with self._lock:
            while self._seen:
                oldest_key, (_, expiry) = next(iter(self._seen.items()))
                if expiry > now and len(self._seen) < MAX_REMEMBERED_SIGNATURES:
                    break
                del self._seen[oldest_key]
            seen = self._seen.get(key)
            if seen is not None and not hmac.compare_digest(seen[0], digest):
                raise VerificationError(
                    "replayed_signature",
                    "this timestamp and sign were already used with another body",
                )
            if seen is None:
                # The pair stays valid until its timestamp leaves the window.
                expiry = int(timestamp) / 1000 + self._tolerance
                self._seen[key] = (digest, expiry)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        current = time.time() if now is None else now
        timestamp = str(int(current * 1000))
        headers = {
            "content-type": "application/json",
            "timestamp": timestamp,
            "sign": dingtalk_sign(timestamp, self._secrets[0]),
        }
        return SignedRequest(method="POST", body=body, headers=headers)
