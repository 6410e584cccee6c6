"""Throwaway PostgreSQL databases for a Prefect server under test or benchmark.

Prefect on SQLite returns 503 "database is locked" once several clients create
runs at the same time, so tests and benchmarks use the local PostgreSQL when one
is reachable.
"""

from __future__ import annotations

import asyncio
import os
import uuid

__all__ = ["POSTGRES_SERVER_URL", "create_postgres_database", "drop_postgres_database"]

POSTGRES_SERVER_URL = os.environ.get(
    "WEBHOOK_GATEWAY_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
)


def create_postgres_database(server_url: str = POSTGRES_SERVER_URL) -> str | None:
    """Create a fresh database and return its asyncpg URL, or None if unreachable."""
    import asyncpg

    name = f"prefect_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        connection = await asyncpg.connect(server_url, timeout=5)
        try:
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    base = server_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base.rsplit('/', 1)[0]}/{name}"


def drop_postgres_database(
    database_url: str, server_url: str = POSTGRES_SERVER_URL
) -> None:
    """Drop a database made by `create_postgres_database`, closing its sessions."""
    import asyncpg

    name = database_url.rsplit("/", 1)[1]

    async def drop() -> None:
        connection = await asyncpg.connect(server_url, timeout=5)
        try:
            await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await connection.close()

    asyncio.run(drop())
