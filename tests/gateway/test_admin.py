"""The admin API, metrics and JSON logs on the real app (dispatcher off)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.support.load import hmac_headers
from webhook_gateway.app import create_app
from webhook_gateway.config import parse_config
from webhook_gateway.inbox import EventStatus, Inbox, RunCheck
from webhook_gateway.logs import JsonFormatter
from webhook_gateway.settings import GatewaySettings

SECRET = "admin test secret"
TOKEN = "admin-token-for-tests"
ROUTES = {
    "routes": {
        "orders": {
            "scheme": "hmac",
            "secrets": [{"env": "ADMIN_TEST_SECRET"}],
            "options": {"header": "x-signature", "prefix": "sha256="},
            "deployment": "orders/orders",
            "event_id": "{{ body.id }}",
            "parameters": {"order": "{{ body.id }}"},
        }
    }
}


def _settings(home: Path, database_url: str, token: str | None) -> GatewaySettings:
    return GatewaySettings(
        home=home,
        database_url=database_url,
        run_dispatcher=False,
        admin_token=SecretStr(token) if token else None,
        public_url="http://gateway.test",
    )


@pytest.fixture(params=["sqlite", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "mariadb":
        return str(request.getfixturevalue("mariadb_url"))
    return f"sqlite:///{tmp_path / 'inbox.db'}"


@pytest.fixture
def client(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.setenv("ADMIN_TEST_SECRET", SECRET)
    app = create_app(_settings(tmp_path, database_url, TOKEN), parse_config(ROUTES))
    with TestClient(app) as test_client:
        yield test_client


def _deliver(client: TestClient, event_id: str, secret: str = SECRET) -> Any:
    body = json.dumps({"id": event_id}).encode()
    return client.post(
        "/hooks/orders", content=body, headers=hmac_headers(secret, body)
    )


def _admin(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    return client.request(method, path, headers={"X-Admin-Token": TOKEN}, **kwargs)


def _inbox(client: TestClient) -> Inbox:
    return client.app.state.gateway.inbox  # type: ignore[attr-defined,no-any-return]


def _fail_run(client: TestClient, id: str) -> str:
    """Dispatch an event the way the dispatcher does and fail its run."""
    inbox = _inbox(client)
    # A lease that expires at once leaves the other claimed events claimable.
    claimed = inbox.claim_due(owner="test", limit=500, lease_seconds=0.001)
    assert id in [event.id for event in claimed]
    run_id = str(uuid.uuid4())
    inbox.mark_dispatched(id, owner="test", flow_run_id=run_id)
    check = RunCheck(id, "orders", run_id, EventStatus.DISPATCHED.value)
    inbox.apply_run_states([check], {run_id: EventStatus.FAILED})
    return run_id


def _admin_endpoints(client: TestClient) -> list[tuple[str, str]]:
    # Read from the OpenAPI document, so a new admin endpoint is covered unasked.
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return [
        (method.upper(), path.replace("{id}", "some-id"))
        for path, operations in paths.items()
        if path.startswith("/admin") or path.endswith("/replay") or path == "/routes"
        for method in operations
    ]


def test_admin_rejects_missing_token(client: TestClient) -> None:
    endpoints = _admin_endpoints(client)

    answers = {
        (method, path): client.request(method, path, content=b"{not json")
        for method, path in endpoints
    }
    wrong = {
        (method, path): client.request(
            method, path, headers={"X-Admin-Token": TOKEN + "x"}
        )
        for method, path in endpoints
    }

    assert len(endpoints) == 7
    assert {answer.status_code for answer in answers.values()} == {401}
    assert {answer.status_code for answer in wrong.values()} == {401}
    assert all(a.json()["error"] == "admin_token_invalid" for a in answers.values())


def test_admin_rejects_bad_query_without_token(client: TestClient) -> None:
    answer = client.get("/admin/events?limit=not-a-number")

    assert answer.status_code == 401


def test_admin_disabled_without_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_TEST_SECRET", SECRET)
    url = f"sqlite:///{tmp_path / 'closed.db'}"
    app = create_app(_settings(tmp_path, url, None), parse_config(ROUTES))

    with TestClient(app) as closed:
        endpoints = _admin_endpoints(closed)
        answers = [
            closed.request(method, path, headers={"X-Admin-Token": ""})
            for method, path in endpoints
        ]

    assert {answer.status_code for answer in answers} == {503}
    assert "WEBHOOK_GATEWAY_ADMIN_TOKEN" in answers[0].json()["message"]


def test_admin_lists_and_pages(client: TestClient) -> None:
    prefix = uuid.uuid4().hex[:6]
    ids = [_deliver(client, f"{prefix}-{n}").json()["id"] for n in range(5)]
    _fail_run(client, ids[1])

    first = _admin(client, "GET", "/admin/events", params={"limit": 3}).json()
    second = _admin(
        client,
        "GET",
        "/admin/events",
        params={"limit": 3, "cursor": first["next_cursor"]},
    ).json()
    failed = _admin(
        client, "GET", "/admin/events", params={"status": "failed", "route": "orders"}
    ).json()
    by_sender_id = _admin(
        client, "GET", "/admin/events", params={"event_id": f"{prefix}-3"}
    ).json()
    bad_cursor = _admin(client, "GET", "/admin/events", params={"cursor": "%%%"})

    listed = [event["id"] for event in first["events"] + second["events"]]
    assert listed[:5] == list(reversed(ids))
    assert ids[1] in [event["id"] for event in failed["events"]]
    assert all(event["status"] == "failed" for event in failed["events"])
    assert [event["id"] for event in by_sender_id["events"]] == [ids[3]]
    assert bad_cursor.status_code == 400


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"limit": "100000"},
            "query parameter 'limit' must be at most 500, got 100000",
        ),
        ({"limit": "0"}, "query parameter 'limit' must be at least 1, got 0"),
        ({"limit": "ten"}, "query parameter 'limit' must be an integer, got 'ten'"),
        ({"since": "yesterday"}, "query parameter 'since' must be an ISO 8601"),
        ({"since": "yesterday"}, "got 'yesterday'"),
    ],
)
def test_admin_invalid_query_json(
    client: TestClient, params: dict[str, str], expected: str
) -> None:
    answer = _admin(client, "GET", "/admin/events", params=params)

    assert answer.status_code == 400
    assert set(answer.json()) == {"error", "message"}
    assert answer.json()["error"] == "invalid_query"
    assert expected in answer.json()["message"]


def test_admin_invalid_status_rejected(client: TestClient) -> None:
    answer = _admin(
        client, "GET", "/admin/events", params={"status": ["failed", "bogus"]}
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_query"
    message = answer.json()["message"]
    assert "['bogus']" in message
    assert "'failed'" not in message
    for status in EventStatus:
        assert status.value in message


def test_admin_event_detail(client: TestClient) -> None:
    id = _deliver(client, f"detail-{uuid.uuid4().hex[:6]}").json()["id"]
    run_id = _fail_run(client, id)

    detail = _admin(client, "GET", f"/admin/events/{id}").json()
    missing = _admin(client, "GET", "/admin/events/no-such-id")

    assert detail["status"] == "failed"
    assert detail["flow_run_id"] == run_id
    assert detail["parameters"]["order"].startswith("detail-")
    assert "x-signature" in detail["headers"]
    assert detail["body_size"] > 0
    assert [a["outcome"] for a in detail["attempts_detail"]] == ["created"]
    assert detail["attempts_detail"][0]["flow_run_id"] == run_id
    assert detail["replays"] == []
    assert missing.status_code == 404


def test_admin_replay_one(client: TestClient) -> None:
    id = _deliver(client, f"replay-{uuid.uuid4().hex[:6]}").json()["id"]
    in_flight = _admin(client, "POST", f"/admin/events/{id}/replay")
    run_id = _fail_run(client, id)

    replay = _admin(client, "POST", f"/events/{id}/replay", json={"requested_by": "me"})
    again = _admin(client, "POST", f"/admin/events/{id}/replay")
    detail = _admin(client, "GET", f"/admin/events/{id}").json()
    unknown_field = _admin(
        client, "POST", f"/admin/events/{id}/replay", json={"nope": 1}
    )

    assert in_flight.status_code == 409
    assert in_flight.json()["status"] == "received"
    assert replay.status_code == 202
    assert replay.json()["replay_number"] == 1
    assert replay.json()["replayed_flow_run_id"] == run_id
    assert replay.json()["status"] == "pending"
    assert replay.json()["requested_by"] == "me"
    assert again.status_code == 409
    assert detail["status"] == "replaying"
    assert detail["replay_count"] == 1
    assert [r["replay_number"] for r in detail["replays"]] == [1]
    assert unknown_field.status_code == 400


def test_admin_bulk_replay(client: TestClient) -> None:
    prefix = uuid.uuid4().hex[:6]
    ids = [_deliver(client, f"{prefix}-bulk-{n}").json()["id"] for n in range(3)]
    for id in ids[:2]:
        _fail_run(client, id)
    since = _inbox(client).get(ids[0]).received_at.isoformat()  # type: ignore[union-attr]
    request = {"route": "orders", "statuses": ["failed"], "since": since}

    dry = _admin(client, "POST", "/admin/replays", json={**request, "dry_run": True})
    real = _admin(client, "POST", "/admin/replays", json=request)
    repeat = _admin(client, "POST", "/admin/replays", json=request)
    capped = _admin(
        client,
        "POST",
        "/admin/replays",
        json={**request, "statuses": ["replaying"], "max_replays": 1},
    )

    assert dry.status_code == 202
    assert dry.json()["dry_run"] is True
    assert sorted(e["id"] for e in dry.json()["events"]) == sorted(ids[:2])
    assert dry.json()["replays"] == []
    assert real.json()["matched"] == 2
    assert sorted(r["event"] for r in real.json()["replays"]) == sorted(ids[:2])
    assert all(_inbox(client).get(id).status == "replaying" for id in ids[:2])  # type: ignore[union-attr]
    assert repeat.json()["matched"] == 0
    assert capped.status_code == 400


def test_admin_routes_listed(client: TestClient) -> None:
    answer = _admin(client, "GET", "/admin/routes").json()
    short_path = _admin(client, "GET", "/routes").json()

    assert short_path == answer
    assert answer["routes"] == [
        {
            "name": "orders",
            "url": "http://gateway.test/hooks/orders",
            "scheme": "hmac",
            "deployment": "orders/orders",
            "content_type": "json",
        }
    ]


def _samples(
    client: TestClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_deliveries(client: TestClient) -> None:
    before = _samples(client)
    event_id = f"metrics-{uuid.uuid4().hex[:6]}"
    _deliver(client, event_id)
    _deliver(client, event_id)
    _deliver(client, "bad", secret="wrong secret")
    dead_id = _deliver(client, f"dead-{uuid.uuid4().hex[:6]}").json()["id"]
    inbox = _inbox(client)
    inbox.claim_due(owner="test", limit=500, lease_seconds=60)
    inbox.mark_final(dead_id, owner="test", status=EventStatus.DEAD, error="down")

    after = _samples(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("webhook_gateway_deliveries_received_total", route="orders") == 4
    assert (
        delta(
            "webhook_gateway_deliveries_accepted_total", route="orders", outcome="new"
        )
        == 2
    )
    assert (
        delta(
            "webhook_gateway_deliveries_accepted_total",
            route="orders",
            outcome="duplicate",
        )
        == 1
    )
    assert (
        delta(
            "webhook_gateway_deliveries_rejected_total",
            route="orders",
            reason="signature_mismatch",
        )
        == 1
    )
    assert delta("webhook_gateway_dead_events") == 1
    assert ("webhook_gateway_pending_backlog", (("kind", "event"),)) in after


def test_json_logs_carry_event_fields(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook_gateway")
    id = _deliver(client, f"logs-{uuid.uuid4().hex[:6]}").json()["id"]

    lines = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if getattr(record, "event_id", None) == id
    ]

    assert lines
    assert lines[0]["route"] == "orders"
    assert lines[0]["level"] == "INFO"
    assert lines[0]["event_id"] == id
    assert "flow_run_id" in lines[0]
    assert "accepted" in lines[0]["message"]
