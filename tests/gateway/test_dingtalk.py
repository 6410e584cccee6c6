"""Tests for DingTalk's bot callback signatures and the replay defence."""

from __future__ import annotations

import json

import pytest

from tests.gateway.conftest import to_delivery, with_header
from tests.support.dingtalk import SHARED_PAYLOAD, UPSTREAM_PAYLOAD
from webhook_gateway.verification import Delivery, VerificationError
from webhook_gateway.verification.dingtalk import DingTalkVerifier, dingtalk_sign

SECRET = "this is a secret"
TIMESTAMP_MS = 1577262236757
NOW = TIMESTAMP_MS / 1000
BODY = json.dumps(
    {"msgtype": "text", "msgId": "msgEXAMPLE0001", "text": {"content": " delayed"}}
).encode()


def _delivery(body: bytes = BODY) -> Delivery:
    return Delivery(
        method="POST",
        body=body,
        headers={
            "timestamp": str(TIMESTAMP_MS),
            "sign": "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA=",
        },
    )


def test_dingtalk_known_answer() -> None:
    assert dingtalk_sign(str(TIMESTAMP_MS), SECRET) == (
        "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CA="
    )
    verified = DingTalkVerifier([SECRET]).verify(_delivery(), now=NOW)
    assert verified.body == BODY
    assert verified.event_id == "msgEXAMPLE0001"


def test_dingtalk_sign_round_trip() -> None:
    verifier = DingTalkVerifier([SECRET])
    signed = verifier.sign(BODY, now=NOW)
    assert signed.headers["timestamp"] == str(int(NOW * 1000))
    assert verifier.verify(to_delivery(signed), now=NOW).body == BODY


def test_dingtalk_payload_fixture() -> None:
    body = SHARED_PAYLOAD.read_bytes()
    verifier = DingTalkVerifier([SECRET])
    verified = verifier.verify(to_delivery(verifier.sign(body, now=NOW)), now=NOW)
    assert verified.event_id == "msgEXAMPLE0001"


@pytest.mark.skipif(
    UPSTREAM_PAYLOAD is None, reason="the shared data folder is not beside the checkout"
)
def test_dingtalk_payload_matches_upstream() -> None:
    assert UPSTREAM_PAYLOAD is not None
    bundled = json.loads(SHARED_PAYLOAD.read_text(encoding="utf-8"))
    upstream = json.loads(UPSTREAM_PAYLOAD.read_text(encoding="utf-8"))

    assert bundled == upstream


def test_dingtalk_event_id_absent() -> None:
    for body in (b"{}", b"[]", b"plain", b'{"msgId": 7}', b'{"msgId": ""}'):
        verifier = DingTalkVerifier([SECRET])
        signed = verifier.sign(body, now=NOW)
        assert verifier.verify(to_delivery(signed), now=NOW).event_id is None


def test_dingtalk_body_not_signed() -> None:
    # DingTalk's sign covers only the timestamp: another body verifies on a fresh
    # verifier. This is the replay the docs describe.
    other = BODY.replace(b"delayed", b"on time")
    verified = DingTalkVerifier([SECRET]).verify(_delivery(other), now=NOW)
    assert verified.body == other


def test_dingtalk_replay_other_body() -> None:
    verifier = DingTalkVerifier([SECRET])
    verifier.verify(_delivery(), now=NOW)
    other = BODY.replace(b"msgEXAMPLE0001", b"msgFORGED0002")
    with pytest.raises(VerificationError) as caught:
        verifier.verify(_delivery(other), now=NOW + 10)
    assert caught.value.reason == "replayed_signature"


def test_dingtalk_redelivery_same_body() -> None:
    verifier = DingTalkVerifier([SECRET])
    first = verifier.verify(_delivery(), now=NOW)
    again = verifier.verify(_delivery(), now=NOW + 10)
    # The inbox's dedupe on msgId turns the redelivery into no second run.
    assert again.event_id == first.event_id


def test_dingtalk_replay_check_disabled() -> None:
    verifier = DingTalkVerifier([SECRET], reject_reused_sign=False)
    verifier.verify(_delivery(), now=NOW)
    other = BODY.replace(b"delayed", b"on time")
    assert verifier.verify(_delivery(other), now=NOW).body == other


def test_dingtalk_replay_memory_expires() -> None:
    verifier = DingTalkVerifier([SECRET], tolerance_seconds=60)
    verifier.verify(_delivery(), now=NOW)
    fresh = verifier.sign(b'{"msgId": "later"}', now=NOW + 120)
    verifier.verify(to_delivery(fresh), now=NOW + 120)
    assert len(verifier._seen) == 1


def test_dingtalk_tampered_sign() -> None:
    delivery = with_header(
        _delivery(), "sign", "DJrE6qdyVGCQz9z5r2MDuNcNAhwYnuAkyj13cx169CB="
    )
    with pytest.raises(VerificationError) as caught:
        DingTalkVerifier([SECRET]).verify(delivery, now=NOW)
    assert caught.value.reason == "signature_mismatch"


def test_dingtalk_tampered_timestamp() -> None:
    delivery = with_header(_delivery(), "timestamp", str(TIMESTAMP_MS + 1))
    with pytest.raises(VerificationError) as caught:
        DingTalkVerifier([SECRET]).verify(delivery, now=NOW)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("offset", [-3599, 3599])
def test_dingtalk_timestamp_inside_tolerance(offset: int) -> None:
    verified = DingTalkVerifier([SECRET]).verify(_delivery(), now=NOW + offset)
    assert verified.body == BODY


@pytest.mark.parametrize("offset", [-3601, 3601])
def test_dingtalk_timestamp_outside_tolerance(offset: int) -> None:
    with pytest.raises(VerificationError) as caught:
        DingTalkVerifier([SECRET]).verify(_delivery(), now=NOW + offset)
    assert caught.value.reason == "timestamp_expired"


def test_dingtalk_wrong_secret() -> None:
    with pytest.raises(VerificationError) as caught:
        DingTalkVerifier(["another secret"]).verify(_delivery(), now=NOW)
    assert caught.value.reason == "signature_mismatch"


@pytest.mark.parametrize("header", ["timestamp", "sign"])
def test_dingtalk_missing_header(header: str) -> None:
    with pytest.raises(VerificationError) as caught:
        DingTalkVerifier([SECRET]).verify(
            with_header(_delivery(), header, None), now=NOW
        )
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize(
    "value", ["1577262236.757", "abc", "²", "-1577262236757", "1" * 40]
)
def test_dingtalk_malformed_timestamp(value: str) -> None:
    delivery = with_header(_delivery(), "timestamp", value)
    with pytest.raises(VerificationError) as caught:
        DingTalkVerifier([SECRET]).verify(delivery, now=NOW)
    assert caught.value.reason == "malformed_header"


def test_dingtalk_rotation() -> None:
    verifier = DingTalkVerifier(["new secret", SECRET], reject_reused_sign=False)
    assert verifier.verify(_delivery(), now=NOW).body == BODY
    signed = DingTalkVerifier(["new secret"]).sign(BODY, now=NOW)
    assert verifier.verify(to_delivery(signed), now=NOW).body == BODY
