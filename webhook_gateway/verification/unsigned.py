"""The `none` scheme: accept every delivery without a check.

Only for senders that cannot sign, on a network that only trusted senders can
reach. A route must opt in with `options: {allow_unsigned: true}`, and the gateway
logs a warning for it at startup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from webhook_gateway.verification.base import Delivery, SignedRequest, Verified

__all__ = ["UnsignedVerifier"]


class UnsignedVerifier:
    """Accept deliveries unchecked, once the route allows it explicitly."""

    scheme: ClassVar[str] = "none"
    is_unsigned: ClassVar[bool] = True

    def __init__(self, secrets: Sequence[str], *, allow_unsigned: bool = False) -> None:
        if allow_unsigned is not True:
            raise ValueError(
                "scheme 'none' accepts unsigned deliveries from anyone; set "
                "options: {allow_unsigned: true} on the route to allow that"
            )
        if secrets:
            raise ValueError(
                "scheme 'none' checks no secret; remove the route's 'secrets' or "
                "choose a scheme that uses them"
            )

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        return Verified(body=delivery.body)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        return SignedRequest(
            method="POST", body=body, headers={"content-type": "application/json"}
        )
