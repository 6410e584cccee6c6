"""Shared pieces of the benchmarks: servers, wrk, request pools, MariaDB, results.

Every server binds 127.0.0.1 on a free port and runs in its own process group, so
`ServerProcess.stop` ends it with everything it started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import sqlalchemy as sa

__all__ = [
    "BENCH_SECRET",
    "INGEST_ROUTE",
    "REPOSITORY_ROOT",
    "RESULTS_DIR",
    "SERVED_ROUTE",
    "RssSampler",
    "ServerProcess",
    "free_port",
    "machine_info",
    "mariadb_database",
    "percentiles",
    "run_wrk",
    "save_results",
    "uvicorn_command",
    "write_request_pool",
    "write_routes_file",
]

logger = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY_ROOT / "bench" / "results"
WRK_SCRIPT = REPOSITORY_ROOT / "bench" / "wrk" / "signed.lua"
# Server logs of the last run, kept after the temporary data directories are gone.
LOG_DIR = RESULTS_DIR / "logs"
_log_dir = LOG_DIR / "other"

BENCH_SECRET = "bench hmac secret"
INGEST_ROUTE = "bench-hmac"
SERVED_ROUTE = "bench-served"
UNSERVED_DEPLOYMENT = "bench-noop/unserved"
SERVED_DEPLOYMENT = "bench-noop/served"
SIGNATURE_HEADER = "x-signature"
SIGNATURE_PREFIX = "sha256="

# The same flags for the gateway and the bare baseline. uvicorn picks uvloop and
# httptools when they are installed ("auto"); the results record which it used.
UVICORN_FLAGS = (
    "--host",
    "127.0.0.1",
    "--workers",
    "1",
    "--no-access-log",
    "--log-level",
    "warning",
    "--loop",
    "auto",
    "--http",
    "auto",
)
DEFAULT_MARIADB_SERVER_URL = "mysql+pymysql://root@127.0.0.1:3306/test"

ROUTES_YAML = f"""
routes:
  {INGEST_ROUTE}:
    scheme: hmac
    secrets:
      - env: BENCH_HMAC_SECRET
    options:
      header: {SIGNATURE_HEADER}
      prefix: "{SIGNATURE_PREFIX}"
    deployment: {UNSERVED_DEPLOYMENT}
    event_id: "{{{{ body.id }}}}"
    parameters:
      event_id: "{{{{ event_id }}}}"
      text: "{{{{ body.text }}}}"
  {SERVED_ROUTE}:
    scheme: hmac
    secrets:
      - env: BENCH_HMAC_SECRET
    options:
      header: {SIGNATURE_HEADER}
      prefix: "{SIGNATURE_PREFIX}"
    deployment: {SERVED_DEPLOYMENT}
    event_id: "{{{{ body.id }}}}"
    parameters:
      event_id: "{{{{ event_id }}}}"
      text: "{{{{ body.text }}}}"
"""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_routes_file(directory: Path) -> Path:
    """Write the benchmark routes: two HMAC routes, one per bench deployment."""
    path = directory / "bench-routes.yaml"
    path.write_text(ROUTES_YAML, encoding="utf-8")
    return path


def sign_body(body: bytes) -> str:
    """Return the signature header value that the gateway's hmac scheme accepts."""
    from webhook_gateway.verification.hmac import HmacVerifier

    verifier = HmacVerifier(
        [BENCH_SECRET], header=SIGNATURE_HEADER, prefix=SIGNATURE_PREFIX
    )
    return verifier.sign(body).headers[SIGNATURE_HEADER]


