"""ASGI application factories that the benchmarks serve with `uvicorn --factory`.

Both run under the same uvicorn command line, so the only difference between them
is what the handler does.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__all__ = ["create_bare_app", "create_gateway_app"]


def create_gateway_app() -> FastAPI:
    """Build the real gateway from `WEBHOOK_GATEWAY_*` environment variables."""
    from webhook_gateway.app import create_app

    return create_app()


def create_bare_app() -> FastAPI:
    """Build the baseline: read the body and respond 202, with no check or storage."""
    app = FastAPI(title="bare baseline")

    @app.post("/hooks/{route}", status_code=202)
    async def receive(route: str, request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {"route": route, "status": "received", "bytes": len(body)},
            status_code=202,
        )

    @app.get("/healthz")
    async def read_health() -> dict[str, str]:
        return {"status": "ok"}

    return app
