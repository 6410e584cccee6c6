"""Bounded load for durability tests: signed HMAC deliveries and run counting."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa

__all__ = [
    "LoadResult",
    "attempt_outcomes",
    "create_deployment",
    "hmac_headers",
    "hmac_route_yaml",
    "inbox_rows",
    "runs_by_key",
    "send_load",
]

HMAC_HEADER = "x-signature"
HMAC_PREFIX = "sha256="


def hmac_headers(secret: str, body: bytes) -> dict[str, str]:
    """Headers of a delivery signed the way the `hmac` scheme checks it."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", HMAC_HEADER: HMAC_PREFIX + digest}


def hmac_route_yaml(name: str, deployment: str, secret_env: str) -> str:
    """A routes-file entry for an `hmac` route keyed by `body.id`."""
    return f"""
  {name}:
    scheme: hmac
    secrets:
      - env: {secret_env}
    options:
      header: {HMAC_HEADER}
      prefix: "{HMAC_PREFIX}"
    deployment: {deployment}
    event_id: "{{{{ body.id }}}}"
    parameters:
      event_id: "{{{{ event_id }}}}"
      count: "{{{{ body.count }}}}"
"""


def create_deployment(
    api_url: str,
    flow_name: str,
    deployment_name: str,
    *,
    parameter_schema: dict[str, Any] | None = None,
) -> str:
    """Create a deployment that no worker serves, so its runs stay scheduled.

    Returns:
        The deployment id.
    """
    flow = httpx.post(f"{api_url}/flows/", json={"name": flow_name}, timeout=30)
    flow.raise_for_status()
    request: dict[str, Any] = {"name": deployment_name, "flow_id": flow.json()["id"]}
    if parameter_schema is not None:
        request.update(
            parameter_openapi_schema=parameter_schema, enforce_parameter_schema=True
        )
    deployment = httpx.post(f"{api_url}/deployments/", json=request, timeout=30)
    deployment.raise_for_status()
    return str(deployment.json()["id"])


def runs_by_key(api_url: str, deployment_id: str) -> dict[str, list[str]]:
    """Return the flow run ids of a deployment per idempotency key, from Prefect."""
    runs: dict[str, list[str]] = {}
    offset = 0
    while True:
        page = httpx.post(
            f"{api_url}/flow_runs/filter",
            json={
                "deployments": {"id": {"any_": [deployment_id]}},
                "limit": 200,
                "offset": offset,
                "sort": "ID_DESC",
            },
            timeout=30,
        )
        page.raise_for_status()
        batch = page.json()
        for run in batch:
            runs.setdefault(run["idempotency_key"], []).append(run["id"])
        if len(batch) < 200:
            return runs
        offset += 200


def inbox_rows(database_url: str, route: str) -> dict[str, dict[str, Any]]:
    """Return the inbox rows of a route keyed by the sender's event id."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT id, event_id, status, flow_run_id, attempts "
                    "FROM webhook_events WHERE route = :route"
                ),
                {"route": route},
            ).all()
    finally:
        engine.dispose()
    return {row.event_id: dict(row._mapping) for row in rows}


def attempt_outcomes(database_url: str, route: str) -> dict[str, Counter[str]]:
    """Return the attempt outcomes per sender event id of a route."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT e.event_id, a.outcome, a.dispatcher "
                    "FROM webhook_event_attempts a "
                    "JOIN webhook_events e ON e.id = a.webhook_event_id "
                    "WHERE e.route = :route"
                ),
                {"route": route},
            ).all()
    finally:
        engine.dispose()
    outcomes: dict[str, Counter[str]] = {}
    for row in rows:
        outcomes.setdefault(row.event_id, Counter())[row.outcome] += 1
        outcomes[row.event_id][f"dispatcher:{row.dispatcher}"] += 1
    return outcomes


@dataclass
class LoadResult:
    """What the senders saw: which event ids got a 2xx, and the failures."""

    sent: int = 0
    acked: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack_count(self) -> int:
        with self.lock:
            return len(self.acked)


def send_load(
    urls: Sequence[str],
    route: str,
    secret: str,
    *,
    count: int,
    threads: int = 4,
    retry_for_seconds: float = 15.0,
    result: LoadResult | None = None,
    redeliver_to_all: bool = False,
) -> LoadResult:
    """Send `count` distinct signed events from `threads` threads and record acks.

    A sender retries a delivery that got no 2xx (a connection error or a 5xx) for up
    to `retry_for_seconds`, the way webhook senders redeliver. With
    `redeliver_to_all`, every event is also delivered once to each other URL.
    """
    result = result or LoadResult()
    prefix = uuid.uuid4().hex[:8]
    next_index = iter(range(count))
    index_lock = threading.Lock()

    def deliver(client: httpx.Client, url: str, event_id: str, body: bytes) -> bool:
        deadline = time.monotonic() + retry_for_seconds
        while True:
            with result.lock:
                result.sent += 1
            try:
                response = client.post(
                    f"{url}/hooks/{route}",
                    content=body,
                    headers=hmac_headers(secret, body),
                )
            except httpx.HTTPError as exc:
                with result.lock:
                    result.failures += 1
                    result.errors[type(exc).__name__] += 1
            else:
                if 200 <= response.status_code < 300:
                    with result.lock:
                        result.acked[event_id] = response.status_code
                    return True
                with result.lock:
                    result.failures += 1
                    result.errors[f"HTTP {response.status_code}"] += 1
                if response.status_code < 500:
                    return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def sender() -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                with index_lock:
                    index = next(next_index, None)
                if index is None:
                    return
                event_id = f"{prefix}-{index}"
                body = json.dumps({"id": event_id, "count": index}).encode()
                targets = list(urls) if redeliver_to_all else [urls[index % len(urls)]]
                for url in targets:
                    deliver(client, url, event_id, body)

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return result