def make_body(event_id: str) -> bytes:
    """Return a webhook body of about 150 bytes with the given sender event id."""
    payload = {
        "id": event_id,
        "supplier": "Acme Parts",
        "text": "part X-12 delayed by 2 days due to port congestion",
    }
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def write_request_pool(path: Path, count: int) -> Path:
    """Write `count` signed deliveries with distinct event ids, one per line.

    Each line is `<signature>\\t<body>`, the format `bench/wrk/signed.lua` reads.
    """
    from webhook_gateway.verification.hmac import HmacVerifier

    verifier = HmacVerifier(
        [BENCH_SECRET], header=SIGNATURE_HEADER, prefix=SIGNATURE_PREFIX
    )
    run_id = uuid.uuid4().hex[:12]
    with path.open("w", encoding="utf-8") as pool:
        for number in range(count):
            body = make_body(f"bench-{run_id}-{number}")
            signature = verifier.sign(body).headers[SIGNATURE_HEADER]
            pool.write(f"{signature}\t{body.decode('utf-8')}\n")
    return path


def uvicorn_command(factory: str, port: int) -> list[str]:
    """Return the uvicorn command line that serves an app factory of bench.apps."""
    return [
        sys.executable, "-m", "uvicorn", f"bench.apps:{factory}", "--factory",
        "--port", str(port), *UVICORN_FLAGS,
    ]  # fmt: skip


def base_env(**extra: str) -> dict[str, str]:
    """Return this process's environment plus the settings every child needs."""
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
        "BENCH_HMAC_SECRET": BENCH_SECRET,
    }
    env.update(extra)
    return env


class ServerProcess:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_path = _log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started; call start() first")
        return self.process.pid

    def start(self, health_url: str | None = None, timeout: float = 90) -> None:
        """Start the process and wait until `health_url` returns HTTP 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPOSITORY_ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if health_url is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode}:\n"
                    f"{self.log_tail()}"
                )
            try:
                if httpx.get(health_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(
            f"{self.name} did not return HTTP 200 on {health_url} within {timeout} s:\n"
            f"{self.log_tail()}"
        )

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20) -> None:
        """Send SIGTERM to the process group, then SIGKILL after `timeout` seconds."""
        if not self.is_running():
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running(*servers: tuple[ServerProcess, str | None]) -> Iterator[None]:
    """Start servers in order and stop them in reverse order, even on errors."""
    started: list[ServerProcess] = []
    try:
        for server, health_url in servers:
            started.append(server)
            server.start(health_url)
        yield
    finally:
        for server in reversed(started):
            server.stop()


def read_rss_bytes(pid: int) -> int | None:
    """Return the resident set size of a process from /proc, or None if it ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


class RssSampler:
    """Sample a process's resident memory every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = read_rss_bytes(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic() - self._start, rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        values = [rss for _, rss in self.samples]
        if not values:
            return {"samples": 0}
        return {
            "samples": len(values),
            "start_mib": values[0] / 2**20,
            "end_mib": values[-1] / 2**20,
            "max_mib": max(values) / 2**20,
        }


def run_wrk(
    *,
    url: str,
    path: str,
    pool: Path,
    connections: int,
    duration: float,
    threads: int = 1,
    delay_ms: int = 0,
    timeout_seconds: int = 10,
) -> dict[str, Any]:
    """Run wrk with the pre-signed pool and return its summary with derived rates.

    Raises:
        RuntimeError: wrk is missing, failed, or printed no summary line.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk not found on PATH; install it with `apt-get install wrk`"
        )
    threads = max(1, min(threads, connections))
    command = [
        wrk,
        "-t", str(threads),
        "-c", str(connections),
        "-d", f"{max(1, round(duration))}s",
        "--timeout", f"{timeout_seconds}s",
        "-s", str(WRK_SCRIPT),
        url + path,
    ]  # fmt: skip
    env = {
        **os.environ,
        "BENCH_POOL": str(pool),
        "BENCH_PATH": path,
        "BENCH_HEADER": SIGNATURE_HEADER,
        "BENCH_THREADS": str(threads),
        "BENCH_DELAY_MS": str(delay_ms),
    }
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=duration + timeout_seconds + 60,
        check=False,
    )
    summary_line = next(
        (
            line
            for line in completed.stdout.splitlines()
            if line.startswith("BENCH_JSON ")
        ),
        None,
    )
    if completed.returncode != 0 or summary_line is None:
        raise RuntimeError(
            f"wrk failed with code {completed.returncode} on {url + path}:\n"
            f"{completed.stdout}\n{completed.stderr}"
        )
    summary = json.loads(summary_line.removeprefix("BENCH_JSON "))
    seconds = summary["duration_us"] / 1e6
    summary["connections"] = connections
    summary["threads"] = threads
    summary["delay_ms"] = delay_ms
    summary["rps"] = summary["requests"] / seconds if seconds else 0.0
    summary["latency_ms"] = {
        key: value / 1000 for key, value in summary.pop("latency_us").items()
    }
    return summary


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Return count, mean, p50, p90, p95, p99 and max of a list of values."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    if len(ordered) == 1:
        ordered = ordered * 2
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "count": len(values),
        "mean": statistics.fmean(ordered),
        "p50": cuts[49],
        "p90": cuts[89],
        "p95": cuts[94],
        "p99": cuts[98],
        "max": ordered[-1],
    }


