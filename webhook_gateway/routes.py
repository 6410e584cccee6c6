"""HTTP handlers: webhook deliveries, event status, health and metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from webhook_gateway.deps import GatewayStateDep, RouteDep
from webhook_gateway.dispatcher import event_log_extra, flow_run_url
from webhook_gateway.errors import (
    EventNotFoundError,
    GatewayError,
    MethodNotAllowedError,
    PayloadTooLargeError,
)
from webhook_gateway.inbox import EventRecord, EventStatus
from webhook_gateway.ingest import accept_delivery
from webhook_gateway.registry import Route
from webhook_gateway.state import GatewayState
from webhook_gateway.verification import Delivery, Handshake

__all__ = ["event_json", "router"]

logger = logging.getLogger(__name__)

router = APIRouter()

# Schemes with a GET handshake (WeCom's URL check) list their own `http_methods`.
DEFAULT_HOOK_METHODS = ("POST",)


@router.api_route("/hooks/{route}", methods=["GET", "POST"], status_code=202)
async def receive_webhook(
    request: Request, route: RouteDep, state: GatewayStateDep
) -> Response:
    """Verify a delivery, store it durably, and respond once it is stored."""
    metrics = state.metrics
    metrics.received.labels(route=route.name).inc()
    try:
        _check_method(request.method, route)
        body = await read_limited_body(request, route.config.max_body_bytes)
        delivery = Delivery(
            method=request.method,
            body=body,
            headers={name.lower(): value for name, value in request.headers.items()},
            query=dict(request.query_params),
        )
        result = await run_in_threadpool(accept_delivery, route, delivery, state.inbox)
    except GatewayError as exc:
        reason = str(exc.extra.get("reason") or exc.error)
        metrics.rejected.labels(route=route.name, reason=reason).inc()
        raise
    if isinstance(result, Handshake):
        metrics.accepted.labels(route=route.name, outcome="handshake").inc()
        return Response(
            result.content, result.status_code, media_type=result.media_type
        )
    _count_accepted(state, route, result.event, result.created)
    if result.created:
        state.dispatcher.wake()
    status_code = 202 if result.created else 200
    return JSONResponse(event_json(result.event, brief=True), status_code=status_code)


def _count_accepted(
    state: GatewayState, route: Route, event: EventRecord, created: bool
) -> None:
    if not created:
        outcome = "duplicate"
    elif event.status == EventStatus.IGNORED.value:
        outcome = "ignored"
    else:
        outcome = "new"
    state.metrics.accepted.labels(route=route.name, outcome=outcome).inc()
    logger.info(
        "event %s route=%s event_id=%s accepted (%s)",
        event.id,
        route.name,
        event.event_id,
        outcome,
        extra=event_log_extra(event.id, route.name, sender_event_id=event.event_id),
    )


@router.get("/events/{id}")
async def read_event(id: str, state: GatewayStateDep) -> dict[str, Any]:
    """Return an event's status, its flow run id and the run's Prefect UI URL."""
    event = await run_in_threadpool(state.inbox.get, id)
    if event is None:
        raise EventNotFoundError(f"no event with id {id!r}")
    return event_json(event)


@router.get("/healthz")
async def read_health(state: GatewayStateDep) -> dict[str, Any]:
    """Report that the gateway is up and how many routes it serves."""
    return {"status": "ok", "routes": len(state.routes)}


@router.get("/metrics")
async def read_metrics(state: GatewayStateDep) -> Response:
    """Return the gateway's metrics in the Prometheus text format."""
    payload = await run_in_threadpool(generate_latest, state.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


def _check_method(method: str, route: Route) -> None:
    allowed = getattr(route.verifier, "http_methods", DEFAULT_HOOK_METHODS)
    if method not in allowed:
        raise MethodNotAllowedError(
            f"route {route.name!r} (scheme {route.config.scheme!r}) accepts "
            f"{' and '.join(allowed)} only; send the delivery with POST",
            allowed=list(allowed),
        )


async def read_limited_body(request: Request, limit: int) -> bytes:
    """Read the body, raising a 413 error without reading past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"body of {int(declared)} bytes exceeds this route's limit of {limit} bytes",
            limit=limit,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(
                f"body exceeds this route's limit of {limit} bytes", limit=limit
            )
        chunks.append(chunk)
    return b"".join(chunks)


def event_json(event: EventRecord, *, brief: bool = False) -> dict[str, Any]:
    """Return an event as JSON-ready data for API responses, without its body."""
    data: dict[str, Any] = {
        "id": event.id,
        "route": event.route,
        "event_id": event.event_id,
        "status": event.status,
        "flow_run_id": event.flow_run_id,
    }
    if brief:
        return data
    data.update(
        deployment=event.deployment,
        received_at=event.received_at.isoformat(),
        updated_at=event.updated_at.isoformat(),
        dispatched_at=event.dispatched_at.isoformat() if event.dispatched_at else None,
        attempts=event.attempts,
        last_error=event.last_error,
        flow_run_url=flow_run_url(event.flow_run_id),
        latest_flow_run_id=event.latest_flow_run_id,
        latest_flow_run_url=flow_run_url(event.latest_flow_run_id),
        replay_count=event.replay_count,
    )
    return data
