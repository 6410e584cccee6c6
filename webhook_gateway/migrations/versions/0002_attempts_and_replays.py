"""Add dispatch attempts, replays, run tracking and body retention.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Existing events keep their data: `latest_flow_run_id` starts as `flow_run_id` and
`replay_count` as 0. On MySQL and MariaDB the timestamps become DATETIME(6), because
plain DATETIME drops fractions of a second.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb"
)
_EVENT_TIMESTAMPS = {
    "received_at": False,
    "updated_at": False,
    "next_attempt_at": False,
    "lease_expires_at": True,
}


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if _is_mysql():
        for name, nullable in _EVENT_TIMESTAMPS.items():
            op.alter_column(
                "webhook_events",
                name,
                type_=mysql.DATETIME(fsp=6),
                existing_type=mysql.DATETIME(),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("webhook_events") as batch:
        batch.add_column(sa.Column("latest_flow_run_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("dispatched_at", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("run_checked_at", _TIMESTAMP, nullable=True))
        batch.add_column(
            sa.Column("replay_count", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("body_purged_at", _TIMESTAMP, nullable=True))
    op.execute(
        "UPDATE webhook_events SET latest_flow_run_id = flow_run_id, "
        "dispatched_at = CASE WHEN flow_run_id IS NULL THEN NULL ELSE updated_at END"
    )
    op.create_index(
        "ix_webhook_events_run_check", "webhook_events", ["status", "run_checked_at"]
    )
    op.create_index(
        "ix_webhook_events_received", "webhook_events", ["received_at", "id"]
    )
    op.create_index(
        "ix_webhook_events_route_received", "webhook_events", ["route", "received_at"]
    )

    op.create_table(
        "webhook_event_attempts",
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
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("finished_at", _TIMESTAMP, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("error", _LONG_TEXT, nullable=True),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
        sa.Column("dispatcher", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_webhook_event_attempts_event",
        "webhook_event_attempts",
        ["webhook_event_id", "id"],
    )

    op.create_table(
        "webhook_event_replays",
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
        sa.Column("requested_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _TIMESTAMP, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", _TIMESTAMP, nullable=True),
        sa.Column("last_error", _LONG_TEXT, nullable=True),
        sa.UniqueConstraint(
            "webhook_event_id", "replay_number", name="uq_webhook_event_replays_number"
        ),
    )
    op.create_index(
        "ix_webhook_event_replays_pending",
        "webhook_event_replays",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_webhook_event_replays_flow_run", "webhook_event_replays", ["flow_run_id"]
    )


def downgrade() -> None:
    op.drop_table("webhook_event_replays")
    op.drop_table("webhook_event_attempts")
    op.drop_index("ix_webhook_events_route_received", table_name="webhook_events")
    op.drop_index("ix_webhook_events_received", table_name="webhook_events")
    op.drop_index("ix_webhook_events_run_check", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        for name in (
            "body_purged_at",
            "replay_count",
            "run_checked_at",
            "dispatched_at",
            "latest_flow_run_id",
        ):
            batch.drop_column(name)
