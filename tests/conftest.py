"""Session-wide real components: a Prefect server, served flows, MariaDB, local servers.

PREFECT_API_URL is set here, before anything imports Prefect, so that the test
process, the gateways and the served flows all talk to the same test server.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

from tests.support.postgres import (
    create_postgres_database,
    drop_postgres_database,
)
from tests.support.processes import (
    PrefectServerProcess,
    ServedFlowsProcess,
    free_port,
)

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="webhook-gateway-tests-"))
_PREFECT_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PREFECT_PORT}/api"
os.environ["WEBHOOK_GATEWAY_HOME"] = str(_SESSION_HOME / "test-process-home")

import pytest
import sqlalchemy as sa

# These import Prefect, so they come after PREFECT_API_URL is set.
from tests.servers.jira_server import JiraServer
from tests.servers.tms_server import TMSServer

MARIADB_SERVER_URL = os.environ.get(
    "WEBHOOK_GATEWAY_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
SERVED_DEPLOYMENTS = [
    "supply-chain-delay/supply-chain-delay",
    "customer-feedback/customer-feedback",
]


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def prefect_server(session_home: Path) -> Iterator[PrefectServerProcess]:
    """The session's Prefect server, on PostgreSQL when one is reachable.

    Under the load tests, Prefect on SQLite returns 503 "database is locked", so
    the suite uses the local PostgreSQL when it can and SQLite otherwise.
    """
    database_url = create_postgres_database()
    server = PrefectServerProcess(session_home, _PREFECT_PORT, database_url)
    server.start()
    yield server
    server.stop()
    if database_url:
        drop_postgres_database(database_url)


@pytest.fixture(scope="session")
def served_flows(
    prefect_server: PrefectServerProcess, session_home: Path
) -> Iterator[ServedFlowsProcess]:
    runner = ServedFlowsProcess(session_home, prefect_server.api_url)
    runner.start(SERVED_DEPLOYMENTS)
    yield runner
    runner.stop()


@pytest.fixture(scope="session")
def flows_records_url(served_flows: ServedFlowsProcess) -> str:
    """URL of the SQLite records database the served flows use by default."""
    return f"sqlite:///{served_flows.home / 'flows-home' / 'records.db'}"


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB database for this session, dropped at the end.

    Each session gets its own database, so test runs on one server never share
    tables.
    """
    yield from _temporary_mariadb_database()


@pytest.fixture
def empty_mariadb_url() -> Iterator[str]:
    """A MariaDB database of its own for one test (migrations start from empty)."""
    yield from _temporary_mariadb_database()


def _temporary_mariadb_database() -> Iterator[str]:
    server = sa.create_engine(MARIADB_SERVER_URL)
    name = f"wg_test_{uuid.uuid4().hex[:10]}"
    try:
        with server.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    except sa.exc.OperationalError as exc:
        message = (
            f"MariaDB at {MARIADB_SERVER_URL} is unreachable ({exc.orig}); start it with "
            "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`"
            " or point WEBHOOK_GATEWAY_TEST_MARIADB_URL at a server"
        )
        # CI must run the MariaDB tests; a laptop without MariaDB skips them.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    url = MARIADB_SERVER_URL.rsplit("/", 1)[0] + f"/{name}?charset=utf8mb4"
    yield url
    with server.begin() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    server.dispose()


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: PrefectServerProcess) -> None:
    """Run flows and tasks of this process against the session's Prefect server."""


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
    """A table name prefix unique to one test, so tests never share tables."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite file engine, then the session's MariaDB database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()
