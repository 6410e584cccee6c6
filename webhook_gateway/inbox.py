"""The durable inbox: the only module that touches the gateway's storage.

Each accepted delivery becomes one row, unique on (route, event id), written and
committed before the sender gets its 2xx. The dispatcher claims rows with a lease so
that several gateway processes can share one MySQL inbox.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

__all__ = [
    "EventRecord",
    "EventStatus",
    "Inbox",
    "create_inbox_engine",
    "metadata",
]

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

_LONG_BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class EventStatus(str, enum.Enum):
    """Where an event is on its way from delivery to a finished flow run."""

    RECEIVED = "received"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    IGNORED = "ignored"
    DEAD = "dead"


PENDING_STATUSES = (EventStatus.RECEIVED.value,)

events_table = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("route", sa.String(100), nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("deployment", sa.String(255), nullable=False),
    sa.Column("body", _LONG_BLOB, nullable=True),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("query", sa.JSON, nullable=True),
    sa.Column("parameters", sa.JSON, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", _LONG_TEXT, nullable=True),
    sa.Column("flow_run_id", sa.String(36), nullable=True),
    sa.UniqueConstraint("route", "event_id", name="uq_webhook_events_route_event"),
    sa.Index("ix_webhook_events_pending", "status", "next_attempt_at"),
)


@dataclass(frozen=True)
class EventRecord:
    """One stored event, as read from the inbox."""

    id: str
    route: str
    event_id: str
    status: str
    deployment: str
    body: bytes | None
    headers: dict[str, str]
    query: dict[str, str] | None
    parameters: dict[str, Any] | None
    received_at: datetime
    updated_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    flow_run_id: str | None

    @property
    def idempotency_key(self) -> str:
        """The key that makes Prefect create one flow run per event."""
        return f"{self.route}:{self.event_id}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: datetime) -> datetime:
    # SQLite and MySQL hand back naive datetimes; every stored value is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _record_from_row(row: sa.Row[Any]) -> EventRecord:
    mapping = row._mapping
    return EventRecord(
        id=mapping["id"],
        route=mapping["route"],
        event_id=mapping["event_id"],
        status=mapping["status"],
        deployment=mapping["deployment"],
        body=mapping["body"],
        headers=mapping["headers"] or {},
        query=mapping["query"],
        parameters=mapping["parameters"],
        received_at=_as_utc(mapping["received_at"]),
        updated_at=_as_utc(mapping["updated_at"]),
        attempts=mapping["attempts"],
        next_attempt_at=_as_utc(mapping["next_attempt_at"]),
        last_error=mapping["last_error"],
        flow_run_id=mapping["flow_run_id"],
    )


def create_inbox_engine(url: str) -> Engine:
    """Create an engine for the inbox; SQLite gets WAL and immediate transactions."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is off, so that BEGIN IMMEDIATE
            # below takes the write lock at the start and two processes never
            # deadlock while upgrading a read lock.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)


