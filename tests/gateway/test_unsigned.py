"""Tests for the `none` scheme and its explicit opt-in."""

from __future__ import annotations

import logging

import pytest

from webhook_gateway.config import parse_config
from webhook_gateway.registry import build_routes
from webhook_gateway.verification import Delivery, build_verifier


def test_unsigned_requires_opt_in() -> None:
    with pytest.raises(ValueError) as caught:
        build_verifier("none", [], {})
    assert "allow_unsigned: true" in str(caught.value)


@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_unsigned_opt_in_must_be_boolean(value: object) -> None:
    with pytest.raises(ValueError):
        build_verifier("none", [], {"allow_unsigned": value})


def test_unsigned_rejects_secrets() -> None:
    with pytest.raises(ValueError) as caught:
        build_verifier("none", ["s"], {"allow_unsigned": True})
    assert "checks no secret" in str(caught.value)


def test_unsigned_accepts_anything() -> None:
    verifier = build_verifier("none", [], {"allow_unsigned": True})
    verified = verifier.verify(Delivery("POST", b"any body", {}))
    assert verified.body == b"any body"
    assert verified.event_id is None


def test_unsigned_startup_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(
        {
            "routes": {
                "open-door": {
                    "scheme": "none",
                    "options": {"allow_unsigned": True},
                    "deployment": "flow/deployment",
                }
            }
        }
    )
    with caplog.at_level(logging.WARNING, logger="webhook_gateway.registry"):
        build_routes(config)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "route open-door accepts unsigned deliveries" in warnings[0].getMessage()
