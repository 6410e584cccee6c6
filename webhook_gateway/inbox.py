"""The durable inbox: the only module that touches the gateway's storage.

Each accepted delivery becomes one row, unique on (route, event id), written and
committed before the sender gets its 2xx. The dispatcher claims rows with a lease so
that several gateway processes can share one MySQL inbox. Every dispatch attempt is
kept in `webhook_event_attempts`, and every replay request in `webhook_event_replays`
until the dispatcher has created its run.

The schema is owned by the Alembic migrations in `webhook_gateway/migrations/`;
`metadata` below must match their head revision (a test compares the two).
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

from webhook_gateway.errors import (
    EventNotFoundError,
    InvalidQueryError,
    ReplayConflictError,
)
from webhook_gateway.group_commit import GroupCommitter

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "REPLAYABLE_STATUSES",
    "AttemptRecord",
    "DispatchJob",
    "EventPage",
    "EventQuery",
    "EventRecord",
    "EventStatus",
    "Inbox",
    "ReplayRecord",
    "RunCheck",
    "create_inbox_engine",
    "metadata",
]

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

_LONG_BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# MySQL's plain DATETIME drops fractions of a second, which would reorder events
# received within one second and blur lease expiry; DATETIME(6) keeps microseconds.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb"
)


class EventStatus(str, enum.Enum):
    """Stage of an event on its way from delivery to a finished flow run.

    The status follows the event's latest run: the first run, or the newest replay.
    """

    RECEIVED = "received"
    REPLAYING = "replaying"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    IGNORED = "ignored"
    DEAD = "dead"


REPLAY_PENDING = "pending"
PENDING_STATUSES = (EventStatus.RECEIVED.value,)
ACTIVE_RUN_STATUSES = (EventStatus.DISPATCHED.value, EventStatus.RUNNING.value)
# Statuses in which no run is being created or running, so a replay cannot race one.
REPLAYABLE_STATUSES = (
    EventStatus.COMPLETED.value,
    EventStatus.FAILED.value,
    EventStatus.CRASHED.value,
    EventStatus.CANCELLED.value,
    EventStatus.REJECTED.value,
    EventStatus.DEAD.value,
)
MAX_PAGE_SIZE = 500
# Statuses whose run ended without success; the run's state message is kept for them.
UNSUCCESSFUL_RUN_STATUSES = (
    EventStatus.FAILED,
    EventStatus.CRASHED,
    EventStatus.CANCELLED,
)
# A run's state message can hold a whole traceback; keep its start.
MAX_RUN_ERROR_LENGTH = 2000

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
    sa.Column("received_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
    sa.Column("last_error", _LONG_TEXT, nullable=True),
    sa.Column("flow_run_id", sa.String(36), nullable=True),
    sa.Column("latest_flow_run_id", sa.String(36), nullable=True),
    sa.Column("dispatched_at", TIMESTAMP, nullable=True),
    sa.Column("run_checked_at", TIMESTAMP, nullable=True),
    sa.Column("replay_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("body_purged_at", TIMESTAMP, nullable=True),
    sa.UniqueConstraint("route", "event_id", name="uq_webhook_events_route_event"),
    sa.Index("ix_webhook_events_pending", "status", "next_attempt_at"),
    sa.Index("ix_webhook_events_run_check", "status", "run_checked_at"),
    sa.Index("ix_webhook_events_received", "received_at", "id"),
    sa.Index("ix_webhook_events_route_received", "route", "received_at"),
)

# Compiled once: building the statement per delivery showed up in ingest profiles.
_INSERT_EVENT = events_table.insert()

attempts_table = sa.Table(
    "webhook_event_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "webhook_event_id",
        sa.String(32),
        sa.ForeignKey(
            "webhook_events.id",
            name="fk_webhook_event_attempts_event",
            ondelete="CASCADE",
        ),
        nullable=False,
    ),
    sa.Column("replay_number", sa.Integer, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("error", _LONG_TEXT, nullable=True),
    sa.Column("flow_run_id", sa.String(36), nullable=True),
    sa.Column("dispatcher", sa.String(64), nullable=False),
    sa.Index("ix_webhook_event_attempts_event", "webhook_event_id", "id"),
)

replays_table = sa.Table(
    "webhook_event_replays",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column(
        "webhook_event_id",
        sa.String(32),
        sa.ForeignKey(
            "webhook_events.id",
            name="fk_webhook_event_replays_event",
            ondelete="CASCADE",
        ),
        nullable=False,
    ),
    sa.Column("replay_number", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("requested_by", sa.String(100), nullable=True),
    sa.Column("parameters", sa.JSON, nullable=True),
    sa.Column("replayed_flow_run_id", sa.String(36), nullable=True),
    sa.Column("flow_run_id", sa.String(36), nullable=True),
    sa.Column("requested_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
    sa.Column("last_error", _LONG_TEXT, nullable=True),
    sa.UniqueConstraint(
        "webhook_event_id", "replay_number", name="uq_webhook_event_replays_number"
    ),
    sa.Index("ix_webhook_event_replays_pending", "status", "next_attempt_at"),
    sa.Index("ix_webhook_event_replays_flow_run", "flow_run_id"),
)


@dataclass(frozen=True)
class EventRecord:
    """One stored event, as read from the inbox.

    `flow_run_id` is the run of the first dispatch (key `<route>:<event id>`).
    `latest_flow_run_id` is the run whose state `status` shows. Once the event has
    been replayed, that is the newest replay's run.
    """

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
    latest_flow_run_id: str | None = None
    dispatched_at: datetime | None = None
    replay_count: int = 0
    body_purged_at: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """The key that makes Prefect create one flow run per event."""
        return f"{self.route}:{self.event_id}"


@dataclass(frozen=True)
class ReplayRecord:
    """One replay of an event: a new run with key `<route>:<event id>:replay:<n>`."""

    id: str
    webhook_event_id: str
    replay_number: int
    status: str
    requested_by: str | None
    parameters: dict[str, Any] | None
    replayed_flow_run_id: str | None
    flow_run_id: str | None
    requested_at: datetime
    updated_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class AttemptRecord:
    """One try at creating a flow run, for the first dispatch or a replay."""

    id: int
    webhook_event_id: str
    replay_number: int | None
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error: str | None
    flow_run_id: str | None
    dispatcher: str


@dataclass(frozen=True)
class DispatchJob:
    """A claimed unit of dispatch work: an event's first run or one of its replays."""

    event: EventRecord
    replay: ReplayRecord | None = None

    @property
    def idempotency_key(self) -> str:
        """`<route>:<event id>`, or `<route>:<event id>:replay:<n>` for a replay."""
        if self.replay is None:
            return self.event.idempotency_key
        return f"{self.event.idempotency_key}:replay:{self.replay.replay_number}"

    @property
    def parameters(self) -> dict[str, Any]:
        """The flow run parameters; a replay uses those stored with its request."""
        if self.replay is not None and self.replay.parameters is not None:
            return self.replay.parameters
        return self.event.parameters or {}

    @property
    def attempts(self) -> int:
        """Attempts made so far for this job."""
        return self.replay.attempts if self.replay else self.event.attempts

    @property
    def replay_number(self) -> int | None:
        """The replay's number, or None for the first dispatch."""
        return self.replay.replay_number if self.replay else None


