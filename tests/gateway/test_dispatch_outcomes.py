"""Run states, replays, rejected and dead events, Prefect events and JSON logs.

A real Prefect server and gateway processes; the deployments have no worker, so the
tests move runs through their states with Prefect's own set_state API.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.load import (
    create_deployment,
    hmac_headers,
    hmac_route_yaml,
    runs_by_key,
)
from tests.support.processes import (
    REPOSITORY_ROOT,
    GatewayProcess,
    PrefectServerProcess,
    base_env,
    free_port,
    wait_until,
)

SECRET = "outcomes hmac secret"
SECRET_ENV = "OUTCOMES_HMAC_SECRET"
TOKEN = "outcomes-admin-token"
TIMEOUT_SECONDS = 60
COUNT_SCHEMA = {
    "type": "object",
    "title": "Parameters",
    "properties": {
        "event_id": {"type": "string", "title": "event_id"},
        "count": {"type": "integer", "title": "count"},
    },
    "required": ["event_id", "count"],
}


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def outcomes(
    request: pytest.FixtureRequest,
    prefect_server: PrefectServerProcess,
    session_home: Path,
) -> Iterator[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    api_url = prefect_server.api_url
    plain_flow = f"outcomes-{suffix}"
    strict_flow = f"outcomes-strict-{suffix}"
    plain_id = create_deployment(api_url, plain_flow, "plain")
    strict_id = create_deployment(
        api_url, strict_flow, "strict", parameter_schema=COUNT_SCHEMA
    )
    routes_file = session_home / f"routes-outcomes-{suffix}.yaml"
    routes_file.write_text(
        "routes:"
        + hmac_route_yaml("plain", f"{plain_flow}/plain", SECRET_ENV)
        + hmac_route_yaml("strict", f"{strict_flow}/strict", SECRET_ENV),
        encoding="utf-8",
    )
    if request.param == "mariadb":
        inbox_url = str(request.getfixturevalue("mariadb_url"))
    else:
        inbox_url = f"sqlite:///{session_home / f'outcomes-{suffix}.db'}"
    common = {
        SECRET_ENV: SECRET,
        "WEBHOOK_GATEWAY_ADMIN_TOKEN": TOKEN,
        "WEBHOOK_GATEWAY_RUN_CHECK_INTERVAL_SECONDS": "0.5",
        "WEBHOOK_GATEWAY_DISPATCH_CONCURRENCY": "1",
        "WEBHOOK_GATEWAY_LOG_FORMAT": "json",
    }
    gateway = GatewayProcess(
        f"outcomes-{suffix}",
        session_home,
        api_url=api_url,
        routes_file=routes_file,
        database_url=inbox_url,
        **common,
    )
    gateway.start()
    yield {
        "gateway": gateway,
        "api_url": api_url,
        "inbox_url": inbox_url,
        "routes_file": routes_file,
        "plain_id": plain_id,
        "strict_id": strict_id,
        "common": common,
        "home": session_home,
    }
    gateway.stop()


def _deliver(url: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    response = httpx.post(
        f"{url}/hooks/{route}",
        content=raw,
        headers=hmac_headers(SECRET, raw),
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def _admin(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{url}{path}", headers={"X-Admin-Token": TOKEN}, timeout=10, **kwargs
    )


def _wait_status(url: str, id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        event = _admin(url, "GET", f"/admin/events/{id}").json()
        return event if event["status"] == status else None

    return wait_until(
        reached, TIMEOUT_SECONDS, interval=0.3, message=f"event {id} never {status}"
    )


def _set_state(
    api_url: str, flow_run_id: str, state_type: str, message: str | None = None
) -> None:
    state = {"type": state_type, "name": state_type.title(), "message": message}
    response = httpx.post(
        f"{api_url}/flow_runs/{flow_run_id}/set_state",
        json={"state": state, "force": True},
        timeout=10,
    )
    response.raise_for_status()
    assert response.json()["status"] == "ACCEPT"


def test_status_follows_run(outcomes: dict[str, Any]) -> None:
    url, api_url = outcomes["gateway"].url, outcomes["api_url"]
    accepted = _deliver(url, "plain", {"id": uuid.uuid4().hex, "count": 1})

    dispatched = _wait_status(url, accepted["id"], "dispatched")
    run_id = dispatched["flow_run_id"]
    _set_state(api_url, run_id, "RUNNING")
    running = _wait_status(url, accepted["id"], "running")
    _set_state(api_url, run_id, "COMPLETED")
    completed = _wait_status(url, accepted["id"], "completed")
    public = httpx.get(f"{url}/events/{accepted['id']}", timeout=10).json()

    assert accepted["status"] == "received"
    assert running["flow_run_id"] == run_id
    assert completed["flow_run_url"].endswith(f"/runs/flow-run/{run_id}")
    assert public["status"] == "completed"
    assert public["flow_run_id"] == run_id


def test_replay_creates_linked_run(outcomes: dict[str, Any]) -> None:
    url, api_url = outcomes["gateway"].url, outcomes["api_url"]
    event_id = uuid.uuid4().hex
    accepted = _deliver(url, "plain", {"id": event_id, "count": 2})
    original = _wait_status(url, accepted["id"], "dispatched")["flow_run_id"]
    _set_state(api_url, original, "FAILED", "Flow run encountered an exception: boom")
    _wait_status(url, accepted["id"], "failed")
    failed = httpx.get(f"{url}/events/{accepted['id']}", timeout=10).json()

    first = _admin(url, "POST", f"/events/{accepted['id']}/replay")
    after_first = _wait_status(url, accepted["id"], "dispatched")
    _set_state(api_url, after_first["latest_flow_run_id"], "CRASHED")
    crashed = _wait_status(url, accepted["id"], "crashed")
    second = _admin(url, "POST", f"/admin/events/{accepted['id']}/replay")
    detail = _wait_status(url, accepted["id"], "dispatched")
    runs = runs_by_key(api_url, outcomes["plain_id"])

    assert failed["last_error"] == "Failed: Flow run encountered an exception: boom"
    assert after_first["last_error"] is None
    assert crashed["last_error"] == "Crashed"
    assert first.status_code == 202
    assert second.status_code == 202
    key = f"plain:{event_id}"
    assert runs[key] == [original]
    [replay_1] = runs[f"{key}:replay:1"]
    [replay_2] = runs[f"{key}:replay:2"]
    assert len({original, replay_1, replay_2}) == 3
    assert detail["flow_run_id"] == original
    assert detail["latest_flow_run_id"] == replay_2
    assert [
        (r["replay_number"], r["replayed_flow_run_id"], r["flow_run_id"], r["status"])
        for r in detail["replays"]
    ] == [(1, original, replay_1, "crashed"), (2, replay_1, replay_2, "dispatched")]
    assert [(a["replay_number"], a["outcome"]) for a in detail["attempts_detail"]] == [
        (None, "created"),
        (1, "created"),
        (2, "created"),
    ]
    replayed = httpx.get(f"{api_url}/flow_runs/{replay_2}", timeout=10).json()
    assert "webhook-replay" in replayed["tags"]
    assert replayed["parameters"] == {"event_id": event_id, "count": 2}


def test_prefect_4xx_gives_rejected(outcomes: dict[str, Any]) -> None:
    url, api_url = outcomes["gateway"].url, outcomes["api_url"]
    good = _deliver(url, "strict", {"id": uuid.uuid4().hex, "count": 5})
    bad = _deliver(url, "strict", {"id": uuid.uuid4().hex, "count": "five"})

    rejected = _wait_status(url, bad["id"], "rejected")
    dispatched = _wait_status(url, good["id"], "dispatched")

    assert rejected["flow_run_id"] is None
    assert "HTTP 4" in rejected["last_error"]
    assert "count" in rejected["last_error"]
    assert [a["outcome"] for a in rejected["attempts_detail"]] == ["rejected"]
    assert (
        dispatched["flow_run_id"]
        in runs_by_key(api_url, outcomes["strict_id"])[
            f"strict:{dispatched['event_id']}"
        ]
    )


def test_dead_after_max_attempts(outcomes: dict[str, Any]) -> None:
    closed_api = f"http://127.0.0.1:{free_port()}/api"
    gateway = GatewayProcess(
        f"dead-{uuid.uuid4().hex[:8]}",
        outcomes["home"],
        api_url=closed_api,
        routes_file=outcomes["routes_file"],
        database_url=outcomes["inbox_url"],
        WEBHOOK_GATEWAY_DISPATCH_MAX_ATTEMPTS="3",
        WEBHOOK_GATEWAY_DISPATCH_BACKOFF_SECONDS="0.1",
        WEBHOOK_GATEWAY_EMIT_PREFECT_EVENTS="false",
        **outcomes["common"],
    )
    # Stop the shared gateway's dispatcher from taking the event first: this
    # gateway gets the delivery and is the only one whose Prefect is unreachable.
    outcomes["gateway"].pause()
    try:
        gateway.start()
        accepted = _deliver(gateway.url, "plain", {"id": uuid.uuid4().hex, "count": 3})
        dead = _wait_status(gateway.url, accepted["id"], "dead")
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    finally:
        gateway.stop()
        outcomes["gateway"].resume()

    assert dead["attempts"] == 3
    assert [a["outcome"] for a in dead["attempts_detail"]] == ["retry", "retry", "dead"]
    assert "ConnectError" in dead["last_error"]
    dead_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("webhook_gateway_dead_events ")
    )
    assert float(dead_line.split()[1]) >= 1


def test_replay_survives_crash(outcomes: dict[str, Any]) -> None:
    url, api_url = outcomes["gateway"].url, outcomes["api_url"]
    event_id = uuid.uuid4().hex
    accepted = _deliver(url, "plain", {"id": event_id, "count": 4})
    original = _wait_status(url, accepted["id"], "dispatched")["flow_run_id"]
    _set_state(api_url, original, "FAILED")
    _wait_status(url, accepted["id"], "failed")
    answering = GatewayProcess(
        f"no-dispatch-{uuid.uuid4().hex[:8]}",
        outcomes["home"],
        api_url=api_url,
        routes_file=outcomes["routes_file"],
        database_url=outcomes["inbox_url"],
        WEBHOOK_GATEWAY_RUN_DISPATCHER="false",
        **outcomes["common"],
    )
    outcomes["gateway"].pause()
    try:
        answering.start()
        answer = _admin(answering.url, "POST", f"/events/{accepted['id']}/replay")
        answering.kill(signal.SIGKILL)
    finally:
        outcomes["gateway"].resume()

    detail = _wait_status(url, accepted["id"], "dispatched")
    runs = runs_by_key(api_url, outcomes["plain_id"])

    assert answer.status_code == 202
    assert len(runs[f"plain:{event_id}:replay:1"]) == 1
    assert detail["replays"][0]["flow_run_id"] == runs[f"plain:{event_id}:replay:1"][0]


def test_received_prefect_event(outcomes: dict[str, Any]) -> None:
    url, api_url = outcomes["gateway"].url, outcomes["api_url"]
    accepted = _deliver(url, "plain", {"id": uuid.uuid4().hex, "count": 6})
    run_id = _wait_status(url, accepted["id"], "dispatched")["flow_run_id"]

    def received_events() -> list[dict[str, Any]]:
        response = httpx.post(
            f"{api_url}/events/filter",
            json={
                "filter": {
                    "event": {"name": ["webhook.received"]},
                    "resource": {"id": ["webhook-gateway.route.plain"]},
                },
                "limit": 50,
            },
            timeout=10,
        )
        response.raise_for_status()
        return [
            event
            for event in response.json()["events"]
            if event["payload"].get("id") == accepted["id"]
        ]

    events = wait_until(received_events, TIMEOUT_SECONDS, interval=0.5)

    assert len(events) == 1
    assert events[0]["payload"]["flow_run_id"] == run_id
    assert events[0]["payload"]["event_id"] == accepted["event_id"]
    assert {r["prefect.resource.id"] for r in events[0]["related"]} == {
        f"prefect.flow-run.{run_id}"
    }


def test_json_logs_name_event_and_run(outcomes: dict[str, Any]) -> None:
    url = outcomes["gateway"].url
    accepted = _deliver(url, "plain", {"id": uuid.uuid4().hex, "count": 7})
    run_id = _wait_status(url, accepted["id"], "dispatched")["flow_run_id"]

    lines = [
        json.loads(line)
        for line in outcomes["gateway"].log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    about_event = [line for line in lines if line.get("event_id") == accepted["id"]]

    assert len(about_event) >= 2
    assert all(line["route"] == "plain" for line in about_event)
    dispatched = [line for line in about_event if "dispatched" in line["message"]]
    assert dispatched[0]["flow_run_id"] == run_id
    assert dispatched[0]["level"] == "INFO"


def test_cli_replay_dry_run(outcomes: dict[str, Any]) -> None:
    url = outcomes["gateway"].url
    command = [
        sys.executable,
        "-m",
        "webhook_gateway",
        "replay",
        "--url",
        url,
        "--token",
        TOKEN,
        "--route",
        "plain",
        "--status",
        "failed",
        "--dry-run",
    ]

    done = subprocess.run(
        command,
        cwd=REPOSITORY_ROOT,
        env=base_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    refused = subprocess.run(
        [*command[:6], "--token", "wrong", *command[8:]],
        check=False,
        cwd=REPOSITORY_ROOT,
        env=base_env(),
        capture_output=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert answer["dry_run"] is True
    assert answer["replays"] == []
    assert all(event["status"] == "failed" for event in answer["events"])
    assert refused.returncode == 2
    assert b"HTTP 401" in refused.stderr
