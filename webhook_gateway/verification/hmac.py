"""Generic HMAC signatures of the raw body in a configurable header."""

from __future__ import annotations

import hashlib
import hmac
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

__all__ = ["HmacVerifier"]

DEFAULT_HEADER = "x-signature"


class HmacVerifier:
    """Verify a hex HMAC-SHA256 of the raw body, with an optional `sha256=` prefix."""

    scheme: ClassVar[str] = "hmac"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        header: str = DEFAULT_HEADER,
        prefix: str = "",
    ) -> None:
        if not secrets:
            raise ValueError("the hmac scheme needs at least one secret")
        self._secrets = [secret.encode() for secret in secrets]
        self._header = header.lower()
        self._prefix = prefix

    def _digest(self, secret: bytes, body: bytes) -> str:
        return hmac.new(secret, body, hashlib.sha256).hexdigest()

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        provided = require_header(delivery, self._header).strip()
        if self._prefix:
            if not provided.startswith(self._prefix):
                raise VerificationError(
                    "malformed_header",
                    f"header {self._header!r} does not start with {self._prefix!r}",
                )
            provided = provided[len(self._prefix) :]
        expected = [self._digest(secret, delivery.body) for secret in self._secrets]
        if not constant_time_equals(provided.lower(), expected):
            raise VerificationError("signature_mismatch", "signature matches no secret")
        return Verified(body=delivery.body)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        signature = self._prefix + self._digest(self._secrets[0], body)
        headers = {"content-type": "application/json", self._header: signature}
        return SignedRequest(method="POST", body=body, headers=headers)
