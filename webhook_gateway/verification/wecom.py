"""WeCom (WeChat Work) app callbacks: signed, AES-encrypted messages.

`msg_signature` in the query is the hex SHA-1 of the sorted concatenation of the
token, `timestamp`, `nonce` and the ciphertext. The AES key is the base64-decoded
EncodingAESKey (43 characters plus "="), the IV is its first 16 bytes, the mode is
AES-256-CBC and the PKCS#7 padding fills 32-byte blocks. The plaintext is 16 random
bytes, a 4-byte big-endian length, the message and the receive id (the corp id for
an internal app), which must match.

- `GET` with `echostr` is the URL check. The response is the decrypted echostr as text.
- `POST` carries the ciphertext in `<Encrypt>` of an XML body, or in `encrypt` of a
  JSON body. The stored body is the decrypted message, and its `MsgId` is the event
  id (events without one fall back to the route's template or a body hash).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets as random_source
import struct
import time
from collections.abc import Sequence
from typing import ClassVar
from xml.sax.saxutils import escape

from webhook_gateway.safexml import UnsafeXmlError, parse_xml, xml_to_dict
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
    require_secrets,
)

__all__ = ["WeComCrypto", "WeComVerifier", "wecom_signature"]

PAD_BLOCK_BYTES = 32
ENCODING_AES_KEY_LENGTH = 43
# NOTE: WeCom documents no maximum age for a callback, so one hour is our choice.
DEFAULT_TOLERANCE_SECONDS = 3600


def wecom_signature(token: str, timestamp: str, nonce: str, ciphertext: str) -> str:
    """Compute `msg_signature`."""
    return hashlib.sha1(
        "".join(sorted([token, timestamp, nonce, ciphertext])).encode()
    ).hexdigest()


class WeComCrypto:
    """Encrypt and decrypt WeCom messages under one EncodingAESKey."""

    def __init__(self, encoding_aes_key: str) -> None:
        if len(encoding_aes_key) != ENCODING_AES_KEY_LENGTH:
            raise ValueError(
                f"wecom: an EncodingAESKey has {ENCODING_AES_KEY_LENGTH} characters, "
                f"got one of {len(encoding_aes_key)}; copy it from the app's settings"
            )
        try:
            self._key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("wecom: an EncodingAESKey is not base64") from None

    def encrypt(
        self, message: bytes, receive_id: str, *, random: bytes | None = None
    ) -> str:
        """Return the base64 ciphertext of a message, as WeCom builds it."""
        prefix = os.urandom(16) if random is None else random
        plaintext = (
            prefix + struct.pack(">I", len(message)) + message + receive_id.encode()
        )
        ciphertext = encrypt_cbc(
            self._key, self._key[:16], plaintext, pad_block=PAD_BLOCK_BYTES
        )
        return base64.b64encode(ciphertext).decode()

    def decrypt(self, ciphertext: str) -> tuple[bytes, str]:
        """Return the message and the receive id of a base64 ciphertext.

        Raises:
            DecryptionError: The value is not base64, the padding is invalid, or the
                length field points past the end.
        """
        try:
            raw = base64.b64decode(ciphertext, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("the ciphertext is not base64") from None
        plaintext = decrypt_cbc(
            self._key, self._key[:16], raw, pad_block=PAD_BLOCK_BYTES
        )
        if len(plaintext) < 20:
            raise DecryptionError("the plaintext is shorter than its 20-byte prefix")
        (length,) = struct.unpack(">I", plaintext[16:20])
        if 20 + length > len(plaintext):
            raise DecryptionError("the message length points past the plaintext")
        receive_id = plaintext[20 + length :]
        try:
            return plaintext[20 : 20 + length], receive_id.decode()
        except UnicodeDecodeError:
            raise DecryptionError("the receive id is not UTF-8") from None


class WeComVerifier:
    """Verify WeCom app callbacks and decrypt them.

    Args:
        secrets: Active callback tokens; any of them may match.
        encoding_aes_key: The EncodingAESKey, or a list of them while one is changed.
        receive_id: The receive id every message must carry: the corp id for an
            internal app (`ww...`), or "" where WeCom sends none.
        tolerance_seconds: Allowed distance of `timestamp` from the server clock, in
            both directions.
        agent_id: The AgentID that `sign()` puts into the XML envelope.
    """

    scheme: ClassVar[str] = "wecom"
    # WeCom checks the callback URL with a GET before it sends events by POST.
    http_methods: ClassVar[tuple[str, ...]] = ("GET", "POST")

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        encoding_aes_key: str | Sequence[str],
        receive_id: str,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        agent_id: str = "1000002",
    ) -> None:
        require_secrets(secrets, self.scheme, "token")
        keys = (
            [encoding_aes_key]
            if isinstance(encoding_aes_key, str)
            else list(encoding_aes_key)
        )
        if not keys:
            raise ValueError("wecom: options.encoding_aes_key lists no key")
        if not isinstance(receive_id, str):
            raise TypeError(f"wecom: receive_id must be a string, got {receive_id!r}")
        self._tokens = list(secrets)
        self._cryptos = [WeComCrypto(key) for key in keys]
        self._receive_id = receive_id
        self._tolerance = check_tolerance(tolerance_seconds, self.scheme)
        self._agent_id = agent_id

    def verify(self, delivery: Delivery, *, now: float | None = None) -> Verified:
        signature = _require_query(delivery, "msg_signature").lower()
        timestamp = _require_query(delivery, "timestamp")
        nonce = _require_query(delivery, "nonce")
        if delivery.method == "GET":
            ciphertext = _require_query(delivery, "echostr")
        else:
            ciphertext = _envelope_ciphertext(delivery.body)
        seconds = parse_timestamp(timestamp, "query parameter 'timestamp'")
        check_timestamp(
            seconds, self._tolerance, now, header="query parameter 'timestamp'"
        )

        expected = [
            wecom_signature(token, timestamp, nonce, ciphertext)
            for token in self._tokens
        ]
        if not constant_time_equals(signature, expected):
            raise VerificationError(
                "signature_mismatch", "msg_signature matches no token"
            )
        message = self._decrypt(ciphertext)

        if delivery.method == "GET":
            handshake = Handshake(content=message, media_type="text/plain")
            return Verified(body=message, handshake=handshake)
        return Verified(body=message, event_id=_message_id(message))

    def _decrypt(self, ciphertext: str) -> bytes:
        failure = "no EncodingAESKey decrypts the message"
        for crypto in self._cryptos:
            try:
                message, receive_id = crypto.decrypt(ciphertext)
            except DecryptionError as exc:
                failure = str(exc)
                continue
            if not constant_time_equals(self._receive_id, [receive_id]):
                raise VerificationError(
                    "receive_id_mismatch",
                    f"the message is for receive id {receive_id!r}, not "
                    f"{self._receive_id!r}",
                )
            return message
        raise VerificationError("decryption_failed", failure)

    def _query(self, ciphertext: str, now: float | None) -> dict[str, str]:
        timestamp = str(int(time.time() if now is None else now))
        nonce = str(random_source.randbelow(10**10))
        signature = wecom_signature(self._tokens[0], timestamp, nonce, ciphertext)
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}

    def sign(self, body: bytes, *, now: float | None = None) -> SignedRequest:
        """Encrypt a message into the XML envelope WeCom posts, and sign it."""
        ciphertext = self._cryptos[0].encrypt(body, self._receive_id)
        envelope = (
            f"<xml><ToUserName><![CDATA[{escape(self._receive_id)}]]></ToUserName>"
            f"<AgentID><![CDATA[{escape(self._agent_id)}]]></AgentID>"
            f"<Encrypt><![CDATA[{ciphertext}]]></Encrypt></xml>"
        )
        return SignedRequest(
            method="POST",
            body=envelope.encode(),
            headers={"content-type": "text/xml"},
            query=self._query(ciphertext, now),
        )

    def sign_handshake(self, *, now: float | None = None) -> SignedRequest:
        """Build the `GET` URL check with an encrypted random echostr."""
        echo = str(random_source.randbelow(10**19)).encode()
        echostr = self._cryptos[0].encrypt(echo, self._receive_id)
        query = {**self._query(echostr, now), "echostr": echostr}
        return SignedRequest(method="GET", body=b"", headers={}, query=query)


def _require_query(delivery: Delivery, name: str) -> str:
    value = delivery.query.get(name)
    if not value:
        raise VerificationError(
            "missing_parameter", f"query parameter {name!r} is missing"
        )
    return value


def _envelope_ciphertext(body: bytes) -> str:
    """Return the ciphertext of an XML `<Encrypt>` or JSON `encrypt` envelope."""
    payload = parse_json_object(body)
    if payload is not None:
        value = payload.get("encrypt", payload.get("Encrypt"))
    else:
        try:
            envelope = xml_to_dict(parse_xml(body.decode("utf-8")))
        except (UnicodeDecodeError, UnsafeXmlError) as exc:
            raise VerificationError(
                "malformed_body", f"the body is neither JSON nor safe XML: {exc}"
            ) from None
        value = envelope.get("Encrypt") if isinstance(envelope, dict) else None
    if not isinstance(value, str) or not value:
        raise VerificationError(
            "malformed_body", "the body has no Encrypt (XML) or encrypt (JSON) value"
        )
    return value


def _message_id(message: bytes) -> str | None:
    """Return the decrypted message's MsgId (XML) or msgid (JSON), if any."""
    payload = parse_json_object(message)
    if payload is not None:
        value = payload.get("msgid", payload.get("MsgId"))
        return str(value) if isinstance(value, (str, int)) and value != "" else None
    try:
        fields = xml_to_dict(parse_xml(message.decode("utf-8")))
    except (UnicodeDecodeError, UnsafeXmlError):
        return None
    value = fields.get("MsgId") if isinstance(fields, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()
