"""Tests for WeCom app callbacks: URL check, encrypted messages, signatures."""

from __future__ import annotations

import base64
import json
import struct
from urllib.parse import parse_qsl

import pytest

from tests.gateway.conftest import to_delivery, with_body
from webhook_gateway.verification import Delivery, VerificationError, build_verifier
from webhook_gateway.verification.aes import DecryptionError, encrypt_cbc
from webhook_gateway.verification.wecom import (
    WeComCrypto,
    WeComVerifier,
    wecom_signature,
)

# Tencent's published sample values.
TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORP_ID = "ww1436e0e65a779aee"
SAMPLE_QUERY = (
    "msg_signature=012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb&timestamp=1476416373"
    "&nonce=47744683&echostr=fsi1xnbH4yQh0%2BPJxcOdhhK6TDXkjMyhEPA7xB2TGz6b%2Bg7"
    "xyAbEkRxN%2F3cNXW9qdqjnoVzEtpbhnFyq6SVHyA%3D%3D"
)
SAMPLE_TIME = 1476416373.0
MESSAGE = (
    b"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>"
    b"<FromUserName><![CDATA[zhangsan]]></FromUserName>"
    b"<CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    b"<Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId>"
    b"<AgentID>1</AgentID></xml>"
)


def _verifier(**options: object) -> WeComVerifier:
    settings: dict[str, object] = {"encoding_aes_key": AES_KEY, "receive_id": CORP_ID}
    settings.update(options)
    return WeComVerifier([TOKEN], **settings)  # type: ignore[arg-type]


def _url_check(query: str = SAMPLE_QUERY) -> Delivery:
    return Delivery("GET", b"", {}, dict(parse_qsl(query)))


def test_wecom_url_check_known_answer() -> None:
    verified = _verifier().verify(_url_check(), now=SAMPLE_TIME)
    assert verified.handshake is not None
    assert verified.handshake.content == b"1288432023552776189"
    assert verified.handshake.media_type == "text/plain"


def test_wecom_signature_known_answer() -> None:
    query = dict(parse_qsl(SAMPLE_QUERY))
    signature = wecom_signature(TOKEN, "1476416373", "47744683", query["echostr"])
    assert signature == "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb"


def test_wecom_url_check_round_trip() -> None:
    verifier = _verifier()
    signed = verifier.sign_handshake(now=SAMPLE_TIME)
    assert signed.method == "GET"
    verified = verifier.verify(to_delivery(signed), now=SAMPLE_TIME)
    assert verified.handshake is not None
    assert verified.handshake.content.isdigit()


def test_wecom_message_round_trip_xml() -> None:
    verifier = _verifier()
    signed = verifier.sign(MESSAGE, now=SAMPLE_TIME)
    assert b"<Encrypt><![CDATA[" in signed.body
    assert set(signed.query) == {"msg_signature", "timestamp", "nonce"}

    verified = verifier.verify(to_delivery(signed), now=SAMPLE_TIME)

    assert verified.body == MESSAGE
    assert verified.event_id == "1234567890123456"


def test_wecom_message_json_envelope() -> None:
    verifier = _verifier()
    ciphertext = WeComCrypto(AES_KEY).encrypt(MESSAGE, CORP_ID)
    query = {
        "msg_signature": wecom_signature(TOKEN, "1476416373", "99", ciphertext),
        "timestamp": "1476416373",
        "nonce": "99",
    }
    body = json.dumps({"tousername": CORP_ID, "encrypt": ciphertext}).encode()
    verified = verifier.verify(Delivery("POST", body, {}, query), now=SAMPLE_TIME)
    assert verified.body == MESSAGE


def test_wecom_json_message_event_id() -> None:
    verifier = _verifier()
    message = json.dumps({"msgid": "abc123", "msgtype": "text"}).encode()
    verified = verifier.verify(
        to_delivery(verifier.sign(message, now=SAMPLE_TIME)), now=SAMPLE_TIME
    )
    assert verified.event_id == "abc123"


def test_wecom_event_without_msgid() -> None:
    verifier = _verifier()
    message = b"<xml><MsgType>event</MsgType><Event>enter_agent</Event></xml>"
    verified = verifier.verify(
        to_delivery(verifier.sign(message, now=SAMPLE_TIME)), now=SAMPLE_TIME
    )
    assert verified.event_id is None
    assert verified.body == message


def test_wecom_plaintext_layout() -> None:
    crypto = WeComCrypto(AES_KEY)
    random = b"R" * 16
    raw = base64.b64decode(crypto.encrypt(b"hello", CORP_ID, random=random))
    key = base64.b64decode(AES_KEY + "=")
    expected = encrypt_cbc(
        key,
        key[:16],
        random + struct.pack(">I", 5) + b"hello" + CORP_ID.encode(),
        pad_block=32,
    )
    assert raw == expected
    assert len(raw) % 32 == 0
    assert crypto.decrypt(base64.b64encode(raw).decode()) == (b"hello", CORP_ID)


def test_wecom_empty_receive_id() -> None:
    verifier = _verifier(receive_id="")
    verified = verifier.verify(
        to_delivery(verifier.sign(MESSAGE, now=SAMPLE_TIME)), now=SAMPLE_TIME
    )
    assert verified.body == MESSAGE


def test_wecom_receive_id_mismatch() -> None:
    signed = _verifier(receive_id="wwOTHERCORP").sign(MESSAGE, now=SAMPLE_TIME)
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(to_delivery(signed), now=SAMPLE_TIME)
    assert caught.value.reason == "receive_id_mismatch"


