"""Ready-to-run curl commands with a valid signature for a route."""

from __future__ import annotations

import shlex
import time
import uuid

from jinja2.sandbox import SandboxedEnvironment

from webhook_gateway.registry import Route

__all__ = ["example_body", "signed_curl"]

_EXAMPLE_ENVIRONMENT = SandboxedEnvironment(autoescape=False)
DEFAULT_EXAMPLE_BODY = '{"id": "demo-{{ random_id }}", "text": "hello"}'


def example_body(route: Route) -> bytes:
    """Render the route's example body with a fresh id, so each paste is a new event."""
    template = _EXAMPLE_ENVIRONMENT.from_string(route.config.example or DEFAULT_EXAMPLE_BODY)
    text = template.render(random_id=uuid.uuid4().hex[:12], now_ms=int(time.time() * 1000))
    return text.encode("utf-8")


def signed_curl(route: Route, base_url: str, body: bytes | None = None) -> str:
    """Return a curl command line that delivers `body` to the route, signed."""
    signed = route.verifier.sign(body if body is not None else example_body(route))
    url = f"{base_url.rstrip('/')}/hooks/{route.name}"
    if signed.query:
        from urllib.parse import urlencode

        url = f"{url}?{urlencode(signed.query)}"
    parts = ["curl", "-sS", "-X", signed.method, shlex.quote(url)]
    for name, value in signed.headers.items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if signed.method != "GET":
        parts += ["--data-binary", shlex.quote(signed.body.decode("utf-8"))]
    return " ".join(parts)
