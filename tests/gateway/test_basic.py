"""Tests for the HTTP Basic scheme."""

from __future__ import annotations

import base64

import pytest

from tests.gateway.conftest import to_delivery, with_header
from webhook_gateway.verification import VerificationError
from webhook_gateway.verification.basic import BasicAuthVerifier

CREDENTIAL = "hooks:correct horse battery staple"
BODY = b'{"id": "1"}'


def _authorization(credential: str) -> str:
    return "Basic " + base64.b64encode(credential.encode()).decode()


def test_basic_accepts_credential() -> None:
    verifier = BasicAuthVerifier([CREDENTIAL])
    signed = verifier.sign(BODY)
    assert signed.headers["authorization"] == _authorization(CREDENTIAL)
    verified = verifier.verify(to_delivery(signed))
    assert verified.body == BODY
    assert verified.secret_headers == frozenset({"authorization"})


def test_basic_scheme_case_insensitive() -> None:
    verifier = BasicAuthVerifier([CREDENTIAL])
    value = _authorization(CREDENTIAL).replace("Basic", "bAsIc")
    delivery = with_header(to_delivery(verifier.sign(BODY)), "authorization", value)
    assert verifier.verify(delivery).body == BODY


@pytest.mark.parametrize(
    "credential", ["hooks:wrong", "other:correct horse battery staple", "hooks:"]
)
def test_basic_wrong_credential(credential: str) -> None:
    verifier = BasicAuthVerifier([CREDENTIAL])
    delivery = with_header(
        to_delivery(verifier.sign(BODY)), "authorization", _authorization(credential)
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "credential_mismatch"


def test_basic_missing_header() -> None:
    verifier = BasicAuthVerifier([CREDENTIAL])
    delivery = with_header(to_delivery(verifier.sign(BODY)), "authorization", None)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "Basic",
        "Basic not*base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
    ids=["bearer", "empty", "not-base64", "no-colon", "not-utf8"],
)
def test_basic_malformed_header(value: str) -> None:
    verifier = BasicAuthVerifier([CREDENTIAL])
    delivery = with_header(to_delivery(verifier.sign(BODY)), "authorization", value)
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "malformed_header"


def test_basic_rotation() -> None:
    verifier = BasicAuthVerifier(["hooks:new", "hooks:old"])
    for credential in ("hooks:new", "hooks:old"):
        delivery = to_delivery(BasicAuthVerifier([credential]).sign(BODY))
        assert verifier.verify(delivery).body == BODY


def test_basic_invalid_secret() -> None:
    with pytest.raises(ValueError) as caught:
        BasicAuthVerifier(["no colon here"])
    assert "user:password" in str(caught.value)
    assert "no colon here" not in str(caught.value)
