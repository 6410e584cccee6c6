"""Round trips: commands printed by `webhook-gateway curl`, run by curl on uvicorn."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import RunningGateway
from webhook_gateway.cli import main
from webhook_gateway.inbox import Inbox, create_inbox_engine
from webhook_gateway.settings import get_settings

# Each route, and what its parameters render to for the route's example body.
EVENT_ROUTES = {
    "hmac-timestamped": {"text": "part X-12 delayed"},
    "github": {"ref": "refs/heads/main", "event": "push"},
    "stripe": {"type": "invoice.paid"},
    "standard": {"test": 2432232314},
    "dingtalk": {"text": " A03-205 delayed by 3 days"},
    "feishu": {"text": "hello"},
    "feishu-plain": {"text": "hello"},
    "wecom": {"text": "供应商延期", "sender": "zhangsan"},
    "api-key": {"text": "hello"},
    "basic": {"text": "hello"},
    "unsigned": {"text": "hello from a form"},
}


@pytest.fixture
def cli_env(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the in-process CLI at the running gateway's routes and URL."""
    for name in ("WEBHOOK_GATEWAY_HOME", "WEBHOOK_GATEWAY_ROUTES_FILE",
                 "WEBHOOK_GATEWAY_PUBLIC_URL", "WEBHOOK_GATEWAY_RUN_DISPATCHER"):  # fmt: skip
        monkeypatch.setenv(name, gateway.env[name])
    for name in gateway.env:
        if name.startswith("TEST_"):
            monkeypatch.setenv(name, gateway.env[name])
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def inbox(gateway: RunningGateway) -> Iterator[Inbox]:
    engine = create_inbox_engine(gateway.database_url)
    yield Inbox(engine)
    engine.dispose()


def _print_curl(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["curl", *args]) == 0
    command = capsys.readouterr().out.strip()
    assert command.startswith("curl ")
    return command


def _run_curl(command: str) -> tuple[int, str]:
    """Run a printed command with the status code appended to its output."""
    completed = subprocess.run(
        command + " -w '\\n%{http_code}'",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    body, _, status = completed.stdout.rpartition("\n")
    return int(status), body


@pytest.mark.parametrize("route", sorted(EVENT_ROUTES))
def test_roundtrip_event(
    route: str,
    cli_env: None,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, body = _run_curl(_print_curl(capsys, route))
    assert status == 202, body
    answer = json.loads(body)
    assert answer["route"] == route
    assert answer["status"] == "received"

    event = inbox.get(answer["id"])
    assert event is not None
    assert event.parameters == EVENT_ROUTES[route]


def test_roundtrip_event_ids(
    cli_env: None, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps(
        {
            "schema": "2.0",
            "header": {"event_id": "feishu-rt-1"},
            "event": {"message": {"content": "via --data"}},
        }
    )
    status, body = _run_curl(_print_curl(capsys, "feishu", "--data", data))
    assert status == 202, body
    answer = json.loads(body)
    assert answer["event_id"] == "feishu-rt-1"
    stored = inbox.get(answer["id"])
    # The stored body is the decrypted event, with the token the sender adds.
    assert json.loads(stored.body)["event"]["message"]["content"] == "via --data"
    assert stored.parameters == {"text": "via --data"}


def test_roundtrip_wecom_stored_decrypted(
    cli_env: None, inbox: Inbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = (
        "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>"
        "<FromUserName><![CDATA[wangwu]]></FromUserName><MsgType><![CDATA[text]]>"
        "</MsgType><Content><![CDATA[from a file]]></Content>"
        "<MsgId>4242424242</MsgId></xml>"
    )
    path = tmp_path / "message.xml"
    path.write_text(message, encoding="utf-8")
    status, body = _run_curl(_print_curl(capsys, "wecom", "--file", str(path)))
    assert status == 202, body
    answer = json.loads(body)
    assert answer["event_id"] == "4242424242"
    assert inbox.get(answer["id"]).body == message.encode()


def test_roundtrip_redelivery(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    command = _print_curl(capsys, "stripe", "--data", '{"id": "evt_same", "type": "x"}')
    first_status, first = _run_curl(command)
    second_status, second = _run_curl(command)
    assert first_status == 202
    assert second_status == 200
    assert json.loads(second)["id"] == json.loads(first)["id"]


def test_roundtrip_github_ping(
    cli_env: None, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    before = inbox.count_by_status()
    status, body = _run_curl(_print_curl(capsys, "github", "--handshake"))
    assert status == 200, body
    assert json.loads(body)["event"] == "ping"
    assert inbox.count_by_status() == before


def test_roundtrip_feishu_url_verification(
    cli_env: None, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    for route in ("feishu", "feishu-plain"):
        command = _print_curl(capsys, route, "--handshake")
        status, body = _run_curl(command)
        assert status == 200, body
        answer = json.loads(body)
        assert set(answer) == {"challenge"}
        assert len(answer["challenge"]) == 32


def test_roundtrip_wecom_url_check(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    command = _print_curl(capsys, "wecom", "--url-check")
    assert "-X GET" in command
    assert "echostr=" in command
    status, body = _run_curl(command)
    assert status == 200
    assert body.isdigit()


def test_roundtrip_tampered_command(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    command = _print_curl(capsys, "stripe", "--data", '{"id": "evt_t", "type": "x"}')
    tampered = command.replace('"type": "x"', '"type": "y"')
    assert tampered != command
    status, body = _run_curl(tampered)
    assert status == 401
    answer = json.loads(body)
    assert answer["reason"] == "signature_mismatch"


def test_roundtrip_handshake_unsupported(
    cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["curl", "stripe", "--handshake"]) == 2
    assert "has no handshake" in capsys.readouterr().err


def test_cli_entry_point(gateway: RunningGateway) -> None:
    executable = Path(sys.executable).parent / "webhook-gateway"
    printed = subprocess.run(
        [str(executable), "curl", "dingtalk"],
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    status, body = _run_curl(printed)
    assert status == 202, body

    listed = subprocess.run(
        [str(executable), "routes"],
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    lines = {line.split("\t")[0]: line.split("\t") for line in listed.splitlines()}
    assert lines["wecom"][1] == f"{gateway.base_url}/hooks/wecom"
    assert lines["wecom"][2] == "scheme=wecom"
    assert set(EVENT_ROUTES) <= set(lines)


def _http_status(response: bytes) -> int:
    status_line = response.split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def test_chunked_body_over_limit(gateway: RunningGateway) -> None:
    """A chunked body over the limit gets a 413 response before the body ends."""
    host, port = gateway.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        chunk = b"x" * 2048
        connection.sendall(
            b"POST /hooks/small HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )
        # The terminating chunk is never sent, so only a response sent before the
        # body is complete can arrive here.
        response = b""
        while b"\r\n\r\n" not in response:
            data = connection.recv(4096)
            if not data:
                break
            response += data
    assert _http_status(response) == 413


def test_declared_length_over_limit(gateway: RunningGateway) -> None:
    response = httpx.post(f"{gateway.base_url}/hooks/small", content=b"x" * 1025)
    assert response.status_code == 413
    answer: dict[str, Any] = response.json()
    assert answer["limit"] == 1024


def test_roundtrip_curl_is_shell_safe(
    cli_env: None, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    text = 'it\'s $HOME `date` "quoted" \\ back'
    data = json.dumps({"id": "quote-1", "text": text})
    command = _print_curl(capsys, "hmac-timestamped", "--data", data)
    assert shlex.split(command)[-1] == data
    status, body = _run_curl(command)
    assert status == 202, body
    assert inbox.get(json.loads(body)["id"]).parameters == {"text": text}
