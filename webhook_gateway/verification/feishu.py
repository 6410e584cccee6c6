"""Feishu / Lark event subscription, schema 2.0.

With an encrypt key, Feishu sends `{"encrypt": "<base64>"}`: AES-256-CBC keyed by
SHA-256 of the encrypt key, the IV being the first 16 bytes of the decoded value, and
PKCS#7 padding. Each event carries `X-Lark-Request-Timestamp`, `X-Lark-Request-Nonce`
and `X-Lark-Signature`, the hex SHA-256 (a plain hash, not an HMAC) of timestamp +
nonce + encrypt key + raw body.

The `url_verification` handshake carries no signature header. The response is its
`challenge`, sent after its `token` matches the verification token (and, with an
encrypt key, after it decrypts). Without an encrypt key, Feishu signs nothing, so
the body's token is the only check and the verification token is required.

The event id is `header.event_id` (schema 2.0) or `uuid` (schema 1.0).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from webhook_gateway.verification.aes import DecryptionError, decrypt_cbc, encrypt_cbc
from webhook_gateway.verification.base import (
    Delivery,
    Handshake,
    SignedRequest,
    VerificationError,
    Verified,
    check_timestamp,
    check_tolerance,
    constant_time_equals,
    parse_json_object,
    parse_timestamp,
    require_header,
)

__all__ = ["FeishuVerifier", "feishu_decrypt", "feishu_encrypt", "feishu_signature"]

TIMESTAMP_HEADER = "x-lark-request-timestamp"
NONCE_HEADER = "x-lark-request-nonce"
SIGNATURE_HEADER = "x-lark-signature"
# NOTE: one hour is our choice, not a documented Feishu limit. The body is signed, so
# a replay inside the window carries the same event id and the dedupe stops it.
DEFAULT_TOLERANCE_SECONDS = 3600


def feishu_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """Compute `X-Lark-Signature`."""
    content = (timestamp + nonce + encrypt_key).encode() + body
    return hashlib.sha256(content).hexdigest()


def feishu_encrypt(encrypt_key: str, plaintext: bytes, iv: bytes | None = None) -> str:
    """Encrypt a body as Feishu does and return the base64 `encrypt` value."""
    iv = os.urandom(16) if iv is None else iv
    key = hashlib.sha256(encrypt_key.encode()).digest()
    return base64.b64encode(iv + encrypt_cbc(key, iv, plaintext)).decode()


def feishu_decrypt(encrypt_key: str, value: str) -> bytes:
    """Decrypt an `encrypt` value.

    Raises:
        DecryptionError: The value is not base64, too short, or its padding is
            invalid under this key.
    """
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("the 'encrypt' value is not base64") from None
    if len(raw) < 32:
        raise DecryptionError(
            f"the 'encrypt' value contains {len(raw)} bytes, fewer than an IV and a block"
        )
    key = hashlib.sha256(encrypt_key.encode()).digest()
    return decrypt_cbc(key, raw[:16], raw[16:])


class FeishuVerifier:
    """Verify Feishu / Lark event callbacks.

    Args:
        secrets: Active encrypt keys (several during a change of key). Empty means
            the app has no encrypt key, so bodies arrive in plain JSON, unsigned.
        verification_token: The app's verification token. Every decrypted or plain
            body must carry it; required when there is no encrypt key.
        tolerance_seconds: Allowed distance of `X-Lark-Request-Timestamp` from the
            server clock, in both directions.
    """

    scheme: ClassVar[str] = "feishu"

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        verification_token: str | None = None,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        if any(not secret for secret in secrets):
            raise ValueError("the feishu scheme got an empty encrypt key")
        if not secrets and not verification_token:
            raise ValueError(
                "the feishu scheme needs an encrypt key under 'secrets' or "
                "options.verification_token; without either nothing is checked"
            )
        self._keys = list(secrets)
        self._token = verification_token or None
        self._tolerance = check_tolerance(tolerance_seconds, self.scheme)

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        outer = parse_json_object(delivery.body)
        if outer is None:
            raise VerificationError("malformed_body", "the body is not a JSON object")
        if self._keys:
            body = self._verify_encrypted(delivery, outer, now)
            payload = parse_json_object(body)
            if payload is None:
                raise VerificationError(
                    "malformed_body", "the decrypted body is not a JSON object"
                )
        else:
            body, payload = delivery.body, outer

        if self._token is not None:
            self._check_token(payload)
        if payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise VerificationError(
                    "malformed_body", "url_verification carries no string 'challenge'"
                )
            answer = json.dumps({"challenge": challenge}).encode()
            return Verified(body=body, handshake=Handshake(content=answer))
        return Verified(body=body, event_id=_event_id(payload))

    def _verify_encrypted(
        self, delivery: Delivery, outer: dict[str, Any], now: float | None
    ) -> bytes:
        """Check the signature (events) and return the decrypted body."""
        encrypted = outer.get("encrypt")
        if not isinstance(encrypted, str):
            raise VerificationError(
                "malformed_body",
                "an encrypt key is configured but the body has no 'encrypt' string",
            )
        keys = self._keys
        last_error = DecryptionError("no encrypt key is configured")
        if SIGNATURE_HEADER in delivery.headers:
            keys = self._matching_keys(delivery, now)
        for key in keys:
            try:
                plaintext = feishu_decrypt(key, encrypted)
            except DecryptionError as exc:
                last_error = exc
                continue
            if SIGNATURE_HEADER in delivery.headers or _is_url_verification(plaintext):
                return plaintext
            raise VerificationError(
                "missing_header",
                f"header {SIGNATURE_HEADER!r} is missing; only url_verification is "
                "sent unsigned",
            )
        raise VerificationError("decryption_failed", str(last_error))

    def _matching_keys(self, delivery: Delivery, now: float | None) -> list[str]:
        provided = require_header(delivery, SIGNATURE_HEADER).strip().lower()
        timestamp = require_header(delivery, TIMESTAMP_HEADER).strip()
        nonce = require_header(delivery, NONCE_HEADER)
        seconds = parse_timestamp(timestamp, f"header {TIMESTAMP_HEADER!r}")
        check_timestamp(
            seconds, self._tolerance, now, header=f"header {TIMESTAMP_HEADER!r}"
        )
        matching = [
            key
            for key in self._keys
            if constant_time_equals(
                feishu_signature(timestamp, nonce, key, delivery.body), [provided]
            )
        ]
        if not matching:
            raise VerificationError(
                "signature_mismatch", "signature matches no encrypt key"
            )
        return matching

    def _check_token(self, payload: dict[str, Any]) -> None:
        header = payload.get("header")
        token = header.get("token") if isinstance(header, dict) else None
        if token is None:
            token = payload.get("token")
        if not isinstance(token, str):
            raise VerificationError("missing_token", "the body carries no 'token'")
        if not constant_time_equals(self._token or "", [token]):
            raise VerificationError(
                "token_mismatch", "the body's token is not the verification token"
            )

    def _with_token(self, body: bytes) -> bytes:
        """Put the verification token where Feishu puts it, unless it is there."""
        payload = parse_json_object(body)
        if self._token is None or payload is None:
            return body
        header = payload.get("header")
        if isinstance(header, dict):
            header.setdefault("token", self._token)
        else:
            payload.setdefault("token", self._token)
        return json.dumps(payload, ensure_ascii=False).encode()

    def _request(
        self, plaintext: bytes, *, signed: bool, now: float | None
    ) -> SignedRequest:
        headers = {"content-type": "application/json; charset=utf-8"}
        if not self._keys:
            return SignedRequest(method="POST", body=plaintext, headers=headers)
        key = self._keys[0]
        body = json.dumps({"encrypt": feishu_encrypt(key, plaintext)}).encode()
        if signed:
            timestamp = str(int(time.time() if now is None else now))
            nonce = uuid.uuid4().hex
            headers[TIMESTAMP_HEADER] = timestamp
            headers[NONCE_HEADER] = nonce
            headers[SIGNATURE_HEADER] = feishu_signature(timestamp, nonce, key, body)
        return SignedRequest(method="POST", body=body, headers=headers)

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        """Encrypt and sign an event body; the token is added when it is absent."""
        return self._request(self._with_token(body), signed=True, now=now)

    def sign_handshake(self, *, now: float | None = None) -> SignedRequest:
        """Build the unsigned `url_verification` request Feishu sends."""
        challenge = {"challenge": uuid.uuid4().hex, "type": "url_verification"}
        if self._token is not None:
            challenge["token"] = self._token
        plaintext = json.dumps(challenge).encode()
        return self._request(plaintext, signed=False, now=now)


def _is_url_verification(plaintext: bytes) -> bool:
    payload = parse_json_object(plaintext)
    return payload is not None and payload.get("type") == "url_verification"


def _event_id(payload: dict[str, Any]) -> str | None:
    header = payload.get("header")
    event_id = header.get("event_id") if isinstance(header, dict) else None
    if event_id is None:
        event_id = payload.get("uuid")
    return event_id if isinstance(event_id, str) and event_id else None
