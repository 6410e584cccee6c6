"""Customer feedback rows and the local Feishu outbox, keyed by event id.

Both tables live in the records database (`open_records_database`): MySQL or
MariaDB through pymysql when a block is configured, SQLite otherwise. A rerun of
the same event updates its row instead of adding one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import IntegrityError

from flows.tasks.feedback import FeedbackSubmission
from flows.tasks.records import upsert_row
from flows.tasks.sentiment import FeedbackAnalysis
from flows.tasks.storage import RecordsDatabase

__all__ = [
    "NotificationStatus",
    "customer_feedback",
    "feishu_outbox",
    "queue_outbox_message",
    "read_feedback_record",
    "record_feedback_outcome",
    "store_feedback_record",
]

# not_required: the rules post nothing for this feedback. pending: not posted yet.
# delivered: the Feishu bot accepted it. failed: the bot rejected it or stayed
# unreachable after the retries (see the code and error columns).
# outbox: no bot is configured, so the message waits in the feishu_outbox table.
NotificationStatus = Literal["not_required", "pending", "delivered", "failed", "outbox"]

feedback_metadata = sa.MetaData()

customer_feedback = sa.Table(
    "customer_feedback",
    feedback_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(255), nullable=False, unique=True),
    sa.Column("route", sa.String(100), nullable=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    # The only column of these tables that contains the contact in clear text.
    sa.Column("contact", sa.String(320), nullable=True),
    sa.Column("product", sa.String(255), nullable=True),
    sa.Column("page", sa.Text, nullable=True),
    sa.Column("locale", sa.String(35), nullable=True),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("sentiment", sa.String(16), nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("topics", sa.JSON, nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("analyzer", sa.String(100), nullable=False),
    sa.Column("ticket_key", sa.String(64), nullable=True),
    sa.Column("ticket_url", sa.Text, nullable=True),
    sa.Column("notification_status", sa.String(16), nullable=False),
    sa.Column("notification_code", sa.Integer, nullable=True),
    sa.Column("notification_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

feishu_outbox = sa.Table(
    "feishu_outbox",
    feedback_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(255), nullable=False, unique=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def _create_tables(database: RecordsDatabase) -> None:
    feedback_metadata.create_all(database.engine)


def _utc(value: datetime | None) -> datetime | None:
    # MySQL DATETIME has no time zone, so every stored time is UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@task(
    name="store-feedback-record",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
)
def store_feedback_record(
    database: RecordsDatabase,
    *,
    submission: FeedbackSubmission,
    analysis: FeedbackAnalysis,
    route: str | None,
    notification_status: NotificationStatus,
) -> None:
    """Upsert the feedback and its analysis, keyed by the feedback id.

    `notification_status` is written only when the row is new, so a rerun keeps the
    ticket and notification columns of the earlier run.
    """
    logger = get_run_logger()
    _create_tables(database)
    now = datetime.now(UTC)
    values = {
        "route": route,
        "user_id": submission.user_id,
        "contact": submission.contact_value,
        "product": submission.product,
        "page": submission.page,
        "locale": submission.locale,
        "submitted_at": _utc(submission.submitted_at),
        "text": submission.text,
        "sentiment": analysis.sentiment,
        "score": analysis.score,
        "summary": analysis.summary,
        "topics": list(analysis.topics),
        "urgency": analysis.urgency,
        "analyzer": analysis.analyzer,
        "updated_at": now,
    }
    with database.engine.begin() as connection:
        upsert_row(
            connection,
            customer_feedback,
            {"event_id": submission.feedback_id},
            values,
            insert_values={
                "created_at": now,
                "notification_status": notification_status,
            },
        )
    logger.info(
        "stored feedback %s (sentiment=%s, analyzer=%s) in %s",
        submission.feedback_id,
        analysis.sentiment,
        analysis.analyzer,
        database.description,
    )


@task(
    name="record-feedback-outcome",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
)
def record_feedback_outcome(
    database: RecordsDatabase,
    event_id: str,
    *,
    ticket_key: str | None,
    ticket_url: str | None,
    notification_status: NotificationStatus,
    notification_code: int | None = None,
    notification_error: str | None = None,
) -> None:
    """Write the ticket and the notification result into the feedback's row.

    Raises:
        LookupError: No row exists for `event_id`; `store_feedback_record` runs first.
    """
    values = {
        "ticket_key": ticket_key,
        "ticket_url": ticket_url,
        "notification_status": notification_status,
        "notification_code": notification_code,
        "notification_error": notification_error,
        "updated_at": datetime.now(UTC),
    }
    with database.engine.begin() as connection:
        result = connection.execute(
            customer_feedback.update()
            .where(customer_feedback.c.event_id == event_id)
            .values(**values)
        )
    if not result.rowcount:
        raise LookupError(
            f"no customer_feedback row for event {event_id!r}; "
            "store_feedback_record must run first"
        )


@task(
    name="queue-outbox-message",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
)
def queue_outbox_message(database: RecordsDatabase, event_id: str, text: str) -> bool:
    """Keep a Feishu message in the local outbox table, once per event.

    Returns:
        True when the message was added, False when the event already had one.
    """
    _create_tables(database)
    row = {"event_id": event_id, "text": text, "created_at": datetime.now(UTC)}
    try:
        with database.engine.begin() as connection:
            connection.execute(feishu_outbox.insert().values(**row))
    except IntegrityError:
        return False
    return True


def read_feedback_record(
    database: RecordsDatabase, event_id: str
) -> dict[str, Any] | None:
    """Return the feedback row of an event as a dict, or None."""
    _create_tables(database)
    with database.engine.connect() as connection:
        row = connection.execute(
            sa.select(customer_feedback).where(customer_feedback.c.event_id == event_id)
        ).first()
    return dict(row._mapping) if row else None
