"""A signed DingTalk message becomes a Completed flow run and a delay record.

Everything here is real: a Prefect server, the served `supply-chain-delay`
deployment, the gateway as its own uvicorn process, SQLite and MariaDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.support.dingtalk import dingtalk_headers, dingtalk_payload
from tests.support.processes import GatewayProcess, wait_until

SECRET = "e2e dingtalk secret"
ROUTE = "supplier-dingtalk"
RUN_TIMEOUT_SECONDS = 120

ROUTES_YAML = """
routes:
  supplier-dingtalk:
    scheme: dingtalk
    secrets:
      - env: E2E_DINGTALK_SECRET
    deployment: supply-chain-delay/supply-chain-delay
    event_id: "{{{{ body.msgId }}}}"
    parameters:
      event_id: "{{{{ event_id }}}}"
      route: "{{{{ route }}}}"
      text: "{{{{ body.text.content }}}}"
      sender: "{{{{ body.senderNick }}}}"
      records_block: "{records_block}"
      # The demo shipments make this message's orders late, and the customer
      # notices would suspend the run for approval; tests/flows covers that part.
      notify_customers: false
"""


def _write_routes(directory: Path, records_block: str) -> Path:
    path = directory / f"routes-{records_block}.yaml"
    path.write_text(ROUTES_YAML.format(records_block=records_block), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sqlite_gateway(served_flows: Any, session_home: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        "gateway-sqlite",
        session_home,
        api_url=served_flows.api_url,
        routes_file=_write_routes(session_home, "records-db"),
        E2E_DINGTALK_SECRET=SECRET,
    )
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def mariadb_records_block(mariadb_url: str) -> str:
    from blocks.database import MySQLCredentials

    url = sa.engine.make_url(mariadb_url)
    MySQLCredentials(
        host=url.host,
        port=url.port or 3306,
        username=url.username,
        database=url.database,
    ).save("e2e-mariadb-records", overwrite=True)
    return "e2e-mariadb-records"


@pytest.fixture(scope="module")
def mariadb_gateway(
    served_flows: Any, session_home: Path, mariadb_url: str, mariadb_records_block: str
) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        "gateway-mariadb",
        session_home,
        api_url=served_flows.api_url,
        routes_file=_write_routes(session_home, mariadb_records_block),
        database_url=mariadb_url,
        E2E_DINGTALK_SECRET=SECRET,
    )
    gateway.start()
    yield gateway
    gateway.stop()


def _post(
    gateway: GatewayProcess, payload: Any, headers: dict[str, str]
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(
        f"{gateway.url}/hooks/{ROUTE}", content=body, headers=headers, timeout=10
    )


def _wait_for_status(gateway: GatewayProcess, id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        event = httpx.get(f"{gateway.url}/events/{id}", timeout=5).json()
        if event["status"] in {"failed", "crashed", "dead", "rejected"}:
            raise AssertionError(f"event ended {event['status']}: {event}")
        return event if event["status"] == status else None

    return wait_until(reached, RUN_TIMEOUT_SECONDS, interval=0.5)


def _flow_run(api_url: str, flow_run_id: str) -> dict[str, Any]:
    return httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=5).json()


def _runs_with_key(api_url: str, idempotency_key: str) -> list[dict[str, Any]]:
    runs = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={"flow_runs": {"idempotency_key": {"any_": [idempotency_key]}}},
        timeout=10,
    ).json()
    return [run for run in runs if run.get("idempotency_key") == idempotency_key]


def _delay_record(url: str, event_id: str) -> dict[str, Any] | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT * FROM delay_records WHERE event_id = :id"),
                {"id": event_id},
            ).first()
    finally:
        engine.dispose()
    return dict(row._mapping) if row else None


def _inbox_count(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sa.text("SELECT COUNT(*) FROM webhook_events")
                ).scalar()
            )
    finally:
        engine.dispose()


def _assert_typhoon_record(record: dict[str, Any] | None) -> None:
    assert record is not None
    materials = record["materials"]
    if isinstance(materials, str):
        materials = json.loads(materials)
    assert materials == ["A03-205"]
    assert record["delay_days"] == 3
    assert "台风" in record["reason"]


def test_dingtalk_to_completed_run_sqlite(
    sqlite_gateway: GatewayProcess, flows_records_url: str
) -> None:
    payload = dingtalk_payload()

    response = _post(sqlite_gateway, payload, dingtalk_headers(SECRET))

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["event_id"] == payload["msgId"]
    assert accepted["status"] == "received"
    event = _wait_for_status(sqlite_gateway, accepted["id"], "completed")
    flow_run = _flow_run(sqlite_gateway.env["PREFECT_API_URL"], event["flow_run_id"])
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["idempotency_key"] == f"{ROUTE}:{payload['msgId']}"
    assert event["flow_run_url"].endswith(f"/runs/flow-run/{event['flow_run_id']}")
    _assert_typhoon_record(_delay_record(flows_records_url, payload["msgId"]))


def test_dingtalk_to_completed_run_mariadb(
    mariadb_gateway: GatewayProcess, mariadb_url: str
) -> None:
    payload = dingtalk_payload()

    response = _post(mariadb_gateway, payload, dingtalk_headers(SECRET))

    assert response.status_code == 202
    event = _wait_for_status(mariadb_gateway, response.json()["id"], "completed")
    flow_run = _flow_run(mariadb_gateway.env["PREFECT_API_URL"], event["flow_run_id"])
    assert flow_run["state_type"] == "COMPLETED"
    _assert_typhoon_record(_delay_record(mariadb_url, payload["msgId"]))
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as connection:
        stored = connection.execute(
            sa.text(
                "SELECT status, flow_run_id FROM webhook_events WHERE event_id = :id"
            ),
            {"id": payload["msgId"]},
        ).one()
    engine.dispose()
    assert stored.status == "completed"
    assert stored.flow_run_id == event["flow_run_id"]


def test_redelivery_gives_one_event_one_run(sqlite_gateway: GatewayProcess) -> None:
    payload = dingtalk_payload()
    headers = dingtalk_headers(SECRET)

    answers = [_post(sqlite_gateway, payload, headers) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [202, 200, 200]
    assert len({answer.json()["id"] for answer in answers}) == 1
    event = _wait_for_status(sqlite_gateway, answers[0].json()["id"], "completed")
    api_url = sqlite_gateway.env["PREFECT_API_URL"]
    runs = _runs_with_key(api_url, f"{ROUTE}:{payload['msgId']}")
    assert [run["id"] for run in runs] == [event["flow_run_id"]]


def test_bad_signature_stores_nothing(
    mariadb_gateway: GatewayProcess, mariadb_url: str
) -> None:
    before = _inbox_count(mariadb_url)
    headers = dingtalk_headers("not the secret")

    response = _post(mariadb_gateway, dingtalk_payload(), headers)

    assert response.status_code == 401
    assert response.json()["reason"] == "signature_mismatch"
    assert _inbox_count(mariadb_url) == before


def test_missing_signature_rejected(sqlite_gateway: GatewayProcess) -> None:
    response = _post(
        sqlite_gateway, dingtalk_payload(), {"content-type": "application/json"}
    )

    assert response.status_code == 401
    assert response.json()["reason"] == "missing_header"


def test_stale_timestamp_rejected(sqlite_gateway: GatewayProcess) -> None:
    stale = dingtalk_headers(SECRET, age_seconds=3601)
    fresh_enough = dingtalk_headers(SECRET, age_seconds=3595)

    rejected = _post(sqlite_gateway, dingtalk_payload(), stale)
    accepted = _post(sqlite_gateway, dingtalk_payload(), fresh_enough)

    assert rejected.status_code == 401
    assert rejected.json()["reason"] == "timestamp_expired"
    assert accepted.status_code == 202


def test_unknown_route_404(sqlite_gateway: GatewayProcess) -> None:
    response = httpx.post(
        f"{sqlite_gateway.url}/hooks/no-such-route",
        content=b"{}",
        headers=dingtalk_headers(SECRET),
    )

    assert response.status_code == 404
    assert response.json()["error"] == "route_not_found"
    assert "no-such-route" in response.json()["message"]


def test_invalid_json_400(sqlite_gateway: GatewayProcess) -> None:
    response = _post(sqlite_gateway, b'{"msgId": "x", ', dingtalk_headers(SECRET))

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_payload"
    assert "JSON" in body["message"]
