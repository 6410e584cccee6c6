"""Tests for GitHub's `X-Hub-Signature-256` scheme."""

from __future__ import annotations

import json

import pytest

from tests.gateway.conftest import flip_byte, to_delivery, with_body, with_header
from webhook_gateway.verification import VerificationError
from webhook_gateway.verification.github import GitHubVerifier, github_signature

SECRET = "It's a Secret to Everybody"
BODY = b'{"ref": "refs/heads/main", "after": "abc123"}'


def test_github_known_answer() -> None:
    # The example in GitHub's "Validating webhook deliveries" documentation.
    assert github_signature(SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_github_sign_headers() -> None:
    signed = GitHubVerifier([SECRET]).sign(BODY)
    assert signed.headers["x-github-event"] == "push"
    assert signed.headers["x-hub-signature-256"] == github_signature(SECRET, BODY)
    assert signed.headers["x-hub-signature"].startswith("sha1=")
    assert len(signed.headers["x-github-delivery"]) == 36


def test_github_verify_event_id() -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = to_delivery(verifier.sign(BODY))
    verified = verifier.verify(delivery)
    assert verified.body == BODY
    assert verified.event_id == delivery.headers["x-github-delivery"]
    assert verified.handshake is None


def test_github_ping_handshake() -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = to_delivery(verifier.sign_handshake())
    assert delivery.headers["x-github-event"] == "ping"

    verified = verifier.verify(delivery)

    assert verified.handshake is not None
    assert verified.handshake.status_code == 200
    answer = json.loads(verified.handshake.content)
    assert answer["event"] == "ping"
    assert answer["delivery"] == delivery.headers["x-github-delivery"]


def test_github_unsigned_ping_rejected() -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = with_header(
        to_delivery(verifier.sign_handshake()), "x-hub-signature-256", None
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "missing_header"


def test_github_tampered_body() -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = to_delivery(verifier.sign(BODY))
    with pytest.raises(VerificationError) as caught:
        verifier.verify(with_body(delivery, flip_byte(BODY, 3)))
    assert caught.value.reason == "signature_mismatch"


def test_github_wrong_secret() -> None:
    delivery = to_delivery(GitHubVerifier(["not it"]).sign(BODY))
    with pytest.raises(VerificationError) as caught:
        GitHubVerifier([SECRET]).verify(delivery)
    assert caught.value.reason == "signature_mismatch"


def test_github_legacy_sha1_only() -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = with_header(
        to_delivery(verifier.sign(BODY)), "x-hub-signature-256", None
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "missing_header"


@pytest.mark.parametrize("value", ["757107ea0eb2", "sha1=757107ea", "sha256 = x", ""])
def test_github_malformed_header(value: str) -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = with_header(
        to_delivery(verifier.sign(BODY)), "x-hub-signature-256", value
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    # An empty header counts as missing.
    assert caught.value.reason == (
        "missing_header" if value == "" else "malformed_header"
    )


@pytest.mark.parametrize("value", ["sha256=", "sha256=zz", "sha256=ü"])
def test_github_garbage_signature(value: str) -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = with_header(
        to_delivery(verifier.sign(BODY)), "x-hub-signature-256", value
    )
    with pytest.raises(VerificationError) as caught:
        verifier.verify(delivery)
    assert caught.value.reason == "signature_mismatch"


def test_github_uppercase_hex() -> None:
    verifier = GitHubVerifier([SECRET])
    delivery = to_delivery(verifier.sign(BODY))
    value = "sha256=" + delivery.headers["x-hub-signature-256"][7:].upper()
    assert (
        verifier.verify(with_header(delivery, "x-hub-signature-256", value)).body
        == BODY
    )


def test_github_rotation() -> None:
    verifier = GitHubVerifier(["new secret", "old secret"])
    for secret in ("new secret", "old secret"):
        delivery = to_delivery(GitHubVerifier([secret]).sign(BODY))
        assert verifier.verify(delivery).body == BODY


def test_github_needs_secret() -> None:
    with pytest.raises(ValueError):
        GitHubVerifier([])
