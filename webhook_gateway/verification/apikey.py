"""A shared API key in a request header, such as `X-API-Key` or `Authorization`.

The key is not a signature. It does not cover the body, and anyone who captures one
request can reuse the key for others. Use it only over HTTPS and only for senders that can do no
better.
"""

from __future__ import annotations

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

__all__ = ["ApiKeyVerifier"]

DEFAULT_HEADER = "x-api-key"


class ApiKeyVerifier:
    """Accept deliveries whose header carries one of the active keys.

    Args:
        secrets: Active API keys; any of them is accepted.
        header: Header that carries the key. It is never stored with the event.
        prefix: Text before the key, such as `Bearer ` for `Authorization`.
    """

    scheme: ClassVar[str] = "api-key"

    def __init__(
        self, secrets: Sequence[str], *, header: str = DEFAULT_HEADER, prefix: str = ""
    ) -> None:
        require_secrets(secrets, self.scheme, "API key")
        self._keys = list(secrets)
        self._header = header.lower()
        self._prefix = prefix

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        provided = require_header(delivery, self._header).strip()
        if self._prefix:
            if not provided.lower().startswith(self._prefix.lower()):
                raise VerificationError(
                    "malformed_header",
                    f"header {self._header!r} does not start with {self._prefix!r}",
                )
            provided = provided[len(self._prefix) :].strip()
        if not constant_time_equals(provided, self._keys):
            raise VerificationError("key_mismatch", "the API key matches no active key")
        return Verified(body=delivery.body, secret_headers=frozenset({self._header}))

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        headers = {
            "content-type": "application/json",
            self._header: self._prefix + self._keys[0],
        }
        return SignedRequest(method="POST", body=body, headers=headers)
