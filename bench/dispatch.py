"""Dispatch benchmark: inbox to created flow runs, against a plain client loop.

    uv run python -m bench.dispatch            # full: 500 events, 2 repeats
    uv run python -m bench.dispatch --quick    # smoke run: 100 events, 1 repeat

It starts a Prefect server on a free port and creates the deployment
`bench-noop/unserved`, which no worker serves, so created runs stay Scheduled and
only run creation is measured. Three parts:

1. Throughput: N pending events are written to a fresh inbox, then a gateway with
   its dispatcher on turns them into flow runs. The baseline is an asyncio loop of
   `create_flow_run_from_deployment` with the dispatcher's concurrency against the
   same server. Both rates come from the `created` timestamps Prefect stored, first
   to last run.
2. Webhook to run created: signed webhooks at a fixed rate; latency is Prefect's
   `created` timestamp minus the client's send time (one machine, one clock).
3. Run created to Running: a few webhooks for `bench-noop/served`, which
   `bench.noop_flow` serves with PREFECT_RUNNER_POLL_FREQUENCY=1; the time comes
   from each run's state history.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import (
    INGEST_ROUTE,
    SERVED_DEPLOYMENT,
    SERVED_ROUTE,
    SIGNATURE_HEADER,
    UNSERVED_DEPLOYMENT,
    ServerProcess,
    base_env,
    configure_logging,
    free_port,
    machine_info,
    make_body,
    percentiles,
    running,
    save_results,
    sign_body,
)
from bench.ingest import gateway_server, inbox_database

__all__ = ["main"]

logger = logging.getLogger("bench.dispatch")

PREFECT_START_TIMEOUT_SECONDS = 120
READ_PAGE_SIZE = 200
RUNNING_TIMEOUT_SECONDS = 120
DEFAULT_LATENCY_RATE = 10.0


def _dispatcher_concurrency() -> int:
    """Read the dispatcher's create concurrency, so the baseline uses the same."""
    from webhook_gateway.settings import GatewaySettings

    return int(GatewaySettings().dispatch_concurrency)


def prefect_server(directory: Path) -> tuple[ServerProcess, str, str | None]:
    """Return a Prefect server process, its API URL and its PostgreSQL URL (or None).

    The database is a fresh PostgreSQL one when the local server is reachable,
    because Prefect on SQLite returns 503 under concurrent run creation. Otherwise
    the server keeps SQLite.
    """
    from tests.support.postgres import create_postgres_database

    port = free_port()
    env = base_env(PREFECT_HOME=str(directory / "prefect"))
    env.pop("PREFECT_API_URL", None)
    database_url = create_postgres_database()
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        logger.info("Prefect server database: PostgreSQL %s", database_url)
    else:
        logger.info("Prefect server database: SQLite (no PostgreSQL reachable)")
    command = [
        sys.executable, "-m", "prefect", "server", "start",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    server = ServerProcess("prefect-server", command, env)
    return server, f"http://127.0.0.1:{port}/api", database_url


async def create_unserved_deployment() -> uuid.UUID:
    """Create `bench-noop/unserved`: a deployment without a work pool or worker."""
    from prefect.client.orchestration import get_client

    flow_name, deployment_name = UNSERVED_DEPLOYMENT.split("/")
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow_name)
        return await client.create_deployment(flow_id=flow_id, name=deployment_name)


