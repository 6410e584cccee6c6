"""Ingest benchmark: POST /hooks/{route} on the gateway against a bare endpoint.

    uv run python -m bench.ingest            # full: 10 s per run, 2 repeats
    uv run python -m bench.ingest --quick    # smoke run: 3 s per run, 1 repeat

For each inbox backend (SQLite, MariaDB) and each connection count, wrk sends the
same pre-signed deliveries to the bare baseline and to the gateway, one after the
other, with the same uvicorn flags. A last run offers about half the gateway's
maximum rate to read the p99 latency below saturation. Results go to
bench/results/ingest.json; `python -m bench.report` renders them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import (
    INGEST_ROUTE,
    RESULTS_DIR,
    RssSampler,
    ServerProcess,
    base_env,
    configure_logging,
    free_port,
    machine_info,
    mariadb_database,
    run_wrk,
    running,
    save_results,
    uvicorn_command,
    write_request_pool,
    write_routes_file,
)

__all__ = ["gateway_server", "inbox_database", "main", "measure_pair"]

logger = logging.getLogger("bench.ingest")

DEFAULT_CONNECTIONS = (1, 16, 64, 256)
HALF_LOAD_CONNECTIONS = 16
WARMUP_SECONDS = 2
# Pool lines per second of a run. The gateway must never see a body twice, so the
# pool is sized above any rate it reaches here; a run that wraps is flagged.
POOL_LINES_PER_SECOND = 3000
HOOK_PATH = f"/hooks/{INGEST_ROUTE}"


@contextlib.contextmanager
def inbox_database(backend: str, directory: Path) -> Iterator[str]:
    """Yield the URL of a fresh, empty inbox database for `backend`."""
    if backend == "sqlite":
        path = directory / f"inbox-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        return
    if backend == "mariadb":
        with mariadb_database() as url:
            yield url
        return
    raise ValueError(f"unknown backend {backend!r}; use 'sqlite' or 'mariadb'")


def gateway_server(
    name: str, directory: Path, database_url: str, **extra_env: str
) -> tuple[ServerProcess, str]:
    """Return a gateway process (dispatcher off unless overridden) and its URL."""
    port = free_port()
    env = base_env(
        WEBHOOK_GATEWAY_HOME=str(directory / f"{name}-home"),
        WEBHOOK_GATEWAY_ROUTES_FILE=str(write_routes_file(directory)),
        WEBHOOK_GATEWAY_DATABASE_URL=database_url,
        WEBHOOK_GATEWAY_RUN_DISPATCHER="false",
        # No Prefect server is needed while the dispatcher is off. The discard
        # port keeps anything that still tries from starting an ephemeral one.
        PREFECT_API_URL="http://127.0.0.1:9/api",
    )
    env.update(extra_env)
    server = ServerProcess(name, uvicorn_command("create_gateway_app", port), env)
    return server, f"http://127.0.0.1:{port}"


def bare_server(directory: Path) -> tuple[ServerProcess, str]:
    """Return the bare baseline process and its URL."""
    port = free_port()
    server = ServerProcess("bare", uvicorn_command("create_bare_app", port), base_env())
    return server, f"http://127.0.0.1:{port}"


def count_stored(database_url: str) -> int:
    """Count the rows in the gateway's inbox table; 0 before the table exists."""
    engine = sa.create_engine(database_url)
    try:
        if not sa.inspect(engine).has_table("webhook_events"):
            return 0
        with engine.connect() as connection:
            return int(
                connection.exec_driver_sql(
                    "SELECT COUNT(*) FROM webhook_events"
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


def _pool(directory: Path, duration: float) -> Path:
    lines = int(max(2000, POOL_LINES_PER_SECOND * (duration + 1)))
    path = directory / "pool.tsv"
    return write_request_pool(path, lines)


def measure_gateway(
    url: str,
    pid: int,
    directory: Path,
    *,
    connections: int,
    duration: float,
    delay_ms: int = 0,
    profile_output: Path | None = None,
) -> dict[str, Any]:
    """Run wrk against the gateway while sampling its memory, optionally profiling."""
    pool = _pool(directory, duration)
    profiler = None
    if profile_output is not None:
        from bench.profiling import start_py_spy

        profiler = start_py_spy(pid, duration, profile_output)
    with RssSampler(pid) as sampler:
        summary = run_wrk(
            url=url,
            path=HOOK_PATH,
            pool=pool,
            connections=connections,
            duration=duration,
            delay_ms=delay_ms,
        )
    if profiler is not None:
        output, _ = profiler.communicate(timeout=duration + 60)
        if profiler.returncode != 0:
            logger.warning(
                "py-spy exited with code %d: %s",
                profiler.returncode,
                output.decode(errors="replace")[-2000:],
            )
    summary["rss"] = sampler.summary()
    summary["rss_samples"] = [
        [round(seconds, 2), rss] for seconds, rss in sampler.samples
    ]
    summary["valid"] = summary["wraps"] == 0
    if not summary["valid"]:
        logger.warning(
            "the request pool wrapped at %d connections: some deliveries were "
            "duplicates; raise POOL_LINES_PER_SECOND",
            connections,
        )
    return summary


def measure_bare(
    url: str, directory: Path, *, connections: int, duration: float
) -> dict[str, Any]:
    """Run wrk against the bare baseline with the same pool format and flags."""
    return run_wrk(
        url=url,
        path=HOOK_PATH,
        pool=_pool(directory, duration),
        connections=connections,
        duration=duration,
    )


def measure_pair(
    bare_url: str,
    gateway_url: str,
    gateway_pid: int,
    directory: Path,
    *,
    connections: int,
    duration: float,
    gateway_first: bool,
) -> dict[str, Any]:
    """Measure the baseline and the gateway back to back at one connection count."""
    if gateway_first:
        gateway = measure_gateway(
            gateway_url, gateway_pid, directory, connections=connections,
            duration=duration,
        )  # fmt: skip
        bare = measure_bare(
            bare_url, directory, connections=connections, duration=duration
        )
    else:
        bare = measure_bare(
            bare_url, directory, connections=connections, duration=duration
        )
        gateway = measure_gateway(
            gateway_url, gateway_pid, directory, connections=connections,
            duration=duration,
        )  # fmt: skip
    ratio = gateway["rps"] / bare["rps"] if bare["rps"] else 0.0
    logger.info(
        "c=%d bare %.0f req/s p99 %.1f ms | gateway %.0f req/s p99 %.1f ms | "
        "ratio %.2f",
        connections,
        bare["rps"],
        bare["latency_ms"]["p99"],
        gateway["rps"],
        gateway["latency_ms"]["p99"],
        ratio,
    )
    return {
        "connections": connections,
        "bare": bare,
        "gateway": gateway,
        "ratio": ratio,
    }


def _best_by_connections(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse repeats: the median-throughput repeat per connection count."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(run["connections"], []).append(run)
    chosen = []
    for connections in sorted(grouped):
        repeats = sorted(grouped[connections], key=lambda run: run["gateway"]["rps"])
        chosen.append(repeats[len(repeats) // 2])
    return chosen


def measure_backend(
    backend: str,
    bare_url: str,
    directory: Path,
    *,
    connection_counts: Sequence[int],
    duration: float,
    repeats: int,
    profile: bool,
) -> dict[str, Any]:
    """Run the whole sweep and the half-load run for one inbox backend."""
    with inbox_database(backend, directory) as database_url:
        gateway, gateway_url = gateway_server(
            f"gateway-{backend}", directory, database_url
        )
        with running((gateway, f"{gateway_url}/healthz")):
            measure_gateway(
                gateway_url, gateway.pid, directory, connections=16,
                duration=WARMUP_SECONDS,
            )  # fmt: skip
            runs = []
            for repeat in range(repeats):
                for connections in connection_counts:
                    runs.append(
                        measure_pair(
                            bare_url,
                            gateway_url,
                            gateway.pid,
                            directory,
                            connections=connections,
                            duration=duration,
                            gateway_first=repeat % 2 == 1,
                        )
                    )
            summary = _best_by_connections(runs)
            max_rps = max(run["gateway"]["rps"] for run in summary)
            target_rps = max_rps / 2
            delay_ms = max(1, round(HALF_LOAD_CONNECTIONS * 1000 / target_rps))
            half_load = measure_gateway(
                gateway_url,
                gateway.pid,
                directory,
                connections=HALF_LOAD_CONNECTIONS,
                duration=duration,
                delay_ms=delay_ms,
            )
            half_load["target_rps"] = target_rps
            logger.info(
                "half load: offered about %.0f req/s, achieved %.0f req/s, p99 %.1f ms",
                target_rps,
                half_load["rps"],
                half_load["latency_ms"]["p99"],
            )
            profile_summary = None
            if profile:
                profile_summary = _profile_gateway(
                    backend, gateway_url, gateway.pid, directory, duration
                )
        stored = count_stored(database_url)
    accepted = sum(
        run["gateway"]["requests"] - run["gateway"]["non_202"] for run in runs
    )
    return {
        "runs": runs,
        "summary": summary,
        "max_gateway_rps": max_rps,
        "half_load": half_load,
        "stored_rows": stored,
        "accepted_202_in_measured_runs": accepted,
        "profile": profile_summary,
    }


def _profile_gateway(
    backend: str, gateway_url: str, pid: int, directory: Path, duration: float
) -> dict[str, Any]:
    from bench.profiling import summarize_collapsed

    output = RESULTS_DIR / "profiles" / f"ingest-{backend}.txt"
    run = measure_gateway(
        gateway_url, pid, directory, connections=64, duration=duration,
        profile_output=output,
    )  # fmt: skip
    logger.info("profile of %s at 64 connections written to %s", backend, output)
    return {
        "connections": 64,
        "rps_while_profiled": run["rps"],
        "output": str(output.relative_to(RESULTS_DIR.parent.parent)),
        **summarize_collapsed(output),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="short smoke run: 3 s runs, 1 repeat"
    )
    parser.add_argument(
        "--backends", default="sqlite,mariadb", help="inbox backends (sqlite,mariadb)"
    )
    parser.add_argument(
        "--connections",
        default=",".join(str(count) for count in DEFAULT_CONNECTIONS),
        help="wrk connection counts (1,16,64,256)",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (10)")
    parser.add_argument("--repeats", type=int, help="repeats per connection count (2)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the gateway with py-spy at 64 connections",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging("ingest")
    duration = args.duration or (3.0 if args.quick else 10.0)
    repeats = args.repeats or (1 if args.quick else 2)
    connection_counts = [int(value) for value in args.connections.split(",")]
    backends = [value.strip() for value in args.backends.split(",") if value.strip()]
    results: dict[str, Any] = {
        "benchmark": "ingest",
        "command": "python -m bench.ingest "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine_info(),
        "settings": {
            "duration_seconds": duration,
            "repeats": repeats,
            "connections": connection_counts,
            "half_load_connections": HALF_LOAD_CONNECTIONS,
            "wrk_threads": 1,
        },
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="wg-bench-ingest-") as tmp:
        directory = Path(tmp)
        bare, bare_url = bare_server(directory)
        with running((bare, f"{bare_url}/healthz")):
            measure_bare(bare_url, directory, connections=16, duration=WARMUP_SECONDS)
            for backend in backends:
                results["backends"][backend] = measure_backend(
                    backend,
                    bare_url,
                    directory,
                    connection_counts=connection_counts,
                    duration=duration,
                    repeats=repeats,
                    profile=args.profile,
                )
    save_results("ingest", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