def test_wecom_tampered_ciphertext() -> None:
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(MESSAGE, now=SAMPLE_TIME))
    start = delivery.body.index(b"CDATA[", delivery.body.index(b"<Encrypt>")) + 6
    tampered = bytearray(delivery.body)
    tampered[start] = ord("A") if tampered[start] != ord("A") else ord("B")
    with pytest.raises(VerificationError) as caught:
        verifier.verify(with_body(delivery, bytes(tampered)), now=SAMPLE_TIME)
    assert caught.value.reason == "signature_mismatch"


def test_wecom_envelope_outside_signature() -> None:
    # The envelope around <Encrypt> is not signed; changing it changes nothing.
    verifier = _verifier()
    delivery = to_delivery(verifier.sign(MESSAGE, now=SAMPLE_TIME))
    changed = delivery.body.replace(b"1000002", b"9999999")
    assert (
        verifier.verify(with_body(delivery, changed), now=SAMPLE_TIME).body == MESSAGE
    )


@pytest.mark.parametrize("offset", [-3599, 3599])
def test_wecom_timestamp_inside_tolerance(offset: int) -> None:
    verified = _verifier().verify(_url_check(), now=SAMPLE_TIME + offset)
    assert verified.handshake is not None


@pytest.mark.parametrize("offset", [-3601, 3601])
def test_wecom_timestamp_outside_tolerance(offset: int) -> None:
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(_url_check(), now=SAMPLE_TIME + offset)
    assert caught.value.reason == "timestamp_expired"


def test_wecom_tampered_timestamp() -> None:
    query = SAMPLE_QUERY.replace("timestamp=1476416373", "timestamp=1476416374")
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(_url_check(query), now=SAMPLE_TIME)
    assert caught.value.reason == "signature_mismatch"


def test_wecom_wrong_token() -> None:
    verifier = WeComVerifier(
        ["wrong token"], encoding_aes_key=AES_KEY, receive_id=CORP_ID
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(_url_check(), now=SAMPLE_TIME)
    assert caught.value.reason == "signature_mismatch"


def test_wecom_wrong_aes_key() -> None:
    other_key = base64.b64encode(b"k" * 32).decode().rstrip("=")
    verifier = _verifier(encoding_aes_key=other_key)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(_url_check(), now=SAMPLE_TIME)
    assert caught.value.reason == "decryption_failed"


@pytest.mark.parametrize("name", ["msg_signature", "timestamp", "nonce", "echostr"])
def test_wecom_missing_parameter(name: str) -> None:
    query = dict(parse_qsl(SAMPLE_QUERY))
    del query[name]
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(Delivery("GET", b"", {}, query), now=SAMPLE_TIME)
    assert caught.value.reason == "missing_parameter"


def test_wecom_malformed_timestamp() -> None:
    query = SAMPLE_QUERY.replace("timestamp=1476416373", "timestamp=yesterday")
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(_url_check(query), now=SAMPLE_TIME)
    assert caught.value.reason == "malformed_header"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<xml><ToUserName>x</ToUserName></xml>",
        b'{"encrypt": 5}',
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>',
        "<xml><Encrypt>é</Encrypt>".encode("latin-1"),
    ],
    ids=["empty", "text", "no-encrypt", "json-number", "dtd", "not-utf8"],
)
def test_wecom_malformed_body(body: bytes) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": "1476416373", "nonce": "1"}
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(Delivery("POST", body, {}, query), now=SAMPLE_TIME)
    assert caught.value.reason == "malformed_body"


@pytest.mark.parametrize(
    "ciphertext",
    [
        "not base64!",
        base64.b64encode(b"x" * 40).decode(),
        base64.b64encode(b"x" * 64).decode(),
    ],
    ids=["not-base64", "partial-block", "bad-padding"],
)
def test_wecom_malformed_ciphertext(ciphertext: str) -> None:
    query = {
        "msg_signature": wecom_signature(TOKEN, "1476416373", "1", ciphertext),
        "timestamp": "1476416373",
        "nonce": "1",
        "echostr": ciphertext,
    }
    with pytest.raises(VerificationError) as caught:
        _verifier().verify(Delivery("GET", b"", {}, query), now=SAMPLE_TIME)
    assert caught.value.reason == "decryption_failed"


def test_wecom_length_past_end() -> None:
    key = base64.b64decode(AES_KEY + "=")
    plaintext = b"R" * 16 + struct.pack(">I", 10_000) + b"short"
    ciphertext = base64.b64encode(
        encrypt_cbc(key, key[:16], plaintext, pad_block=32)
    ).decode()
    with pytest.raises(DecryptionError):
        WeComCrypto(AES_KEY).decrypt(ciphertext)


def test_wecom_rotation() -> None:
    other_key = base64.b64encode(b"n" * 32).decode().rstrip("=")
    verifier = WeComVerifier(
        ["new token", TOKEN], encoding_aes_key=[other_key, AES_KEY], receive_id=CORP_ID
    )
    assert verifier.verify(_url_check(), now=SAMPLE_TIME).handshake is not None
    sender = WeComVerifier(
        ["new token"], encoding_aes_key=other_key, receive_id=CORP_ID
    )
    signed = sender.sign(MESSAGE, now=SAMPLE_TIME)
    assert verifier.verify(to_delivery(signed), now=SAMPLE_TIME).body == MESSAGE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"encoding_aes_key": "short", "receive_id": CORP_ID}, "43 characters"),
        ({"encoding_aes_key": "*" * 43, "receive_id": CORP_ID}, "not base64"),
        ({"encoding_aes_key": [], "receive_id": CORP_ID}, "lists no key"),
        ({"receive_id": CORP_ID}, "encoding_aes_key"),
        ({"encoding_aes_key": AES_KEY}, "receive_id"),
    ],
)
def test_wecom_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_verifier("wecom", [TOKEN], options)
    assert message in str(caught.value)
    assert AES_KEY not in str(caught.value)
