"""Tests for the generic HMAC scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tests.gateway.conftest import flip_byte, to_delivery, with_body, with_header
from webhook_gateway.verification import VerificationError, build_verifier
from webhook_gateway.verification.hmac import HmacVerifier

NOW = 1_700_000_000.0
BODY = b'{"id": "evt-1", "text": "part X-12 delayed"}'
TIMESTAMPED = {
    "header": "x-signature",
    "prefix": "sha256=",
    "signed_content": "{timestamp}.{body}",
    "timestamp_header": "x-timestamp",
    "tolerance_seconds": 300,
}


def test_hmac_default_known_answer() -> None:
    verifier = HmacVerifier(["key"])
    signed = verifier.sign(b"The quick brown fox jumps over the lazy dog")
    # HMAC-SHA256 of this sentence keyed by "key", computed independently.
    assert signed.headers["x-signature"] == (
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_algorithms_and_encodings(algorithm: str, encoding: str) -> None:
    verifier = HmacVerifier(["s3cret"], algorithm=algorithm, encoding=encoding)
    digest = hmac.new(b"s3cret", BODY, getattr(hashlib, algorithm)).digest()
    expected = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()

    signed = verifier.sign(BODY)

    assert signed.headers["x-signature"] == expected
    assert verifier.verify(to_delivery(signed)).body == BODY


def test_hmac_signed_content_template() -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    signed = verifier.sign(BODY, now=NOW)
    content = b"1700000000." + BODY
    expected = hmac.new(b"s3cret", content, hashlib.sha256).hexdigest()

    assert signed.headers["x-timestamp"] == "1700000000"
    assert signed.headers["x-signature"] == "sha256=" + expected
    assert verifier.verify(to_delivery(signed), now=NOW).body == BODY


def test_hmac_uppercase_hex_accepted() -> None:
    verifier = HmacVerifier(["s3cret"])
    delivery = to_delivery(verifier.sign(BODY))
    upper = with_header(
        delivery, "x-signature", delivery.headers["x-signature"].upper()
    )
    assert verifier.verify(upper).body == BODY


def test_hmac_tampered_body() -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(with_body(delivery, flip_byte(BODY, 10)), now=NOW)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("offset", [-299, 299])
def test_hmac_timestamp_inside_tolerance(offset: int) -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    assert verifier.verify(delivery, now=NOW + offset).body == BODY


@pytest.mark.parametrize("offset", [-301, 301])
def test_hmac_timestamp_outside_tolerance(offset: int) -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW + offset)
    assert caught.value.reason == "timestamp_expired"


def test_hmac_timestamp_is_signed() -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    moved = with_header(delivery, "x-timestamp", "1700000001")
    with pytest.raises(VerificationError) as caught:
        verifier.verify(moved, now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_hmac_wrong_secret() -> None:
    signed = HmacVerifier(["other"], **TIMESTAMPED).sign(BODY, now=NOW)
    with pytest.raises(VerificationError) as caught:
        HmacVerifier(["s3cret"], **TIMESTAMPED).verify(to_delivery(signed), now=NOW)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("header", ["x-signature", "x-timestamp"])
def test_hmac_missing_header(header: str) -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = with_header(to_delivery(verifier.sign(BODY, now=NOW)), header, None)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-signature", "md5=abcdef"),
        ("x-timestamp", "soon"),
        ("x-timestamp", "-5"),
        ("x-timestamp", "1e9"),
        ("x-timestamp", "²"),
        ("x-timestamp", "9" * 400),
    ],
)
def test_hmac_malformed_header(header: str, value: str) -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = with_header(to_delivery(verifier.sign(BODY, now=NOW)), header, value)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "malformed_header"


@pytest.mark.parametrize(
    "value", ["sha256=zz", "sha256=", "sha256=é✓", "sha256=" + "a" * 5000]
)
def test_hmac_garbage_signature(value: str) -> None:
    verifier = HmacVerifier(["s3cret"], **TIMESTAMPED)
    delivery = with_header(
        to_delivery(verifier.sign(BODY, now=NOW)), "x-signature", value
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_hmac_rotation() -> None:
    verifier = HmacVerifier(["new", "old"], **TIMESTAMPED)
    for secret in ("new", "old"):
        signed = HmacVerifier([secret], **TIMESTAMPED).sign(BODY, now=NOW)
        assert verifier.verify(to_delivery(signed), now=NOW).body == BODY


def test_hmac_event_id_header() -> None:
    verifier = HmacVerifier(["s3cret"], event_id_header="X-Delivery-Id")
    delivery = with_header(to_delivery(verifier.sign(BODY)), "x-delivery-id", "d-7")
    assert verifier.verify(delivery).event_id == "d-7"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"algorithm": "md5"}, "algorithm 'md5'"),
        ({"encoding": "base32"}, "encoding 'base32'"),
        ({"signed_content": "{timestamp}"}, "must contain {body}"),
        ({"signed_content": "{nonce}.{body}"}, "unknown placeholder"),
        ({"signed_content": "{timestamp}.{body}"}, "set timestamp_header"),
        ({"tolerance_seconds": 0}, "tolerance_seconds"),
        ({"colour": "blue"}, "invalid options"),
    ],
)
def test_hmac_invalid_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_verifier("hmac", ["s3cret"], options)
    assert message in str(caught.value)


def test_hmac_needs_secret() -> None:
    with pytest.raises(ValueError) as caught:
        build_verifier("hmac", [], {})
    assert "at least one secret" in str(caught.value)
