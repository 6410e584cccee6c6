"""Fixtures shared by the flow and block tests: local servers and SQL engines."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.servers.jira_server import JiraServer
from tests.servers.tms_server import TMSServer

# MariaDB runs on this machine; override the URL with TEST_MARIADB_URL.
MARIADB_URL = os.environ.get(
    "TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


@pytest.fixture
def jira_server() -> Iterator[JiraServer]:
    with JiraServer() as server:
        yield server


@pytest.fixture
def tms_server() -> Iterator[TMSServer]:
    with TMSServer() as server:
        yield server


@pytest.fixture
def table_prefix() -> str:
    """A table name prefix unique to one test, so parallel runs do not share tables."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite file engine, then the local MariaDB (skipped when unreachable)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = MARIADB_URL
    engine = sa.create_engine(url)
    if request.param == "mariadb":
        try:
            with engine.connect():
                pass
        except sa.exc.OperationalError as exc:
            engine.dispose()
            pytest.skip(f"MariaDB at {MARIADB_URL} is unreachable: {exc}")
    yield engine
    engine.dispose()
