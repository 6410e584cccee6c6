"""The admin API: list, inspect and replay events, list routes.

Every endpoint here requires the `X-Admin-Token` header, compared in constant time
with `WEBHOOK_GATEWAY_ADMIN_TOKEN`. Without a configured token the admin API responds
with 503 and stays closed. Request bodies are parsed inside the handlers, after the token
check, so that no request without the token gets a validation error either.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from webhook_gateway.deps import GatewayStateDep
from webhook_gateway.dispatcher import flow_run_url
from webhook_gateway.errors import (
    AdminDisabledError,
    AdminTokenError,
    EventNotFoundError,
    InvalidQueryError,
    ReplayConflictError,
)
from webhook_gateway.inbox import (
    MAX_PAGE_SIZE,
    REPLAYABLE_STATUSES,
    AttemptRecord,
    EventQuery,
    EventRecord,
    EventStatus,
    ReplayRecord,
)
from webhook_gateway.routes import event_json
from webhook_gateway.state import GatewayState

__all__ = ["BulkReplayRequest", "ReplayRequest", "admin_router", "replay_router"]

ADMIN_TOKEN_HEADER = "X-Admin-Token"
MAX_BULK_REPLAYS = 1000
DEFAULT_REPLAY_STATUSES = (EventStatus.FAILED.value, EventStatus.CRASHED.value)
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def require_admin_token(
    state: GatewayStateDep,
    x_admin_token: Annotated[str | None, Header(alias=ADMIN_TOKEN_HEADER)] = None,
) -> None:
    """Let the request through only with the configured admin token."""
    configured = state.settings.admin_token
    expected = configured.get_secret_value() if configured else ""
    if not expected:
        raise AdminDisabledError(
            "the admin API is disabled because no admin token is configured; set "
            "WEBHOOK_GATEWAY_ADMIN_TOKEN and restart the gateway"
        )
    if x_admin_token is None or not hmac.compare_digest(
        x_admin_token.encode("utf-8"), expected.encode("utf-8")
    ):
        raise AdminTokenError(f"the {ADMIN_TOKEN_HEADER} header is missing or invalid")


admin_router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin_token)])
replay_router = APIRouter(dependencies=[Depends(require_admin_token)])


class ReplayRequest(BaseModel):
    """Options for replaying one event."""

    model_config = ConfigDict(extra="forbid")

    rerender: bool = Field(
        default=False,
        description=(
            "Render the parameters again from the stored body with the route's "
            "current templates, for example after fixing a template."
        ),
    )
    requested_by: str | None = Field(
        default=None, max_length=100, description="Who asks, kept with the replay."
    )


class BulkReplayRequest(BaseModel):
    """Filter that selects the events one bulk replay request replays."""

    model_config = ConfigDict(extra="forbid")

    route: str | None = Field(default=None, description="Only events of this route.")
    statuses: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REPLAY_STATUSES),
        description="Only events in these statuses.",
    )
    since: datetime | None = Field(
        default=None, description="Only events received at or after this time."
    )
    until: datetime | None = Field(
        default=None, description="Only events received before this time."
    )
    limit: int = Field(
        default=100,
        ge=1,
        le=MAX_BULK_REPLAYS,
        description="Maximum number of events to replay.",
    )
    max_replays: int | None = Field(
        default=None,
        ge=1,
        description="Skip events already replayed this many times or more.",
    )
    dry_run: bool = Field(
        default=False, description="List what would be replayed without replaying."
    )
    requested_by: str | None = Field(default=None, max_length=100)

    @field_validator("statuses")
    @classmethod
    def _check_statuses(cls, value: list[str]) -> list[str]:
        invalid = sorted(set(value) - set(REPLAYABLE_STATUSES))
        if invalid or not value:
            raise ValueError(
                f"statuses {invalid or value!r} cannot be replayed; choose from "
                f"{list(REPLAYABLE_STATUSES)}"
            )
        return value


async def _read_model(request: Request, model: type[_ModelT]) -> _ModelT:
    body = await request.body()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidQueryError(f"invalid request body: {problems}") from None


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    """Describe one dispatch attempt."""
    return {
        "attempt": attempt.attempt,
        "replay_number": attempt.replay_number,
        "started_at": attempt.started_at.isoformat(),
        "finished_at": attempt.finished_at.isoformat(),
        "outcome": attempt.outcome,
        "error": attempt.error,
        "flow_run_id": attempt.flow_run_id,
        "dispatcher": attempt.dispatcher,
    }


def replay_json(replay: ReplayRecord) -> dict[str, Any]:
    """Describe one replay and the runs it links."""
    return {
        "id": replay.id,
        "event": replay.webhook_event_id,
        "replay_number": replay.replay_number,
        "status": replay.status,
        "requested_by": replay.requested_by,
        "requested_at": replay.requested_at.isoformat(),
        "updated_at": replay.updated_at.isoformat(),
        "replayed_flow_run_id": replay.replayed_flow_run_id,
        "flow_run_id": replay.flow_run_id,
        "flow_run_url": flow_run_url(replay.flow_run_id),
        "attempts": replay.attempts,
        "last_error": replay.last_error,
    }


def _event_detail(state: GatewayState, id: str) -> dict[str, Any]:
    event = state.inbox.get(id)
    if event is None:
        raise EventNotFoundError(f"no event with id {id!r}")
    data = event_json(event)
    data.update(
        headers=event.headers,
        query=event.query,
        parameters=event.parameters,
        body_size=len(event.body) if event.body is not None else None,
        body_purged_at=event.body_purged_at.isoformat()
        if event.body_purged_at
        else None,
        attempts_detail=[attempt_json(a) for a in state.inbox.list_attempts(id)],
        replays=[replay_json(r) for r in state.inbox.list_replays(id)],
    )
    return data


def _rerendered_parameters(state: GatewayState, event: EventRecord) -> dict[str, Any]:
    """Render a stored event's parameters again with its route's current templates."""
    from webhook_gateway.ingest import parse_body
    from webhook_gateway.templates import TemplateRenderError, render_parameters

    route = state.routes.get(event.route)
    if route is None:
        raise ReplayConflictError(
            f"event {event.id!r} belongs to route {event.route!r}, which is no longer "
            "configured; it cannot be rendered again"
        )
    if event.body is None:
        raise ReplayConflictError(
            f"event {event.id!r} has no stored body (purged by retention); replay it "
            "without rerender"
        )
    # NOTE: this context mirrors the one ingest builds for the first rendering.
    context: dict[str, Any] = {
        "body": parse_body(event.body, route.config.content_type, route.name),
        "headers": event.headers,
        "query": event.query or {},
        "route": route.name,
        "event_id": event.event_id,
    }
    try:
        return render_parameters(route.config.parameters, context)
    except TemplateRenderError as exc:
        raise ReplayConflictError(
            f"template {exc.template!r} still fails for event {event.id!r}: "
            f"{exc.detail}; fix the route's templates first"
        ) from exc


def _replay_one(state: GatewayState, id: str, options: ReplayRequest) -> ReplayRecord:
    parameters = None
    if options.rerender:
        event = state.inbox.get(id)
        if event is None:
            raise EventNotFoundError(f"no event with id {id!r}")
        parameters = _rerendered_parameters(state, event)
    replay = state.inbox.request_replay(
        id, requested_by=options.requested_by or "admin-api", parameters=parameters
    )
    state.dispatcher.wake()
    return replay


def _replay_many(state: GatewayState, request: BulkReplayRequest) -> dict[str, Any]:
    query = EventQuery(
        route=request.route,
        statuses=request.statuses,
        since=request.since,
        until=request.until,
    )
    candidates: list[EventRecord] = []
    cursor = None
    while len(candidates) < request.limit:
        page = state.inbox.find_events(
            query,
            limit=min(MAX_PAGE_SIZE, request.limit - len(candidates)),
            cursor=cursor,
            max_replays=request.max_replays,
        )
        candidates.extend(page.events)
        cursor = page.next_cursor
        if cursor is None:
            break
    if request.dry_run:
        return {
            "dry_run": True,
            "matched": len(candidates),
            "events": [event_json(event) for event in candidates],
            "replays": [],
            "skipped": [],
        }
    replays: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for event in candidates:
        try:
            replay = state.inbox.request_replay(
                event.id,
                requested_by=request.requested_by or "admin-api bulk",
            )
        except ReplayConflictError as exc:
            # Another request replayed it since the listing; report, don't fail.
            skipped.append({"id": event.id, "reason": exc.message})
            continue
        replays.append(replay_json(replay))
    if replays:
        state.dispatcher.wake()
    return {
        "dry_run": False,
        "matched": len(candidates),
        "events": [event_json(event) for event in candidates],
        "replays": replays,
        "skipped": skipped,
    }


def _check_statuses(statuses: list[str]) -> None:
    valid = [status.value for status in EventStatus]
    invalid = [status for status in statuses if status not in valid]
    if invalid:
        raise InvalidQueryError(
            f"query parameter 'status' has invalid values {invalid!r}; "
            f"valid statuses: {', '.join(valid)}"
        )


@admin_router.get("/events")
async def list_events(
    state: GatewayStateDep,
    route: str | None = None,
    status: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    event_id: str | None = None,
    flow_run_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """List events newest first, filtered by route, status, time, ids; paged by cursor."""
    _check_statuses(status or [])
    query = EventQuery(
        route=route,
        statuses=status or (),
        since=since,
        until=until,
        event_id=event_id,
        flow_run_id=flow_run_id,
    )
    page = await run_in_threadpool(
        state.inbox.find_events, query, limit=limit, cursor=cursor
    )
    return {
        "events": [event_json(event) for event in page.events],
        "next_cursor": page.next_cursor,
    }


@admin_router.get("/events/{id}")
async def read_event_detail(id: str, state: GatewayStateDep) -> dict[str, Any]:
    """Return an event with its headers, parameters, dispatch attempts and replays."""
    return await run_in_threadpool(_event_detail, state, id)


@admin_router.post("/events/{id}/replay", status_code=202)
async def replay_event(
    id: str, request: Request, state: GatewayStateDep
) -> dict[str, Any]:
    """Store a replay of a finished event; the dispatcher creates its new run."""
    options = await _read_model(request, ReplayRequest)
    replay = await run_in_threadpool(_replay_one, state, id, options)
    return replay_json(replay)


@replay_router.post("/events/{id}/replay", status_code=202)
async def replay_event_short(
    id: str, request: Request, state: GatewayStateDep
) -> dict[str, Any]:
    """Store a replay of a finished event (same as POST /admin/events/{id}/replay)."""
    return await replay_event(id, request, state)


@admin_router.post("/replays", status_code=202)
async def replay_events(request: Request, state: GatewayStateDep) -> dict[str, Any]:
    """Replay the events matching route, statuses and time range, or list them."""
    options = await _read_model(request, BulkReplayRequest)
    return await run_in_threadpool(_replay_many, state, options)


@replay_router.get("/routes")
@admin_router.get("/routes")
async def list_routes(state: GatewayStateDep) -> dict[str, Any]:
    """List the configured routes with their URLs, schemes and deployments."""
    base_url = state.settings.effective_public_url
    return {
        "routes": [
            {
                "name": name,
                "url": f"{base_url}/hooks/{name}",
                "scheme": route.config.scheme,
                "deployment": route.config.deployment,
                "content_type": route.config.content_type,
            }
            for name, route in state.routes.items()
        ]
    }
