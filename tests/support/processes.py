"""Real processes for end-to-end tests: a Prefect server, served flows, gateways."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

__all__ = [
    "GatewayProcess",
    "PrefectServerProcess",
    "ServedFlowsProcess",
    "free_port",
    "wait_until",
]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = ""):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class _Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], env: Mapping[str, str]) -> None:
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            env=dict(env),
            cwd=REPOSITORY_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the whole process group and wait for it to exit."""
        if not self.is_running():
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def pause(self) -> None:
        """Freeze the process group (SIGSTOP) without waiting for anything."""
        if self.is_running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a process group frozen by `pause` (SIGCONT)."""
        if self.is_running():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGCONT)

    def _wait_healthy(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            if _healthy(url):
                return
            time.sleep(0.3)
        raise TimeoutError(
            f"{self.name} not healthy in {timeout} s:\n{self.log_tail()}"
        )


def base_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class PrefectServerProcess(_Process):
    """`prefect server start` on a fixed port with its own database.

    `database_url` is Prefect's `PREFECT_API_DATABASE_CONNECTION_URL`; None keeps
    Prefect's default SQLite file under `home`.
    """

    def __init__(self, home: Path, port: int, database_url: str | None = None) -> None:
        super().__init__("prefect-server", home)
        self.home = home
        self.port = port
        self.database_url = database_url
        self.api_url = f"http://127.0.0.1:{port}/api"

    def start(self, timeout: float = 120) -> None:
        env = base_env(
            PREFECT_HOME=str(self.home / "prefect"),
            # Tests leave many runs scheduled on deployments that no worker serves,
            # and marking them late or scheduling nightly runs only adds writes to
            # the server's SQLite database.
            PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
            PREFECT_SERVER_SERVICES_FOREMAN_ENABLED="false",
        )
        env.pop("PREFECT_API_URL", None)
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        self._spawn(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env,
        )
        self._wait_healthy(f"{self.api_url}/health", timeout)


class ServedFlowsProcess(_Process):
    """`python -m flows.serve` polling the Prefect server every second."""

    def __init__(self, home: Path, api_url: str, **extra_env: str) -> None:
        super().__init__("served-flows", home)
        self.home = home
        self.api_url = api_url
        self.extra_env = extra_env

    def start(self, deployments: list[str], timeout: float = 120) -> None:
        env = base_env(
            PREFECT_API_URL=self.api_url,
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            WEBHOOK_GATEWAY_HOME=str(self.home / "flows-home"),
            **self.extra_env,
        )
        self._spawn([sys.executable, "-m", "flows.serve"], env)

        def deployments_exist() -> bool:
            if not self.is_running():
                raise RuntimeError(f"served flows exited:\n{self.log_tail()}")
            for name in deployments:
                response = httpx.get(
                    f"{self.api_url}/deployments/name/{name}", timeout=5
                )
                if response.status_code != 200:
                    return False
            return True

        wait_until(deployments_exist, timeout, interval=0.5, message=self.log_tail())


class GatewayProcess(_Process):
    """`python -m webhook_gateway serve` on its own port."""

    def __init__(
        self,
        name: str,
        home: Path,
        *,
        api_url: str,
        routes_file: Path,
        database_url: str | None = None,
        port: int | None = None,
        **extra_env: str,
    ) -> None:
        super().__init__(name, home)
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        defaults = {
            "WEBHOOK_GATEWAY_DISPATCH_BACKOFF_SECONDS": "0.5",
            "WEBHOOK_GATEWAY_DISPATCH_BACKOFF_MAX_SECONDS": "2",
        }
        env = base_env(
            PREFECT_API_URL=api_url,
            WEBHOOK_GATEWAY_HOME=str(home / f"{name}-home"),
            WEBHOOK_GATEWAY_ROUTES_FILE=str(routes_file),
            **{**defaults, **extra_env},
        )
        if database_url:
            env["WEBHOOK_GATEWAY_DATABASE_URL"] = database_url
        self.env = env

    def start(self, timeout: float = 60) -> None:
        self._spawn(
            [
                sys.executable,
                "-m",
                "webhook_gateway",
                "serve",
                "--port",
                str(self.port),
            ],
            self.env,
        )
        self._wait_healthy(f"{self.url}/healthz", timeout)
