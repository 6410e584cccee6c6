"""Placeholder ticket store; replaced by the Jira and local stores."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from prefect import get_run_logger, task


@dataclass(frozen=True)
class Ticket:
    key: str
    url: str | None
    created: bool


class LocalTicketStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine


@task(name="open-ticket")
def open_ticket(store: LocalTicketStore, *, label: str, summary: str, description: str, labels: list[str], assignee: str | None = None, priority: str | None = None) -> Ticket:
    get_run_logger().info("ticket for %s", label)
    return Ticket(key="LOCAL-1", url=None, created=True)
