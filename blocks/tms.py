"""Prefect block with the connection settings for the transport management system."""

from __future__ import annotations

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class TMSCredentials(Block):
    """Base URL and bearer token of a TMS that speaks this project's shipment API.

    The API is described in `docs/tms-api.md`.

    Examples:
        Load stored credentials and list open shipments of one material:
        ```python
        from blocks.tms import TMSCredentials

        credentials = TMSCredentials.load("BLOCK_NAME")
        with credentials.get_client() as client:
            client.get("/api/shipments", params={"material": "A03-205"})
        ```
    """

    _block_type_name = "TMS Credentials"
    _description = "Base URL and bearer token of the transport management system."

    base_url: str = Field(
        description="Base URL of the TMS API, e.g. https://tms.example.com.",
    )
    token: SecretStr = Field(
        description="Bearer token sent in the Authorization header.",
    )
    timeout: float = Field(
        default=10,
        gt=0,
        description="Connect, read and write timeout of each request, in seconds.",
    )

    def get_client(self) -> httpx.Client:
        """Create an `httpx.Client` bound to `base_url` that sends the bearer token.

        Returns:
            A new client. The caller closes it.
        """
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token.get_secret_value()}"},
            timeout=self.timeout,
        )