async def read_created(flow_run_ids: Sequence[str]) -> dict[str, datetime]:
    """Return Prefect's `created` timestamp of each flow run, by id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    created: dict[str, datetime] = {}
    async with get_client() as client:
        for start in range(0, len(flow_run_ids), READ_PAGE_SIZE):
            page = [
                uuid.UUID(run_id)
                for run_id in flow_run_ids[start : start + READ_PAGE_SIZE]
            ]
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)),
                limit=READ_PAGE_SIZE,
            )
            for run in runs:
                if run.created is not None:
                    created[str(run.id)] = run.created
    return created


def _span_rate(created: Sequence[datetime]) -> dict[str, float]:
    ordered = sorted(created)
    span = (ordered[-1] - ordered[0]).total_seconds() if len(ordered) > 1 else 0.0
    return {
        "span_seconds": span,
        "events_per_second": (len(ordered) - 1) / span if span > 0 else 0.0,
    }


async def run_plain_loop(
    deployment_id: uuid.UUID, count: int, concurrency: int
) -> dict[str, Any]:
    """Create `count` runs with a semaphore-bounded loop of the Prefect client."""
    from prefect.client.orchestration import get_client

    tag = uuid.uuid4().hex[:12]
    limiter = asyncio.Semaphore(concurrency)
    async with get_client() as client:
        # One call before timing opens the connection, as the dispatcher's first
        # deployment lookup does.
        await client.read_deployment(deployment_id)

        async def create(number: int) -> Any:
            event_id = f"plain-{tag}-{number}"
            async with limiter:
                return await client.create_flow_run_from_deployment(
                    deployment_id,
                    parameters={"event_id": event_id, "text": "plain loop"},
                    idempotency_key=f"plain:{event_id}",
                    tags=["webhook-route:plain-loop"],
                )

        started = time.perf_counter()
        runs = await asyncio.gather(*(create(number) for number in range(count)))
        wall = time.perf_counter() - started
    rates = _span_rate([run.created for run in runs if run.created is not None])
    return {
        "events": count,
        "concurrency": concurrency,
        "wall_seconds": wall,
        "wall_events_per_second": count / wall,
        **rates,
    }


def _prefill_inbox(database_url: str, count: int) -> None:
    from webhook_gateway.inbox import EventStatus, Inbox, create_inbox_engine

    inbox = Inbox(create_inbox_engine(database_url))
    inbox.upgrade_schema()
    tag = uuid.uuid4().hex[:12]
    try:
        for number in range(count):
            event_id = f"dispatch-{tag}-{number}"
            body = make_body(event_id)
            inbox.record_event(
                route=INGEST_ROUTE,
                event_id=event_id,
                deployment=UNSERVED_DEPLOYMENT,
                body=body,
                headers={"content-type": "application/json"},
                query={},
                parameters={"event_id": event_id, "text": "prefilled"},
                status=EventStatus.RECEIVED,
            )
    finally:
        inbox.engine.dispose()


def _dispatched_run_ids(database_url: str) -> list[str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT flow_run_id FROM webhook_events WHERE flow_run_id IS NOT NULL"
            ).all()
    finally:
        engine.dispose()
    return [row[0] for row in rows]


def measure_gateway_dispatch(
    backend: str, directory: Path, api_url: str, count: int
) -> dict[str, Any]:
    """Pre-fill `count` events, start a gateway, and time the dispatch of all of them."""
    with inbox_database(backend, directory) as database_url:
        _prefill_inbox(database_url, count)
        gateway, gateway_url = gateway_server(
            f"dispatch-{backend}",
            directory,
            database_url,
            WEBHOOK_GATEWAY_RUN_DISPATCHER="true",
            PREFECT_API_URL=api_url,
        )
        timeout = 60 + count / 5
        with running((gateway, f"{gateway_url}/healthz")):
            healthy_at = time.perf_counter()
            deadline = healthy_at + timeout
            run_ids: list[str] = []
            while time.perf_counter() < deadline:
                run_ids = _dispatched_run_ids(database_url)
                if len(run_ids) >= count:
                    break
                time.sleep(0.25)
            wall = time.perf_counter() - healthy_at
        if len(run_ids) < count:
            raise TimeoutError(
                f"the gateway dispatched {len(run_ids)} of {count} events within "
                f"{timeout:.0f} s; see {gateway.log_path}"
            )
    created = asyncio.run(read_created(run_ids))
    return {
        "events": count,
        "wall_seconds_from_healthy": wall,
        **_span_rate(list(created.values())),
    }


def _send_webhooks(
    gateway_url: str, route: str, count: int, rate: float
) -> list[dict[str, Any]]:
    """POST `count` signed webhooks at `rate` per second; return send and response times."""
    tag = uuid.uuid4().hex[:12]
    interval = 1 / rate
    sent = []
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        next_slot = time.monotonic()
        for number in range(count):
            delay = next_slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_slot += interval
            body = make_body(f"latency-{tag}-{number}")
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign_body(body),
            }
            sent_at = time.time()
            response = client.post(f"/hooks/{route}", content=body, headers=headers)
            responded_at = time.time()
            if response.status_code != 202:
                raise RuntimeError(
                    f"webhook {number} to {route!r} got HTTP {response.status_code}: "
                    f"{response.text[:500]}"
                )
            sent.append(
                {
                    "id": response.json()["id"],
                    "sent_at": sent_at,
                    "responded_at": responded_at,
                }
            )
    return sent


def _wait_for_runs(
    gateway_url: str, sent: list[dict[str, Any]], timeout: float
) -> None:
    """Fill in each sent event's flow_run_id from GET /events/{id}."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        for event in sent:
            while event.get("flow_run_id") is None:
                event["flow_run_id"] = (
                    client.get(f"/events/{event['id']}").json().get("flow_run_id")
                )
                if event["flow_run_id"] is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"event {event['id']} got no flow run within {timeout} s"
                        )
                    time.sleep(0.2)


