"""Threaded HTTP test server on 127.0.0.1 with request recording and faults."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

# Long enough to exceed any client timeout used in tests; `stop()` ends it early.
DEFAULT_HANG_SECONDS = 30.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it, with lower-cased header names."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body)


@dataclass
class Response:
    """A response to send: a JSON-encodable body, or raw bytes, and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """An injected failure for the next `remaining` matching requests.

    `kind="status"` responds with `status` and `body`. With `after_handling=True` the
    request is processed first (e.g. an issue is created) and only the response
    is replaced. `kind="hang"` keeps the connection open for `hang_seconds`
    without responding, then closes it.
    """

    kind: Literal["status", "hang"]
    remaining: int
    status: int = 500
    body: Any = None
    method: str | None = None
    path: str | None = None
    after_handling: bool = False
    hang_seconds: float = DEFAULT_HANG_SECONDS

    def matches(self, request: RecordedRequest) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.path is None or request.path == self.path


class LocalHTTPServer:
    """Base class: subclasses implement `handle(request) -> Response`.

    Use as a context manager. The server binds 127.0.0.1 on a free port and serves
    each connection in its own daemon thread.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._make_handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:40123."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(
        self,
        count: int,
        *,
        status: int = 500,
        body: Any = None,
        method: str | None = None,
        path: str | None = None,
        after_handling: bool = False,
    ) -> None:
        """Respond to the next `count` matching requests with `status` and `body`."""
        fault = Fault(
            kind="status",
            remaining=count,
            status=status,
            body=body,
            method=method,
            path=path,
            after_handling=after_handling,
        )
        with self._lock:
            self._faults.append(fault)

    def hang_next(
        self,
        count: int,
        *,
        method: str | None = None,
        path: str | None = None,
        seconds: float = DEFAULT_HANG_SECONDS,
    ) -> None:
        """Leave the next `count` matching requests unanswered for `seconds`."""
        fault = Fault(
            kind="hang", remaining=count, method=method, path=path, hang_seconds=seconds
        )
        with self._lock:
            self._faults.append(fault)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """Return the recorded requests with this method and exact path."""
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def handle(self, request: RecordedRequest) -> Response:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        """Build the body of an error response in the protocol's format."""
        return {"detail": message}

    def _take_fault(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(request):
                    fault.remaining -= 1
                    return fault
        return None

    def _respond(self, request: RecordedRequest) -> Response | None:
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        if fault is None:
            return self.handle(request)
        if fault.kind == "hang":
            self._release.wait(fault.hang_seconds)
            return None
        if fault.after_handling:
            self.handle(request)
        body = fault.body
        if body is None:
            body = self.error_body(fault.status, f"Injected HTTP {fault.status}")
        return Response(fault.status, body)

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                response = server._respond(request)
                if response is None:
                    self.close_connection = True
                    return
                self._send(response)

            def _send(self, response: Response) -> None:
                if isinstance(response.body, bytes):
                    payload = response.body
                    content_type = "text/plain; charset=utf-8"
                elif response.body is None:
                    payload = b""
                    content_type = "application/json"
                else:
                    payload = json.dumps(response.body).encode()
                    content_type = "application/json;charset=UTF-8"
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (its timeout), which some tests intend.
                    pass

            do_GET = _serve
            do_POST = _serve
            do_PUT = _serve
            do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
