"""Acked events survive crashes and outages and get exactly one flow run each.

Real processes throughout: a Prefect server, gateways as their own uvicorn
processes, SQLite and MariaDB inboxes. The target deployments have no worker, so
their runs stay scheduled; only run creation matters here.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.load import (
    LoadResult,
    attempt_outcomes,
    create_deployment,
    hmac_route_yaml,
    inbox_rows,
    runs_by_key,
    send_load,
)
from tests.support.processes import GatewayProcess, PrefectServerProcess, wait_until

SECRET = "durability hmac secret"
SECRET_ENV = "DURABILITY_HMAC_SECRET"
DISPATCH_TIMEOUT_SECONDS = 120


@pytest.fixture(params=["sqlite", "mariadb"])
def inbox_url(request: pytest.FixtureRequest, session_home: Path) -> str:
    if request.param == "mariadb":
        return str(request.getfixturevalue("mariadb_url"))
    return f"sqlite:///{session_home / f'durability-{uuid.uuid4().hex[:8]}.db'}"


@pytest.fixture
def target(prefect_server: PrefectServerProcess, session_home: Path) -> dict[str, Any]:
    """A fresh route and unserved deployment, so each test counts only its runs."""
    suffix = uuid.uuid4().hex[:8]
    flow_name = f"durability-{suffix}"
    deployment_id = create_deployment(prefect_server.api_url, flow_name, "load")
    route = f"load-{suffix}"
    routes_file = session_home / f"routes-{route}.yaml"
    routes_file.write_text(
        "routes:" + hmac_route_yaml(route, f"{flow_name}/load", SECRET_ENV),
        encoding="utf-8",
    )
    return {"route": route, "deployment_id": deployment_id, "routes_file": routes_file}


def _gateway(
    name: str,
    home: Path,
    api_url: str,
    target: dict[str, Any],
    inbox_url: str,
    **env: str,
) -> GatewayProcess:
    return GatewayProcess(
        f"{name}-{target['route']}",
        home,
        api_url=api_url,
        routes_file=target["routes_file"],
        database_url=inbox_url,
        **{
            SECRET_ENV: SECRET,
            "WEBHOOK_GATEWAY_DISPATCH_LEASE_SECONDS": "5",
            "WEBHOOK_GATEWAY_DISPATCH_MAX_ATTEMPTS": "1000",
            "WEBHOOK_GATEWAY_EMIT_PREFECT_EVENTS": "false",
            # The test Prefect server keeps its data in SQLite, which takes one
            # write at a time; more concurrent creates only add lock retries.
            "WEBHOOK_GATEWAY_DISPATCH_CONCURRENCY": "1",
            **env,
        },
    )


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.stop()


def _wait_all_dispatched(
    inbox_url: str, route: str, acked: dict[str, int]
) -> dict[str, dict[str, Any]]:
    def dispatched() -> dict[str, dict[str, Any]] | None:
        rows = inbox_rows(inbox_url, route)
        if all(rows.get(event_id, {}).get("flow_run_id") for event_id in acked):
            return rows
        return None

    return wait_until(
        dispatched,
        DISPATCH_TIMEOUT_SECONDS,
        interval=1,
        message=f"not every acked event of {route} got a flow run",
    )


def _assert_one_run_per_acked_event(
    api_url: str, target: dict[str, Any], acked: dict[str, int], rows: dict[str, Any]
) -> dict[str, list[str]]:
    route = target["route"]
    runs = runs_by_key(api_url, target["deployment_id"])
    for event_id in acked:
        key = f"{route}:{event_id}"
        assert key in runs, f"acked event {event_id} has no flow run"
        assert len(runs[key]) == 1, f"event {event_id} has runs {runs[key]}"
        assert runs[key] == [rows[event_id]["flow_run_id"]]
    # Events stored but not acked (the response was lost in the crash) may have a
    # run too, but never more than one, and no run exists without an event.
    assert all(len(ids) == 1 for ids in runs.values())
    assert set(runs) <= {f"{route}:{event_id}" for event_id in rows}
    return runs


def test_kill_gateway_under_load(
    prefect_server: PrefectServerProcess,
    session_home: Path,
    target: dict[str, Any],
    inbox_url: str,
    gateways: list[GatewayProcess],
) -> None:
    gateway = _gateway(
        "killed", session_home, prefect_server.api_url, target, inbox_url
    )
    gateways.append(gateway)
    gateway.start()
    result = LoadResult()
    load = threading.Thread(
        target=send_load,
        args=([gateway.url], target["route"], SECRET),
        kwargs={"count": 200, "threads": 4, "result": result, "retry_for_seconds": 30},
    )

    load.start()
    wait_until(lambda: result.ack_count() >= 60, 60, message="first 60 acks")
    gateway.kill(signal.SIGKILL)
    acked_before_kill = result.ack_count()
    gateway.start()
    load.join()

    assert len(result.acked) == 200
    assert result.failures > 0, "the kill should have failed some deliveries"
    rows = _wait_all_dispatched(inbox_url, target["route"], result.acked)
    runs = _assert_one_run_per_acked_event(
        prefect_server.api_url, target, result.acked, rows
    )
    assert len(rows) == 200
    assert len(runs) == 200
    print(
        f"kill -9 [{inbox_url.split(':')[0]}]: sent={result.sent} acked="
        f"{len(result.acked)} failed={result.failures} acked before kill="
        f"{acked_before_kill} runs={len(runs)}"
    )


def test_prefect_down_under_load(
    prefect_server: PrefectServerProcess,
    session_home: Path,
    target: dict[str, Any],
    inbox_url: str,
    gateways: list[GatewayProcess],
) -> None:
    gateway = _gateway(
        "outage", session_home, prefect_server.api_url, target, inbox_url
    )
    gateways.append(gateway)
    gateway.start()
    result = LoadResult()

    send_load([gateway.url], target["route"], SECRET, count=30, result=result)
    prefect_server.stop()
    try:
        send_load([gateway.url], target["route"], SECRET, count=120, result=result)
        acked_while_down = len(result.acked) - 30
        wait_until(
            lambda: (
                sum(
                    outcomes["retry"]
                    for outcomes in attempt_outcomes(
                        inbox_url, target["route"]
                    ).values()
                )
                >= 20
            ),
            60,
            message="dispatch attempts failing while Prefect is down",
        )
        rows_during = inbox_rows(inbox_url, target["route"])
    finally:
        prefect_server.start()

    assert len(result.acked) == 150
    assert acked_while_down == 120
    waiting = [row for row in rows_during.values() if row["flow_run_id"] is None]
    assert len(waiting) >= 120
    rows = _wait_all_dispatched(inbox_url, target["route"], result.acked)
    runs = _assert_one_run_per_acked_event(
        prefect_server.api_url, target, result.acked, rows
    )
    assert len(runs) == 150
    print(
        f"Prefect down [{inbox_url.split(':')[0]}]: acked={len(result.acked)} "
        f"(while down {acked_while_down}) waiting during outage={len(waiting)} "
        f"runs={len(runs)}"
    )


def test_two_gateways_one_inbox(
    prefect_server: PrefectServerProcess,
    session_home: Path,
    target: dict[str, Any],
    inbox_url: str,
    gateways: list[GatewayProcess],
) -> None:
    for name in ("shared-a", "shared-b"):
        gateway = _gateway(
            name,
            session_home,
            prefect_server.api_url,
            target,
            inbox_url,
            # A long lease: a second claim of one event could only come from the
            # claim query itself, never from an expired lease.
            WEBHOOK_GATEWAY_DISPATCH_LEASE_SECONDS="120",
            WEBHOOK_GATEWAY_DISPATCH_BATCH_SIZE="10",
        )
        gateways.append(gateway)
        gateway.start()

    result = send_load(
        [gateway.url for gateway in gateways],
        target["route"],
        SECRET,
        count=200,
        threads=4,
        redeliver_to_all=True,
    )

    assert len(result.acked) == 200
    rows = _wait_all_dispatched(inbox_url, target["route"], result.acked)
    runs = _assert_one_run_per_acked_event(
        prefect_server.api_url, target, result.acked, rows
    )
    assert len(runs) == 200
    outcomes = attempt_outcomes(inbox_url, target["route"])
    created = {event_id: counts["created"] for event_id, counts in outcomes.items()}
    assert set(created) == set(result.acked)
    assert set(created.values()) == {1}
    dispatchers = {
        name
        for counts in outcomes.values()
        for name in counts
        if name.startswith("dispatcher:")
    }
    assert len(dispatchers) == 2, f"both gateways should dispatch: {dispatchers}"
    print(
        f"two gateways [{inbox_url.split(':')[0]}]: sent={result.sent} acked="
        f"{len(result.acked)} runs={len(runs)} dispatchers={len(dispatchers)}"
    )
