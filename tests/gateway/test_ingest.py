"""Tests for accepting deliveries through the real app: verify, parse, store, respond."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.gateway.conftest import ROUTE_SECRETS, TEST_ROUTES_FILE
from tests.support.dingtalk import SHARED_PAYLOAD
from webhook_gateway.app import create_app
from webhook_gateway.config import parse_config
from webhook_gateway.inbox import Inbox
from webhook_gateway.registry import Route
from webhook_gateway.settings import GatewaySettings
from webhook_gateway.signing import signed_request

EXTRA_ROUTES: dict[str, Any] = {
    "strict": {
        "scheme": "hmac",
        "secrets": [{"env": "TEST_HMAC_SECRET"}],
        "deployment": "supply-chain-delay/supply-chain-delay",
        "event_id": "{{ body.id }}",
        "parameters": {"text": "{{ body.text }}", "title": "{{ body.title }}"},
    },
    "typed": {
        "scheme": "hmac",
        "secrets": [{"env": "TEST_HMAC_SECRET"}],
        "deployment": "supply-chain-delay/supply-chain-delay",
        "event_id": "{{ body.id }}",
        "parameters": {
            "code": "{{ body.code }}",
            "count": "{{ body.count }}",
            "items": "{{ body.items }}",
            "label": "{{ route }}:{{ event_id }}",
        },
    },
    "long-id": {
        "scheme": "hmac",
        "secrets": [{"env": "TEST_HMAC_SECRET"}],
        "deployment": "supply-chain-delay/supply-chain-delay",
        "event_id": "{{ body.text * 300 }}",
    },
    "not-json-params": {
        "scheme": "hmac",
        "secrets": [{"env": "TEST_HMAC_SECRET"}],
        "deployment": "supply-chain-delay/supply-chain-delay",
        "parameters": {"method": "{{ body.text.upper }}"},
    },
    "plain-text": {
        "scheme": "hmac",
        "secrets": [{"env": "TEST_HMAC_SECRET"}],
        "deployment": "supply-chain-delay/supply-chain-delay",
        "content_type": "text",
        "parameters": {"text": "{{ body }}", "source": "{{ query.source }}"},
    },
    "tiny": {
        "scheme": "none",
        "options": {"allow_unsigned": True},
        "deployment": "supply-chain-delay/supply-chain-delay",
        "max_body_bytes": 64,
    },
}


@pytest.fixture
def client(
    tmp_path: Path, route_secrets: dict[str, str]
) -> Iterator[tuple[TestClient, Inbox, dict[str, Route]]]:
    raw = yaml.safe_load(TEST_ROUTES_FILE.read_text(encoding="utf-8"))
    raw["routes"].update(EXTRA_ROUTES)
    settings = GatewaySettings(home=tmp_path, run_dispatcher=False)
    app = create_app(settings, parse_config(raw))
    with TestClient(app) as test_client:
        state = app.state.gateway
        yield test_client, state.inbox, state.routes


def _post(
    test_client: TestClient, route: Route, body: bytes | None = None, **kw: Any
) -> Any:
    signed = signed_request(route, body, **kw)
    return test_client.request(
        signed.method,
        f"/hooks/{route.name}",
        content=signed.body or None,
        headers=signed.headers,
        params=signed.query,
    )


def test_ingest_stores_event(client: Any) -> None:
    test_client, inbox, routes = client
    response = _post(
        test_client, routes["hmac-timestamped"], b'{"id": "e-1", "text": "late"}'
    )
    assert response.status_code == 202
    answer = response.json()
    assert answer["event_id"] == "e-1"
    assert answer["status"] == "received"
    event = inbox.get(answer["id"])
    assert event is not None
    assert event.parameters == {"text": "late"}
    assert event.body == b'{"id": "e-1", "text": "late"}'


def test_ingest_redelivery_same_event(client: Any) -> None:
    test_client, _, routes = client
    body = b'{"id": "e-2", "text": "late"}'
    first = _post(test_client, routes["hmac-timestamped"], body)
    second = _post(test_client, routes["hmac-timestamped"], body)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


def test_ingest_bad_signature_401(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    test_client, inbox, routes = client
    signed = signed_request(routes["hmac-timestamped"], b'{"id": "e-3", "text": "x"}')
    headers = {**signed.headers, "x-signature": "sha256=" + "0" * 64}
    with caplog.at_level(logging.WARNING, logger="webhook_gateway.ingest"):
        response = test_client.post(
            "/hooks/hmac-timestamped", content=signed.body, headers=headers
        )
    assert response.status_code == 401
    assert response.json()["reason"] == "signature_mismatch"
    assert signed.headers["x-signature"] not in response.text
    assert inbox.count_by_status() == {}
    messages = [record.getMessage() for record in caplog.records]
    assert any("hmac-timestamped" in m and "signature_mismatch" in m for m in messages)
    for message in messages:
        assert ROUTE_SECRETS["TEST_HMAC_SECRET"] not in message
        assert signed.headers["x-signature"] not in message


@pytest.mark.parametrize(
    ("drop", "reason"),
    [("x-signature", "missing_header"), ("x-timestamp", "missing_header")],
)
def test_ingest_missing_header_401(client: Any, drop: str, reason: str) -> None:
    test_client, _, routes = client
    signed = signed_request(routes["hmac-timestamped"], b'{"id": "e-4"}')
    headers = {k: v for k, v in signed.headers.items() if k != drop}
    response = test_client.post(
        "/hooks/hmac-timestamped", content=signed.body, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["reason"] == reason


def test_ingest_template_error_422(client: Any) -> None:
    test_client, inbox, routes = client
    body = b'{"id": "e-5", "text": "late"}'
    response = _post(test_client, routes["strict"], body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["template"] == "parameters.title"
    assert "'title'" in answer["message"]
    assert answer["event_id"] == "e-5"

    event = inbox.get(answer["id"])
    assert event is not None
    assert event.status == "rejected"
    assert "'title'" in (event.last_error or "")
    assert event.body == body
    assert event.parameters is None

    status = test_client.get(f"/events/{answer['id']}").json()
    assert status["status"] == "rejected"
    assert "parameters.title" in status["last_error"]


def test_ingest_event_id_template_error(client: Any) -> None:
    test_client, inbox, routes = client
    response = _post(test_client, routes["strict"], b'{"text": "no id"}')
    assert response.status_code == 422
    answer = response.json()
    assert answer["template"] == "event_id"
    assert answer["event_id"].startswith("sha256:")
    assert inbox.get(answer["id"]).status == "rejected"


def test_ingest_event_id_too_long(client: Any) -> None:
    test_client, _, routes = client
    response = _post(test_client, routes["long-id"], b'{"text": "x"}')
    assert response.status_code == 422
    assert response.json()["template"] == "event_id"
    message = response.json()["message"]
    assert "the event id is 300 characters long, longer than the 255 allowed" in (
        message
    )
    assert "the sender's id or the route's event_id template" in message
    assert "fix the route's templates" not in message


@pytest.mark.parametrize(
    ("sender_id", "expected"),
    [
        ({"a": 1}, "rendered a dict, but an event id must be a string"),
        ([1, 2], "rendered a list,"),
        (True, "rendered a bool,"),
        (1.5, "rendered a float,"),
        ("a\nb", "control character '\\n' at position 1"),
        ("a\u0000b", "control character '\\x00' at position 1"),
        ("tab\there", "control character '\\t' at position 3"),
        ("del\u007f", "control character '\\x7f' at position 3"),
    ],
)
def test_ingest_event_id_invalid_value(
    client: Any, sender_id: Any, expected: str
) -> None:
    test_client, inbox, routes = client
    body = json.dumps({"id": sender_id, "text": "t", "title": "x"}).encode()

    response = _post(test_client, routes["strict"], body)

    assert response.status_code == 422
    answer = response.json()
    assert answer["template"] == "event_id"
    assert expected in answer["message"]
    assert answer["event_id"].startswith("sha256:")
    event = inbox.get(answer["id"])
    assert event is not None
    assert event.status == "rejected"
    assert expected in (event.last_error or "")


def test_ingest_event_id_integer(client: Any) -> None:
    test_client, _, routes = client
    body = b'{"id": 42, "text": "t", "title": "x"}'

    response = _post(test_client, routes["strict"], body)

    assert response.status_code == 202
    assert response.json()["event_id"] == "42"


def test_ingest_parameters_not_json(client: Any) -> None:
    test_client, inbox, routes = client
    response = _post(test_client, routes["not-json-params"], b'{"text": "x"}')
    assert response.status_code == 422
    answer = response.json()
    assert answer["template"] == "parameters"
    assert inbox.get(answer["id"]).status == "rejected"


def test_ingest_native_types(client: Any) -> None:
    test_client, inbox, routes = client
    body = json.dumps(
        {"id": "e-6", "code": "007", "count": 4, "items": [{"sku": "A"}]}
    ).encode()
    response = _post(test_client, routes["typed"], body)
    assert response.status_code == 202
    event = inbox.get(response.json()["id"])
    assert event.parameters == {
        "code": "007",
        "count": 4,
        "items": [{"sku": "A"}],
        "label": "typed:e-6",
    }


def test_ingest_filter_ignores(client: Any) -> None:
    test_client, inbox, routes = client
    body = b'{"msgtype": "picture", "msgId": "m-pic"}'
    response = _post(test_client, routes["dingtalk"], body)
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "ignored"
    assert answer["event_id"] == "m-pic"
    assert inbox.get(answer["id"]).parameters is None
    assert inbox.count_by_status() == {"ignored": 1}


def test_ingest_filter_github_push_only(client: Any) -> None:
    test_client, _, routes = client
    route = routes["github"]
    push = _post(test_client, route, b'{"ref": "refs/heads/main"}')
    assert push.json()["status"] == "received"

    signed = signed_request(route, b'{"action": "opened"}')
    headers = {**signed.headers, "x-github-event": "issues"}
    # The event name is not signed by GitHub, so changing it keeps the signature valid.
    other = test_client.post("/hooks/github", content=signed.body, headers=headers)
    assert other.status_code == 202
    assert other.json()["status"] == "ignored"


def test_ingest_github_ping(client: Any) -> None:
    test_client, inbox, routes = client
    response = _post(test_client, routes["github"], handshake=True)
    assert response.status_code == 200
    assert response.json()["event"] == "ping"
    assert inbox.count_by_status() == {}


def test_ingest_dingtalk_event_id_default(client: Any) -> None:
    test_client, inbox, routes = client
    body = SHARED_PAYLOAD.read_bytes()
    response = _post(test_client, routes["dingtalk"], body)
    assert response.status_code == 202
    assert response.json()["event_id"] == "msgEXAMPLE0001"
    event = inbox.get(response.json()["id"])
    assert event.parameters == {"text": " 受台风影响,A03-205芯片推迟3天发货"}


def test_ingest_feishu_handshake_and_event(client: Any) -> None:
    test_client, inbox, routes = client
    handshake = _post(test_client, routes["feishu"], handshake=True)
    assert handshake.status_code == 200
    assert set(handshake.json()) == {"challenge"}
    assert inbox.count_by_status() == {}

    event = {
        "schema": "2.0",
        "header": {"event_id": "fe-1"},
        "event": {"message": {"content": "hello"}},
    }
    response = _post(test_client, routes["feishu"], json.dumps(event).encode())
    assert response.status_code == 202
    assert response.json()["event_id"] == "fe-1"
    stored = inbox.get(response.json()["id"])
    assert json.loads(stored.body)["event"] == event["event"]
    assert stored.parameters == {"text": "hello"}


def test_ingest_wecom_url_check(client: Any) -> None:
    test_client, inbox, routes = client
    signed = signed_request(routes["wecom"], handshake=True)
    response = test_client.get("/hooks/wecom", params=signed.query)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.isdigit()
    assert inbox.count_by_status() == {}


def test_ingest_wecom_xml_message(client: Any) -> None:
    test_client, inbox, routes = client
    message = (
        "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>"
        "<FromUserName><![CDATA[lisi]]></FromUserName><MsgType><![CDATA[text]]>"
        "</MsgType><Content><![CDATA[A03 延期]]></Content><MsgId>77</MsgId></xml>"
    ).encode()
    response = _post(test_client, routes["wecom"], message)
    assert response.status_code == 202
    answer = response.json()
    assert answer["event_id"] == "77"
    event = inbox.get(answer["id"])
    assert event.body == message
    assert event.parameters == {"text": "A03 延期", "sender": "lisi"}


def test_ingest_wecom_xml_dtd_rejected(client: Any) -> None:
    test_client, _, routes = client
    message = b'<!DOCTYPE x [<!ENTITY a "b">]><xml><MsgType>&a;</MsgType></xml>'
    response = _post(test_client, routes["wecom"], message)
    assert response.status_code == 400
    assert "DTD" in response.json()["message"]


def test_ingest_form_body(client: Any) -> None:
    test_client, inbox, routes = client
    response = _post(test_client, routes["unsigned"], b"text=late+again&id=f-1")
    assert response.status_code == 202
    assert inbox.get(response.json()["id"]).parameters == {"text": "late again"}


def test_ingest_text_body(client: Any) -> None:
    test_client, inbox, routes = client
    signed = signed_request(routes["plain-text"], "线路 3 停运".encode())
    response = test_client.post(
        "/hooks/plain-text?source=sms", content=signed.body, headers=signed.headers
    )
    assert response.status_code == 202
    event = inbox.get(response.json()["id"])
    assert event.parameters == {"text": "线路 3 停运", "source": "sms"}
    assert event.query == {"source": "sms"}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe", b"[" * 100_000],
    ids=["invalid-json", "not-utf8", "too-deep"],
)
def test_ingest_unparseable_body_400(client: Any, body: bytes) -> None:
    test_client, inbox, routes = client
    response = _post(test_client, routes["hmac-timestamped"], body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_payload"
    assert inbox.count_by_status() == {}


def test_ingest_secret_headers_not_stored(client: Any) -> None:
    test_client, inbox, routes = client
    for name, header in (("api-key", "x-api-key"), ("basic", "authorization")):
        body = json.dumps({"id": name, "text": "hi"}).encode()
        response = _post(test_client, routes[name], body)
        assert response.status_code == 202
        event = inbox.get(response.json()["id"])
        assert header not in event.headers
        assert "content-type" in event.headers


def test_ingest_api_key_rejected(client: Any) -> None:
    test_client, _, _ = client
    response = test_client.post(
        "/hooks/api-key", content=b'{"id": "x"}', headers={"x-api-key": "guess"}
    )
    assert response.status_code == 401
    assert response.json()["reason"] == "key_mismatch"


def test_ingest_body_too_large(client: Any) -> None:
    test_client, inbox, _ = client
    response = test_client.post("/hooks/tiny", content=b"x" * 65)
    assert response.status_code == 413
    assert response.json()["limit"] == 64
    assert inbox.count_by_status() == {}


def test_ingest_body_at_limit(client: Any) -> None:
    test_client, _, _ = client
    body = json.dumps({"pad": "x" * 53}).encode()
    assert len(body) == 64
    assert test_client.post("/hooks/tiny", content=body).status_code == 202


def test_ingest_chunked_body_too_large(client: Any) -> None:
    test_client, _, _ = client

    def chunks() -> Iterator[bytes]:
        # A generator body is sent chunked, without Content-Length.
        for _ in range(100):
            yield b"x" * 16

    response = test_client.post("/hooks/tiny", content=chunks())
    assert response.status_code == 413
    assert "exceeds this route's limit of 64 bytes" in response.json()["message"]


def test_ingest_unknown_route(client: Any) -> None:
    test_client, _, _ = client
    response = test_client.post("/hooks/missing", content=b"{}")
    assert response.status_code == 404


def test_ingest_get_rejected_for_post_scheme(client: Any) -> None:
    test_client, inbox, _ = client
    before = inbox.count_by_status()

    response = test_client.get("/hooks/github")

    assert response.status_code == 405
    body = response.json()
    assert body["error"] == "method_not_allowed"
    assert body["allowed"] == ["POST"]
    assert "POST" in body["message"]
    assert inbox.count_by_status() == before


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_ingest_wrong_method_json(client: Any, method: str) -> None:
    test_client, _, _ = client
    response = test_client.request(method, "/hooks/x")
    assert response.status_code == 405
    answer = response.json()
    assert set(answer) == {"error", "message"}
    assert answer["error"] == "method_not_allowed"
    # Starlette lists the allowed methods in no fixed order.
    message, allowed = answer["message"].split("; use one of: ")
    assert message == f"method {method} is not allowed on '/hooks/x'"
    assert sorted(allowed.split(", ")) == ["GET", "POST"]
    assert sorted(response.headers["allow"].split(", ")) == ["GET", "POST"]


def test_ingest_unknown_path_json(client: Any) -> None:
    test_client, _, _ = client
    response = test_client.post("/hook/typo")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "'/hook/typo'" in response.json()["message"]