@dataclass(frozen=True)
class RunCheck:
    """An event whose latest run the dispatcher should read from Prefect."""

    event_id: str
    route: str
    flow_run_id: str
    status: str


@dataclass(frozen=True)
class EventPage:
    """One page of an event listing, newest first."""

    events: list[EventRecord]
    next_cursor: str | None = None


@dataclass(frozen=True)
class EventQuery:
    """Filters for listing events; every field is optional."""

    route: str | None = None
    statuses: Sequence[str] = field(default_factory=tuple)
    since: datetime | None = None
    until: datetime | None = None
    event_id: str | None = None
    flow_run_id: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _truncate_error(error: str) -> str:
    if len(error) <= MAX_RUN_ERROR_LENGTH:
        return error
    return error[: MAX_RUN_ERROR_LENGTH - 1] + "…"


def _as_utc(value: datetime) -> datetime:
    # SQLite and MySQL hand back naive datetimes; every stored value is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _optional_utc(value: datetime | None) -> datetime | None:
    return _as_utc(value) if value is not None else None


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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
        latest_flow_run_id=mapping["latest_flow_run_id"],
        dispatched_at=_optional_utc(mapping["dispatched_at"]),
        replay_count=mapping["replay_count"],
        body_purged_at=_optional_utc(mapping["body_purged_at"]),
    )