def measure_webhook_to_created(
    gateway_url: str, count: int, rate: float
) -> dict[str, Any]:
    """Send webhooks at a fixed rate and compare send time with run creation time."""
    sent = _send_webhooks(gateway_url, INGEST_ROUTE, count, rate)
    _wait_for_runs(gateway_url, sent, timeout=60 + count / rate)
    created = asyncio.run(read_created([event["flow_run_id"] for event in sent]))
    latencies = [
        (created[event["flow_run_id"]].timestamp() - event["sent_at"]) * 1000
        for event in sent
        if event["flow_run_id"] in created
    ]
    answers = [(event["responded_at"] - event["sent_at"]) * 1000 for event in sent]
    return {
        "events": count,
        "rate_per_second": rate,
        "webhook_to_created_ms": percentiles(latencies),
        "answer_ms": percentiles(answers),
        "webhook_to_created_samples_ms": latencies,
    }


async def _read_running_times(
    flow_run_ids: Sequence[str], timeout: float
) -> dict[str, dict[str, float]]:
    """Wait until each run has left Scheduled/Pending; return created and Running times."""
    from prefect.client.orchestration import get_client

    times: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        for run_id in flow_run_ids:
            while True:
                run = await client.read_flow_run(uuid.UUID(run_id))
                states = await client.read_flow_run_states(uuid.UUID(run_id))
                running_states = [
                    state for state in states if state.type.value == "RUNNING"
                ]
                if running_states:
                    times[run_id] = {
                        "created": run.created.timestamp(),
                        "running": min(
                            state.timestamp for state in running_states
                        ).timestamp(),
                    }
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"flow run {run_id} did not reach Running within {timeout} s "
                        f"(state {run.state_type})"
                    )
                await asyncio.sleep(0.5)
    return times


