"""Stripe webhook signatures: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]`.

Each `v1` is the hex HMAC-SHA256 of `t + "." + body`, keyed by the whole endpoint
secret string, `whsec_` prefix included (Stripe does not base64-decode it). During a
secret roll Stripe sends one `v1` per active secret. The event id is the body's `id`.
"""

from __future__ import annotations

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
    check_timestamp,
    check_tolerance,
    constant_time_equals,
    parse_json_object,
    parse_timestamp,
    require_header,
    require_secrets,
)

__all__ = ["StripeVerifier", "stripe_signature"]

HEADER = "stripe-signature"
DEFAULT_TOLERANCE_SECONDS = 300


def stripe_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Compute one `v1` value."""
    content = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


class StripeVerifier:
    """Verify Stripe deliveries against one or more endpoint secrets (`whsec_...`).

    Args:
        secrets: Active endpoint secrets; any `v1` made with any of them is accepted.
        tolerance_seconds: Allowed distance of `t` from the server clock, in both
            directions (default 300 s).
    """

    scheme: ClassVar[str] = "stripe"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        require_secrets(secrets, self.scheme, "endpoint secret")
        self._secrets = list(secrets)
        self._tolerance = check_tolerance(tolerance_seconds, self.scheme)

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        timestamp, signatures = _parse_header(require_header(delivery, HEADER))
        seconds = parse_timestamp(timestamp, "Stripe-Signature t")
        check_timestamp(seconds, self._tolerance, now, header="Stripe-Signature t")

        matched = False
        for secret in self._secrets:
            expected = stripe_signature(secret, timestamp, delivery.body)
            matched |= constant_time_equals(expected, signatures)
        if not matched:
            raise VerificationError(
                "signature_mismatch", "no v1 signature matches an endpoint secret"
            )
        payload = parse_json_object(delivery.body)
        event_id = payload.get("id") if payload else None
        return Verified(
            body=delivery.body, event_id=event_id if isinstance(event_id, str) else None
        )

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        timestamp = str(int(time.time() if now is None else now))
        signature = stripe_signature(self._secrets[0], timestamp, body)
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            HEADER: f"t={timestamp},v1={signature}",
        }
        return SignedRequest(method="POST", body=body, headers=headers)


def _parse_header(value: str) -> tuple[str, list[str]]:
    """Split the header into its timestamp and its `v1` signatures."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        key, separator, element = item.strip().partition("=")
        if not separator:
            raise VerificationError(
                "malformed_header", "Stripe-Signature has an element without '='"
            )
        if key == "t":
            timestamps.append(element)
        elif key == "v1":
            signatures.append(element.lower())
        # Other elements, such as v0, are ignored.
    if len(timestamps) != 1:
        raise VerificationError(
            "malformed_header",
            f"Stripe-Signature must carry one t=, found {len(timestamps)}",
        )
    if not signatures:
        raise VerificationError(
            "malformed_header", "Stripe-Signature carries no v1 signature"
        )
    return timestamps[0], signatures
