"""Tickets opened by flows, at most one per deduplication label, in Jira or locally.

`ensure_ticket` searches for the label before it creates anything, so a retried task
or a replayed webhook event finds the ticket of its first attempt. Two stores exist:
`JiraTicketStore` (the `jira` client against a Jira project) and `LocalTicketStore`
(a SQL table, the default when no Jira is configured).

Errors:

    TicketError
    ├── TicketServiceUnavailableError   retryable: HTTP 5xx or 429, connection
    │                                   error, timeout
    └── TicketRejectedError             HTTP 4xx, with Jira's error messages
        └── TicketAuthenticationError   HTTP 401, wrong username or token
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import requests
import sqlalchemy as sa
from jira import JIRA, JIRAError
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff
from pydantic import BaseModel
from sqlalchemy.dialects import mysql

from blocks.jira import JiraCredentials

__all__ = [
    "JiraTicketStore",
    "LocalTicketStore",
    "Ticket",
    "TicketAuthenticationError",
    "TicketError",
    "TicketRejectedError",
    "TicketServiceUnavailableError",
    "TicketStore",
    "ensure_ticket",
    "open_ticket",
]

logger = logging.getLogger(__name__)

# Jira rejects labels with whitespace and summaries over 255 characters.
MAX_SUMMARY_LENGTH = 255
MAX_LABEL_LENGTH = 255
LOCAL_KEY_PREFIX = "LOCAL-"
_WHITESPACE = re.compile(r"\s")


class TicketError(Exception):
    """A ticket could not be found or created."""


class TicketServiceUnavailableError(TicketError):
    """The ticket service failed or did not respond in time, so a retry may succeed."""


class TicketRejectedError(TicketError):
    """The ticket service rejected the request (HTTP 4xx).

    Attributes:
        status_code: HTTP status of the response.
        error_messages: Jira's `errorMessages` list.
        field_errors: Jira's `errors` object, field name to message.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_messages: Sequence[str] = (),
        field_errors: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_messages = list(error_messages)
        self.field_errors = dict(field_errors or {})


class TicketAuthenticationError(TicketRejectedError):
    """The ticket service rejected the username or the API token (HTTP 401)."""


class Ticket(BaseModel, frozen=True):
    """A ticket in the store.

    Attributes:
        key: Issue key, e.g. `OPS-12` in Jira or `LOCAL-3` in the local store.
        url: Browser URL of the ticket, None for local tickets.
        created: False when `ensure_ticket` found an existing ticket.
    """

    key: str
    url: str | None
    created: bool


@runtime_checkable
class TicketStore(Protocol):
    """Storage that finds tickets by label and creates them."""

    def find_by_label(self, label: str) -> Ticket | None:
        """Return the oldest ticket that has exactly this label, or None."""
        ...

    def create(
        self,
        *,
        summary: str,
        description: str,
        labels: list[str],
        assignee: str | None,
        priority: str | None,
    ) -> Ticket:
        """Create a ticket and return it with `created=True`."""
        ...


