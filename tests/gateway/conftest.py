"""Fixtures for the gateway tests: signed deliveries and a real uvicorn gateway."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from webhook_gateway.verification import Delivery, SignedRequest

TEST_ROUTES_FILE = Path(__file__).parent / "routes.yaml"
SERVER_START_TIMEOUT_SECONDS = 60
# Serves `create_app()` (settings from the environment) on an inherited socket.
SERVER_SCRIPT = """
import socket, sys, uvicorn
sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(
    "webhook_gateway.app:create_app", factory=True, log_level="warning"
)
uvicorn.Server(config).run(sockets=[sock])
"""

# Values for the secrets that tests/gateway/routes.yaml reads from the environment.
# The WeCom and Feishu values are the platforms' published sample keys.
ROUTE_SECRETS = {
    "TEST_HMAC_SECRET": "hmac-secret-new",
    "TEST_HMAC_SECRET_OLD": "hmac-secret-old",
    "TEST_GITHUB_SECRET": "It's a Secret to Everybody",
    "TEST_STRIPE_SECRET": "whsec_test_0123456789abcdef",
    "TEST_STANDARD_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "TEST_DINGTALK_SECRET": "this is a secret",
    "TEST_FEISHU_ENCRYPT_KEY": "test key",
    "TEST_FEISHU_TOKEN": "feishu-verification-token",
    "TEST_WECOM_TOKEN": "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    "TEST_WECOM_AES_KEY": "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "TEST_API_KEY": "api-key-0123456789",
    "TEST_BASIC_CREDENTIAL": "hooks:correct horse battery staple",
}


def to_delivery(signed: SignedRequest) -> Delivery:
    """Turn what `sign()` produced into what the gateway hands a verifier."""
    return Delivery(
        method=signed.method,
        body=signed.body,
        headers={name.lower(): value for name, value in signed.headers.items()},
        query=dict(signed.query),
    )


def with_header(delivery: Delivery, name: str, value: str | None) -> Delivery:
    """Return a copy with one header replaced, or removed when value is None."""
    headers = dict(delivery.headers)
    if value is None:
        headers.pop(name, None)
    else:
        headers[name] = value
    return Delivery(delivery.method, delivery.body, headers, dict(delivery.query))


def with_body(delivery: Delivery, body: bytes) -> Delivery:
    return Delivery(delivery.method, body, dict(delivery.headers), dict(delivery.query))


def flip_byte(data: bytes, index: int = 0) -> bytes:
    """Change one byte, staying printable ASCII where the input was."""
    changed = bytearray(data)
    changed[index] = changed[index] ^ 0x01
    return bytes(changed)


@pytest.fixture
def route_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Put the test routes file's secrets into the environment."""
    for name, value in ROUTE_SECRETS.items():
        monkeypatch.setenv(name, value)
    return dict(ROUTE_SECRETS)


@dataclass(frozen=True)
class RunningGateway:
    """A gateway process serving tests/gateway/routes.yaml."""

    base_url: str
    home: Path
    routes_file: Path
    env: dict[str, str]

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.home / 'inbox.db').resolve()}"


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with code {process.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway at {base_url} did not become healthy")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """Run the real gateway under uvicorn on a free 127.0.0.1 port.

    The test binds the socket (port 0) and the child process serves on that very
    socket, so no other process can take the port between choosing and binding it.
    """
    home = tmp_path_factory.mktemp("gateway-home")
    routes_file = home / "routes.yaml"
    routes_file.write_text(TEST_ROUTES_FILE.read_text(encoding="utf-8"), "utf-8")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **ROUTE_SECRETS,
        "WEBHOOK_GATEWAY_HOME": str(home),
        "WEBHOOK_GATEWAY_ROUTES_FILE": str(routes_file),
        "WEBHOOK_GATEWAY_RUN_DISPATCHER": "false",
        "WEBHOOK_GATEWAY_PUBLIC_URL": base_url,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    command = [sys.executable, "-c", SERVER_SCRIPT, str(listener.fileno())]
    log_path = home / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            pass_fds=(listener.fileno(),),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    listener.close()
    try:
        try:
            _wait_until_healthy(process, base_url)
        except RuntimeError as exc:
            log = log_path.read_text(encoding="utf-8", errors="replace")
            raise RuntimeError(f"{exc}; log:\n{log}") from None
        yield RunningGateway(base_url, home, routes_file, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