def measure_created_to_running(
    gateway_url: str, api_url: str, directory: Path, count: int
) -> dict[str, Any]:
    """Serve the no-op flow with a 1 s poll interval and time runs until Running."""
    runner = ServerProcess(
        "noop-flow",
        [sys.executable, "-m", "bench.noop_flow"],
        base_env(PREFECT_API_URL=api_url, PREFECT_RUNNER_POLL_FREQUENCY="1"),
    )
    deployment_url = f"{api_url}/deployments/name/{SERVED_DEPLOYMENT}"
    with running((runner, None)):
        deadline = time.monotonic() + 90
        while httpx.get(deployment_url, timeout=5).status_code != 200:
            if not runner.is_running() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the no-op flow did not register {SERVED_DEPLOYMENT}:\n"
                    f"{runner.log_tail()}"
                )
            time.sleep(0.5)
        # One run every 2 s, so each run waits for its own poll, not a queue.
        sent = _send_webhooks(gateway_url, SERVED_ROUTE, count, rate=0.5)
        _wait_for_runs(gateway_url, sent, timeout=60)
        times = asyncio.run(
            _read_running_times(
                [event["flow_run_id"] for event in sent], RUNNING_TIMEOUT_SECONDS
            )
        )
    created_to_running = []
    webhook_to_running = []
    for event in sent:
        run_times = times[event["flow_run_id"]]
        created_to_running.append((run_times["running"] - run_times["created"]) * 1000)
        webhook_to_running.append((run_times["running"] - event["sent_at"]) * 1000)
    return {
        "runs": count,
        "poll_frequency_seconds": 1,
        "created_to_running_ms": percentiles(created_to_running),
        "webhook_to_running_ms": percentiles(webhook_to_running),
        "created_to_running_samples_ms": created_to_running,
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--backends", default="sqlite,mariadb", help="inbox backends (sqlite,mariadb)"
    )
    parser.add_argument("--events", type=int, help="pre-filled events per run (500)")
    parser.add_argument("--repeats", type=int, help="throughput repeats (2)")
    parser.add_argument(
        "--latency-events", type=int, help="webhooks for the latency part (200)"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="webhooks per second for the latency part (default: 10, or 30 %% of "
        "the plain loop's rate if that is lower)",
    )
    parser.add_argument(
        "--running-runs", type=int, help="runs for the created-to-Running part (10)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging("dispatch")
    count = args.events or (100 if args.quick else 500)
    repeats = args.repeats or (1 if args.quick else 2)
    latency_events = args.latency_events or (30 if args.quick else 200)
    running_runs = args.running_runs or (3 if args.quick else 10)
    backends = [value.strip() for value in args.backends.split(",") if value.strip()]
    directory = Path(tempfile.mkdtemp(prefix="wg-bench-dispatch-"))
    server, api_url, prefect_database_url = prefect_server(directory)
    # Prefect reads PREFECT_API_URL when it is first imported, which must come
    # after this line: machine_info() imports it.
    os.environ["PREFECT_API_URL"] = api_url
    concurrency = _dispatcher_concurrency()
    results: dict[str, Any] = {
        "benchmark": "dispatch",
        "command": "python -m bench.dispatch "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine_info(),
        "settings": {
            "events": count,
            "repeats": repeats,
            "concurrency": concurrency,
            "latency_events": latency_events,
            "latency_rate_per_second": None,
            "running_runs": running_runs,
        },
        "throughput": {},
    }
    try:
        with running((server, f"{api_url}/health")):
            deployment_id = asyncio.run(create_unserved_deployment())
            for backend in backends:
                rounds = []
                for repeat in range(repeats):
                    plain = asyncio.run(
                        run_plain_loop(deployment_id, count, concurrency)
                    )
                    gateway = measure_gateway_dispatch(
                        backend, directory, api_url, count
                    )
                    ratio = (
                        gateway["events_per_second"] / plain["events_per_second"]
                        if plain["events_per_second"]
                        else 0.0
                    )
                    logger.info(
                        "%s repeat %d: plain loop %.1f/s, gateway %.1f/s, ratio %.2f",
                        backend,
                        repeat,
                        plain["events_per_second"],
                        gateway["events_per_second"],
                        ratio,
                    )
                    rounds.append(
                        {"plain_loop": plain, "gateway": gateway, "ratio": ratio}
                    )
                results["throughput"][backend] = rounds

            # A rate near the server's create capacity would measure queueing, so
            # the default stays at 30 % of what the plain loop reached.
            plain_rates = [
                round_["plain_loop"]["events_per_second"]
                for rounds in results["throughput"].values()
                for round_ in rounds
            ]
            latency_rate = args.latency_rate or min(
                DEFAULT_LATENCY_RATE, 0.3 * statistics.median(plain_rates)
            )
            results["settings"]["latency_rate_per_second"] = latency_rate
            with inbox_database("sqlite", directory) as database_url:
                gateway, gateway_url = gateway_server(
                    "latency",
                    directory,
                    database_url,
                    WEBHOOK_GATEWAY_RUN_DISPATCHER="true",
                    PREFECT_API_URL=api_url,
                )
                with running((gateway, f"{gateway_url}/healthz")):
                    latency = measure_webhook_to_created(
                        gateway_url, latency_events, latency_rate
                    )
                    logger.info(
                        "webhook to run created: p50 %.0f ms, p95 %.0f ms",
                        latency["webhook_to_created_ms"]["p50"],
                        latency["webhook_to_created_ms"]["p95"],
                    )
                    results["latency"] = latency
                    to_running = measure_created_to_running(
                        gateway_url, api_url, directory, running_runs
                    )
                    logger.info(
                        "run created to Running: p50 %.0f ms, max %.0f ms",
                        to_running["created_to_running_ms"]["p50"],
                        to_running["created_to_running_ms"]["max"],
                    )
                    results["running"] = to_running
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if prefect_database_url:
            from tests.support.postgres import drop_postgres_database

            drop_postgres_database(prefect_database_url)
    save_results("dispatch", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
