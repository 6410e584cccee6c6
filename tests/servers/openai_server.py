"""Local OpenAI-compatible chat-completions server with scripted replies, for tests.

The server implements `POST /v1/chat/completions` without streaming. Each request
takes the next reply from a queue: a message content, an HTTP error, or a delay
before the content (to make a client time out). Every request is recorded so that
tests can check the model name and the prompt that the client sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted response of the server.

    Attributes:
        content: Assistant message content returned with HTTP 200.
        status: HTTP status. Any status other than 200 returns an OpenAI error body.
        delay: Seconds to wait before responding.
        finish_reason: `finish_reason` of the choice.
    """

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    finish_reason: str = "stop"

    @classmethod
    def text(cls, content: str, *, finish_reason: str = "stop") -> ScriptedReply:
        """Create a reply with this message content."""
        return cls(content=content, finish_reason=finish_reason)

    @classmethod
    def error(cls, status: int) -> ScriptedReply:
        """Create a reply with this HTTP error status."""
        return cls(status=status)

    @classmethod
    def delayed(cls, seconds: float, content: str = "{}") -> ScriptedReply:
        """Create a reply that responds with `content` after `seconds`."""
        return cls(content=content, delay=seconds)


@dataclass(frozen=True)
class RecordedRequest:
    """A request received by the server: path, lower-cased headers and JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


class OpenAIServer:
    """OpenAI-compatible server on 127.0.0.1 with a free port, run in a thread.

    Use it as a context manager. `base_url` is the value for litellm's `api_base`.
    When the queue is empty, the server responds with HTTP 500 and the message
    "no scripted reply", so a test that sends more requests than it scripted fails.

    Examples:
        ```python
        with OpenAIServer() as server:
            server.enqueue(ScriptedReply.text('{"ok": true}'))
            litellm.completion(model="openai/m", api_base=server.base_url, ...)
            assert server.requests[0].body["model"] == "m"
        ```
    """

    def __init__(self) -> None:
        self._replies: deque[ScriptedReply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        # Set on stop, so that delayed replies end at once.
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._make_handler())
        self._httpd.daemon_threads = True
        # A short poll interval makes stop() return quickly.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-test-server",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """Base URL including `/v1`, for example `http://127.0.0.1:50123/v1`."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def enqueue(self, *replies: ScriptedReply) -> None:
        """Append replies to the queue. Requests consume them in order."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """End delayed replies, stop serving and close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self) -> ScriptedReply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _completion_body(self, model: str, reply: ScriptedReply) -> dict[str, Any]:
        content = reply.content or ""
        prompt_tokens = 0
        # Token counts are rough estimates (4 characters per token); clients only
        # read them for accounting.
        completion_tokens = max(1, len(content) // 4)
        return {
            "id": f"chatcmpl-test{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": reply.content,
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length)
                try:
                    body = json.loads(raw_body or b"{}")
                except json.JSONDecodeError:
                    self._send_error(400, "request body is not valid JSON")
                    return
                server._record(
                    RecordedRequest(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )

                if self.path != CHAT_COMPLETIONS_PATH:
                    self._send_error(404, f"unknown path {self.path!r}")
                    return
                if body.get("stream"):
                    self._send_error(400, "streaming is not supported by this server")
                    return

                reply = server._next_reply()
                if reply is None:
                    self._send_error(500, "no scripted reply")
                    return
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                if reply.status != 200:
                    self._send_error(reply.status, f"scripted HTTP {reply.status}")
                    return
                model = str(body.get("model", ""))
                self._send_json(200, server._completion_body(model, reply))

            def _send_error(self, status: int, message: str) -> None:
                error_type = (
                    "server_error" if status >= 500 else "invalid_request_error"
                )
                payload = {
                    "error": {
                        "message": message,
                        "type": error_type,
                        "param": None,
                        "code": None,
                    }
                }
                self._send_json(status, payload)

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up, for example after its timeout.
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                # Keep test output clean; the recorded requests are the log.
                pass

        return Handler
