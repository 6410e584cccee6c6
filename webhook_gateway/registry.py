"""Routes ready to serve: each route's config with its verifier built."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from webhook_gateway.config import (
    ConfigError,
    GatewayConfig,
    RouteConfig,
    SecretRef,
    resolve_secret,
)
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
            options = resolve_options(route_config.options)
        except ConfigError as exc:
            raise ConfigError(f"route {name!r}: {exc}") from exc
        try:
            verifier = build_verifier(route_config.scheme, secrets, options)
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
        if getattr(verifier, "is_unsigned", False):
            logger.warning(
                "route %s accepts unsigned deliveries (scheme none): anyone who can "
                "reach /hooks/%s can start runs of %s",
                name,
                name,
                route_config.deployment,
            )
    return routes


def resolve_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Replace option values written as secret references with the secrets.

    A value `{env: NAME}` or `{block: NAME}`, or a list of them, is read like an
    entry of `secrets`, so that tokens and keys an option needs stay out of the file.

    Raises:
        ConfigError: A referenced secret cannot be read.
    """
    return {key: _resolve_option(key, value) for key, value in options.items()}


def _is_secret_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) in ({"env"}, {"block"})


def _resolve_option(key: str, value: Any) -> Any:
    try:
        if _is_secret_ref(value):
            return resolve_secret(SecretRef.model_validate(dict(value)))
        if isinstance(value, list) and value and all(map(_is_secret_ref, value)):
            return [resolve_secret(SecretRef.model_validate(dict(v))) for v in value]
    except ConfigError as exc:
        raise ConfigError(f"option {key!r}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(
            f"option {key!r}: a secret reference must be {{env: NAME}} or "
            f"{{block: NAME}} with a string name: {exc.errors()[0]['msg']}"
        ) from None
    return value
