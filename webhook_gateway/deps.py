"""FastAPI dependencies and their `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from webhook_gateway.errors import RouteNotFoundError
from webhook_gateway.registry import Route
from webhook_gateway.state import GatewayState

__all__ = ["GatewayStateDep", "RouteDep"]


def get_state(request: Request) -> GatewayState:
    return request.app.state.gateway


GatewayStateDep = Annotated[GatewayState, Depends(get_state)]


def get_route(route: str, state: GatewayStateDep) -> Route:
    try:
        return state.routes[route]
    except KeyError:
        raise RouteNotFoundError(
            f"no route named {route!r}; configured routes: {sorted(state.routes)}"
        ) from None


RouteDep = Annotated[Route, Depends(get_route)]
