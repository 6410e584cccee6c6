"""Tests of reschedule computation and of the HTTP and database TMS clients."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from prefect import flow
from prefect.states import State

from blocks.tms import TMSCredentials
from flows.tasks.tms import (
    TMS,
    DatabaseTMS,
    HttpTMS,
    Shipment,
    TMSError,
    TMSRejectedError,
    TMSUnavailableError,
    compute_reschedule,
    fetch_open_shipments,
    reschedule_shipments,
    seed_demo_shipments,
)
from tests.servers.tms_server import TMSServer

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = timezone(timedelta(hours=9))
LIST_PATH = "/api/shipments"


def make_shipment(
    shipment_id: str = "SHP-1",
    *,
    material: str = "A03-205",
    pickup_start: datetime = datetime(2025, 3, 7, 8, tzinfo=BERLIN),
    pickup_hours: int = 4,
    delivery_start: datetime = datetime(2025, 3, 10, 9, tzinfo=BERLIN),
    delivery_hours: int = 8,
    promised_date: date = date(2025, 3, 11),
) -> Shipment:
    return Shipment(
        id=shipment_id,
        order_id=f"SO-{shipment_id}",
        material=material,
        customer_id="C-17",
        customer_locale="de-DE",
        pickup_start=pickup_start,
        pickup_end=pickup_start + timedelta(hours=pickup_hours),
        delivery_start=delivery_start,
        delivery_end=delivery_start + timedelta(hours=delivery_hours),
        promised_date=promised_date,
    )


def make_http_tms(
    server: TMSServer, *, timeout: float = 5, max_attempts: int = 4
) -> HttpTMS:
    credentials = TMSCredentials(
        base_url=server.url, token=server.token, timeout=timeout
    )
    return HttpTMS(credentials, max_attempts=max_attempts, backoff_seconds=0)


@pytest.fixture
def database_tms(engine: sa.Engine, table_prefix: str) -> Iterator[DatabaseTMS]:
    tms = DatabaseTMS(engine, table_prefix=table_prefix)
    yield tms
    tms.drop_tables()


@flow(name="reschedule-test")
def reschedule_flow(tms: TMS, materials: list[str], event_id: str) -> list:
    shipments = fetch_open_shipments.with_options(retry_delay_seconds=0)(tms, materials)
    return reschedule_shipments.with_options(retry_delay_seconds=0)(
        tms, shipments, 2, reason="Supplier delay", event_id=event_id
    )


def run_reschedule(tms: TMS, materials: list[str], event_id: str) -> State:
    return reschedule_flow(tms, materials, event_id, return_state=True)


# compute_reschedule


def test_reschedule_calendar_days() -> None:
    shipment = make_shipment()

    result = compute_reschedule(shipment, 1)

    # Friday plus one calendar day is Saturday.
    assert result.pickup_start == datetime(2025, 3, 8, 8, tzinfo=BERLIN)
    assert result.pickup_end == datetime(2025, 3, 8, 12, tzinfo=BERLIN)
    assert result.delivery_start == datetime(2025, 3, 11, 9, tzinfo=BERLIN)
    assert result.delivery_end == datetime(2025, 3, 11, 17, tzinfo=BERLIN)
    assert result.delay_days == 1
    assert result.business_days is False
    assert result.shipment == shipment


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (
            datetime(2025, 3, 7, 8, tzinfo=BERLIN),
            1,
            datetime(2025, 3, 10, 8, tzinfo=BERLIN),
        ),
        (
            datetime(2025, 3, 8, 8, tzinfo=BERLIN),
            1,
            datetime(2025, 3, 10, 8, tzinfo=BERLIN),
        ),
        (
            datetime(2025, 3, 9, 8, tzinfo=BERLIN),
            1,
            datetime(2025, 3, 10, 8, tzinfo=BERLIN),
        ),
        (
            datetime(2025, 3, 6, 8, tzinfo=BERLIN),
            2,
            datetime(2025, 3, 10, 8, tzinfo=BERLIN),
        ),
        (
            datetime(2025, 3, 10, 8, tzinfo=BERLIN),
            5,
            datetime(2025, 3, 17, 8, tzinfo=BERLIN),
        ),
        (
            datetime(2025, 3, 10, 8, tzinfo=BERLIN),
            4,
            datetime(2025, 3, 14, 8, tzinfo=BERLIN),
        ),
    ],
    ids=["fri+1", "sat+1", "sun+1", "thu+2", "mon+5", "mon+4"],
)
def test_reschedule_business_days(
    start: datetime, days: int, expected: datetime
) -> None:
    shipment = make_shipment(pickup_start=start)

    result = compute_reschedule(shipment, days, business_days=True)

    assert result.pickup_start == expected
    assert result.pickup_end == expected + timedelta(hours=4)
    assert result.business_days is True


def test_reschedule_window_spans_weekend() -> None:
    # Friday 16:00 to Monday 10:00 keeps its 66 hours after the move.
    start = datetime(2025, 3, 7, 16, tzinfo=BERLIN)
    shipment = make_shipment(pickup_start=start, pickup_hours=66)

    result = compute_reschedule(shipment, 1, business_days=True)

    assert result.pickup_start == datetime(2025, 3, 10, 16, tzinfo=BERLIN)
    assert result.pickup_end == datetime(2025, 3, 13, 10, tzinfo=BERLIN)


def test_reschedule_uses_local_weekday() -> None:
    # Saturday 00:30 in Tokyo is Friday 15:30 UTC; the Tokyo weekday counts.
    start = datetime(2025, 3, 8, 0, 30, tzinfo=TOKYO)
    shipment = make_shipment(pickup_start=start)

    result = compute_reschedule(shipment, 1, business_days=True)

    assert result.pickup_start == datetime(2025, 3, 10, 0, 30, tzinfo=TOKYO)
    assert result.pickup_start.utcoffset() == timedelta(hours=9)


def test_reschedule_keeps_wall_time_over_dst() -> None:
    # Europe/Berlin moves to summer time on 2025-03-30.
    start = datetime(2025, 3, 29, 10, tzinfo=BERLIN)
    shipment = make_shipment(pickup_start=start)

    result = compute_reschedule(shipment, 1)

    assert result.pickup_start.isoformat() == "2025-03-30T10:00:00+02:00"


@pytest.mark.parametrize(
    ("delay_days", "promised", "missed"),
    [
        (1, date(2025, 3, 11), False),
        (1, date(2025, 3, 10), True),
        (2, date(2025, 3, 11), True),
        (2, date(2025, 3, 12), False),
    ],
)
def test_reschedule_promise_missed(
    delay_days: int, promised: date, missed: bool
) -> None:
    # The delivery ends 2025-03-10 17:00 before the move.
    shipment = make_shipment(promised_date=promised)

    result = compute_reschedule(shipment, delay_days)

    assert result.promise_missed is missed


def test_reschedule_promise_missed_business_days() -> None:
    # Delivery Friday; one business day later is Monday, after a Saturday promise.
    shipment = make_shipment(
        delivery_start=datetime(2025, 3, 7, 9, tzinfo=BERLIN),
        promised_date=date(2025, 3, 8),
    )

    calendar = compute_reschedule(shipment, 1)
    business = compute_reschedule(shipment, 1, business_days=True)

    assert calendar.promise_missed is False
    assert business.promise_missed is True
    assert business.delivery_end == datetime(2025, 3, 10, 17, tzinfo=BERLIN)


@pytest.mark.parametrize("delay_days", [0, -1, -5, True])
def test_reschedule_rejects_delay(delay_days: int) -> None:
    with pytest.raises(ValueError, match="delay_days must be a positive"):
        compute_reschedule(make_shipment(), delay_days)


def test_shipment_rejects_reversed_window() -> None:
    with pytest.raises(ValueError, match="pickup_end .* is before pickup_start"):
        make_shipment(pickup_hours=-1)


def test_shipment_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_shipment(pickup_start=datetime(2025, 3, 7, 8))


# HttpTMS


def test_http_open_shipments(tms_server: TMSServer) -> None:
    first = make_shipment("SHP-1", material="A03-205")
    second = make_shipment("SHP-2", material="A03-206")
    tms_server.add(first)
    tms_server.add(second)
    tms_server.add(make_shipment("SHP-3", material="A03-205"), status="delivered")
    tms_server.add(make_shipment("SHP-4", material="B11-010"))

    shipments = make_http_tms(tms_server).open_shipments(
        ["A03-205", "A03-206", "A03-205"]
    )

    assert shipments == [first, second]
    requests = tms_server.requests_to("GET", LIST_PATH)
    assert [request.query for request in requests] == [
        {"material": ["A03-205"], "status": ["open"]},
        {"material": ["A03-206"], "status": ["open"]},
    ]
    assert requests[0].headers["authorization"] == f"Bearer {tms_server.token}"


def test_http_retries_5xx(tms_server: TMSServer) -> None:
    tms_server.add(make_shipment())
    tms_server.fail_next(2, status=500)

    shipments = make_http_tms(tms_server, max_attempts=3).open_shipments(["A03-205"])

    assert [shipment.id for shipment in shipments] == ["SHP-1"]
    assert len(tms_server.requests_to("GET", LIST_PATH)) == 3


def test_http_gives_up_after_attempts(tms_server: TMSServer) -> None:
    tms_server.fail_next(10, status=503, body={"detail": "maintenance"})

    with pytest.raises(TMSUnavailableError, match="HTTP 503: maintenance"):
        make_http_tms(tms_server, max_attempts=3).open_shipments(["A03-205"])

    assert len(tms_server.requests) == 3


def test_http_retries_timeout(tms_server: TMSServer) -> None:
    tms_server.add(make_shipment())
    tms_server.hang_next(1)

    shipments = make_http_tms(tms_server, timeout=0.3).open_shipments(["A03-205"])

    assert len(shipments) == 1
    assert len(tms_server.requests) == 2


def test_http_timeout_exhausted(tms_server: TMSServer) -> None:
    tms_server.hang_next(2)

    with pytest.raises(TMSUnavailableError, match="timed out after 0.3 s"):
        make_http_tms(tms_server, timeout=0.3, max_attempts=2).open_shipments(["X"])


def test_http_reschedule_sends_key(tms_server: TMSServer) -> None:
    shipment = make_shipment()
    tms_server.add(shipment)
    reschedule = compute_reschedule(shipment, 3)

    result = make_http_tms(tms_server).reschedule(
        reschedule, reason="Supplier delay", event_id="evt-9"
    )

    request = tms_server.requests_to("POST", "/api/shipments/SHP-1/reschedule")[0]
    assert request.headers["idempotency-key"] == "evt-9:SHP-1"
    assert request.json() == {
        "pickup_start": "2025-03-10T08:00:00+01:00",
        "pickup_end": "2025-03-10T12:00:00+01:00",
        "delivery_start": "2025-03-13T09:00:00+01:00",
        "delivery_end": "2025-03-13T17:00:00+01:00",
        "reason": "Supplier delay",
        "event_id": "evt-9",
    }
    assert result.replayed is False
    assert result.shipment.delivery_end == reschedule.delivery_end
    assert tms_server.shipments["SHP-1"]["pickup_start"] == "2025-03-10T08:00:00+01:00"


def test_http_reschedule_replayed(tms_server: TMSServer) -> None:
    shipment = make_shipment()
    tms_server.add(shipment)
    tms = make_http_tms(tms_server)
    tms.reschedule(compute_reschedule(shipment, 3), reason="r", event_id="evt-9")
    moved = tms.open_shipments(["A03-205"])[0]

    # A replayed event computes from the moved shipment; the key stops a second move.
    result = tms.reschedule(compute_reschedule(moved, 3), reason="r", event_id="evt-9")

    assert result.replayed is True
    assert result.shipment == moved
    assert tms_server.shipments["SHP-1"]["pickup_start"] == "2025-03-10T08:00:00+01:00"


def test_http_reschedule_id_is_encoded(tms_server: TMSServer) -> None:
    shipment = make_shipment("SHP/7 a")
    tms_server.add(shipment)

    result = make_http_tms(tms_server).reschedule(
        compute_reschedule(shipment, 1), reason="r", event_id="e"
    )

    assert result.shipment.id == "SHP/7 a"
    assert tms_server.requests[0].path == "/api/shipments/SHP%2F7%20a/reschedule"


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        ("delivered", "has status 'delivered' and cannot be rescheduled"),
        (None, "Shipment 'SHP-1' not found"),
    ],
)
def test_http_reschedule_4xx(
    tms_server: TMSServer, status: str | None, detail: str
) -> None:
    shipment = make_shipment()
    if status is not None:
        tms_server.add(shipment, status=status)

    with pytest.raises(TMSRejectedError, match=detail) as caught:
        make_http_tms(tms_server).reschedule(
            compute_reschedule(shipment, 1), reason="r", event_id="e"
        )

    assert caught.value.status_code == (409 if status else 404)
    assert detail in caught.value.detail
    assert len(tms_server.requests) == 1


def test_http_wrong_token(tms_server: TMSServer) -> None:
    credentials = TMSCredentials(base_url=tms_server.url, token="wrong")

    with pytest.raises(TMSRejectedError, match="HTTP 401") as caught:
        HttpTMS(credentials, backoff_seconds=0).open_shipments(["A03-205"])

    assert caught.value.detail == "Invalid or missing bearer token."
    assert len(tms_server.requests) == 1


def test_http_invalid_shipment_list(tms_server: TMSServer) -> None:
    tms_server.fail_next(1, status=200, body=[{"id": "SHP-1"}])

    with pytest.raises(TMSError, match="invalid shipment list for material 'X'"):
        make_http_tms(tms_server).open_shipments(["X"])


def test_tasks_retry_partial_reschedule(
    prefect_harness: None, tms_server: TMSServer
) -> None:
    tms_server.add(make_shipment("SHP-1"))
    tms_server.add(make_shipment("SHP-2"))
    tms = make_http_tms(tms_server, max_attempts=1)
    # SHP-1 moves, then SHP-2 fails once, so the task retries both.
    tms_server.fail_next(
        1, status=500, method="POST", path="/api/shipments/SHP-2/reschedule"
    )

    state = run_reschedule(tms, ["A03-205"], "evt-40")

    outcomes = state.result()
    assert [result.replayed for _, result in outcomes] == [True, False]
    for shipment_id in ("SHP-1", "SHP-2"):
        stored = tms_server.shipments[shipment_id]
        assert stored["pickup_start"] == "2025-03-09T08:00:00+01:00"
    assert len(tms_server.requests_to("POST", "/api/shipments/SHP-1/reschedule")) == 2


def test_tasks_reject_not_retried(prefect_harness: None, tms_server: TMSServer) -> None:
    tms = HttpTMS(TMSCredentials(base_url=tms_server.url, token="wrong"))

    state = run_reschedule(tms, ["A03-205"], "evt-41")

    assert state.is_failed()
    with pytest.raises(TMSRejectedError):
        state.result()
    assert len(tms_server.requests) == 1


# DatabaseTMS


def test_database_seed_idempotent(engine: sa.Engine, table_prefix: str) -> None:
    today = date(2025, 3, 3)
    try:
        first = seed_demo_shipments(engine, today=today, table_prefix=table_prefix)
        second = seed_demo_shipments(engine, today=today, table_prefix=table_prefix)
        tms = DatabaseTMS(engine, table_prefix=table_prefix)
        open_a03 = tms.open_shipments(["A03-205"])
        all_open = tms.open_shipments(["A03-205", "A03-207", "B11-010"])
    finally:
        DatabaseTMS(engine, table_prefix=table_prefix).drop_tables()

    assert first == 5
    assert second == 0
    assert [shipment.id for shipment in open_a03] == ["DEMO-SHP-1001", "DEMO-SHP-1002"]
    assert len(all_open) == 4
    assert open_a03[0].pickup_start.isoformat() == "2025-03-06T08:00:00+01:00"
    assert open_a03[0].promised_date == date(2025, 3, 9)


def test_database_round_trip_offsets(database_tms: DatabaseTMS) -> None:
    shipment = make_shipment(pickup_start=datetime(2025, 3, 8, 0, 30, tzinfo=TOKYO))
    database_tms.add_shipments([shipment])

    (loaded,) = database_tms.open_shipments(["A03-205"])

    assert loaded == shipment
    assert loaded.pickup_start.utcoffset() == timedelta(hours=9)


def test_database_reschedule_records_update(database_tms: DatabaseTMS) -> None:
    shipment = make_shipment()
    database_tms.add_shipments([shipment])
    reschedule = compute_reschedule(shipment, 2, business_days=True)

    result = database_tms.reschedule(reschedule, reason="Late", event_id="evt-5")

    stored = database_tms.get_shipment("SHP-1")
    assert result.replayed is False
    assert stored == result.shipment
    assert stored is not None
    assert stored.pickup_start == datetime(2025, 3, 11, 8, tzinfo=BERLIN)
    assert stored.delivery_end == datetime(2025, 3, 12, 17, tzinfo=BERLIN)
    (update,) = database_tms.updates_for("SHP-1")
    assert update["idempotency_key"] == "evt-5:SHP-1"
    assert update["event_id"] == "evt-5"
    assert update["reason"] == "Late"
    assert update["previous_windows"]["pickup_start"] == "2025-03-07T08:00:00+01:00"
    assert update["new_windows"]["pickup_start"] == "2025-03-11T08:00:00+01:00"


def test_database_reschedule_replayed(database_tms: DatabaseTMS) -> None:
    shipment = make_shipment()
    database_tms.add_shipments([shipment])
    database_tms.reschedule(compute_reschedule(shipment, 2), reason="r", event_id="e")
    moved = database_tms.get_shipment("SHP-1")
    assert moved is not None

    result = database_tms.reschedule(
        compute_reschedule(moved, 2), reason="r", event_id="e"
    )

    assert result.replayed is True
    assert database_tms.get_shipment("SHP-1") == moved
    assert len(database_tms.updates_for("SHP-1")) == 1


def test_database_reschedule_rejected(database_tms: DatabaseTMS) -> None:
    delivered = make_shipment("SHP-D")
    database_tms.add_shipments([delivered], status="delivered")

    with pytest.raises(TMSRejectedError, match="has status 'delivered'"):
        database_tms.reschedule(
            compute_reschedule(delivered, 1), reason="r", event_id="e"
        )
    with pytest.raises(TMSRejectedError, match="'SHP-missing' not found"):
        database_tms.reschedule(
            compute_reschedule(make_shipment("SHP-missing"), 1),
            reason="r",
            event_id="e",
        )
    assert database_tms.updates_for("SHP-D") == []


def test_database_open_shipments_empty(database_tms: DatabaseTMS) -> None:
    assert database_tms.open_shipments([]) == []
    assert database_tms.open_shipments(["A03-205"]) == []


def test_tasks_database_tms(prefect_harness: None, database_tms: DatabaseTMS) -> None:
    database_tms.add_shipments([make_shipment("SHP-1"), make_shipment("SHP-2")])

    first = run_reschedule(database_tms, ["A03-205"], "evt-50").result()
    second = run_reschedule(database_tms, ["A03-205"], "evt-50").result()

    assert [result.replayed for _, result in first] == [False, False]
    assert [result.replayed for _, result in second] == [True, True]
    stored = database_tms.get_shipment("SHP-1")
    assert stored is not None
    assert stored.pickup_start == datetime(2025, 3, 9, 8, tzinfo=BERLIN)
