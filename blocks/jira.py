"""Prefect block with the connection settings for a Jira project."""

from __future__ import annotations

from collections.abc import Iterable

import jira
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class JiraCredentials(Block):
    """Connection settings and assignee routing for one Jira project.

    Examples:
        Load stored credentials and search the project:
        ```python
        from blocks.jira import JiraCredentials

        credentials = JiraCredentials.load("BLOCK_NAME")
        client = credentials.get_client()
        client.search_issues('labels = "delay-A03-205"')
        ```
    """

    _block_type_name = "Jira Credentials"
    _description = (
        "Jira server, user and API token plus the rules that pick an assignee "
        "for new tickets."
    )

    server_url: str = Field(
        description="Base URL of the Jira site, e.g. https://example.atlassian.net.",
    )
    username: str = Field(
        description=(
            "User name (Jira Server/Data Center) or e-mail address (Jira Cloud) "
            "used for basic authentication."
        ),
    )
    api_token: SecretStr = Field(
        description="API token (Cloud) or password/personal token (Server).",
    )
    project_key: str = Field(
        description="Key of the project that receives new tickets, e.g. OPS.",
    )
    issue_type: str = Field(
        default="Task",
        description="Name of the issue type for new tickets.",
    )
    assignees: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Map from a material number prefix or an exact supplier name to the "
            "assignee (account id on Cloud, user name on Server)."
        ),
    )
    default_assignee: str | None = Field(
        default=None,
        description="Assignee used when no entry of assignees matches.",
    )
    timeout: float = Field(
        default=10,
        gt=0,
        description="Connect and read timeout of each HTTP request, in seconds.",
    )
    is_cloud: bool | None = Field(
        default=None,
        description=(
            "True for Jira Cloud, False for Jira Server/Data Center. None asks the "
            "server's serverInfo endpoint each time a client is created."
        ),
    )

    def get_client(self) -> jira.JIRA:
        """Create a `jira.JIRA` client that authenticates with the API token.

        The client does not retry on its own (`max_retries=0`), so the Prefect task
        that uses it decides about retries.

        Returns:
            A client bound to `server_url`.

        Raises:
            jira.JIRAError: When `is_cloud` is None and the serverInfo request fails.
            requests.RequestException: When `is_cloud` is None and the server is
                unreachable.
        """
        client = jira.JIRA(
            server=self.server_url,
            basic_auth=(self.username, self.api_token.get_secret_value()),
            timeout=self.timeout,
            max_retries=0,
            get_server_info=self.is_cloud is None,
            options={"check_update": False},
        )
        if self.is_cloud is not None:
            # NOTE: jira 3.10 picks the search endpoint (search/jql on Cloud) and the
            # user field (accountId on Cloud) from this attribute, which the skipped
            # serverInfo request would otherwise set.
            client.deploymentType = "Cloud" if self.is_cloud else "Server"
        return client

    def assignee_for(
        self, materials: Iterable[str], supplier: str | None
    ) -> str | None:
        """Pick the assignee for a ticket about these materials and this supplier.

        The longest key of `assignees` that is a prefix of any material wins. When
        no key matches a material, an exact supplier name key is used, and after
        that `default_assignee`. Supplier keys are tried as material prefixes too,
        because both kinds of key share one mapping.

        Args:
            materials: Material numbers the ticket is about.
            supplier: Supplier name, if known.

        Returns:
            The assignee, or None when nothing matches and there is no default.
        """
        best_prefix: str | None = None
        for material in materials:
            for prefix in self.assignees:
                if not prefix or not material.startswith(prefix):
                    continue
                if best_prefix is None or len(prefix) > len(best_prefix):
                    best_prefix = prefix
        if best_prefix is not None:
            return self.assignees[best_prefix]

        if supplier is not None and supplier in self.assignees:
            return self.assignees[supplier]

        return self.default_assignee
