"""Group commit: concurrent inserts share transactions, duplicates are found per row."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from webhook_gateway.group_commit import GroupCommitter
from webhook_gateway.inbox import Inbox, create_inbox_engine, events_table

THREADS = 24
EVENTS_PER_THREAD = 10


def _record(inbox: Inbox, event_id: str) -> tuple[str, bool]:
    event, created = inbox.record_event(
        route="orders",
        event_id=event_id,
        deployment="flow/deployment",
        body=b"{}",
        headers={},
        query=None,
        parameters={"event_id": event_id},
    )
    return event.id, created


def _run_threads(target: Any, count: int) -> None:
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_inbox_concurrent_duplicates(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'inbox.db'}"
    else:
        url = request.getfixturevalue("empty_mariadb_url")
    inbox = Inbox(create_inbox_engine(url))
    inbox.upgrade_schema()
    results: list[tuple[str, str, bool]] = []
    results_lock = threading.Lock()

    def deliver(thread_index: int) -> None:
        for number in range(EVENTS_PER_THREAD):
            # Every event is delivered by two threads at about the same time.
            event_id = f"evt-{(thread_index // 2) * EVENTS_PER_THREAD + number}"
            id, created = _record(inbox, event_id)
            with results_lock:
                results.append((event_id, id, created))

    _run_threads(deliver, THREADS)

    distinct = THREADS // 2 * EVENTS_PER_THREAD
    assert len(results) == THREADS * EVENTS_PER_THREAD
    created = [event_id for event_id, _, was_created in results if was_created]
    assert sorted(created) == sorted({event_id for event_id, _, _ in results})
    assert len(created) == distinct
    ids_per_event: dict[str, set[str]] = {}
    for event_id, id, _ in results:
        ids_per_event.setdefault(event_id, set()).add(id)
    assert all(len(ids) == 1 for ids in ids_per_event.values())
    with inbox.engine.connect() as connection:
        stored = connection.execute(
            sa.select(sa.func.count()).select_from(events_table)
        ).scalar()
    assert stored == distinct
    inbox.engine.dispose()


def test_group_commit_batches_rows() -> None:
    batches: list[int] = []
    release = threading.Event()
    first_started = threading.Event()

    def insert_many(rows: Sequence[dict[str, Any]]) -> None:
        batches.append(len(rows))
        if len(batches) == 1:
            first_started.set()
            # Hold the first batch until the others are queued behind it.
            release.wait(timeout=10)

    committer = GroupCommitter(insert_many, lambda row: None)
    outcomes: list[bool] = []

    first = threading.Thread(target=lambda: outcomes.append(committer.insert({"n": 0})))
    first.start()
    first_started.wait(timeout=10)
    others = [
        threading.Thread(target=lambda n=n: outcomes.append(committer.insert({"n": n})))
        for n in range(1, 11)
    ]
    for thread in others:
        thread.start()
    while len(committer._queue) < 10:
        threading.Event().wait(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=10)

    assert batches == [1, 10]
    assert outcomes == [True] * 11


def test_group_commit_duplicate_in_batch() -> None:
    stored: set[int] = {7}

    def insert_many(rows: Sequence[dict[str, Any]]) -> None:
        if any(row["n"] in stored for row in rows):
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        stored.update(row["n"] for row in rows)

    def insert_one(row: dict[str, Any]) -> None:
        if row["n"] in stored:
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))
        stored.add(row["n"])

    committer = GroupCommitter(insert_many, insert_one)

    assert committer.insert({"n": 7}) is False
    assert committer.insert({"n": 8}) is True
    assert stored == {7, 8}


def test_group_commit_error_reaches_caller() -> None:
    def insert_many(rows: Sequence[dict[str, Any]]) -> None:
        raise OperationalError("INSERT", {}, Exception("server has gone away"))

    committer = GroupCommitter(insert_many, lambda row: None)

    with pytest.raises(OperationalError, match="server has gone away"):
        committer.insert({"n": 1})
    assert committer._queue == []
