"""Delay records, upserted by event id so a rerun never duplicates one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import IntegrityError

from flows.tasks.storage import RecordsDatabase

__all__ = [
    "delay_records",
    "delay_shipment_updates",
    "delay_tickets",
    "insert_if_absent",
    "read_delay_record",
    "read_shipment_updates",
    "store_delay_record",
    "store_shipment_updates",
    "store_ticket_record",
    "upsert_row",
]

records_metadata = sa.MetaData()

delay_records = sa.Table(
    "delay_records",
    records_metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("route", sa.String(100), nullable=True),
    sa.Column("is_delay", sa.Boolean, nullable=False),
    sa.Column("materials", sa.JSON, nullable=False),
    sa.Column("delay_days", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("supplier", sa.String(255), nullable=True),
    sa.Column("original_date", sa.Date, nullable=True),
    sa.Column("new_date", sa.Date, nullable=True),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("analyzer", sa.String(100), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("sender", sa.String(255), nullable=True),
    sa.Column("ticket_key", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def upsert_row(
    connection: sa.Connection,
    table: sa.Table,
    key: dict[str, Any],
    values: dict[str, Any],
    *,
    insert_values: dict[str, Any] | None = None,
) -> None:
    """Update the row with `key`, or insert it; portable across SQLite and MySQL.

    `insert_values` (such as a creation time) are written only when inserting.
    """
    condition = sa.and_(*(table.c[name] == value for name, value in key.items()))
    result = connection.execute(table.update().where(condition).values(**values))
    if result.rowcount:
        return
    try:
        with connection.begin_nested():
            connection.execute(
                table.insert().values(**key, **values, **(insert_values or {}))
            )
    except IntegrityError:
        # Another run inserted the row between our update and insert.
        connection.execute(table.update().where(condition).values(**values))


@task(
    name="store-delay-record",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    # Idempotent writes; the engine in `database` cannot be hashed for a cache key.
    cache_policy=NO_CACHE,
)
def store_delay_record(
    database: RecordsDatabase,
    *,
    event_id: str,
    route: str | None,
    notice: Any,
    message: str,
    sender: str | None,
    ticket_key: str | None,
) -> None:
    """Upsert the delay record of one event."""
    logger = get_run_logger()
    records_metadata.create_all(database.engine, tables=[delay_records])
    now = datetime.now(UTC)
    values = {
        "route": route,
        "is_delay": notice.is_delay,
        "materials": list(notice.materials),
        "delay_days": notice.delay_days,
        "reason": notice.reason,
        "supplier": notice.supplier,
        "original_date": notice.original_date,
        "new_date": notice.new_date,
        "confidence": notice.confidence,
        "analyzer": notice.analyzer,
        "message": message,
        "sender": sender,
        "ticket_key": ticket_key,
        "updated_at": now,
    }
    with database.engine.begin() as connection:
        upsert_row(
            connection,
            delay_records,
            {"event_id": event_id},
            values,
            insert_values={"created_at": now},
        )
    logger.info(
        "stored delay record for event %s (materials=%s, days=%s) in %s",
        event_id,
        json.dumps(values["materials"], ensure_ascii=False),
        notice.delay_days,
        database.description,
    )


def read_delay_record(
    database: RecordsDatabase, event_id: str
) -> dict[str, Any] | None:
    """Return the delay record of an event as a dict, or None."""
    records_metadata.create_all(database.engine, tables=[delay_records])
    with database.engine.connect() as connection:
        row = connection.execute(
            sa.select(delay_records).where(delay_records.c.event_id == event_id)
        ).first()
    return dict(row._mapping) if row else None


delay_tickets = sa.Table(
    "delay_tickets",
    records_metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("ticket_key", sa.String(64), nullable=False),
    sa.Column("ticket_url", sa.String(1024), nullable=True),
    sa.Column("store", sa.String(32), nullable=False),
    sa.Column("assignee", sa.String(255), nullable=True),
    sa.Column("summary", sa.String(255), nullable=False),
    sa.Column("created_by_flow", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

delay_shipment_updates = sa.Table(
    "delay_shipment_updates",
    records_metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("shipment_id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("material", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("customer_locale", sa.String(35), nullable=False),
    sa.Column("tms", sa.String(32), nullable=False),
    sa.Column("delay_days", sa.Integer, nullable=False),
    sa.Column("business_days", sa.Boolean, nullable=False),
    sa.Column("previous_windows", sa.JSON, nullable=False),
    sa.Column("new_windows", sa.JSON, nullable=False),
    sa.Column("promised_date", sa.Date, nullable=False),
    sa.Column("promise_missed", sa.Boolean, nullable=False),
    sa.Column("replayed", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def insert_if_absent(
    connection: sa.Connection, table: sa.Table, values: dict[str, Any]
) -> bool:
    """Insert a row unless one with the same primary key exists; the first row wins.

    Returns:
        True when this call inserted the row.
    """
    key = {column.name: values[column.name] for column in table.primary_key.columns}
    condition = sa.and_(*(table.c[name] == value for name, value in key.items()))
    if connection.execute(
        sa.select(*table.primary_key.columns).where(condition)
    ).first():
        return False
    try:
        with connection.begin_nested():
            connection.execute(table.insert().values(**values))
    except IntegrityError:
        return False
    return True


@task(
    name="store-ticket-record",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    # Idempotent writes; the engine in `database` cannot be hashed for a cache key.
    cache_policy=NO_CACHE,
)
def store_ticket_record(
    database: RecordsDatabase,
    *,
    event_id: str,
    ticket: Any,
    store: str,
    assignee: str | None,
    summary: str,
) -> None:
    """Upsert the ticket of one event; `created_by_flow` keeps its first value."""
    records_metadata.create_all(database.engine, tables=[delay_tickets])
    now = datetime.now(UTC)
    with database.engine.begin() as connection:
        upsert_row(
            connection,
            delay_tickets,
            {"event_id": event_id},
            {
                "ticket_key": ticket.key,
                "ticket_url": ticket.url,
                "store": store,
                "assignee": assignee,
                "summary": summary,
                "updated_at": now,
            },
            insert_values={"created_by_flow": ticket.created, "created_at": now},
        )
    get_run_logger().info("stored ticket %s of event %s", ticket.key, event_id)


def read_shipment_updates(
    database: RecordsDatabase, event_id: str
) -> dict[str, dict[str, Any]]:
    """Return the recorded shipment updates of an event, keyed by shipment id."""
    records_metadata.create_all(database.engine, tables=[delay_shipment_updates])
    query = (
        sa.select(delay_shipment_updates)
        .where(delay_shipment_updates.c.event_id == event_id)
        .order_by(delay_shipment_updates.c.shipment_id)
    )
    with database.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return {row["shipment_id"]: dict(row) for row in rows}


@task(
    name="store-shipment-updates",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    # Idempotent writes; the engine in `database` cannot be hashed for a cache key.
    cache_policy=NO_CACHE,
)
def store_shipment_updates(
    database: RecordsDatabase, *, event_id: str, tms: str, outcomes: list[Any]
) -> dict[str, dict[str, Any]]:
    """Record each (reschedule, TMS result) pair once per event and shipment.

    The promise counts as missed when the delivery window the TMS stored ends after
    the promised date. A replayed request returns the TMS's stored windows, so the
    flag stays right even when the shipment list was read after the first move.

    Returns:
        Every recorded update of the event, keyed by shipment id.
    """
    records_metadata.create_all(database.engine, tables=[delay_shipment_updates])
    now = datetime.now(UTC)
    inserted = 0
    with database.engine.begin() as connection:
        for reschedule, result in outcomes:
            before = reschedule.shipment
            after = result.shipment
            inserted += insert_if_absent(
                connection,
                delay_shipment_updates,
                {
                    "event_id": event_id,
                    "shipment_id": before.id,
                    "order_id": before.order_id,
                    "material": before.material,
                    "customer_id": before.customer_id,
                    "customer_locale": before.customer_locale,
                    "tms": tms,
                    "delay_days": reschedule.delay_days,
                    "business_days": reschedule.business_days,
                    "previous_windows": _windows(before),
                    "new_windows": _windows(after),
                    "promised_date": after.promised_date,
                    "promise_missed": after.delivery_end.date() > after.promised_date,
                    "replayed": result.replayed,
                    "created_at": now,
                },
            )
    get_run_logger().info(
        "recorded %d new shipment updates of event %s (%d outcomes)",
        inserted,
        event_id,
        len(outcomes),
    )
    return read_shipment_updates(database, event_id)


def _windows(shipment: Any) -> dict[str, str]:
    names = ("pickup_start", "pickup_end", "delivery_start", "delivery_end")
    return {name: getattr(shipment, name).isoformat() for name in names}
