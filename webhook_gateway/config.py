"""Route configuration: which scheme, secrets, deployment and templates per route.

A routes file looks like this::

    routes:
      supplier-dingtalk:
        scheme: dingtalk
        secrets:
          - env: DINGTALK_APP_SECRET
        deployment: supply-chain-delay/supply-chain-delay
        event_id: "{{ body.msgId }}"
        parameters:
          text: "{{ body.text.content }}"

Secrets never sit in the file: each entry names an environment variable (`env`) or a
Prefect Secret block (`block`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "RouteConfig",
    "SecretRef",
    "load_config",
    "resolve_secret",
]

ROUTE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
DEPLOYMENT_PATTERN = re.compile(r"^[^/\s]+/[^/\s]+$")
BUNDLED_ROUTES_FILE = Path(__file__).parent / "examples" / "routes.yaml"


class ConfigError(Exception):
    """The routes file is missing, is not valid YAML, or fails validation."""


class SecretRef(BaseModel):
    """Source of a secret: an environment variable or a Prefect Secret block."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = Field(default=None, description="Environment variable name.")
    block: str | None = Field(default=None, description="Prefect Secret block name.")

    def model_post_init(self, context: Any) -> None:
        if (self.env is None) == (self.block is None):
            raise ValueError("a secret names exactly one of 'env' or 'block'")

    def describe(self) -> str:
        """Return where the secret comes from, for messages (never the value)."""
        return f"env {self.env}" if self.env else f"Secret block {self.block!r}"


class RouteConfig(BaseModel):
    """One webhook route: `POST /hooks/{name}`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The path segment after /hooks/.")
    scheme: str = Field(description="Verification scheme, for example 'dingtalk'.")
    secrets: list[SecretRef] = Field(
        default_factory=list,
        description="Active secrets; during a rotation list the new and the old one.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Scheme options such as the header name; a value `{env: NAME}` or "
            "`{block: NAME}` is read as a secret."
        ),
    )
    deployment: str = Field(description="Target deployment as 'flow-name/deployment'.")
    content_type: Literal["json", "form", "text", "xml"] = Field(
        default="json",
        description=(
            "How the body is parsed for templates; 'xml' (WeCom) rejects DTDs and "
            "entities."
        ),
    )
    event_id: str | None = Field(
        default=None,
        description=(
            "Jinja2 template for the sender's event id. Unset: the id the scheme "
            "carries, else a SHA-256 of the body."
        ),
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Flow run parameters; string values are Jinja2 templates.",
    )
    filter: str | None = Field(
        default=None,
        description="Jinja2 expression; events for which it is false are ignored.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Bodies larger than this are rejected with 413.",
    )
    example: str | None = Field(
        default=None,
        description=(
            "Sample body for `webhook-gateway curl`; `{{ random_id }}` and "
            "`{{ now_ms }}` are filled in."
        ),
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not ROUTE_NAME_PATTERN.match(value):
            raise ValueError(
                f"route name {value!r} must be lower-case letters, digits, '-' or '_'"
            )
        return value

    @field_validator("deployment")
    @classmethod
    def _check_deployment(cls, value: str) -> str:
        if not DEPLOYMENT_PATTERN.match(value):
            raise ValueError(
                f"deployment {value!r} must look like 'flow-name/deployment-name'"
            )
        return value


class GatewayConfig(BaseModel):
    """Every route of one gateway, keyed by name."""

    routes: dict[str, RouteConfig]
    source: Path | None = None


def load_config(path: Path | None) -> GatewayConfig:
    """Read and validate a routes file; None loads the bundled demo routes.

    Raises:
        ConfigError: The file is missing, not YAML, or a route is invalid.
    """
    source = path or BUNDLED_ROUTES_FILE
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"routes file {str(source)!r} not found; pass --routes or set "
            "WEBHOOK_GATEWAY_ROUTES_FILE"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"routes file {str(source)!r} is not valid YAML: {exc}"
        ) from exc
    return parse_config(raw, source=source)


def parse_config(raw: Any, *, source: Path | None = None) -> GatewayConfig:
    """Validate routes already read from YAML."""
    where = str(source) if source else "<routes>"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("routes"), Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'routes' mapping")
    routes: dict[str, RouteConfig] = {}
    for name, body in raw["routes"].items():
        if not isinstance(body, Mapping):
            raise ConfigError(f"{where}: route {name!r} must be a mapping")
        try:
            routes[str(name)] = RouteConfig.model_validate({"name": str(name), **body})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise ConfigError(
                f"{where}: route {name!r} is invalid: {problems}"
            ) from None
    return GatewayConfig(routes=routes, source=source)


def resolve_secret(ref: SecretRef) -> str:
    """Read a secret's value from its environment variable or Prefect Secret block.

    Raises:
        ConfigError: The variable is unset or empty, or the block cannot be loaded.
    """
    if ref.env is not None:
        value = os.environ.get(ref.env, "")
        if not value:
            raise ConfigError(f"environment variable {ref.env} is unset or empty")
        return value

    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(ref.block)
    except ValueError as exc:
        raise ConfigError(
            f"Prefect Secret block {ref.block!r} could not be loaded: {exc}"
        ) from exc
    value = secret.get()
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"Prefect Secret block {ref.block!r} contains no string value"
        )
    return value
