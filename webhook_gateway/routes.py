"""HTTP handlers: webhook deliveries, event status and health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from webhook_gateway.deps import GatewayStateDep, RouteDep
from webhook_gateway.dispatcher import flow_run_url
from webhook_gateway.errors import EventNotFoundError, PayloadTooLargeError
from webhook_gateway.inbox import EventRecord
from webhook_gateway.ingest import accept_delivery
from webhook_gateway.verification import Delivery, Handshake

__all__ = ["router", "event_json"]

router = APIRouter()


@router.api_route("/hooks/{route}", methods=["GET", "POST"], status_code=202)
async def receive_webhook(
    request: Request, route: RouteDep, state: GatewayStateDep
) -> Response:
    """Verify a delivery, store it durably, and respond once it is stored."""
    body = await read_limited_body(request, route.config.max_body_bytes)
    delivery = Delivery(
        method=request.method,
        body=body,
        headers={name.lower(): value for name, value in request.headers.items()},
        query=dict(request.query_params),
    )
    result = await run_in_threadpool(accept_delivery, route, delivery, state.inbox)
    if isinstance(result, Handshake):
        return Response(result.content, result.status_code, media_type=result.media_type)
    if result.created:
        state.dispatcher.wake()
    status_code = 202 if result.created else 200
    return JSONResponse(event_json(result.event, brief=True), status_code=status_code)


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
        attempts=event.attempts,
        last_error=event.last_error,
        flow_run_url=flow_run_url(event.flow_run_id),
    )
    return data
