"""Accept one delivery: verify, parse, render templates and store it."""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from webhook_gateway.errors import PayloadError, SignatureError, TemplateError
from webhook_gateway.inbox import EventRecord, EventStatus, Inbox
from webhook_gateway.registry import Route
from webhook_gateway.safexml import UnsafeXmlError, parse_xml, xml_to_dict
from webhook_gateway.templates import (
    TemplateRenderError,
    is_truthy,
    render_parameters,
    render_value,
)
from webhook_gateway.verification import Delivery, Handshake, VerificationError

__all__ = ["STORED_HEADER_EXCLUDES", "Accepted", "accept_delivery"]

logger = logging.getLogger(__name__)

# Credentials that must not be stored with the event.
STORED_HEADER_EXCLUDES = frozenset({"authorization", "cookie", "proxy-authorization"})
MAX_EVENT_ID_LENGTH = 255


@dataclass(frozen=True)
class Accepted:
    """The stored event and whether this delivery created it."""

    event: EventRecord
    created: bool


def accept_delivery(
    route: Route, delivery: Delivery, inbox: Inbox
) -> Accepted | Handshake:
    """Verify and store a delivery.

    Raises:
        SignatureError: The delivery failed verification (nothing is stored).
        PayloadError: The body cannot be parsed as the route's content type.
        TemplateError: A template failed; the event is stored as rejected.
    """
    try:
        verified = route.verifier.verify(delivery)
    except VerificationError as exc:
        logger.warning(
            "route %s: verification failed: %s (%s)", route.name, exc.reason, exc.detail
        )
        raise SignatureError(
            "the delivery's signature could not be verified", reason=exc.reason
        ) from exc
    if verified.handshake is not None:
        logger.info(
            "route %s: responded to a %s handshake", route.name, route.config.scheme
        )
        return verified.handshake

    payload = parse_body(verified.body, route.config.content_type, route.name)
    excluded = STORED_HEADER_EXCLUDES | verified.secret_headers
    headers = {
        name: value for name, value in delivery.headers.items() if name not in excluded
    }
    context: dict[str, Any] = {
        "body": payload,
        "headers": headers,
        "query": dict(delivery.query),
        "route": route.name,
    }
    config = route.config

    def store(
        event_id: str,
        status: EventStatus,
        parameters: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Accepted:
        event, created = inbox.record_event(
            route=route.name,
            event_id=event_id,
            deployment=config.deployment,
            body=verified.body,
            headers=headers,
            query=dict(delivery.query),
            parameters=parameters,
            status=status,
            last_error=error,
        )
        return Accepted(event=event, created=created)

    body_digest = "sha256:" + hashlib.sha256(verified.body).hexdigest()
    try:
        event_id = _event_id(config.event_id, verified.event_id, context) or body_digest
        context["event_id"] = event_id
        if config.filter is not None and not is_truthy(
            render_value(config.filter, context, name="filter")
        ):
            return store(event_id, EventStatus.IGNORED)
        parameters = render_parameters(config.parameters, context)
        _check_json_parameters(parameters)
    except TemplateRenderError as exc:
        fallback_id = context.get("event_id", body_digest)
        accepted = store(fallback_id, EventStatus.REJECTED, error=str(exc))
        raise TemplateError(
            f"template {exc.template!r} failed: {exc.detail}; {_template_fix(exc)}",
            template=exc.template,
            id=accepted.event.id,
            event_id=fallback_id,
        ) from exc
    return store(event_id, EventStatus.RECEIVED, parameters)


def _template_fix(error: TemplateRenderError) -> str:
    if error.template == "event_id":
        # NOTE: a replay keeps the body-digest id the event was stored under.
        return "once that is fixed, replay the event"
    return "fix the route's templates, then replay the event"


def _event_id(
    template: str | None, scheme_id: str | None, context: dict[str, Any]
) -> str:
    if template is None:
        return scheme_id or ""
    rendered = render_value(template, context, name="event_id")
    # bool is a subclass of int, but True is no id.
    if rendered is not None and (
        isinstance(rendered, bool) or not isinstance(rendered, str | int)
    ):
        raise TemplateRenderError(
            "event_id",
            f"the template rendered a {type(rendered).__name__}, but an event id "
            "must be a string or an integer, so the route's event_id template must "
            "select such a field",
        )
    if rendered is None or str(rendered).strip() == "":
        raise TemplateRenderError("event_id", "the template rendered an empty id")
    event_id = str(rendered).strip()
    for position, character in enumerate(event_id):
        if unicodedata.category(character) == "Cc":
            raise TemplateRenderError(
                "event_id",
                f"the event id contains the control character {character!r} at "
                f"position {position}; the sender's id or the route's event_id "
                "template must produce an id without control characters",
            )
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        raise TemplateRenderError(
            "event_id",
            f"the event id is {len(event_id)} characters long, longer than the "
            f"{MAX_EVENT_ID_LENGTH} allowed; the sender's id or the route's "
            "event_id template must produce a shorter one",
        )
    return event_id


def parse_body(body: bytes, content_type: str, route: str) -> Any:
    """Parse a verified body for templates.

    Raises:
        PayloadError: The body is not valid UTF-8 or not valid for the content type.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            f"route {route!r} expects a UTF-8 body; byte {exc.start} is invalid"
        ) from None
    if content_type == "text":
        return text
    if content_type == "form":
        return dict(parse_qsl(text, keep_blank_values=True))
    if content_type == "xml":
        try:
            return xml_to_dict(parse_xml(text))
        except UnsafeXmlError as exc:
            raise PayloadError(f"route {route!r} expects an XML body: {exc}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise PayloadError(
            f"route {route!r}: the JSON body is nested too deeply"
        ) from None
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"route {route!r} expects a JSON body: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from None


def _check_json_parameters(parameters: dict[str, Any]) -> None:
    try:
        json.dumps(parameters)
    except (TypeError, ValueError) as exc:
        raise TemplateRenderError(
            "parameters", f"the rendered parameters are not JSON-serializable: {exc}"
        ) from None