def quote_jql(value: str) -> str:
    """Quote a value as a JQL string literal, escaping backslashes and quotes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _jira_error_body(exc: JIRAError) -> tuple[list[str], dict[str, str]]:
    """Read `errorMessages` and `errors` from a Jira error response, if JSON."""
    response = exc.response
    if response is None:
        return [], {}
    try:
        body = response.json()
    except requests.exceptions.JSONDecodeError:
        return [], {}
    if not isinstance(body, dict):
        return [], {}

    raw_messages = body.get("errorMessages") or []
    raw_errors = body.get("errors") or {}
    messages = (
        [str(item) for item in raw_messages] if isinstance(raw_messages, list) else []
    )
    errors = (
        {str(name): str(text) for name, text in raw_errors.items()}
        if isinstance(raw_errors, dict)
        else {}
    )
    return messages, errors


@contextmanager
def _translate_jira_errors(credentials: JiraCredentials, action: str) -> Iterator[None]:
    """Turn `jira` and `requests` exceptions raised inside into `TicketError`s."""
    server = credentials.server_url
    try:
        yield
    except JIRAError as exc:
        status = exc.status_code
        messages, field_errors = _jira_error_body(exc)
        parts = messages + [f"{name}: {text}" for name, text in field_errors.items()]
        detail = "; ".join(parts) or exc.text or "no error message"

        if status is None or status >= 500 or status == 429:
            raise TicketServiceUnavailableError(
                f"Jira at {server!r} failed to {action} (HTTP {status}): {detail}. "
                "A retry may succeed."
            ) from exc
        if status == 401:
            raise TicketAuthenticationError(
                f"Jira at {server!r} rejected the credentials of user "
                f"{credentials.username!r} (HTTP 401) while trying to {action}: "
                f"{detail}. Check username and api_token in the JiraCredentials "
                "block.",
                status_code=status,
                error_messages=messages,
                field_errors=field_errors,
            ) from exc
        raise TicketRejectedError(
            f"Jira at {server!r} rejected the request to {action} "
            f"(HTTP {status}): {detail}. Fix the ticket fields or the "
            "JiraCredentials block.",
            status_code=status,
            error_messages=messages,
            field_errors=field_errors,
        ) from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TicketServiceUnavailableError(
            f"Jira at {server!r} could not be reached or timed out after "
            f"{credentials.timeout} s while trying to {action}: "
            f"{type(exc).__name__}. A retry may succeed."
        ) from exc
    except requests.exceptions.JSONDecodeError as exc:
        raise TicketError(
            f"Jira at {server!r} returned a response that is not JSON while trying "
            f"to {action}. Check that server_url points at the Jira site root."
        ) from exc


class JiraTicketStore:
    """Tickets as issues of one Jira project, found by label with JQL."""

    def __init__(self, credentials: JiraCredentials) -> None:
        self._credentials = credentials
        self._client: JIRA | None = None

    def _get_client(self) -> JIRA:
        if self._client is None:
            with _translate_jira_errors(self._credentials, "create a client"):
                self._client = self._credentials.get_client()
        return self._client

    def _ticket(self, key: str, *, created: bool) -> Ticket:
        base = self._credentials.server_url.rstrip("/")
        return Ticket(key=key, url=f"{base}/browse/{key}", created=created)

    def find_by_label(self, label: str) -> Ticket | None:
        """Search the project for the oldest issue with exactly this label.

        Raises:
            TicketServiceUnavailableError: Jira failed or timed out.
            TicketRejectedError: Jira rejected the search, e.g. an unknown project.
        """
        project = self._credentials.project_key
        jql = (
            f"project = {quote_jql(project)} AND labels = {quote_jql(label)} "
            "ORDER BY created ASC"
        )
        client = self._get_client()
        with _translate_jira_errors(self._credentials, f"search with {jql!r}"):
            issues = client.search_issues(jql, maxResults=1, fields="summary,labels")
        if not issues:
            return None
        return self._ticket(issues[0].key, created=False)

    def create(
        self,
        *,
        summary: str,
        description: str,
        labels: list[str],
        assignee: str | None,
        priority: str | None,
    ) -> Ticket:
        """Create an issue in the project.

        Raises:
            TicketServiceUnavailableError: Jira failed or timed out.
            TicketRejectedError: Jira rejected a field, with Jira's messages.
        """
        client = self._get_client()
        fields: dict[str, Any] = {
            "project": {"key": self._credentials.project_key},
            "issuetype": {"name": self._credentials.issue_type},
            "summary": summary,
            "description": description,
            "labels": list(labels),
        }
        if priority is not None:
            fields["priority"] = {"name": priority}
        if assignee is not None:
            # Jira Cloud identifies users by accountId, Server/Data Center by name.
            user_field = "accountId" if client.deploymentType == "Cloud" else "name"
            fields["assignee"] = {user_field: assignee}

        action = f"create an issue in project {self._credentials.project_key!r}"
        with _translate_jira_errors(self._credentials, action):
            issue = client.create_issue(fields=fields, prefetch=False)
        return self._ticket(issue.key, created=True)


class LocalTicketStore:
    """Tickets in SQL tables, the embedded default when no Jira is configured.

    Tables (created if missing): `<prefix>local_tickets` with one row per ticket
    and `<prefix>local_ticket_labels` with one row per label, so a label lookup is
    an exact, indexed comparison. On MySQL/MariaDB the label column uses the binary
    collation `utf8mb4_bin`, because the default collation compares
    case-insensitively.

    Args:
        engine: SQLAlchemy engine (SQLite, or MySQL/MariaDB via `mysql+pymysql`).
        table_prefix: Prepended to both table names, e.g. to keep test runs apart.
    """

    def __init__(self, engine: sa.Engine, *, table_prefix: str = "") -> None:
        self._engine = engine
        metadata = sa.MetaData()
        self.tickets = sa.Table(
            f"{table_prefix}local_tickets",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("ticket_key", sa.String(32), unique=True),
            sa.Column("summary", sa.String(MAX_SUMMARY_LENGTH), nullable=False),
            sa.Column("description", sa.Text, nullable=False),
            sa.Column("labels", sa.JSON, nullable=False),
            sa.Column("assignee", sa.String(255)),
            sa.Column("priority", sa.String(64)),
            sa.Column("created_at", sa.DateTime, nullable=False),
        )
        label_type = sa.String(MAX_LABEL_LENGTH).with_variant(
            mysql.VARCHAR(MAX_LABEL_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"),
            "mysql",
            "mariadb",
        )
        self.labels = sa.Table(
            f"{table_prefix}local_ticket_labels",
            metadata,
            sa.Column(
                "ticket_id",
                sa.Integer,
                sa.ForeignKey(self.tickets.c.id, ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column("label", label_type, primary_key=True),
            sa.Index(f"ix_{table_prefix}local_ticket_labels_label", "label"),
        )
        self._metadata = metadata
        metadata.create_all(engine)

    def drop_tables(self) -> None:
        """Drop both tables, e.g. after a test."""
        self._metadata.drop_all(self._engine)

    def find_by_label(self, label: str) -> Ticket | None:
        """Return the oldest local ticket with exactly this label, or None."""
        query = (
            sa.select(self.tickets.c.ticket_key, self.labels.c.label)
            .join(self.labels, self.labels.c.ticket_id == self.tickets.c.id)
            .where(self.labels.c.label == label)
            .order_by(self.tickets.c.id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        # MySQL/MariaDB collations ignore trailing spaces in `=`, so compare again.
        for key, stored_label in rows:
            if stored_label == label:
                return Ticket(key=key, url=None, created=False)
        return None

    def create(
        self,
        *,
        summary: str,
        description: str,
        labels: list[str],
        assignee: str | None,
        priority: str | None,
    ) -> Ticket:
        """Insert a ticket with the next `LOCAL-<n>` key."""
        unique_labels = list(dict.fromkeys(labels))
        with self._engine.begin() as connection:
            result = connection.execute(
                self.tickets.insert().values(
                    summary=summary,
                    description=description,
                    labels=unique_labels,
                    assignee=assignee,
                    priority=priority,
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
            ticket_id = result.inserted_primary_key[0]
            key = f"{LOCAL_KEY_PREFIX}{ticket_id}"
            connection.execute(
                self.tickets.update()
                .where(self.tickets.c.id == ticket_id)
                .values(ticket_key=key)
            )
            if unique_labels:
                connection.execute(
                    self.labels.insert(),
                    [{"ticket_id": ticket_id, "label": item} for item in unique_labels],
                )
        logger.info("Created local ticket %s with labels %s", key, unique_labels)
        return Ticket(key=key, url=None, created=True)


def _validate_label(label: str) -> None:
    if not label:
        raise ValueError("Ticket label is empty. Pass a non-empty label.")
    if _WHITESPACE.search(label):
        raise ValueError(
            f"Ticket label {label!r} contains whitespace, which Jira labels cannot "
            "contain. Use '-' or '_' instead."
        )
    if len(label) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"Ticket label {label[:40]!r}... has {len(label)} characters, more than "
            f"the maximum of {MAX_LABEL_LENGTH}."
        )


def ensure_ticket(
    store: TicketStore,
    *,
    label: str,
    summary: str,
    description: str,
    labels: Sequence[str] = (),
    assignee: str | None = None,
    priority: str | None = None,
) -> Ticket:
    """Return the ticket that has `label`, creating it only if none exists.

    NOTE: The search and the creation are two requests, so two runs for the same
    label at the same moment can still create two tickets. Jira Cloud's search
    index may also lag a few seconds behind a creation.

    Args:
        store: Where tickets live.
        label: Deduplication label, e.g. derived from the webhook event id. It is
            added to `labels` when missing.
        summary: One-line title, at most 255 characters.
        description: Body text (Jira wiki markup in Jira).
        labels: Further labels.
        assignee: Assignee id or name, or None to leave the ticket unassigned.
        priority: Priority name, e.g. "High", or None for the project default.

    Returns:
        The existing ticket (`created=False`) or the new one (`created=True`).

    Raises:
        ValueError: A label or the summary is invalid.
        TicketError: The store failed; see the module docstring.
    """
    all_labels = [label, *labels]
    for item in all_labels:
        _validate_label(item)
    if not summary.strip() or "\n" in summary:
        raise ValueError(f"Ticket summary {summary!r} must be one non-empty line.")
    if len(summary) > MAX_SUMMARY_LENGTH:
        raise ValueError(
            f"Ticket summary has {len(summary)} characters, more than the maximum "
            f"of {MAX_SUMMARY_LENGTH}: {summary[:60]!r}..."
        )

    existing = store.find_by_label(label)
    if existing is not None:
        return existing
    return store.create(
        summary=summary,
        description=description,
        labels=list(dict.fromkeys(all_labels)),
        assignee=assignee,
        priority=priority,
    )


def _is_ticket_service_unavailable(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect retry condition: retry only `TicketServiceUnavailableError`."""
    return isinstance(
        state.result(raise_on_failure=False), TicketServiceUnavailableError
    )


@task(
    name="open-ticket",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_condition_fn=_is_ticket_service_unavailable,
    cache_policy=NO_CACHE,
)
def open_ticket(
    store: TicketStore,
    *,
    label: str,
    summary: str,
    description: str,
    labels: Sequence[str] = (),
    assignee: str | None = None,
    priority: str | None = None,
) -> Ticket:
    """Find or create the ticket for `label`, with the arguments of `ensure_ticket`.

    Retries (5, 10 and 20 s apart) happen only for `TicketServiceUnavailableError`.
    """
    run_logger = get_run_logger()
    ticket = ensure_ticket(
        store,
        label=label,
        summary=summary,
        description=description,
        labels=labels,
        assignee=assignee,
        priority=priority,
    )
    if ticket.created:
        run_logger.info("Opened ticket %s for label %r", ticket.key, label)
    else:
        run_logger.info("Ticket %s already exists for label %r", ticket.key, label)
    return ticket
