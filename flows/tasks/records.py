"""Delay records, upserted by event id so a rerun never duplicates one."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from prefect import get_run_logger, task
from sqlalchemy.exc import IntegrityError

from flows.tasks.storage import RecordsDatabase

__all__ = ["delay_records", "upsert_row", "store_delay_record", "read_delay_record"]

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


@task(name="store-delay-record", retries=3, retry_delay_seconds=[1, 5, 15])
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
    now = datetime.now(timezone.utc)
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


def read_delay_record(database: RecordsDatabase, event_id: str) -> dict[str, Any] | None:
    """Return the delay record of an event as a dict, or None."""
    records_metadata.create_all(database.engine, tables=[delay_records])
    with database.engine.connect() as connection:
        row = connection.execute(
            sa.select(delay_records).where(delay_records.c.event_id == event_id)
        ).first()
    return dict(row._mapping) if row else None
