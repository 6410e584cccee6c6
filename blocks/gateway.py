"""Block for the webhook gateway's admin API."""

from __future__ import annotations

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

__all__ = ["GatewayAdminCredentials"]

ADMIN_TOKEN_HEADER = "X-Admin-Token"


class GatewayAdminCredentials(Block):
    """Base URL and admin token of a webhook gateway's admin API."""

    _block_type_name = "Gateway Admin Credentials"
    _description = "Base URL and admin token of a webhook gateway (X-Admin-Token)."

    base_url: str = Field(
        description="Gateway base URL, for example http://gateway.internal:8000."
    )
    token: SecretStr = Field(
        description="The gateway's WEBHOOK_GATEWAY_ADMIN_TOKEN, sent as X-Admin-Token."
    )
    timeout_seconds: float = Field(
        default=30, gt=0, description="Timeout of each admin API request, in seconds."
    )

    def get_client(self) -> httpx.Client:
        """Return an httpx client for the admin API with the token header set."""
        return httpx.Client(
            base_url=self.base_url.rstrip("/"),
            headers={ADMIN_TOKEN_HEADER: self.token.get_secret_value()},
            timeout=self.timeout_seconds,
        )