@contextlib.contextmanager
def mariadb_database() -> Iterator[str]:
    """Create a fresh `wg_bench_<hex>` database, yield its URL, drop it afterwards.

    The server comes from WEBHOOK_GATEWAY_TEST_MARIADB_URL, else root on
    127.0.0.1:3306.

    Raises:
        RuntimeError: The MariaDB server does not accept connections.
    """
    server_url = os.environ.get(
        "WEBHOOK_GATEWAY_TEST_MARIADB_URL", DEFAULT_MARIADB_SERVER_URL
    )
    server = sa.create_engine(server_url)
    name = f"wg_bench_{uuid.uuid4().hex[:10]}"
    try:
        with server.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 "
                "COLLATE utf8mb4_unicode_ci"
            )
    except sa.exc.OperationalError as exc:
        server.dispose()
        raise RuntimeError(
            f"MariaDB at {server_url} is unreachable ({exc.orig}); start it with "
            "`start-stop-daemon --start --oknodo --background --exec "
            "/usr/sbin/mariadbd` or skip it with --backends sqlite"
        ) from exc
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}?charset=utf8mb4"
    finally:
        with server.begin() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()


def _command_output(command: Sequence[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_total_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return 0.0


def _event_loop_implementation() -> dict[str, str]:
    """Name what uvicorn's "auto" choices resolve to in this environment."""
    import importlib.util

    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


def _wrk_version() -> str:
    # `wrk --version` prints "wrk <version> [epoll] Copyright ..." and the usage.
    first_line = (_command_output(["wrk", "--version"]).splitlines() or [""])[0]
    return first_line.split(" Copyright", 1)[0]


def machine_info() -> dict[str, Any]:
    """Describe the machine, software versions and the git commit benchmarked."""
    import fastapi
    import prefect
    import uvicorn

    status = _command_output(["git", "-C", str(REPOSITORY_ROOT), "status", "--short"])
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_memory_total_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "uvicorn_flags": " ".join(UVICORN_FLAGS),
        **_event_loop_implementation(),
        "wrk": _wrk_version(),
        "load_average": os.getloadavg(),
        "git_commit": _command_output(
            ["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"]
        ),
        "git_dirty": bool(status),
    }


def save_results(name: str, data: dict[str, Any]) -> Path:
    """Write one benchmark's results to bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    logger.info("wrote %s", path)
    return path


def configure_logging(benchmark: str) -> None:
    """Log progress to stderr; server logs go to a cleared bench/results/logs/<benchmark>/."""
    global _log_dir
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every health poll at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    _log_dir = LOG_DIR / benchmark
    shutil.rmtree(_log_dir, ignore_errors=True)
    _log_dir.mkdir(parents=True, exist_ok=True)
