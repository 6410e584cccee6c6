"""Gateway settings, read from `WEBHOOK_GATEWAY_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewaySettings", "get_settings"]

DEFAULT_HOME = Path(".webhook-gateway")


class GatewaySettings(BaseSettings):
    """Settings for the gateway process; every field has an embedded default."""

    model_config = SettingsConfigDict(
        env_prefix="WEBHOOK_GATEWAY_", extra="ignore", env_parse_none_str="none"
    )

    home: Path = Field(
        default=DEFAULT_HOME,
        description="Folder for the embedded defaults: SQLite files and demo secrets.",
    )
    routes_file: Path | None = Field(
        default=None,
        description="YAML file with the routes. Unset: the bundled demo routes.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the inbox, for example "
            "mysql+pymysql://user:password@host:3306/db. Unset: SQLite in `home`."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    port: int = Field(default=8000, description="Port the gateway binds.")
    public_url: str | None = Field(
        default=None,
        description="Base URL senders use, for printed URLs. Unset: http://host:port.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Token for the admin API in the X-Admin-Token header.",
    )
    dispatch_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often the dispatcher looks for work."
    )
    dispatch_batch_size: int = Field(
        default=50, gt=0, description="Events claimed per dispatcher round."
    )
    dispatch_concurrency: int = Field(
        default=8,
        gt=0,
        description=(
            "Flow runs created at the same time per gateway. A Prefect server on "
            "SQLite writes one at a time, so 1 or 2 suits it best."
        ),
    )
    dispatch_lease_seconds: float = Field(
        default=60, gt=0, description="How long a claim keeps other gateways off."
    )
    dispatch_max_attempts: int = Field(
        default=20, gt=0, description="Attempts before an event becomes dead."
    )
    dispatch_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First retry delay; it doubles per attempt."
    )
    dispatch_backoff_max_seconds: float = Field(
        default=300.0, gt=0, description="Largest retry delay."
    )
    run_dispatcher: bool = Field(
        default=True, description="Run the dispatcher inside this gateway process."
    )
    prefect_client_max_retries: int = Field(
        default=0,
        ge=0,
        description=(
            "Retries inside Prefect's client per request. The dispatcher has its own "
            "per-event backoff, so the default 0 keeps one slow request from holding "
            "a whole round."
        ),
    )
    run_check_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often run states are read from Prefect."
    )
    run_check_batch_size: int = Field(
        default=200, gt=0, le=200, description="Runs read from Prefect per check."
    )
    body_retention_days: float | None = Field(
        default=30,
        gt=0,
        description=(
            "Age in days after which completed events lose their body (metadata, "
            "headers and parameters stay). `none`: bodies are kept."
        ),
    )
    retention_interval_seconds: float = Field(
        default=3600, gt=0, description="How often the body retention runs."
    )
    emit_prefect_events: bool = Field(
        default=True,
        description="Emit the Prefect event webhook.received for each accepted event.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log line format: plain text or one JSON object."
    )

    @property
    def effective_database_url(self) -> str:
        """The inbox URL, falling back to a SQLite file under `home`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'inbox.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        """The base URL printed for senders, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


@lru_cache
def get_settings() -> GatewaySettings:
    """Return the process-wide settings; tests clear the cache to change them."""
    return GatewaySettings()
