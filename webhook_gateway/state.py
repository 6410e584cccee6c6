"""Runtime objects of one running gateway: settings, routes, inbox, dispatcher, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from webhook_gateway.dispatcher import Dispatcher
from webhook_gateway.inbox import Inbox
from webhook_gateway.metrics import GatewayMetrics
from webhook_gateway.registry import Route
from webhook_gateway.settings import GatewaySettings

__all__ = ["GatewayState"]


@dataclass
class GatewayState:
    """The gateway's runtime objects, created once by `create_app`."""

    settings: GatewaySettings
    routes: dict[str, Route]
    inbox: Inbox
    dispatcher: Dispatcher
    metrics: GatewayMetrics
