"""Growth benchmark: ingest throughput and memory with many events already stored.

    uv run python -m bench.growth            # full: 0, 100,000 and 1,000,000 events
    uv run python -m bench.growth --quick    # smoke run: 0 and 20,000 events

For each backend one fresh inbox grows step by step. Rows are bulk-inserted with
SQLAlchemy executemany (not through HTTP). Then a fresh gateway process with the
dispatcher off takes wrk load at a fixed connection count while its resident
memory is sampled. Results go to bench/results/growth.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import (
    INGEST_ROUTE,
    UNSERVED_DEPLOYMENT,
    configure_logging,
    machine_info,
    make_body,
    running,
    save_results,
)
from bench.ingest import (
    WARMUP_SECONDS,
    count_stored,
    gateway_server,
    inbox_database,
    measure_gateway,
)

__all__ = ["main", "seed_events"]

logger = logging.getLogger("bench.growth")

SEED_BATCH_ROWS = 10_000
DEFAULT_LEVELS = (0, 100_000, 1_000_000)
QUICK_LEVELS = (0, 20_000)
GROWTH_CONNECTIONS = 64


def _seed_row(number: int, now: datetime, columns: set[str]) -> dict[str, Any]:
    event_id = f"seed-{number}"
    received = now - timedelta(seconds=number % 86_400)
    row: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "route": INGEST_ROUTE,
        "event_id": event_id,
        # Most stored events of a running gateway are old and finished.
        "status": "completed" if number % 20 else "dispatched",
        "deployment": UNSERVED_DEPLOYMENT,
        "body": make_body(event_id),
        "headers": {"content-type": "application/json", "x-signature": "sha256=00"},
        "query": {},
        "parameters": {"event_id": event_id, "text": "seeded"},
        "received_at": received,
        "updated_at": received,
        "attempts": 1,
        "next_attempt_at": received,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": None,
        "flow_run_id": str(uuid.uuid4()),
        "replay_count": 0,
    }
    return {key: value for key, value in row.items() if key in columns}


def seed_events(database_url: str, start: int, count: int) -> float:
    """Bulk-insert `count` finished events numbered from `start`; return seconds taken.

    Raises:
        RuntimeError: The inbox table has a required column this seeder does not
            fill, so the gateway's schema changed and `_seed_row` needs updating.
    """
    from webhook_gateway.inbox import Inbox, create_inbox_engine, events_table

    inbox = Inbox(create_inbox_engine(database_url))
    inbox.upgrade_schema()
    columns = {column.name for column in events_table.columns}
    now = datetime.now(UTC)
    missing = {
        column.name
        for column in events_table.columns
        if not column.nullable and column.default is None
    } - set(_seed_row(0, now, columns))
    if missing:
        inbox.engine.dispose()
        raise RuntimeError(
            f"the inbox table has required columns {sorted(missing)} that the "
            "growth seeder does not fill; add them to bench.growth._seed_row"
        )
    started = time.perf_counter()
    try:
        for batch_start in range(start, start + count, SEED_BATCH_ROWS):
            batch_end = min(batch_start + SEED_BATCH_ROWS, start + count)
            rows = [
                _seed_row(number, now, columns)
                for number in range(batch_start, batch_end)
            ]
            with inbox.engine.begin() as connection:
                connection.execute(sa.insert(events_table), rows)
    finally:
        inbox.engine.dispose()
    return time.perf_counter() - started


def measure_level(
    backend: str,
    database_url: str,
    directory: Path,
    *,
    stored: int,
    duration: float,
    repeats: int,
) -> dict[str, Any]:
    """Start a fresh gateway on the grown inbox and measure ingest under load."""
    gateway, gateway_url = gateway_server(
        f"growth-{backend}-{stored}", directory, database_url
    )
    with running((gateway, f"{gateway_url}/healthz")):
        measure_gateway(
            gateway_url,
            gateway.pid,
            directory,
            connections=16,
            duration=WARMUP_SECONDS,
        )
        runs = [
            measure_gateway(
                gateway_url,
                gateway.pid,
                directory,
                connections=GROWTH_CONNECTIONS,
                duration=duration,
            )
            for _ in range(repeats)
        ]
    runs.sort(key=lambda run: run["rps"])
    median = runs[len(runs) // 2]
    logger.info(
        "%s with %d stored: %.0f req/s, p99 %.1f ms, max RSS %.0f MiB",
        backend,
        stored,
        median["rps"],
        median["latency_ms"]["p99"],
        median["rss"].get("max_mib", 0.0),
    )
    return {"stored_before": stored, "runs": runs, "median": median}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument(
        "--backends", default="sqlite,mariadb", help="inbox backends (sqlite,mariadb)"
    )
    parser.add_argument(
        "--levels", help="stored-event counts, comma-separated (0,100000,1000000)"
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (10)")
    parser.add_argument("--repeats", type=int, help="runs per level (2)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging("growth")
    if args.levels:
        levels = [int(value) for value in args.levels.split(",")]
    else:
        levels = list(QUICK_LEVELS if args.quick else DEFAULT_LEVELS)
    duration = args.duration or (3.0 if args.quick else 10.0)
    repeats = args.repeats or (1 if args.quick else 2)
    backends = [value.strip() for value in args.backends.split(",") if value.strip()]
    results: dict[str, Any] = {
        "benchmark": "growth",
        "command": "python -m bench.growth "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine_info(),
        "settings": {
            "levels": levels,
            "duration_seconds": duration,
            "repeats": repeats,
            "connections": GROWTH_CONNECTIONS,
        },
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="wg-bench-growth-") as tmp:
        directory = Path(tmp)
        for backend in backends:
            measurements = []
            with inbox_database(backend, directory) as database_url:
                seeded = 0
                for level in sorted(levels):
                    # Rows the gateway stored in earlier levels count as stored too.
                    present = count_stored(database_url)
                    seed_seconds = 0.0
                    if level > present:
                        seed_seconds = seed_events(
                            database_url, seeded, level - present
                        )
                        seeded += level - present
                        logger.info(
                            "%s: seeded %d events in %.1f s",
                            backend,
                            level - present,
                            seed_seconds,
                        )
                    stored = count_stored(database_url)
                    measurement = measure_level(
                        backend,
                        database_url,
                        directory,
                        stored=stored,
                        duration=duration,
                        repeats=repeats,
                    )
                    measurement["level"] = level
                    measurement["seed_seconds"] = seed_seconds
                    measurements.append(measurement)
            baseline_rps = measurements[0]["median"]["rps"]
            for measurement in measurements:
                measurement["change_vs_empty"] = (
                    measurement["median"]["rps"] / baseline_rps - 1
                    if baseline_rps
                    else 0.0
                )
            results["backends"][backend] = measurements
    save_results("growth", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
