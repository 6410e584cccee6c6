"""Tests for the API key scheme."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import to_delivery, with_body, with_header
from webhook_gateway.verification import VerificationError
from webhook_gateway.verification.apikey import ApiKeyVerifier

KEY = "api-key-0123456789"
BODY = b'{"id": "1"}'


def test_apikey_accepts_key() -> None:
    verifier = ApiKeyVerifier([KEY])
    signed = verifier.sign(BODY)
    assert signed.headers["x-api-key"] == KEY
    verified = verifier.verify(to_delivery(signed))
    assert verified.body == BODY
    assert verified.secret_headers == frozenset({"x-api-key"})


def test_apikey_custom_header_prefix() -> None:
    verifier = ApiKeyVerifier([KEY], header="Authorization", prefix="Bearer ")
    signed = verifier.sign(BODY)
    assert signed.headers["authorization"] == f"Bearer {KEY}"
    delivery = with_header(to_delivery(signed), "authorization", f"bearer {KEY}")
    assert verifier.verify(delivery).secret_headers == frozenset({"authorization"})


def test_apikey_body_not_covered() -> None:
    verifier = ApiKeyVerifier([KEY])
    delivery = with_body(to_delivery(verifier.sign(BODY)), b"anything")
    assert verifier.verify(delivery).body == b"anything"


@pytest.mark.parametrize("value", ["wrong", KEY[:-1], KEY + "0", "é"])
def test_apikey_wrong_key(value: str) -> None:
    verifier = ApiKeyVerifier([KEY])
    delivery = with_header(to_delivery(verifier.sign(BODY)), "x-api-key", value)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "key_mismatch"


def test_apikey_missing_header() -> None:
    verifier = ApiKeyVerifier([KEY])
    delivery = with_header(to_delivery(verifier.sign(BODY)), "x-api-key", None)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "missing_header"


def test_apikey_malformed_prefix() -> None:
    verifier = ApiKeyVerifier([KEY], header="authorization", prefix="Bearer ")
    delivery = with_header(
        to_delivery(verifier.sign(BODY)), "authorization", f"Basic {KEY}"
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "malformed_header"


def test_apikey_rotation() -> None:
    verifier = ApiKeyVerifier(["new-key", "old-key"])
    for key in ("new-key", "old-key"):
        delivery = to_delivery(ApiKeyVerifier([key]).sign(BODY))
        assert verifier.verify(delivery).body == BODY


def test_apikey_needs_key() -> None:
    with pytest.raises(ValueError):
        ApiKeyVerifier([])
    with pytest.raises(ValueError):
        ApiKeyVerifier([""])