def _replay_from_row(row: sa.Row[Any]) -> ReplayRecord:
    mapping = row._mapping
    return ReplayRecord(
        id=mapping["id"],
        webhook_event_id=mapping["webhook_event_id"],
        replay_number=mapping["replay_number"],
        status=mapping["status"],
        requested_by=mapping["requested_by"],
        parameters=mapping["parameters"],
        replayed_flow_run_id=mapping["replayed_flow_run_id"],
        flow_run_id=mapping["flow_run_id"],
        requested_at=_as_utc(mapping["requested_at"]),
        updated_at=_as_utc(mapping["updated_at"]),
        attempts=mapping["attempts"],
        next_attempt_at=_as_utc(mapping["next_attempt_at"]),
        last_error=mapping["last_error"],
    )


def _attempt_from_row(row: sa.Row[Any]) -> AttemptRecord:
    mapping = row._mapping
    return AttemptRecord(
        id=mapping["id"],
        webhook_event_id=mapping["webhook_event_id"],
        replay_number=mapping["replay_number"],
        attempt=mapping["attempt"],
        started_at=_as_utc(mapping["started_at"]),
        finished_at=_as_utc(mapping["finished_at"]),
        outcome=mapping["outcome"],
        error=mapping["error"],
        flow_run_id=mapping["flow_run_id"],
        dispatcher=mapping["dispatcher"],
    )


def encode_cursor(event: EventRecord) -> str:
    """Return an opaque cursor that continues a listing after `event`."""
    raw = f"{event.received_at.isoformat()}|{event.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Split a cursor from `encode_cursor` into its timestamp and event id.

    Raises:
        InvalidQueryError: The cursor was not made by `encode_cursor`.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, id = raw.partition("|")
        return to_utc(datetime.fromisoformat(stamp)), id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidQueryError(
            f"cursor {cursor!r} is invalid; pass the next_cursor of a previous page"
        ) from None


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
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(connection: sa.Connection) -> None:
            # Straight to the driver: SQLAlchemy's statement machinery cost as much
            # as the insert itself in ingest profiles.
            connection.connection.dbapi_connection.execute("BEGIN IMMEDIATE")

        return engine
    # Ten pooled connections cover the group-commit writer, read lookups and the
    # dispatcher threads, so requests do not open (and TLS-handshake) new ones.
    return sa.create_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_recycle=3600
    )


