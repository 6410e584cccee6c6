"""Tests for the Standard Webhooks scheme."""

from __future__ import annotations

import base64

import pytest

from tests.gateway.conftest import flip_byte, to_delivery, with_header
from webhook_gateway.verification import Delivery, VerificationError, build_verifier
from webhook_gateway.verification.standard_webhooks import (
    StandardWebhooksVerifier,
    decode_secret,
    standard_signature,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _delivery(signature: str = EXPECTED, body: bytes = BODY) -> Delivery:
    return Delivery(
        method="POST",
        body=body,
        headers={
            "webhook-id": MESSAGE_ID,
            "webhook-timestamp": str(TIMESTAMP),
            "webhook-signature": signature,
        },
    )


def test_standard_known_answer() -> None:
    # The example in the Standard Webhooks specification.
    key = decode_secret(SECRET)
    assert standard_signature(key, MESSAGE_ID, str(TIMESTAMP), BODY) == EXPECTED
    verified = StandardWebhooksVerifier([SECRET]).verify(_delivery(), now=TIMESTAMP)
    assert verified.body == BODY
    assert verified.event_id == MESSAGE_ID


def test_standard_secret_without_prefix() -> None:
    verifier = StandardWebhooksVerifier([SECRET.removeprefix("whsec_")])
    assert verifier.verify(_delivery(), now=TIMESTAMP).body == BODY


def test_standard_several_entries() -> None:
    other = "v1," + base64.b64encode(b"x" * 32).decode()
    header = f"v1a,c29tZXRoaW5n {other} {EXPECTED}"
    verifier = StandardWebhooksVerifier([SECRET])
    assert verifier.verify(_delivery(header), now=TIMESTAMP).body == BODY


def test_standard_sign_round_trip() -> None:
    verifier = StandardWebhooksVerifier([SECRET])
    signed = verifier.sign(BODY, now=TIMESTAMP)
    assert signed.headers["webhook-id"].startswith("msg_")
    assert signed.headers["webhook-timestamp"] == str(TIMESTAMP)
    verified = verifier.verify(to_delivery(signed), now=TIMESTAMP)
    assert verified.event_id == signed.headers["webhook-id"]


def test_standard_tampered_body() -> None:
    with pytest.raises(VerificationError) as caught:
        StandardWebhooksVerifier([SECRET]).verify(
            _delivery(body=flip_byte(BODY, 5)), now=TIMESTAMP
        )
    assert caught.value.reason == "signature_mismatch"


def test_standard_tampered_id() -> None:
    delivery = with_header(_delivery(), "webhook-id", "msg_other")
    with pytest.raises(VerificationError) as caught:
        StandardWebhooksVerifier([SECRET]).verify(delivery, now=TIMESTAMP)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("offset", [-299, 299])
def test_standard_timestamp_inside_tolerance(offset: int) -> None:
    verifier = StandardWebhooksVerifier([SECRET])
    assert verifier.verify(_delivery(), now=TIMESTAMP + offset).body == BODY


@pytest.mark.parametrize("offset", [-301, 301])
def test_standard_timestamp_outside_tolerance(offset: int) -> None:
    with pytest.raises(VerificationError) as caught:
        StandardWebhooksVerifier([SECRET]).verify(_delivery(), now=TIMESTAMP + offset)
    assert caught.value.reason == "timestamp_expired"


def test_standard_wrong_secret() -> None:
    other = "whsec_" + base64.b64encode(b"another key, 24 bytes!!!").decode()
    with pytest.raises(VerificationError) as caught:
        StandardWebhooksVerifier([other]).verify(_delivery(), now=TIMESTAMP)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize(
    "header", ["webhook-id", "webhook-timestamp", "webhook-signature"]
)
def test_standard_missing_header(header: str) -> None:
    delivery = with_header(_delivery(), header, None)
    with pytest.raises(VerificationError) as caught:
        StandardWebhooksVerifier([SECRET]).verify(delivery, now=TIMESTAMP)
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-signature", "garbage"),
        ("webhook-signature", "v1,a,b"),
        ("webhook-signature", "v1,"),
        ("webhook-signature", ",abc"),
        ("webhook-signature", "v2,abc"),
        ("webhook-timestamp", "yesterday"),
        ("webhook-timestamp", "1614265330.5"),
    ],
)
def test_standard_malformed_header(header: str, value: str) -> None:
    delivery = with_header(_delivery(), header, value)
    with pytest.raises(VerificationError) as caught:
        StandardWebhooksVerifier([SECRET]).verify(delivery, now=TIMESTAMP)
    # "v1,a,b" parses as version v1 with signature "a,b", which matches nothing.
    expected = "signature_mismatch" if value == "v1,a,b" else "malformed_header"
    assert caught.value.reason == expected


def test_standard_rotation() -> None:
    old = "whsec_" + base64.b64encode(b"the old key of 24 bytes!").decode()
    verifier = StandardWebhooksVerifier([old, SECRET])
    assert verifier.verify(_delivery(), now=TIMESTAMP).body == BODY
    signed = StandardWebhooksVerifier([old]).sign(BODY, now=TIMESTAMP)
    assert verifier.verify(to_delivery(signed), now=TIMESTAMP).body == BODY


@pytest.mark.parametrize("secret", ["whsec_not*base64", "whsec_", "whsec_abc"])
def test_standard_invalid_secret(secret: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_verifier("standard-webhooks", [secret], {})
    message = str(caught.value)
    assert message.startswith("standard-webhooks: a secret")
    assert "not*base64" not in message
