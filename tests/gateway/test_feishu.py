"""Tests for Feishu / Lark event subscription: signature, decryption, handshake."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.gateway.conftest import flip_byte, to_delivery, with_body, with_header
from webhook_gateway.verification import Delivery, VerificationError
from webhook_gateway.verification.aes import DecryptionError
from webhook_gateway.verification.feishu import (
    FeishuVerifier,
    feishu_decrypt,
    feishu_encrypt,
    feishu_signature,
)

KEY = "test key"
TOKEN = "feishu-verification-token"
NOW = 1_700_000_000.0
EVENT = {
    "schema": "2.0",
    "header": {
        "event_id": "5e3702a84e847582be8db7fb73283c02",
        "event_type": "im.message.receive_v1",
        "token": TOKEN,
    },
    "event": {"message": {"content": '{"text":"hello"}'}},
}
EVENT_BODY = json.dumps(EVENT).encode()


def _verifier(**options: object) -> FeishuVerifier:
    return FeishuVerifier([KEY], verification_token=TOKEN, **options)  # type: ignore[arg-type]


def test_feishu_decrypt_known_answer() -> None:
    ciphertext = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
    assert feishu_decrypt(KEY, ciphertext) == b"hello world"


def test_feishu_encrypt_layout() -> None:
    iv = bytes(range(16))
    value = feishu_encrypt(KEY, b"hello world", iv=iv)
    raw = base64.b64decode(value)
    assert raw[:16] == iv
    assert len(raw) == 32
    assert feishu_decrypt(KEY, value) == b"hello world"


def test_feishu_signature_is_plain_sha256() -> None:
    body = b'{"encrypt": "abc"}'
    expected = hashlib.sha256(
        b"1700000000" + b"nonce-1" + KEY.encode() + body
    ).hexdigest()
    assert feishu_signature("1700000000", "nonce-1", KEY, body) == expected


def test_feishu_event_round_trip() -> None:
    verifier = _verifier()
    signed = verifier.sign(EVENT_BODY, now=NOW)
    assert set(json.loads(signed.body)) == {"encrypt"}
    verified = verifier.verify(to_delivery(signed), now=NOW)
    assert json.loads(verified.body) == EVENT
    assert verified.event_id == "5e3702a84e847582be8db7fb73283c02"
    assert verified.handshake is None


def test_feishu_sign_adds_token() -> None:
    event = {"schema": "2.0", "header": {"event_id": "e-2"}, "event": {}}
    verifier = _verifier()
    verified = verifier.verify(
        to_delivery(verifier.sign(json.dumps(event).encode(), now=NOW)), now=NOW
    )
    assert json.loads(verified.body)["header"]["token"] == TOKEN


def test_feishu_url_verification_encrypted() -> None:
    verifier = _verifier()
    signed = verifier.sign_handshake(now=NOW)
    assert "x-lark-signature" not in signed.headers
    challenge = json.loads(feishu_decrypt(KEY, json.loads(signed.body)["encrypt"]))

    verified = verifier.verify(to_delivery(signed), now=NOW)

    assert verified.handshake is not None
    assert json.loads(verified.handshake.content) == {
        "challenge": challenge["challenge"]
    }


def test_feishu_url_verification_plain() -> None:
    verifier = FeishuVerifier([], verification_token=TOKEN)
    body = json.dumps(
        {"challenge": "ajls384kdjx98XX", "token": TOKEN, "type": "url_verification"}
    ).encode()
    verified = verifier.verify(Delivery("POST", body, {}), now=NOW)
    assert verified.handshake is not None
    assert json.loads(verified.handshake.content) == {"challenge": "ajls384kdjx98XX"}


def test_feishu_url_verification_wrong_token() -> None:
    verifier = FeishuVerifier([], verification_token=TOKEN)
    body = json.dumps(
        {"challenge": "x", "token": "guess", "type": "url_verification"}
    ).encode()
    with pytest.raises(VerificationError) as caught:
        verifier.verify(Delivery("POST", body, {}), now=NOW)
    assert caught.value.reason == "token_mismatch"


def test_feishu_url_verification_no_token() -> None:
    verifier = FeishuVerifier([], verification_token=TOKEN)
    body = json.dumps({"challenge": "x", "type": "url_verification"}).encode()
    with pytest.raises(VerificationError) as caught:
        verifier.verify(Delivery("POST", body, {}), now=NOW)
    assert caught.value.reason == "missing_token"


def test_feishu_plain_url_verification_with_key() -> None:
    body = json.dumps(
        {"challenge": "x", "token": TOKEN, "type": "url_verification"}
    ).encode()
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(Delivery("POST", body, {}), now=NOW)
    assert caught.value.reason == "malformed_body"


def test_feishu_unsigned_event_rejected() -> None:
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(EVENT_BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(with_header(delivery, "x-lark-signature", None), now=NOW)
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize("header", ["x-lark-request-timestamp", "x-lark-request-nonce"])
def test_feishu_missing_header(header: str) -> None:
    verifier = _verifier()
    delivery = with_header(
        to_delivery(verifier.sign(EVENT_BODY, now=NOW)), header, None
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "missing_header"


def test_feishu_tampered_body() -> None:
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(EVENT_BODY, now=NOW))
    # Byte 15 is inside the base64 ciphertext.
    with pytest.raises(VerificationError) as caught:
        verifier.verify(with_body(delivery, flip_byte(delivery.body, 15)), now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_feishu_tampered_nonce() -> None:
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(EVENT_BODY, now=NOW))
    moved = with_header(delivery, "x-lark-request-nonce", "another")
    with pytest.raises(VerificationError) as caught:
        verifier.verify(moved, now=NOW)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("offset", [-3599, 3599])
def test_feishu_timestamp_inside_tolerance(offset: int) -> None:
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(EVENT_BODY, now=NOW))
    assert verifier.verify(delivery, now=NOW + offset).event_id is not None


@pytest.mark.parametrize("offset", [-3601, 3601])
def test_feishu_timestamp_outside_tolerance(offset: int) -> None:
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(EVENT_BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW + offset)
    assert caught.value.reason == "timestamp_expired"


def test_feishu_wrong_key() -> None:
    delivery = to_delivery(
        FeishuVerifier(["other key"], verification_token=TOKEN).sign(
            EVENT_BODY, now=NOW
        )
    )
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(delivery, now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_feishu_wrong_key_handshake() -> None:
    signed = FeishuVerifier(["other key"], verification_token=TOKEN).sign_handshake()
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(to_delivery(signed), now=NOW)
    # A wrong key almost always breaks the padding, else the JSON.
    assert caught.value.reason in {"decryption_failed", "malformed_body"}


def test_feishu_wrong_token_in_event() -> None:
    event = {**EVENT, "header": {**EVENT["header"], "token": "stolen"}}
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(json.dumps(event).encode(), now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "token_mismatch"


@pytest.mark.parametrize(
    "value", ["1700000000.0", "now", ""], ids=["decimal", "word", "empty"]
)
def test_feishu_malformed_timestamp(value: str) -> None:
    verifier = _verifier()
    delivery = with_header(
        to_delivery(verifier.sign(EVENT_BODY, now=NOW)),
        "x-lark-request-timestamp",
        value,
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == (
        "missing_header" if value == "" else "malformed_header"
    )


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"encrypt": 5}', b'{"other": "x"}'],
)
def test_feishu_malformed_body(body: bytes) -> None:
    verifier = _verifier()
    with pytest.raises(VerificationError) as caught:
        verifier.verify(Delivery("POST", body, {}), now=NOW)
    assert caught.value.reason == "malformed_body"


@pytest.mark.parametrize(
    "ciphertext",
    [
        "not base64!",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"x" * 40).decode(),
        base64.b64encode(b"x" * 48).decode(),
    ],
    ids=["not-base64", "short", "partial-block", "bad-padding"],
)
def test_feishu_malformed_ciphertext(ciphertext: str) -> None:
    body = json.dumps({"encrypt": ciphertext}).encode()
    headers = {
        "x-lark-request-timestamp": "1700000000",
        "x-lark-request-nonce": "n",
        "x-lark-signature": feishu_signature("1700000000", "n", KEY, body),
    }
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(Delivery("POST", body, headers), now=NOW)
    assert caught.value.reason == "decryption_failed"


def test_feishu_decrypted_not_json() -> None:
    body = json.dumps({"encrypt": feishu_encrypt(KEY, b"hello world")}).encode()
    headers = {
        "x-lark-request-timestamp": "1700000000",
        "x-lark-request-nonce": "n",
        "x-lark-signature": feishu_signature("1700000000", "n", KEY, body),
    }
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(Delivery("POST", body, headers), now=NOW)
    assert caught.value.reason == "malformed_body"


def test_feishu_rotation() -> None:
    verifier = FeishuVerifier(["new key", KEY], verification_token=TOKEN)
    for key in ("new key", KEY):
        sender = FeishuVerifier([key], verification_token=TOKEN)
        event = verifier.verify(to_delivery(sender.sign(EVENT_BODY, now=NOW)), now=NOW)
        assert json.loads(event.body) == EVENT
        handshake = verifier.verify(to_delivery(sender.sign_handshake()), now=NOW)
        assert handshake.handshake is not None


def test_feishu_plain_event() -> None:
    verifier = FeishuVerifier([], verification_token=TOKEN)
    signed = verifier.sign(EVENT_BODY, now=NOW)
    assert signed.body == EVENT_BODY
    verified = verifier.verify(to_delivery(signed), now=NOW)
    assert verified.event_id == "5e3702a84e847582be8db7fb73283c02"


def test_feishu_schema_one_event_id() -> None:
    body = json.dumps({"uuid": "u-1", "token": TOKEN, "event": {}}).encode()
    verified = FeishuVerifier([], verification_token=TOKEN).verify(
        Delivery("POST", body, {}), now=NOW
    )
    assert verified.event_id == "u-1"


def test_feishu_needs_key_or_token() -> None:
    with pytest.raises(ValueError) as caught:
        FeishuVerifier([])
    assert "verification_token" in str(caught.value)


def test_decryption_error_type() -> None:
    with pytest.raises(DecryptionError):
        feishu_decrypt(KEY, base64.b64encode(b"x" * 48).decode())
