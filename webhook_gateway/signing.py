"""Ready-to-run curl commands with a valid signature for a route."""

from __future__ import annotations

import shlex
import time
import uuid
from urllib.parse import urlencode

from jinja2.sandbox import SandboxedEnvironment

from webhook_gateway.registry import Route
from webhook_gateway.verification import SignedRequest

__all__ = ["SigningError", "example_body", "signed_curl", "signed_request"]

_EXAMPLE_ENVIRONMENT = SandboxedEnvironment(autoescape=False)
DEFAULT_EXAMPLE_BODY = '{"id": "demo-{{ random_id }}", "text": "hello"}'


class SigningError(Exception):
    """A curl command cannot be built for this route and body."""


def example_body(route: Route) -> bytes:
    """Render the route's example body with a fresh id, so each paste is a new event."""
    template = _EXAMPLE_ENVIRONMENT.from_string(
        route.config.example or DEFAULT_EXAMPLE_BODY
    )
    text = template.render(
        random_id=uuid.uuid4().hex[:12], now_ms=int(time.time() * 1000)
    )
    return text.encode("utf-8")


def signed_request(
    route: Route, body: bytes | None = None, *, handshake: bool = False
) -> SignedRequest:
    """Sign a body (default: the route's example), or build the scheme's handshake.

    Raises:
        SigningError: `handshake` is set but the route's scheme has none.
    """
    if not handshake:
        return route.verifier.sign(body if body is not None else example_body(route))
    sign_handshake = getattr(route.verifier, "sign_handshake", None)
    if sign_handshake is None:
        raise SigningError(
            f"route {route.name!r} uses scheme {route.config.scheme!r}, which has no "
            "handshake; handshakes exist for github (ping), feishu "
            "(url_verification) and wecom (URL check)"
        )
    return sign_handshake()


def signed_curl(
    route: Route,
    base_url: str,
    body: bytes | None = None,
    *,
    handshake: bool = False,
) -> str:
    """Return a curl command line that delivers `body` to the route, signed.

    Raises:
        SigningError: The route has no handshake, or the body to send is not UTF-8
            (a shell command line cannot carry arbitrary bytes).
    """
    signed = signed_request(route, body, handshake=handshake)
    url = f"{base_url.rstrip('/')}/hooks/{route.name}"
    if signed.query:
        url = f"{url}?{urlencode(signed.query)}"
    parts = ["curl", "-sS", "-X", signed.method, shlex.quote(url)]
    for name, value in signed.headers.items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if signed.method != "GET":
        try:
            text = signed.body.decode("utf-8")
        except UnicodeDecodeError:
            raise SigningError(
                f"the body for route {route.name!r} is not UTF-8 text, so it cannot "
                "be pasted into a command line; send a UTF-8 body"
            ) from None
        parts += ["--data-binary", shlex.quote(text)]
    return " ".join(parts)
