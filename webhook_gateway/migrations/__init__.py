"""Alembic migrations of the inbox schema, packaged so the installed CLI can run them.

`upgrade_database` is what the gateway runs at startup and what
`webhook-gateway db upgrade` runs. Two gateways starting at once are serialized: on
MySQL and MariaDB by a named lock (`GET_LOCK`), on SQLite by the write lock that the
inbox engine takes with `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "FIRST_REVISION",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade_database",
]

logger = logging.getLogger(__name__)

FIRST_REVISION = "0001"
MIGRATION_LOCK_NAME = "webhook_gateway_migrations"
MIGRATION_LOCK_TIMEOUT_SECONDS = 120


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config for the packaged scripts, bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", "webhook_gateway:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the newest revision of the packaged migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("the packaged migrations have no head revision")
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the database's revision, or None before its first migration."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to `revision`, keeping its data.

    A database created by the first gateway version (tables but no
    `alembic_version`) is stamped with the first revision before upgrading.
    """
    with engine.begin() as connection, _migration_lock(connection):
        config = alembic_config(connection)
        tables = set(sa.inspect(connection).get_table_names())
        if "webhook_events" in tables and "alembic_version" not in tables:
            logger.info(
                "inbox has tables but no migration version; stamping %s", FIRST_REVISION
            )
            command.stamp(config, FIRST_REVISION)
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        logger.info("inbox schema upgraded from %s to %s", before, after)


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    if connection.dialect.name not in ("mysql", "mariadb"):
        # SQLite: the transaction began with BEGIN IMMEDIATE and holds the write lock.
        yield
        return
    acquired = connection.exec_driver_sql(
        f"SELECT GET_LOCK('{MIGRATION_LOCK_NAME}', {MIGRATION_LOCK_TIMEOUT_SECONDS})"
    ).scalar()
    if acquired != 1:
        raise RuntimeError(
            f"could not take the migration lock {MIGRATION_LOCK_NAME!r} within "
            f"{MIGRATION_LOCK_TIMEOUT_SECONDS} s; another gateway may be stuck "
            "migrating this database"
        )
    try:
        yield
    finally:
        connection.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATION_LOCK_NAME}')")
