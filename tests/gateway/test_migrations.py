"""Alembic migrations: same schema on SQLite and MariaDB, and upgrades keep data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from webhook_gateway.inbox import Inbox, create_inbox_engine, metadata
from webhook_gateway.migrations import (
    FIRST_REVISION,
    current_revision,
    head_revision,
    upgrade_database,
)


@pytest.fixture(params=["sqlite", "mariadb"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "mariadb":
        return str(request.getfixturevalue("empty_mariadb_url"))
    return f"sqlite:///{tmp_path / 'inbox.db'}"


def _insert_first_version_event(engine: sa.Engine, *, flow_run_id: str | None) -> str:
    id = "a" * 31 + ("1" if flow_run_id else "2")
    moment = datetime(2024, 5, 1, 8, 30, 15, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO webhook_events (id, route, event_id, status, deployment, "
                "body, headers, query, parameters, received_at, updated_at, attempts, "
                "next_attempt_at, flow_run_id) VALUES (:id, 'r', :event_id, :status, "
                "'f/d', :body, :headers, NULL, :parameters, :moment, :moment, 1, "
                ":moment, :flow_run_id)"
            ),
            {
                "id": id,
                "event_id": f"sender-{id[-1]}",
                "status": "completed" if flow_run_id else "received",
                "body": "体 body".encode(),
                "headers": json.dumps({"x-signature": "sha256=00"}),
                "parameters": json.dumps({"text": "台风"}),
                "moment": moment.replace(tzinfo=None),
                "flow_run_id": flow_run_id,
            },
        )
    return id


def test_migrations_match_metadata(empty_url: str) -> None:
    engine = create_inbox_engine(empty_url)

    upgrade_database(engine)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}),
            metadata,
        )
    engine.dispose()

    assert differences == []


def test_migrations_upgrade_keeps_data(empty_url: str) -> None:
    engine = create_inbox_engine(empty_url)
    upgrade_database(engine, FIRST_REVISION)
    run_id = "0f2d3c4b-1111-2222-3333-444455556666"
    done = _insert_first_version_event(engine, flow_run_id=run_id)
    waiting = _insert_first_version_event(engine, flow_run_id=None)

    upgrade_database(engine)
    upgrade_database(engine)
    inbox = Inbox(engine)
    done_event = inbox.get(done)
    waiting_event = inbox.get(waiting)
    claimed = [
        event.id for event in inbox.claim_due(owner="t", limit=10, lease_seconds=5)
    ]
    engine.dispose()

    assert current_revision(engine) == head_revision()
    assert done_event is not None and waiting_event is not None
    assert done_event.status == "completed"
    assert done_event.body == "体 body".encode()
    assert done_event.parameters == {"text": "台风"}
    assert done_event.headers == {"x-signature": "sha256=00"}
    assert done_event.received_at == datetime(2024, 5, 1, 8, 30, 15, tzinfo=UTC)
    assert done_event.flow_run_id == run_id
    assert done_event.latest_flow_run_id == run_id
    assert done_event.replay_count == 0
    assert waiting_event.latest_flow_run_id is None
    assert claimed == [waiting]


def test_migrations_stamp_unversioned(empty_url: str) -> None:
    # The first gateway version created its table with create_all and no
    # alembic_version; the upgrade must adopt that table, not fail on it.
    engine = create_inbox_engine(empty_url)
    upgrade_database(engine, FIRST_REVISION)
    id = _insert_first_version_event(engine, flow_run_id=None)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE alembic_version"))

    upgrade_database(engine)
    event = Inbox(engine).get(id)
    engine.dispose()

    assert current_revision(engine) == head_revision()
    assert event is not None
    assert event.status == "received"