class Inbox:
    """Store, claim and update webhook events."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        """Create the tables if they do not exist."""
        metadata.create_all(self.engine)

    def record_event(
        self,
        *,
        route: str,
        event_id: str,
        deployment: str,
        body: bytes,
        headers: dict[str, str],
        query: dict[str, str] | None,
        parameters: dict[str, Any] | None,
        status: EventStatus = EventStatus.RECEIVED,
        last_error: str | None = None,
    ) -> tuple[EventRecord, bool]:
        """Insert an event, or return the stored one for a redelivery.

        Returns:
            The stored event and whether this call created it.
        """
        now = _utcnow()
        values = {
            "id": uuid.uuid4().hex,
            "route": route,
            "event_id": event_id,
            "status": status.value,
            "deployment": deployment,
            "body": body,
            "headers": headers,
            "query": query,
            "parameters": parameters,
            "received_at": now,
            "updated_at": now,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": last_error,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(events_table.insert().values(**values))
        except IntegrityError:
            existing = self.get_by_event_id(route, event_id)
            if existing is None:
                raise
            return existing, False
        record = EventRecord(
            **{key: values[key] for key in EventRecord.__dataclass_fields__ if key in values},
            flow_run_id=None,
        )
        return record, True

    def get(self, id: str) -> EventRecord | None:
        """Return an event by the gateway's id, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(events_table).where(events_table.c.id == id)
            ).first()
        return _record_from_row(row) if row else None

    def get_by_event_id(self, route: str, event_id: str) -> EventRecord | None:
        """Return an event by route and the sender's event id, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(events_table).where(
                    events_table.c.route == route, events_table.c.event_id == event_id
                )
            ).first()
        return _record_from_row(row) if row else None

    def claim_due(
        self, *, owner: str, limit: int, lease_seconds: float
    ) -> list[EventRecord]:
        """Lease up to `limit` pending events that are due, oldest first.

        On MySQL and MariaDB the rows are locked with `FOR UPDATE SKIP LOCKED`, so
        gateways sharing one inbox claim disjoint batches. SQLite has one writer at a
        time, which gives the same guarantee.
        """
        now = _utcnow()
        lease_expires = now + timedelta(seconds=lease_seconds)
        table = events_table
        with self.engine.begin() as connection:
            ids = list(
                connection.execute(
                    sa.select(table.c.id)
                    .where(
                        table.c.status.in_(PENDING_STATUSES),
                        table.c.next_attempt_at <= now,
                        sa.or_(
                            table.c.lease_expires_at.is_(None),
                            table.c.lease_expires_at < now,
                        ),
                    )
                    .order_by(table.c.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return []
            connection.execute(
                table.update()
                .where(table.c.id.in_(ids))
                .values(lease_owner=owner, lease_expires_at=lease_expires)
            )
            rows = connection.execute(
                sa.select(table).where(table.c.id.in_(ids))
            ).all()
        return [_record_from_row(row) for row in rows]

    def mark_dispatched(self, id: str, *, owner: str, flow_run_id: str) -> None:
        """Record the flow run created for an event and release its lease."""
        self._update(
            id,
            owner=owner,
            status=EventStatus.DISPATCHED.value,
            flow_run_id=flow_run_id,
            attempts=events_table.c.attempts + 1,
            last_error=None,
        )

    def mark_retry(
        self, id: str, *, owner: str, error: str, next_attempt_at: datetime
    ) -> None:
        """Count a failed attempt and schedule the next one."""
        self._update(
            id,
            owner=owner,
            attempts=events_table.c.attempts + 1,
            last_error=error,
            next_attempt_at=next_attempt_at,
        )

    def mark_final(self, id: str, *, owner: str, status: EventStatus, error: str) -> None:
        """End an event's dispatch as rejected or dead, keeping the error."""
        self._update(
            id,
            owner=owner,
            status=status.value,
            attempts=events_table.c.attempts + 1,
            last_error=error,
        )

    def set_status(self, id: str, status: EventStatus) -> None:
        """Store the state of an event's flow run."""
        with self.engine.begin() as connection:
            connection.execute(
                events_table.update()
                .where(events_table.c.id == id)
                .values(status=status.value, updated_at=_utcnow())
            )

    def _update(self, id: str, *, owner: str, **values: Any) -> None:
        table = events_table
        with self.engine.begin() as connection:
            result = connection.execute(
                table.update()
                .where(table.c.id == id, table.c.lease_owner == owner)
                .values(
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=_utcnow(),
                    **values,
                )
            )
        if result.rowcount == 0:
            logger.warning(
                "event %s: lease held by %s was lost before the update", id, owner
            )

    def list_active(self, *, statuses: Sequence[str], limit: int) -> list[EventRecord]:
        """Return events in the given statuses, least recently updated first."""
        table = events_table
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table)
                .where(table.c.status.in_(list(statuses)))
                .order_by(table.c.updated_at)
                .limit(limit)
            ).all()
        return [_record_from_row(row) for row in rows]

    def count_by_status(self, statuses: Sequence[str] | None = None) -> dict[str, int]:
        """Count events per status."""
        table = events_table
        query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
        if statuses:
            query = query.where(table.c.status.in_(list(statuses)))
        with self.engine.connect() as connection:
            return {status: count for status, count in connection.execute(query)}
