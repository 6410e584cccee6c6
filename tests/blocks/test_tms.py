"""Tests of the TMS credentials block."""

from __future__ import annotations

import httpx
import pytest

from blocks.tms import TMSCredentials
from tests.servers.tms_server import TMSServer


def test_tms_client_sends_bearer(tms_server: TMSServer) -> None:
    credentials = TMSCredentials(base_url=tms_server.url, token=tms_server.token)

    with credentials.get_client() as client:
        response = client.get("/api/shipments", params={"material": "A03-205"})

    assert response.status_code == 200
    assert response.json() == []
    header = tms_server.requests[0].headers["authorization"]
    assert header == "Bearer tms-test-token"


def test_tms_client_timeout(tms_server: TMSServer) -> None:
    credentials = TMSCredentials(base_url=tms_server.url, token="t", timeout=0.3)
    tms_server.hang_next(1)

    with credentials.get_client() as client, pytest.raises(httpx.ReadTimeout):
        client.get("/api/shipments")


def test_tms_token_is_secret() -> None:
    credentials = TMSCredentials(base_url="http://127.0.0.1:1", token="secret-value")

    assert "secret-value" not in repr(credentials)
    assert credentials.timeout == 10


def test_tms_fields_have_descriptions() -> None:
    for name, field in TMSCredentials.model_fields.items():
        assert field.description, f"{name} has no description"
        assert field.description.endswith("."), f"{name} description lacks a period"


def test_tms_code_example() -> None:
    example = TMSCredentials.get_code_example()

    assert example is not None
    assert 'TMSCredentials.load("BLOCK_NAME")' in example
