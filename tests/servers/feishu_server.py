"""Local server that behaves like a Feishu group custom bot webhook.

It listens on 127.0.0.1 with a free port in a background thread, checks the
signature with its own secret and a timestamp window, and returns the
body shapes Feishu uses. Tests can script rate limits, HTTP errors and slow
responses for the next requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOOK_PATH_PREFIX = "/open-apis/bot/v2/hook/"
# Feishu accepts timestamps up to about one hour away from its clock.
DEFAULT_TIMESTAMP_WINDOW_SECONDS = 3600

SUCCESS_BODY: dict[str, Any] = {
    "StatusCode": 0,
    "StatusMessage": "success",
    "code": 0,
    "data": {},
    "msg": "success",
}
SIGNATURE_REJECTED_BODY: dict[str, Any] = {
    "code": 19021,
    "data": {},
    "msg": "sign match fail or timestamp is not within one hour from current time",
}
RATE_LIMITED_BODY: dict[str, Any] = {
    "code": 11232,
    "data": {},
    "msg": "frequency limited",
}
# NOTE: codes 19001 (unknown token) and 9499 (malformed message) and their msg
# texts are unverified against Feishu. Tests rely only on them being non-zero.
UNKNOWN_TOKEN_BODY: dict[str, Any] = {
    "code": 19001,
    "data": {},
    "msg": "param invalid: incoming webhook access token invalid",
}
BAD_REQUEST_BODY: dict[str, Any] = {"code": 9499, "data": {}, "msg": "Bad Request"}


@dataclass
class ReceivedRequest:
    """One request the server received, with the response it sent."""

    path: str
    body: dict[str, Any] | None
    response_code: int | None
    http_status: int


class FeishuBotServer:
    """Feishu-style custom bot webhook on 127.0.0.1.

    Args:
        secret: Signing secret the server checks, or ``None`` to accept
            unsigned messages.
        token: Webhook token in the URL path.
        timestamp_window: Maximum distance in seconds between the signed
            timestamp and the server clock.
        clock: Server wall clock in seconds.
    """

    def __init__(
        self,
        secret: str | None = "server-secret",
        *,
        token: str = "test-token",
        timestamp_window: int = DEFAULT_TIMESTAMP_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.token = token
        self.timestamp_window = timestamp_window
        self.clock = clock
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._rate_limited_left = 0
        self._http_errors_left = 0
        self._http_error_status = 500
        self._delays_left = 0
        self._delay_seconds = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Webhook URL of this server's bot."""
        return f"{self.base_url}{HOOK_PATH_PREFIX}{self.token}"

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FeishuBotServer is not started: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def delivered_texts(self) -> list[str]:
        """Texts of the messages the server accepted, in arrival order."""
        with self._lock:
            return [
                request.body["content"]["text"]
                for request in self.requests
                if request.response_code == 0 and request.body is not None
            ]

    def rate_limit_next(self, count: int) -> None:
        """Respond to the next ``count`` requests with code 11232."""
        with self._lock:
            self._rate_limited_left = count

    def fail_next(self, count: int, status: int = 500) -> None:
        """Respond to the next ``count`` requests with an HTTP error status."""
        with self._lock:
            self._http_errors_left = count
            self._http_error_status = status

    def delay_next(self, count: int, seconds: float) -> None:
        """Wait ``seconds`` before responding to each of the next ``count`` requests."""
        with self._lock:
            self._delays_left = count
            self._delay_seconds = seconds

    def start(self) -> FeishuBotServer:
        self._server = _QuietHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A short poll interval makes stop() return quickly.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="feishu-bot-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def handle(self, path: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        """Decide the response to one request and record it."""
        with self._lock:
            delay = 0.0
            if self._delays_left > 0:
                self._delays_left -= 1
                delay = self._delay_seconds
        if delay:
            # Sleeping here, outside the lock, keeps other requests flowing.
            time.sleep(delay)

        body = _parse_json(raw_body)
        status, answer = self._answer(path, body)
        with self._lock:
            self.requests.append(
                ReceivedRequest(
                    path=path,
                    body=body,
                    response_code=answer.get("code"),
                    http_status=status,
                )
            )
        return status, answer

    def _answer(
        self, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._http_errors_left > 0:
                self._http_errors_left -= 1
                return self._http_error_status, {}
            if self._rate_limited_left > 0:
                self._rate_limited_left -= 1
                return HTTPStatus.OK, RATE_LIMITED_BODY

        if path != f"{HOOK_PATH_PREFIX}{self.token}":
            return HTTPStatus.OK, UNKNOWN_TOKEN_BODY
        if body is None:
            return HTTPStatus.BAD_REQUEST, BAD_REQUEST_BODY
        if self.secret is not None and not self._is_signature_valid(body, self.secret):
            return HTTPStatus.OK, SIGNATURE_REJECTED_BODY
        content = body.get("content")
        if (
            body.get("msg_type") != "text"
            or not isinstance(content, dict)
            or not isinstance(content.get("text"), str)
        ):
            return HTTPStatus.BAD_REQUEST, BAD_REQUEST_BODY
        return HTTPStatus.OK, SUCCESS_BODY

    def _is_signature_valid(self, body: dict[str, Any], secret: str) -> bool:
        timestamp_text = body.get("timestamp")
        signature = body.get("sign")
        if not isinstance(timestamp_text, str) or not isinstance(signature, str):
            return False
        try:
            timestamp = int(timestamp_text)
        except ValueError:
            return False
        if abs(self.clock() - timestamp) > self.timestamp_window:
            return False
        # Written apart from flows.tasks.feishu so a shared bug cannot hide.
        string_to_sign = f"{timestamp}\n{secret}".encode()
        expected = base64.b64encode(
            hmac.new(string_to_sign, digestmod=hashlib.sha256).digest()
        ).decode()
        return hmac.compare_digest(expected, signature)


@contextmanager
def running_feishu_server(**kwargs: Any) -> Iterator[FeishuBotServer]:
    """Run a ``FeishuBotServer`` for the duration of a ``with`` block."""
    server = FeishuBotServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out closes the socket before a delayed response is
        # written. That broken pipe is expected and not worth a traceback.
        pass


def _parse_json(raw_body: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _make_handler(server: FeishuBotServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw_body = self.rfile.read(length)
            status, answer = server.handle(self.path, raw_body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            # Keep test output clean; the server records requests instead.
            pass

    return Handler
