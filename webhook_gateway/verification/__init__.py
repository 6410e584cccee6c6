"""Signature schemes: one module per scheme behind the `Verifier` protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook_gateway.verification.base import (
    Delivery,
    Handshake,
    SignedRequest,
    VerificationError,
    Verified,
    Verifier,
)
from webhook_gateway.verification.dingtalk import DingTalkVerifier
from webhook_gateway.verification.hmac import HmacVerifier

__all__ = [
    "SCHEMES",
    "Delivery",
    "Handshake",
    "SignedRequest",
    "VerificationError",
    "Verified",
    "Verifier",
    "build_verifier",
]

SCHEMES: dict[str, type[Any]] = {
    DingTalkVerifier.scheme: DingTalkVerifier,
    HmacVerifier.scheme: HmacVerifier,
}


def build_verifier(
    scheme: str, secrets: Sequence[str], options: Mapping[str, Any]
) -> Verifier:
    """Construct the verifier for a scheme name, raising ValueError when unknown."""
    try:
        verifier_class = SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown verification scheme {scheme!r}; known: {sorted(SCHEMES)}"
        ) from None
    try:
        return verifier_class(secrets, **options)
    except TypeError as exc:
        raise ValueError(f"invalid options for scheme {scheme!r}: {exc}") from exc
