"""Signature schemes: one module per scheme behind the `Verifier` protocol.

Adding a scheme is one module with a class that has `scheme`, `verify()` and `sign()`
(and `sign_handshake()` when the platform sends one), plus its line in `SCHEMES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from webhook_gateway.verification.apikey import ApiKeyVerifier
from webhook_gateway.verification.base import (
    Delivery,
    Handshake,
    HandshakeSigner,
    SignedRequest,
    VerificationError,
    Verified,
    Verifier,
)
from webhook_gateway.verification.basic import BasicAuthVerifier
from webhook_gateway.verification.dingtalk import DingTalkVerifier
from webhook_gateway.verification.feishu import FeishuVerifier
from webhook_gateway.verification.github import GitHubVerifier
from webhook_gateway.verification.hmac import HmacVerifier
from webhook_gateway.verification.standard_webhooks import StandardWebhooksVerifier
from webhook_gateway.verification.stripe import StripeVerifier
from webhook_gateway.verification.unsigned import UnsignedVerifier
from webhook_gateway.verification.wecom import WeComVerifier

__all__ = [
    "SCHEMES",
    "Delivery",
    "Handshake",
    "HandshakeSigner",
    "SignedRequest",
    "VerificationError",
    "Verified",
    "Verifier",
    "build_verifier",
]

SCHEMES: dict[str, type[Any]] = {
    verifier.scheme: verifier
    for verifier in (
        ApiKeyVerifier,
        BasicAuthVerifier,
        DingTalkVerifier,
        FeishuVerifier,
        GitHubVerifier,
        HmacVerifier,
        StandardWebhooksVerifier,
        StripeVerifier,
        UnsignedVerifier,
        WeComVerifier,
    )
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
