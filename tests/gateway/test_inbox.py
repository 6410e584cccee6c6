"""The inbox on real SQLite and MariaDB: claims, attempts, replays, listing, retention."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from webhook_gateway.errors import (
    EventNotFoundError,
    InvalidQueryError,
    ReplayConflictError,
)
from webhook_gateway.inbox import (
    MAX_RUN_ERROR_LENGTH,
    EventQuery,
    EventStatus,
    Inbox,
    RunCheck,
    create_inbox_engine,
)


@pytest.fixture(params=["sqlite", "mariadb"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    if request.param == "mariadb":
        url = str(request.getfixturevalue("mariadb_url"))
    else:
        url = f"sqlite:///{tmp_path / 'inbox.db'}"
    store = Inbox(create_inbox_engine(url))
    store.upgrade_schema()
    yield store
    store.engine.dispose()


@pytest.fixture
def route() -> str:
    # Tests on the session's MariaDB database share tables; a route of their own
    # keeps their rows apart.
    return f"inbox-{uuid.uuid4().hex[:8]}"


def _record(inbox: Inbox, route: str, event_id: str, **kwargs: object) -> str:
    event, created = inbox.record_event(
        route=route,
        event_id=event_id,
        deployment="flow/deployment",
        body=b'{"id": 1}',
        headers={"content-type": "application/json"},
        query=None,
        parameters={"event_id": event_id},
        **kwargs,  # type: ignore[arg-type]
    )
    assert created
    return event.id


def _claim_all(inbox: Inbox, owner: str, route: str) -> list[str]:
    claimed = inbox.claim_due(owner=owner, limit=500, lease_seconds=60)
    return [event.id for event in claimed if event.route == route]


def _dispatch(inbox: Inbox, id: str, run_id: str | None = None) -> str:
    run_id = run_id or str(uuid.uuid4())
    assert inbox.mark_dispatched(id, owner="test", flow_run_id=run_id)
    return run_id


def _finish(inbox: Inbox, id: str, run_id: str, status: EventStatus) -> None:
    check = RunCheck(id, "route", run_id, EventStatus.DISPATCHED.value)
    assert inbox.apply_run_states([check], {run_id: status}) == 1


def test_inbox_redelivery_returns_stored(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")

    again, created = inbox.record_event(
        route=route,
        event_id="e1",
        deployment="flow/deployment",
        body=b"other",
        headers={},
        query=None,
        parameters=None,
    )

    assert not created
    assert again.id == id
    assert again.body == b'{"id": 1}'


def test_inbox_attempts_recorded(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")
    assert _claim_all(inbox, "test", route) == [id]
    later = datetime.now(UTC) + timedelta(seconds=30)

    assert inbox.mark_retry(
        id, owner="test", error="ConnectError: down", next_attempt_at=later
    )
    assert _claim_all(inbox, "test", route) == []
    inbox.engine.dispose()
    with inbox.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE webhook_events SET next_attempt_at = :now WHERE id = :id"),
            {"now": datetime.now(UTC) - timedelta(seconds=1), "id": id},
        )
    assert _claim_all(inbox, "test", route) == [id]
    run_id = _dispatch(inbox, id)

    event = inbox.get(id)
    assert event is not None
    assert event.status == "dispatched"
    assert event.attempts == 2
    assert event.flow_run_id == run_id
    assert event.latest_flow_run_id == run_id
    assert event.last_error is None
    assert event.dispatched_at is not None
    attempts = inbox.list_attempts(id)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "retry"), (2, "created")]
    assert attempts[0].error == "ConnectError: down"
    assert attempts[1].flow_run_id == run_id


def test_inbox_lost_lease_loses_update(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")
    inbox.claim_due(owner="first", limit=500, lease_seconds=0.001)
    claimed_again = [
        event.id
        for event in inbox.claim_due(owner="second", limit=500, lease_seconds=60)
        if event.route == route
    ]

    first = inbox.mark_dispatched(id, owner="first", flow_run_id=str(uuid.uuid4()))
    second = inbox.mark_dispatched(id, owner="second", flow_run_id=str(uuid.uuid4()))

    assert claimed_again == [id]
    assert not first
    assert second
    assert [a.dispatcher for a in inbox.list_attempts(id)] == ["second"]


def test_inbox_concurrent_claims_disjoint(inbox: Inbox, route: str) -> None:
    ids = {_record(inbox, route, f"e{index}") for index in range(120)}
    others = [Inbox(create_inbox_engine(str(inbox.engine.url))) for _ in range(3)]
    claims: dict[str, list[str]] = {}
    start = threading.Barrier(len(others))

    def claim(store: Inbox, owner: str) -> None:
        start.wait()
        mine: list[str] = []
        while True:
            batch = store.claim_due(owner=owner, limit=7, lease_seconds=60)
            batch = [event for event in batch if event.route == route]
            if not batch:
                break
            mine.extend(event.id for event in batch)
        claims[owner] = mine

    threads = [
        threading.Thread(target=claim, args=(store, f"owner-{n}"))
        for n, store in enumerate(others)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in others:
        store.engine.dispose()

    every_claim = [id for mine in claims.values() for id in mine]
    assert len(every_claim) == len(set(every_claim))
    assert set(every_claim) == ids


def test_inbox_replay_lifecycle(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")
    _claim_all(inbox, "test", route)
    first_run = _dispatch(inbox, id)
    _finish(inbox, id, first_run, EventStatus.FAILED)

    replay = inbox.request_replay(id, requested_by="test")
    with pytest.raises(ReplayConflictError):
        inbox.request_replay(id)
    jobs = [
        job
        for job in inbox.claim_due_replays(owner="test", limit=500, lease_seconds=60)
        if job.event.id == id
    ]
    replay_run = str(uuid.uuid4())
    assert inbox.mark_dispatched(
        id, owner="test", flow_run_id=replay_run, replay_id=replay.id
    )
    _finish(inbox, id, replay_run, EventStatus.COMPLETED)

    assert replay.replay_number == 1
    assert replay.replayed_flow_run_id == first_run
    assert [job.idempotency_key for job in jobs] == [f"{route}:e1:replay:1"]
    assert jobs[0].parameters == {"event_id": "e1"}
    event = inbox.get(id)
    assert event is not None
    assert event.status == "completed"
    assert event.flow_run_id == first_run
    assert event.latest_flow_run_id == replay_run
    assert event.replay_count == 1
    [stored] = inbox.list_replays(id)
    assert stored.status == "completed"
    assert stored.flow_run_id == replay_run
    assert [(a.replay_number, a.outcome) for a in inbox.list_attempts(id)] == [
        (None, "created"),
        (1, "created"),
    ]


def test_inbox_run_states_keep_error(inbox: Inbox, route: str) -> None:
    ids = {name: _record(inbox, route, name) for name in ("f", "c", "x", "ok")}
    _claim_all(inbox, "test", route)
    runs = {name: _dispatch(inbox, id) for name, id in ids.items()}
    checks = [
        RunCheck(ids[name], route, runs[name], EventStatus.DISPATCHED.value)
        for name in ids
    ]
    failed = (
        "Failed: Flow run encountered an exception: "
        "InvalidFeedbackError: text: Field required"
    )
    crashed = "Crashed: " + "x" * (MAX_RUN_ERROR_LENGTH * 2)
    states = {
        runs["f"]: EventStatus.FAILED,
        runs["c"]: EventStatus.CRASHED,
        runs["x"]: EventStatus.CANCELLED,
        runs["ok"]: EventStatus.COMPLETED,
    }
    errors = {runs["f"]: failed, runs["c"]: crashed, runs["ok"]: "Completed"}

    changed = inbox.apply_run_states(checks, states, errors)

    events = {name: inbox.get(id) for name, id in ids.items()}
    assert changed == 4
    assert events["f"] is not None
    assert events["f"].status == "failed"
    assert events["f"].last_error == failed
    assert events["c"] is not None
    assert events["c"].last_error is not None
    assert len(events["c"].last_error) == MAX_RUN_ERROR_LENGTH
    assert events["c"].last_error.startswith("Crashed: xxx")
    assert events["x"] is not None
    assert events["x"].last_error == "Cancelled"
    assert events["ok"] is not None
    assert events["ok"].last_error is None


def test_inbox_failed_replay_keeps_error(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")
    _claim_all(inbox, "test", route)
    _finish(inbox, id, _dispatch(inbox, id), EventStatus.COMPLETED)
    replay = inbox.request_replay(id)
    inbox.claim_due_replays(owner="test", limit=500, lease_seconds=60)
    replay_run = str(uuid.uuid4())
    assert inbox.mark_dispatched(
        id, owner="test", flow_run_id=replay_run, replay_id=replay.id
    )
    check = RunCheck(id, route, replay_run, EventStatus.DISPATCHED.value)

    inbox.apply_run_states(
        [check], {replay_run: EventStatus.FAILED}, {replay_run: "Failed: boom"}
    )

    event = inbox.get(id)
    assert event is not None
    assert event.last_error == "Failed: boom"
    [stored] = inbox.list_replays(id)
    assert stored.status == "failed"
    assert stored.last_error == "Failed: boom"


def test_inbox_replay_in_flight_conflict(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")

    with pytest.raises(ReplayConflictError) as error:
        inbox.request_replay(id)
    with pytest.raises(EventNotFoundError):
        inbox.request_replay("no-such-event")

    assert error.value.extra["status"] == "received"


def test_inbox_replay_dead_after_attempts(inbox: Inbox, route: str) -> None:
    id = _record(inbox, route, "e1")
    _claim_all(inbox, "test", route)
    inbox.mark_final(id, owner="test", status=EventStatus.DEAD, error="down")
    replay = inbox.request_replay(id)
    inbox.claim_due_replays(owner="test", limit=500, lease_seconds=60)

    inbox.mark_final(
        id,
        owner="test",
        status=EventStatus.REJECTED,
        error="HTTP 422",
        replay_id=replay.id,
    )

    event = inbox.get(id)
    assert event is not None
    assert event.status == "rejected"
    assert event.last_error == "HTTP 422"
    assert inbox.list_replays(id)[0].status == "rejected"


def test_inbox_find_events_pages(inbox: Inbox, route: str) -> None:
    ids = [_record(inbox, route, f"e{index}") for index in range(7)]
    _claim_all(inbox, "test", route)
    _dispatch(inbox, ids[0])
    query = EventQuery(route=route)

    pages = []
    cursor = None
    while True:
        page = inbox.find_events(query, limit=3, cursor=cursor)
        pages.append([event.id for event in page.events])
        cursor = page.next_cursor
        if cursor is None:
            break
    dispatched = inbox.find_events(EventQuery(route=route, statuses=["dispatched"]))
    none_yet = inbox.find_events(
        EventQuery(route=route, since=datetime.now(UTC) + timedelta(hours=1))
    )

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [id for page in pages for id in page] == list(reversed(ids))
    assert [event.id for event in dispatched.events] == [ids[0]]
    assert none_yet.events == []
    with pytest.raises(InvalidQueryError):
        inbox.find_events(query, cursor="not a cursor")
    with pytest.raises(InvalidQueryError):
        inbox.find_events(query, limit=0)


def test_inbox_purge_completed_bodies(inbox: Inbox, route: str) -> None:
    done = _record(inbox, route, "done")
    failed = _record(inbox, route, "failed")
    _claim_all(inbox, "test", route)
    _finish(inbox, done, _dispatch(inbox, done), EventStatus.COMPLETED)
    _finish(inbox, failed, _dispatch(inbox, failed), EventStatus.FAILED)
    future = datetime.now(UTC) + timedelta(seconds=1)

    kept = inbox.purge_bodies(older_than=datetime.now(UTC) - timedelta(days=1))
    purged = inbox.purge_bodies(older_than=future)

    assert kept == 0
    assert purged >= 1
    purged_event = inbox.get(done)
    failed_event = inbox.get(failed)
    assert purged_event is not None and failed_event is not None
    assert purged_event.body is None
    assert purged_event.body_purged_at is not None
    assert purged_event.parameters == {"event_id": "done"}
    assert purged_event.headers == {"content-type": "application/json"}
    assert failed_event.body == b'{"id": 1}'


def test_inbox_backlog_counts(inbox: Inbox, route: str) -> None:
    before_events, before_replays = inbox.count_backlog()
    pending = _record(inbox, route, "pending")
    finished = _record(inbox, route, "finished", status=EventStatus.RECEIVED)
    claimed = [
        event
        for event in inbox.claim_due(owner="test", limit=500, lease_seconds=60)
        if event.id == finished
    ]
    assert claimed
    _finish(inbox, finished, _dispatch(inbox, finished), EventStatus.FAILED)
    inbox.request_replay(finished)

    events, replays = inbox.count_backlog()

    assert pending
    assert events - before_events >= 1
    assert replays - before_replays == 1
