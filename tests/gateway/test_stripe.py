"""Tests for Stripe's `Stripe-Signature` scheme."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.gateway.conftest import flip_byte, to_delivery, with_body, with_header
from webhook_gateway.verification import VerificationError
from webhook_gateway.verification.stripe import StripeVerifier, stripe_signature

SECRET = "whsec_test_0123456789abcdef"
NOW = 1_700_000_000.0
BODY = b'{"id": "evt_1NG8Du2eZvKYlo2C", "object": "event", "type": "invoice.paid"}'


def _header(timestamp: int, *signatures: str) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={s}" for s in signatures)])


def test_stripe_signature_keyed_by_whole_secret() -> None:
    content = b"1700000000." + BODY
    # The key is the secret string as shown, whsec_ prefix included.
    expected = hmac.new(SECRET.encode(), content, hashlib.sha256).hexdigest()
    assert stripe_signature(SECRET, "1700000000", BODY) == expected

    signed = StripeVerifier([SECRET]).sign(BODY, now=NOW)
    assert signed.headers["stripe-signature"] == f"t=1700000000,v1={expected}"


def test_stripe_verify_event_id() -> None:
    verifier = StripeVerifier([SECRET])
    verified = verifier.verify(to_delivery(verifier.sign(BODY, now=NOW)), now=NOW)
    assert verified.body == BODY
    assert verified.event_id == "evt_1NG8Du2eZvKYlo2C"


def test_stripe_event_id_absent() -> None:
    verifier = StripeVerifier([SECRET])
    for body in (b"[1, 2]", b"not json", b'{"id": 5}'):
        verified = verifier.verify(to_delivery(verifier.sign(body, now=NOW)), now=NOW)
        assert verified.event_id is None


def test_stripe_several_v1_entries() -> None:
    verifier = StripeVerifier([SECRET])
    good = stripe_signature(SECRET, "1700000000", BODY)
    header = "t=1700000000,v0=ignored," + "v1=" + "0" * 64 + ",v1=" + good
    delivery = with_header(
        to_delivery(verifier.sign(BODY, now=NOW)), "stripe-signature", header
    )
    assert verifier.verify(delivery, now=NOW).body == BODY


def test_stripe_tampered_body() -> None:
    verifier = StripeVerifier([SECRET])
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(with_body(delivery, flip_byte(BODY, 20)), now=NOW)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("offset", [-299, 299])
def test_stripe_timestamp_inside_tolerance(offset: int) -> None:
    verifier = StripeVerifier([SECRET])
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    assert verifier.verify(delivery, now=NOW + offset).body == BODY


@pytest.mark.parametrize("offset", [-301, 301])
def test_stripe_timestamp_outside_tolerance(offset: int) -> None:
    verifier = StripeVerifier([SECRET])
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW + offset)
    assert caught.value.reason == "timestamp_expired"


def test_stripe_tolerance_option() -> None:
    verifier = StripeVerifier([SECRET], tolerance_seconds=600)
    delivery = to_delivery(verifier.sign(BODY, now=NOW))
    assert verifier.verify(delivery, now=NOW + 599).body == BODY
    with pytest.raises(VerificationError):
        verifier.verify(delivery, now=NOW + 601)


def test_stripe_timestamp_is_signed() -> None:
    verifier = StripeVerifier([SECRET])
    good = stripe_signature(SECRET, "1700000000", BODY)
    delivery = with_header(
        to_delivery(verifier.sign(BODY, now=NOW)),
        "stripe-signature",
        _header(1700000001, good),
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_stripe_wrong_secret() -> None:
    delivery = to_delivery(StripeVerifier(["whsec_other"]).sign(BODY, now=NOW))
    with pytest.raises(VerificationError) as caught:
        StripeVerifier([SECRET]).verify(delivery, now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_stripe_missing_header() -> None:
    verifier = StripeVerifier([SECRET])
    delivery = with_header(
        to_delivery(verifier.sign(BODY, now=NOW)), "stripe-signature", None
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "v1=abc",
        "t=1700000000",
        "t=1700000000,v0=abc",
        "t=1700000000,t=1700000000,v1=abc",
        "t=soon,v1=abc",
        "t=,v1=abc",
        "t=1700000000,,v1=abc",
        "t=-1,v1=abc",
    ],
)
def test_stripe_malformed_header(value: str) -> None:
    verifier = StripeVerifier([SECRET])
    delivery = with_header(
        to_delivery(verifier.sign(BODY, now=NOW)), "stripe-signature", value
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery, now=NOW)
    assert caught.value.reason == "malformed_header"


def test_stripe_rotation() -> None:
    verifier = StripeVerifier(["whsec_new", "whsec_old"])
    for secret in ("whsec_new", "whsec_old"):
        delivery = to_delivery(StripeVerifier([secret]).sign(BODY, now=NOW))
        assert verifier.verify(delivery, now=NOW).body == BODY
