"""Alembic environment: runs on the connection that `upgrade_database` passes in."""

from __future__ import annotations

from alembic import context

from webhook_gateway.inbox import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run the inbox migrations through `webhook-gateway db upgrade` (or "
        "webhook_gateway.migrations.upgrade_database), which supply the connection"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
