"""Flow `replay-failed-events` against a real gateway and Prefect server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from blocks.gateway import GatewayAdminCredentials
from flows.replay_failed_events import replay_failed_events
from tests.support.load import create_deployment, hmac_headers, hmac_route_yaml
from tests.support.processes import GatewayProcess, PrefectServerProcess, wait_until

SECRET = "replay flow secret"
SECRET_ENV = "REPLAY_FLOW_SECRET"
TOKEN = "replay-flow-token"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway(
    prefect_server: PrefectServerProcess, session_home: Path
) -> Iterator[GatewayProcess]:
    suffix = uuid.uuid4().hex[:8]
    flow_name = f"replay-flow-{suffix}"
    create_deployment(prefect_server.api_url, flow_name, "target")
    routes_file = session_home / f"routes-replay-flow-{suffix}.yaml"
    routes_file.write_text(
        "routes:"
        + hmac_route_yaml(f"nightly-{suffix}", f"{flow_name}/target", SECRET_ENV),
        encoding="utf-8",
    )
    process = GatewayProcess(
        f"replay-flow-{suffix}",
        session_home,
        api_url=prefect_server.api_url,
        routes_file=routes_file,
        WEBHOOK_GATEWAY_ADMIN_TOKEN=TOKEN,
        WEBHOOK_GATEWAY_RUN_CHECK_INTERVAL_SECONDS="0.5",
        WEBHOOK_GATEWAY_EMIT_PREFECT_EVENTS="false",
        **{SECRET_ENV: SECRET},
    )
    process.route = f"nightly-{suffix}"  # type: ignore[attr-defined]
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def credentials_block(gateway: GatewayProcess) -> str:
    name = f"gateway-admin-{uuid.uuid4().hex[:8]}"
    GatewayAdminCredentials(base_url=gateway.url, token=SecretStr(TOKEN)).save(name)
    return name


def _event(gateway: GatewayProcess, id: str) -> dict[str, Any]:
    return httpx.get(
        f"{gateway.url}/admin/events/{id}", headers={"X-Admin-Token": TOKEN}, timeout=10
    ).json()


def _failed_event(gateway: GatewayProcess, api_url: str) -> dict[str, Any]:
    body = json.dumps({"id": uuid.uuid4().hex, "count": 1}).encode()
    accepted = httpx.post(
        f"{gateway.url}/hooks/{gateway.route}",  # type: ignore[attr-defined]
        content=body,
        headers=hmac_headers(SECRET, body),
        timeout=10,
    ).json()
    run_id = wait_until(
        lambda: _event(gateway, accepted["id"])["flow_run_id"], 60, interval=0.3
    )
    httpx.post(
        f"{api_url}/flow_runs/{run_id}/set_state",
        json={"state": {"type": "FAILED", "name": "Failed"}, "force": True},
        timeout=10,
    ).raise_for_status()
    return wait_until(
        lambda: (
            (event := _event(gateway, accepted["id"]))["status"] == "failed" and event
        ),
        60,
        interval=0.3,
    )


def _artifacts(api_url: str, flow_run_id: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{api_url}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def test_replay_flow_dry_run_lists(
    gateway: GatewayProcess,
    prefect_server: PrefectServerProcess,
    credentials_block: str,
) -> None:
    failed = _failed_event(gateway, prefect_server.api_url)

    state = replay_failed_events(
        route=gateway.route,  # type: ignore[attr-defined]
        dry_run=True,
        credentials_block=credentials_block,
        return_state=True,
    )

    answer = state.result()
    assert [event["id"] for event in answer["events"]] == [failed["id"]]
    assert answer["replays"] == []
    assert _event(gateway, failed["id"])["status"] == "failed"
    [artifact] = _artifacts(
        prefect_server.api_url, str(state.state_details.flow_run_id)
    )
    assert artifact["type"] == "table"
    assert artifact["key"] == "replay-failed-events-dry-run"
    rows = (
        json.loads(artifact["data"])
        if isinstance(artifact["data"], str)
        else artifact["data"]
    )
    assert [row["id"] for row in rows] == [failed["id"]]
    assert rows[0]["action"] == "would replay"
    assert rows[0]["replayed_flow_run_id"] == failed["flow_run_id"]


def test_replay_flow_replays_failed(
    gateway: GatewayProcess,
    prefect_server: PrefectServerProcess,
    credentials_block: str,
) -> None:
    failed = _failed_event(gateway, prefect_server.api_url)

    answer = replay_failed_events(
        route=gateway.route,  # type: ignore[attr-defined]
        max_replays_per_event=1,
        credentials_block=credentials_block,
    )
    again = replay_failed_events(
        route=gateway.route,  # type: ignore[attr-defined]
        max_replays_per_event=1,
        credentials_block=credentials_block,
    )
    replayed = wait_until(
        lambda: (
            (event := _event(gateway, failed["id"]))["status"] == "dispatched" and event
        ),
        60,
        interval=0.3,
    )

    assert failed["id"] in [replay["event"] for replay in answer["replays"]]
    assert failed["id"] not in [event["id"] for event in again["events"]]
    [replay] = replayed["replays"]
    assert replay["replayed_flow_run_id"] == failed["flow_run_id"]
    assert replay["requested_by"] == "flow:replay-failed-events"
    assert replayed["latest_flow_run_id"] == replay["flow_run_id"]


def test_replay_flow_wrong_token_fails(
    gateway: GatewayProcess, prefect_server: PrefectServerProcess
) -> None:
    name = f"gateway-admin-wrong-{uuid.uuid4().hex[:8]}"
    GatewayAdminCredentials(base_url=gateway.url, token=SecretStr("wrong")).save(name)

    state = replay_failed_events(
        dry_run=True, credentials_block=name, return_state=True
    )

    assert state.is_failed()
    assert "HTTP 401" in str(state.message) or "HTTP 401" in repr(
        state.result(raise_on_failure=False)
    )


def test_prefect_yaml_deployments() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    raw = yaml.safe_load((REPOSITORY_ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    model = PrefectYamlModel.model_validate(raw)
    by_name = {deployment.name: deployment for deployment in model.deployments}

    assert set(by_name) == {
        "supply-chain-delay",
        "customer-feedback",
        "replay-failed-events",
    }
    replay = by_name["replay-failed-events"]
    assert replay.entrypoint == "flows/replay_failed_events.py:replay_failed_events"
    assert [schedule.cron for schedule in replay.schedules or []] == ["0 2 * * *"]
    assert set(replay.parameters) == {
        "route",
        "statuses",
        "since",
        "max_count",
        "max_replays_per_event",
        "dry_run",
        "credentials_block",
    }
    assert all(
        d.work_pool and d.work_pool.name == "webhook-process" for d in by_name.values()
    )