class Inbox:
    """Store, claim and update webhook events, their attempts and replays."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite takes one writer at a time. Queuing this process's writers on a
        # lock avoids SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._write_lock: threading.Lock | None = (
            threading.Lock() if engine.dialect.name == "sqlite" else None
        )
        self._group_committer = GroupCommitter(self._insert_events, self._insert_event)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """Open a write transaction, one at a time per process on SQLite."""
        if self._write_lock is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def upgrade_schema(self) -> None:
        """Bring the database to the newest migration, keeping its data."""
        from webhook_gateway.migrations import upgrade_database

        upgrade_database(self.engine)

    # -- receiving -------------------------------------------------------------

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
        record = EventRecord(
            id=uuid.uuid4().hex,
            route=route,
            event_id=event_id,
            status=status.value,
            deployment=deployment,
            body=body,
            headers=headers,
            query=query,
            parameters=parameters,
            received_at=now,
            updated_at=now,
            attempts=0,
            next_attempt_at=now,
            last_error=last_error,
            flow_run_id=None,
        )
        values = {
            name: getattr(record, name)
            for name in EventRecord.__dataclass_fields__
            if name in events_table.c
        }
        if self._group_committer.insert(values):
            return record, True
        existing = self.get_by_event_id(route, event_id)
        if existing is None:
            raise RuntimeError(
                f"event {event_id!r} on route {route!r} was reported as a duplicate "
                "but no stored event has that id"
            )
        return existing, False

    def _insert_events(self, rows: Sequence[dict[str, Any]]) -> None:
        with self.begin() as connection:
            connection.execute(_INSERT_EVENT, list(rows))

    def _insert_event(self, row: dict[str, Any]) -> None:
        with self.begin() as connection:
            connection.execute(_INSERT_EVENT, row)

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

    # -- claiming ----------------------------------------------------------------

    def claim_due(
        self, *, owner: str, limit: int, lease_seconds: float
    ) -> list[EventRecord]:
        """Lease up to `limit` pending events that are due, oldest first.

        On MySQL and MariaDB the rows are locked with `FOR UPDATE SKIP LOCKED`, so
        gateways sharing one inbox claim disjoint batches. SQLite has one writer at a
        time, which gives the same guarantee.
        """
        ids = self._lease(events_table, PENDING_STATUSES, owner, limit, lease_seconds)
        if not ids:
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(events_table)
                .where(events_table.c.id.in_(ids))
                .order_by(events_table.c.next_attempt_at)
            ).all()
        return [_record_from_row(row) for row in rows]

    def claim_due_replays(
        self, *, owner: str, limit: int, lease_seconds: float
    ) -> list[DispatchJob]:
        """Lease up to `limit` pending replays that are due, with their events."""
        ids = self._lease(replays_table, (REPLAY_PENDING,), owner, limit, lease_seconds)
        if not ids:
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(replays_table, events_table)
                .join(
                    events_table, events_table.c.id == replays_table.c.webhook_event_id
                )
                .where(replays_table.c.id.in_(ids))
                .order_by(replays_table.c.next_attempt_at)
            ).all()
        jobs = []
        for row in rows:
            # Both tables have id, status, parameters...: read each by its column.
            replay_values = {
                column.name: row._mapping[column] for column in replays_table.c
            }
            event_values = {
                column.name: row._mapping[column] for column in events_table.c
            }
            jobs.append(
                DispatchJob(
                    event=_record_from_row(_MappingRow(event_values)),
                    replay=_replay_from_row(_MappingRow(replay_values)),
                )
            )
        return jobs

    def _lease(
        self,
        table: sa.Table,
        statuses: Sequence[str],
        owner: str,
        limit: int,
        lease_seconds: float,
    ) -> list[str]:
        now = _utcnow()
        with self.begin() as connection:
            ids = list(
                connection.execute(
                    sa.select(table.c.id)
                    .where(
                        table.c.status.in_(list(statuses)),
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
            if ids:
                connection.execute(
                    table.update()
                    .where(table.c.id.in_(ids))
                    .values(
                        lease_owner=owner,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    )
                )
        return ids

    # -- attempt outcomes -----------------------------------------------------------

    def mark_dispatched(
        self,
        id: str,
        *,
        owner: str,
        flow_run_id: str,
        started_at: datetime | None = None,
        replay_id: str | None = None,
    ) -> bool:
        """Record the flow run created for an event or replay and release its lease.

        Returns:
            False when the lease had expired and another dispatcher took the job.
        """
        status = EventStatus.DISPATCHED.value
        now = _utcnow()
        event_values: dict[str, Any] = {
            "status": status,
            "latest_flow_run_id": flow_run_id,
            "run_checked_at": None,
            "last_error": None,
            "updated_at": now,
        }
        if replay_id is None:
            event_values.update(flow_run_id=flow_run_id, dispatched_at=now)
        return self._finish_attempt(
            id,
            replay_id=replay_id,
            owner=owner,
            started_at=started_at,
            outcome="created",
            error=None,
            flow_run_id=flow_run_id,
            job_values={
                "status": status,
                "last_error": None,
                "flow_run_id": flow_run_id,
            },
            event_values=event_values,
        )

    def mark_retry(
        self,
        id: str,
        *,
        owner: str,
        error: str,
        next_attempt_at: datetime,
        started_at: datetime | None = None,
        replay_id: str | None = None,
    ) -> bool:
        """Count a failed attempt and schedule the next one."""
        return self._finish_attempt(
            id,
            replay_id=replay_id,
            owner=owner,
            started_at=started_at,
            outcome="retry",
            error=error,
            flow_run_id=None,
            job_values={"last_error": error, "next_attempt_at": next_attempt_at},
            event_values={"last_error": error, "updated_at": _utcnow()},
        )

    def mark_final(
        self,
        id: str,
        *,
        owner: str,
        status: EventStatus,
        error: str,
        started_at: datetime | None = None,
        replay_id: str | None = None,
    ) -> bool:
        """End an event's (or replay's) dispatch as rejected or dead, with the error."""
        return self._finish_attempt(
            id,
            replay_id=replay_id,
            owner=owner,
            started_at=started_at,
            outcome=status.value,
            error=error,
            flow_run_id=None,
            job_values={"status": status.value, "last_error": error},
            event_values={
                "status": status.value,
                "last_error": error,
                "updated_at": _utcnow(),
            },
        )

    def _finish_attempt(
        self,
        id: str,
        *,
        replay_id: str | None,
        owner: str,
        started_at: datetime | None,
        outcome: str,
        error: str | None,
        flow_run_id: str | None,
        job_values: dict[str, Any],
        event_values: dict[str, Any],
    ) -> bool:
        now = _utcnow()
        table = events_table if replay_id is None else replays_table
        job_id = id if replay_id is None else replay_id
        values = job_values if replay_id is not None else {**job_values, **event_values}
        with self.begin() as connection:
            # The lease guard makes a dispatcher whose lease ran out lose the
            # update, so only the current lease holder records the outcome.
            result = connection.execute(
                table.update()
                .where(table.c.id == job_id, table.c.lease_owner == owner)
                .values(
                    {
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "updated_at": now,
                        "attempts": table.c.attempts + 1,
                        **values,
                    }
                )
            )
            if result.rowcount == 0:
                logger.warning(
                    "event %s: lease held by %s was lost before the update",
                    id,
                    owner,
                    extra={"event_id": id, "flow_run_id": flow_run_id},
                )
                return False
            if replay_id is not None:
                connection.execute(
                    events_table.update()
                    .where(events_table.c.id == id)
                    .values(**event_values)
                )
            attempt_number = connection.execute(
                sa.select(table.c.attempts).where(table.c.id == job_id)
            ).scalar_one()
            replay_number = None
            if replay_id is not None:
                replay_number = connection.execute(
                    sa.select(replays_table.c.replay_number).where(
                        replays_table.c.id == replay_id
                    )
                ).scalar_one()
            connection.execute(
                attempts_table.insert().values(
                    webhook_event_id=id,
                    replay_number=replay_number,
                    attempt=attempt_number,
                    started_at=started_at or now,
                    finished_at=now,
                    outcome=outcome,
                    error=error,
                    flow_run_id=flow_run_id,
                    dispatcher=owner[:64],
                )
            )
        return True

    # -- run state ---------------------------------------------------------------------

    def list_runs_to_check(self, *, limit: int) -> list[RunCheck]:
        """Return events with a run in flight, the least recently checked first."""
        table = events_table
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    table.c.id,
                    table.c.route,
                    table.c.latest_flow_run_id,
                    table.c.status,
                )
                .where(
                    table.c.status.in_(ACTIVE_RUN_STATUSES),
                    table.c.latest_flow_run_id.is_not(None),
                )
                # NULLs sort first on SQLite and MySQL, so new runs are read first.
                .order_by(table.c.run_checked_at, table.c.updated_at)
                .limit(limit)
            ).all()
        return [RunCheck(row[0], row[1], row[2], row[3]) for row in rows]

    def apply_run_states(
        self,
        checked: Sequence[RunCheck],
        states: dict[str, EventStatus],
        errors: dict[str, str] | None = None,
    ) -> int:
        """Store the statuses read from Prefect and note when each event was checked.

        Args:
            checked: The events whose runs were read.
            states: New status per flow run id, only for runs whose status changed.
            errors: The run's state name and message per flow run id, such as
                "Failed: Flow run encountered an exception: ...". It is stored as
                `last_error` (cut to `MAX_RUN_ERROR_LENGTH` characters) when the
                new status is failed, crashed or cancelled. Without an entry, such
                an event gets its state name ("Failed") as `last_error`.

        Returns:
            How many events changed status.
        """
        now = _utcnow()
        changed = 0
        with self.begin() as connection:
            for check in checked:
                status = states.get(check.flow_run_id)
                values: dict[str, Any] = {"run_checked_at": now}
                replay_values: dict[str, Any] = {}
                if status is not None:
                    values.update(status=status.value, updated_at=now)
                    replay_values.update(status=status.value, updated_at=now)
                if status in UNSUCCESSFUL_RUN_STATUSES:
                    error = (errors or {}).get(check.flow_run_id)
                    error = _truncate_error(error or status.value.capitalize())
                    values["last_error"] = error
                    replay_values["last_error"] = error
                result = connection.execute(
                    events_table.update()
                    .where(
                        events_table.c.id == check.event_id,
                        # A replay requested meanwhile moved the event to a new run.
                        events_table.c.latest_flow_run_id == check.flow_run_id,
                        events_table.c.status.in_(ACTIVE_RUN_STATUSES),
                    )
                    .values(**values)
                )
                if status is None or result.rowcount == 0:
                    continue
                changed += 1
                connection.execute(
                    replays_table.update()
                    .where(replays_table.c.flow_run_id == check.flow_run_id)
                    .values(**replay_values)
                )
        return changed

    # -- replays -------------------------------------------------------------------------

    def request_replay(
        self,
        id: str,
        *,
        requested_by: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> ReplayRecord:
        """Store a pending replay of a finished event; the dispatcher creates the run.

        Args:
            id: The gateway's event id.
            requested_by: Who asked, for the record (for example "admin-api").
            parameters: Parameters for the new run. None: the event's own.

        Raises:
            EventNotFoundError: No event has this id.
            ReplayConflictError: The event is still waiting for or running a run.
        """
        now = _utcnow()
        table = events_table
        with self.begin() as connection:
            row = connection.execute(
                sa.select(table).where(table.c.id == id).with_for_update()
            ).first()
            if row is None:
                raise EventNotFoundError(f"no event with id {id!r}")
            event = _record_from_row(row)
            if event.status not in REPLAYABLE_STATUSES:
                raise ReplayConflictError(
                    f"event {id!r} is {event.status!r}; only events in "
                    f"{list(REPLAYABLE_STATUSES)} can be replayed, so wait until its "
                    "run has finished",
                    status=event.status,
                )
            run_parameters = parameters if parameters is not None else event.parameters
            if run_parameters is None:
                raise ReplayConflictError(
                    f"event {id!r} has no stored parameters because its templates "
                    "failed; fix the route's templates and replay it with "
                    "rerender=true",
                    status=event.status,
                )
            replay = ReplayRecord(
                id=uuid.uuid4().hex,
                webhook_event_id=id,
                replay_number=event.replay_count + 1,
                status=REPLAY_PENDING,
                requested_by=requested_by,
                parameters=run_parameters,
                replayed_flow_run_id=event.latest_flow_run_id,
                flow_run_id=None,
                requested_at=now,
                updated_at=now,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
            )
            connection.execute(
                replays_table.insert().values(
                    **{
                        name: getattr(replay, name)
                        for name in ReplayRecord.__dataclass_fields__
                    }
                )
            )
            connection.execute(
                table.update()
                .where(table.c.id == id)
                .values(
                    status=EventStatus.REPLAYING.value,
                    replay_count=replay.replay_number,
                    last_error=None,
                    updated_at=now,
                )
            )
        return replay

    def list_replays(self, id: str) -> list[ReplayRecord]:
        """Return an event's replays, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(replays_table)
                .where(replays_table.c.webhook_event_id == id)
                .order_by(replays_table.c.replay_number)
            ).all()
        return [_replay_from_row(row) for row in rows]

    def list_attempts(self, id: str) -> list[AttemptRecord]:
        """Return every dispatch attempt of an event and its replays, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(attempts_table)
                .where(attempts_table.c.webhook_event_id == id)
                .order_by(attempts_table.c.id)
            ).all()
        return [_attempt_from_row(row) for row in rows]

    # -- listing ---------------------------------------------------------------------------

    def find_events(
        self,
        query: EventQuery,
        *,
        limit: int = 100,
        cursor: str | None = None,
        max_replays: int | None = None,
    ) -> EventPage:
        """Return events matching `query`, newest first, one page at a time.

        Args:
            query: Filters; `since` is inclusive and `until` exclusive.
            limit: Page size, at most 500.
            cursor: The `next_cursor` of the previous page.
            max_replays: Only events replayed fewer than this many times.

        Raises:
            InvalidQueryError: The limit is out of range or the cursor is invalid.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidQueryError(
                f"limit {limit!r} is out of range; use 1 to {MAX_PAGE_SIZE}"
            )
        table = events_table
        conditions: list[Any] = []
        if query.route:
            conditions.append(table.c.route == query.route)
        if query.statuses:
            conditions.append(table.c.status.in_(list(query.statuses)))
        if query.since:
            conditions.append(table.c.received_at >= to_utc(query.since))
        if query.until:
            conditions.append(table.c.received_at < to_utc(query.until))
        if query.event_id:
            conditions.append(table.c.event_id == query.event_id)
        if query.flow_run_id:
            conditions.append(
                sa.or_(
                    table.c.flow_run_id == query.flow_run_id,
                    table.c.latest_flow_run_id == query.flow_run_id,
                )
            )
        if max_replays is not None:
            conditions.append(table.c.replay_count < max_replays)
        if cursor:
            stamp, last_id = decode_cursor(cursor)
            conditions.append(
                sa.or_(
                    table.c.received_at < stamp,
                    sa.and_(table.c.received_at == stamp, table.c.id < last_id),
                )
            )
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table)
                .where(*conditions)
                .order_by(table.c.received_at.desc(), table.c.id.desc())
                .limit(limit + 1)
            ).all()
        events = [_record_from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(events[-1]) if len(rows) > limit else None
        return EventPage(events=events, next_cursor=next_cursor)

    def count_by_status(self, statuses: Sequence[str] | None = None) -> dict[str, int]:
        """Count events per status."""
        table = events_table
        query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
        if statuses:
            query = query.where(table.c.status.in_(list(statuses)))
        with self.engine.connect() as connection:
            return {status: count for status, count in connection.execute(query)}

    def count_backlog(self) -> tuple[int, int]:
        """Count events and replays still waiting for their run to be created.

        Both counts use the `(status, next_attempt_at)` indexes.
        """
        with self.engine.connect() as connection:
            events = connection.execute(
                sa.select(sa.func.count())
                .select_from(events_table)
                .where(events_table.c.status.in_(PENDING_STATUSES))
            ).scalar_one()
            replays = connection.execute(
                sa.select(sa.func.count())
                .select_from(replays_table)
                .where(replays_table.c.status == REPLAY_PENDING)
            ).scalar_one()
        return int(events), int(replays)

    # -- retention -----------------------------------------------------------------------

    def purge_bodies(self, *, older_than: datetime, limit: int = 1000) -> int:
        """Drop the bodies of completed events received before `older_than`.

        Metadata, headers and parameters stay, so the event can still be listed and
        replayed. At most `limit` events are purged per call to keep locks short.

        Returns:
            How many bodies were purged.
        """
        table = events_table
        now = _utcnow()
        with self.begin() as connection:
            ids = list(
                connection.execute(
                    sa.select(table.c.id)
                    .where(
                        table.c.status == EventStatus.COMPLETED.value,
                        table.c.received_at < to_utc(older_than),
                        table.c.body_purged_at.is_(None),
                    )
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return 0
            connection.execute(
                table.update()
                .where(table.c.id.in_(ids))
                .values(body=None, body_purged_at=now)
            )
        return len(ids)


class _MappingRow:
    """Adapter giving a plain dict the `_mapping` attribute of a Row."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values
