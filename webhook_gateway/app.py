"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from webhook_gateway.admin import admin_router, replay_router
from webhook_gateway.config import GatewayConfig, load_config
from webhook_gateway.dispatcher import Dispatcher
from webhook_gateway.errors import (
    GatewayError,
    InvalidQueryError,
    describe_http_error,
    describe_validation_error,
)
from webhook_gateway.inbox import Inbox, create_inbox_engine
from webhook_gateway.metrics import GatewayMetrics
from webhook_gateway.registry import build_routes
from webhook_gateway.routes import router
from webhook_gateway.settings import GatewaySettings, get_settings
from webhook_gateway.state import GatewayState

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings | None = None, config: GatewayConfig | None = None
) -> FastAPI:
    """Build the gateway: routes, a migrated inbox, dispatcher, metrics and admin API."""
    settings = settings or get_settings()
    config = config or load_config(settings.routes_file)
    settings.home.mkdir(parents=True, exist_ok=True)
    inbox = Inbox(create_inbox_engine(settings.effective_database_url))
    inbox.upgrade_schema()
    metrics = GatewayMetrics(inbox)
    state = GatewayState(
        settings=settings,
        routes=build_routes(config),
        inbox=inbox,
        dispatcher=Dispatcher(inbox, settings, metrics),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task: asyncio.Task[None] | None = None
        if settings.run_dispatcher:
            task = asyncio.create_task(state.dispatcher.run())
        try:
            yield
        finally:
            if task is not None:
                state.dispatcher.stop()
                with suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, timeout=10)
            inbox.engine.dispose()

    app = FastAPI(title="Prefect webhook gateway", lifespan=lifespan)
    app.state.gateway = state
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(replay_router)

    @app.exception_handler(GatewayError)
    async def handle_gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status_code)

    # FastAPI's own errors (no such path, wrong method, invalid query parameter)
    # get the same {"error", "message"} body as the gateway's.
    @app.exception_handler(HTTPException)
    async def handle_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        body = describe_http_error(
            exc.status_code, exc.detail, request.method, request.url.path, exc.headers
        )
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def handle_validation_error(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        error = InvalidQueryError(describe_validation_error(exc.errors()))
        return JSONResponse(error.to_json(), status_code=error.status_code)

    return app
