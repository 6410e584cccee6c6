"""HTTP Basic authentication (RFC 7617) with `user:password` secrets.

Like an API key, Basic credentials do not cover the body: use HTTPS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import ClassVar

from webhook_gateway.verification.base import (
    Delivery,
    SignedRequest,
    VerificationError,
    Verified,
    constant_time_equals,
    require_header,
    require_secrets,
)

__all__ = ["BasicAuthVerifier"]


class BasicAuthVerifier:
    """Accept deliveries whose `Authorization: Basic` matches an active credential.

    Args:
        secrets: Active credentials, each `user:password`.
    """

    scheme: ClassVar[str] = "basic"

    def __init__(self, secrets: Sequence[str]) -> None:
        require_secrets(secrets, self.scheme, "user:password credential")
        if any(":" not in secret for secret in secrets):
            raise ValueError(
                "basic: every secret must be 'user:password'; one has no ':'"
            )
        self._credentials = list(secrets)

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        value = require_header(delivery, "authorization").strip()
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise VerificationError(
                "malformed_header", "header 'authorization' is not 'Basic <base64>'"
            )
        try:
            credential = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            raise VerificationError(
                "malformed_header",
                "header 'authorization' is not base64 of UTF-8 'user:password'",
            ) from None
        if ":" not in credential:
            raise VerificationError(
                "malformed_header", "the Basic credential has no ':' after the user"
            )
        if not constant_time_equals(credential, self._credentials):
            raise VerificationError(
                "credential_mismatch", "the Basic credential matches no active one"
            )
        return Verified(body=delivery.body, secret_headers=frozenset({"authorization"}))

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        token = base64.b64encode(self._credentials[0].encode()).decode()
        headers = {
            "content-type": "application/json",
            "authorization": f"Basic {token}",
        }
        return SignedRequest(method="POST", body=body, headers=headers)
