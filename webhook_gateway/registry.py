"""Routes ready to serve: each route's config with its verifier built."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from webhook_gateway.config import ConfigError, GatewayConfig, RouteConfig, resolve_secret
from webhook_gateway.verification import Verifier, build_verifier

__all__ = ["Route", "build_routes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """A configured route with its verifier."""

    config: RouteConfig
    verifier: Verifier

    @property
    def name(self) -> str:
        return self.config.name


def build_routes(config: GatewayConfig) -> dict[str, Route]:
    """Resolve every route's secrets and build its verifier.

    Raises:
        ConfigError: A secret cannot be read or a scheme's options are invalid.
    """
    routes: dict[str, Route] = {}
    for name, route_config in config.routes.items():
        try:
            secrets = [resolve_secret(ref) for ref in route_config.secrets]
        except ConfigError as exc:
            raise ConfigError(f"route {name!r}: {exc}") from exc
        try:
            verifier = build_verifier(route_config.scheme, secrets, route_config.options)
        except ValueError as exc:
            raise ConfigError(f"route {name!r}: {exc}") from exc
        routes[name] = Route(config=route_config, verifier=verifier)
        logger.info(
            "route %s: scheme=%s deployment=%s secrets=%d",
            name,
            route_config.scheme,
            route_config.deployment,
            len(secrets),
        )
    return routes
