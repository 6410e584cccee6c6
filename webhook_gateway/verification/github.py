"""GitHub webhook signatures: `X-Hub-Signature-256: sha256=<hex>`.

GitHub signs the raw body with HMAC-SHA256 keyed by the webhook secret. The delivery
id is the `X-GitHub-Delivery` header and the event name is `X-GitHub-Event`. A `ping`
(sent when a webhook is created) is verified and then gets a direct response without
storing an event, so it starts no run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from typing import ClassVar

from webhook_gateway.verification.base import (
    Delivery,
    Handshake,
    SignedRequest,
    VerificationError,
    Verified,
    constant_time_equals,
    require_header,
    require_secrets,
)

__all__ = ["GitHubVerifier", "github_signature"]

SIGNATURE_HEADER = "x-hub-signature-256"
LEGACY_SIGNATURE_HEADER = "x-hub-signature"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
PREFIX = "sha256="
USER_AGENT = "GitHub-Hookshot/webhook-gateway"


def github_signature(secret: str, body: bytes) -> str:
    """Compute the `X-Hub-Signature-256` value for a body."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class GitHubVerifier:
    """Verify GitHub deliveries against one or more webhook secrets.

    Args:
        secrets: Active webhook secrets; any of them may match.
        sign_event: The `X-GitHub-Event` that `sign()` sends, for printed curl
            commands (default `push`).
    """

    scheme: ClassVar[str] = "github"

    def __init__(self, secrets: Sequence[str], *, sign_event: str = "push") -> None:
        require_secrets(secrets, self.scheme, "webhook secret")
        self._secrets = list(secrets)
        self._sign_event = sign_event

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        provided = require_header(delivery, SIGNATURE_HEADER).strip()
        if not provided.startswith(PREFIX):
            raise VerificationError(
                "malformed_header",
                f"header {SIGNATURE_HEADER!r} does not start with {PREFIX!r}",
            )
        expected = [github_signature(secret, delivery.body) for secret in self._secrets]
        if not constant_time_equals(PREFIX + provided[len(PREFIX) :].lower(), expected):
            raise VerificationError(
                "signature_mismatch", "signature matches no webhook secret"
            )

        event_id = delivery.headers.get(DELIVERY_HEADER) or None
        if delivery.headers.get(EVENT_HEADER) == "ping":
            answer = json.dumps({"ok": True, "event": "ping", "delivery": event_id})
            return Verified(
                body=delivery.body,
                event_id=event_id,
                handshake=Handshake(content=answer.encode()),
            )
        return Verified(body=delivery.body, event_id=event_id)

    def _request(self, body: bytes, event: str) -> SignedRequest:
        secret = self._secrets[0]
        legacy = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            EVENT_HEADER: event,
            DELIVERY_HEADER: str(uuid.uuid4()),
            LEGACY_SIGNATURE_HEADER: legacy,
            SIGNATURE_HEADER: github_signature(secret, body),
        }
        return SignedRequest(method="POST", body=body, headers=headers)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        return self._request(body, self._sign_event)

    def sign_handshake(self, *, now: float | None = None) -> SignedRequest:
        """Build the `ping` GitHub sends when a webhook is created."""
        body = json.dumps(
            {
                "zen": "Keep it logically awesome.",
                "hook_id": 1,
                "hook": {"active": True},
            }
        ).encode()
        return self._request(body, "ping")
