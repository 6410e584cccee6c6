"""The records database: the configured MySQL block, or SQLite by default."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine

from blocks.database import MySQLCredentials

__all__ = [
    "DEFAULT_RECORDS_BLOCK",
    "RecordsDatabase",
    "load_block",
    "open_records_database",
]

logger = logging.getLogger(__name__)

DEFAULT_RECORDS_BLOCK = "records-db"

_engines: dict[str, Engine] = {}


@dataclass(frozen=True)
class RecordsDatabase:
    """An engine and a sentence saying which database it is, for logs."""

    engine: Engine
    description: str
    is_default: bool


def gateway_home() -> Path:
    """Return the folder that contains the embedded defaults' files."""
    return Path(os.environ.get("WEBHOOK_GATEWAY_HOME", ".webhook-gateway")).resolve()


def load_block(block_class: type, name: str | None):  # type: ignore[no-untyped-def]
    """Load a block by name, or return None when no block of that name exists."""
    if not name:
        return None
    try:
        return block_class.load(name)
    except ValueError as exc:
        if "Unable to find block document" in str(exc):
            return None
        raise


def open_records_database(
    block_name: str | None = DEFAULT_RECORDS_BLOCK,
) -> RecordsDatabase:
    """Open the records database: the named MySQL block, else a SQLite file."""
    credentials = load_block(MySQLCredentials, block_name)
    if credentials is not None:
        key = f"block:{block_name}"
        description = (
            f"MySQL {credentials.host}:{credentials.port}/{credentials.database} "
            f"(block {block_name!r})"
        )
        if key not in _engines:
            _engines[key] = credentials.get_engine()
        return RecordsDatabase(_engines[key], description, is_default=False)

    path = gateway_home() / "records.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"sqlite:{path}"
    if key not in _engines:
        _engines[key] = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
    description = f"embedded SQLite {path} (no MySQL block named {block_name!r})"
    return RecordsDatabase(_engines[key], description, is_default=True)
