"""Shipments in the transport management system (TMS): list open ones, move windows.

There is no standard TMS API, so this project defines one. `docs/tms-api.md` has
the full description. All requests send `Authorization: Bearer <token>`.

`GET /api/shipments?material=<material>&status=open`
    200 with a JSON list of shipments::

        {"id": "SHP-1001", "order_id": "SO-5001", "material": "A03-205",
         "customer_id": "C-17", "customer_locale": "de-DE",
         "pickup_start": "2025-03-03T08:00:00+01:00", "pickup_end": "...",
         "delivery_start": "...", "delivery_end": "...",
         "promised_date": "2025-03-05"}

    The window bounds are ISO 8601 datetimes with a UTC offset and
    `promised_date` is an ISO 8601 date.

`POST /api/shipments/{id}/reschedule` with header `Idempotency-Key`
    Body `{"pickup_start", "pickup_end", "delivery_start", "delivery_end",
    "reason", "event_id"}`. Returns 200 with the updated shipment. A repeated
    `Idempotency-Key` returns the stored response of the first request with header
    `Idempotent-Replayed: true` and changes nothing, even if the body differs.

Errors are 4xx or 5xx with `{"detail": "<message>"}`: 400 for an invalid body or a
missing `Idempotency-Key`, 401 for a wrong token, 404 for an unknown shipment and
409 for a shipment that is no longer open.

Exceptions:

    TMSError
    ├── TMSUnavailableError   retryable: HTTP 5xx or 429, timeout, connection error
    └── TMSRejectedError      HTTP 4xx, or a shipment that is missing or not open
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff
from pydantic import (
    AwareDatetime,
    BaseModel,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from blocks.tms import TMSCredentials

__all__ = [
    "TMS",
    "DatabaseTMS",
    "HttpTMS",
    "Reschedule",
    "RescheduleResult",
    "Shipment",
    "TMSError",
    "TMSRejectedError",
    "TMSUnavailableError",
    "compute_reschedule",
    "fetch_open_shipments",
    "idempotency_key",
    "reschedule_shipments",
    "seed_demo_shipments",
]

logger = logging.getLogger(__name__)

WINDOW_FIELDS = ("pickup_start", "pickup_end", "delivery_start", "delivery_end")
OPEN_STATUS = "open"
SATURDAY = 5

# HttpTMS retries of one request, before the Prefect task retries the whole call.
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_SECONDS = 0.5
DEFAULT_MAX_BACKOFF_SECONDS = 8.0


class TMSError(Exception):
    """A TMS request failed."""


class TMSUnavailableError(TMSError):
    """The TMS failed or timed out on every attempt, so a later retry may succeed."""


class TMSRejectedError(TMSError):
    """The TMS rejected the request.

    Attributes:
        status_code: HTTP status, or None for `DatabaseTMS`.
        detail: The server's error message.
    """

    def __init__(self, message: str, *, status_code: int | None, detail: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class Shipment(BaseModel, frozen=True):
    """An open shipment with its pickup and delivery windows."""

    id: str
    order_id: str
    material: str
    customer_id: str
    customer_locale: str
    pickup_start: AwareDatetime
    pickup_end: AwareDatetime
    delivery_start: AwareDatetime
    delivery_end: AwareDatetime
    promised_date: date

    @model_validator(mode="after")
    def _check_windows(self) -> Shipment:
        if self.pickup_end < self.pickup_start:
            raise ValueError(
                f"shipment {self.id!r}: pickup_end {self.pickup_end.isoformat()} is "
                f"before pickup_start {self.pickup_start.isoformat()}"
            )
        if self.delivery_end < self.delivery_start:
            raise ValueError(
                f"shipment {self.id!r}: delivery_end {self.delivery_end.isoformat()} "
                f"is before delivery_start {self.delivery_start.isoformat()}"
            )
        return self


class Reschedule(BaseModel, frozen=True):
    """New windows for a shipment, computed by `compute_reschedule`.

    Attributes:
        shipment: The shipment before the change.
        delay_days: Days each window moves, calendar or business days.
        business_days: True when Saturdays and Sundays were skipped.
        promise_missed: True when the new `delivery_end`, on its own local date,
            is after `shipment.promised_date`.
    """

    shipment: Shipment
    delay_days: int
    business_days: bool
    pickup_start: AwareDatetime
    pickup_end: AwareDatetime
    delivery_start: AwareDatetime
    delivery_end: AwareDatetime
    promise_missed: bool

    def windows(self) -> dict[str, str]:
        """Return the new window bounds as ISO 8601 strings, keyed by field."""
        return {name: getattr(self, name).isoformat() for name in WINDOW_FIELDS}


class RescheduleResult(BaseModel, frozen=True):
    """The shipment as the TMS stored it after a reschedule request.

    Attributes:
        shipment: The stored shipment.
        replayed: True when the idempotency key was used before, so this request
            changed nothing. `shipment` is then the stored response of the first
            request (HttpTMS) or the current row (DatabaseTMS).
    """

    shipment: Shipment
    replayed: bool


def _add_business_days(moment: datetime, days: int) -> datetime:
    """Step forward one day at a time, counting only Monday to Friday."""
    result = moment
    remaining = days
    while remaining > 0:
        result += timedelta(days=1)
        if result.weekday() < SATURDAY:
            remaining -= 1
    return result


def compute_reschedule(
    shipment: Shipment, delay_days: int, *, business_days: bool = False
) -> Reschedule:
    """Move both windows of a shipment later by `delay_days`.

    Each window start moves by `delay_days` calendar days, or with
    `business_days=True` by that many weekdays: a start on Friday, Saturday or
    Sunday plus one business day lands on Monday. The window end moves by the same
    amount as its start, so each window keeps its length. Weekdays are taken in
    each datetime's own UTC offset.

    Args:
        shipment: The shipment to move.
        delay_days: Positive number of days.
        business_days: Count only Monday to Friday.

    Returns:
        The new windows and whether the promised date is missed.

    Raises:
        ValueError: `delay_days` is zero or negative.
    """
    if isinstance(delay_days, bool) or delay_days < 1:
        raise ValueError(
            f"delay_days must be a positive number of days, got {delay_days!r}."
        )

    def shift_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
        if business_days:
            new_start = _add_business_days(start, delay_days)
        else:
            new_start = start + timedelta(days=delay_days)
        return new_start, end + (new_start - start)

    pickup_start, pickup_end = shift_window(shipment.pickup_start, shipment.pickup_end)
    delivery_start, delivery_end = shift_window(
        shipment.delivery_start, shipment.delivery_end
    )
    return Reschedule(
        shipment=shipment,
        delay_days=delay_days,
        business_days=business_days,
        pickup_start=pickup_start,
        pickup_end=pickup_end,
        delivery_start=delivery_start,
        delivery_end=delivery_end,
        promise_missed=delivery_end.date() > shipment.promised_date,
    )


def idempotency_key(event_id: str, shipment_id: str) -> str:
    """Return the `Idempotency-Key` for one shipment of one event."""
    return f"{event_id}:{shipment_id}"


@runtime_checkable
class TMS(Protocol):
    """Operations the flows need from a TMS."""

    def open_shipments(self, materials: Sequence[str]) -> list[Shipment]:
        """Return the open shipments of any of these materials, each once."""
        ...

    def reschedule(
        self, reschedule: Reschedule, *, reason: str, event_id: str
    ) -> RescheduleResult:
        """Store the new windows, at most once per event and shipment."""
        ...


_SHIPMENT_LIST = TypeAdapter(list[Shipment])


class HttpTMS:
    """Client for the HTTP API in the module docstring.

    Each request is tried up to `max_attempts` times when the TMS returns 5xx or
    429, times out or refuses the connection, sleeping `backoff_seconds`, then
    twice that and so on, at most `max_backoff_seconds`, between attempts.

    Args:
        credentials: Base URL, token and timeout.
        max_attempts: Tries per request, at least 1.
        backoff_seconds: Sleep before the second try.
        max_backoff_seconds: Upper bound of one sleep.
    """

    def __init__(
        self,
        credentials: TMSCredentials,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
        max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}.")
        self._credentials = credentials
        self._max_attempts = max_attempts
        self._backoff_seconds = backoff_seconds
        self._max_backoff_seconds = max_backoff_seconds

    def _request(
        self, client: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        base = self._credentials.base_url
        failure = ""
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                delay = self._backoff_seconds * 2 ** (attempt - 2)
                time.sleep(min(delay, self._max_backoff_seconds))
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                failure = f"timed out after {self._credentials.timeout} s ({exc!r})"
            except httpx.TransportError as exc:
                failure = f"failed with a transport error ({exc!r})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                detail = _error_detail(response)
                if status < 500 and status != 429:
                    raise TMSRejectedError(
                        f"TMS at {base!r} rejected {method} {path} with HTTP "
                        f"{status}: {detail}. Check the shipment data and the "
                        "token of the TMSCredentials block.",
                        status_code=status,
                        detail=detail,
                    )
                failure = f"returned HTTP {status}: {detail}"
            logger.warning(
                "TMS request %s %s %s (attempt %d of %d)",
                method,
                path,
                failure,
                attempt,
                self._max_attempts,
            )
        raise TMSUnavailableError(
            f"TMS request {method} {path} to {base!r} failed after "
            f"{self._max_attempts} attempts, the last one {failure}. Check that "
            "the TMS is up. The Prefect task retries the call later."
        )

    def open_shipments(self, materials: Sequence[str]) -> list[Shipment]:
        """Fetch open shipments, one request per distinct material.

        Raises:
            TMSUnavailableError: Every attempt failed.
            TMSRejectedError: The TMS returned 4xx.
            TMSError: The response is not a valid shipment list.
        """
        found: dict[str, Shipment] = {}
        with self._credentials.get_client() as client:
            for material in dict.fromkeys(materials):
                params = {"material": material, "status": OPEN_STATUS}
                response = self._request(client, "GET", "/api/shipments", params=params)
                try:
                    shipments = _SHIPMENT_LIST.validate_json(response.content)
                except ValidationError as exc:
                    raise TMSError(
                        f"TMS returned an invalid shipment list for material "
                        f"{material!r}: {exc}"
                    ) from exc
                for shipment in shipments:
                    found.setdefault(shipment.id, shipment)
        return list(found.values())

    def reschedule(
        self, reschedule: Reschedule, *, reason: str, event_id: str
    ) -> RescheduleResult:
        """Send the new windows with `Idempotency-Key: <event_id>:<shipment id>`.

        Raises:
            TMSUnavailableError: Every attempt failed.
            TMSRejectedError: The TMS returned 4xx, e.g. 409 for a closed shipment.
            TMSError: The response is not a valid shipment.
        """
        shipment_id = reschedule.shipment.id
        body = {**reschedule.windows(), "reason": reason, "event_id": event_id}
        headers = {"Idempotency-Key": idempotency_key(event_id, shipment_id)}
        path = f"/api/shipments/{quote(shipment_id, safe='')}/reschedule"
        with self._credentials.get_client() as client:
            response = self._request(client, "POST", path, json=body, headers=headers)
        try:
            stored = Shipment.model_validate_json(response.content)
        except ValidationError as exc:
            raise TMSError(
                f"TMS returned an invalid shipment after rescheduling "
                f"{shipment_id!r}: {exc}"
            ) from exc
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return RescheduleResult(shipment=stored, replayed=replayed)


def _error_detail(response: httpx.Response) -> str:
    """Read `detail` from an error body, falling back to the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return response.text[:500]


class DatabaseTMS:
    """The TMS operations on SQL tables, the embedded default when no TMS is set up.

    Tables (created if missing): `<prefix>shipments` and `<prefix>shipment_updates`,
    one row per applied reschedule with its idempotency key (unique), reason and
    the windows before and after. Window bounds are stored as ISO 8601 text with
    their UTC offset, so local weekdays survive the round trip on every database.

    Args:
        engine: SQLAlchemy engine (SQLite, or MySQL/MariaDB via `mysql+pymysql`).
        table_prefix: Prepended to both table names, e.g. to keep test runs apart.
    """

    def __init__(self, engine: sa.Engine, *, table_prefix: str = "") -> None:
        self._engine = engine
        metadata = sa.MetaData()
        self.shipments = sa.Table(
            f"{table_prefix}shipments",
            metadata,
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("order_id", sa.String(64), nullable=False),
            sa.Column("material", sa.String(64), nullable=False, index=True),
            sa.Column("customer_id", sa.String(64), nullable=False),
            sa.Column("customer_locale", sa.String(35), nullable=False),
            *(sa.Column(name, sa.String(40), nullable=False) for name in WINDOW_FIELDS),
            sa.Column("promised_date", sa.Date, nullable=False),
            sa.Column("status", sa.String(16), nullable=False, default=OPEN_STATUS),
        )
        self.updates = sa.Table(
            f"{table_prefix}shipment_updates",
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
            sa.Column(
                "shipment_id",
                sa.String(64),
                sa.ForeignKey(self.shipments.c.id, ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column("event_id", sa.String(200), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("previous_windows", sa.JSON, nullable=False),
            sa.Column("new_windows", sa.JSON, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        )
        self._metadata = metadata
        metadata.create_all(engine)

    def drop_tables(self) -> None:
        """Drop both tables, e.g. after a test."""
        self._metadata.drop_all(self._engine)

    def add_shipments(
        self, shipments: Sequence[Shipment], *, status: str = OPEN_STATUS
    ) -> int:
        """Insert shipments whose id is not in the table yet.

        Returns:
            The number of rows inserted.
        """
        ids = [shipment.id for shipment in shipments]
        with self._engine.begin() as connection:
            existing = set(
                connection.execute(
                    sa.select(self.shipments.c.id).where(self.shipments.c.id.in_(ids))
                ).scalars()
            )
            rows = [
                {**_shipment_row(shipment), "status": status}
                for shipment in shipments
                if shipment.id not in existing
            ]
            if rows:
                connection.execute(self.shipments.insert(), rows)
        return len(rows)

    def open_shipments(self, materials: Sequence[str]) -> list[Shipment]:
        """Return the open shipments of these materials, ordered by id."""
        if not materials:
            return []
        query = (
            sa.select(self.shipments)
            .where(self.shipments.c.material.in_(list(materials)))
            .where(self.shipments.c.status == OPEN_STATUS)
            .order_by(self.shipments.c.id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [_shipment_from_row(row) for row in rows]

    def get_shipment(self, shipment_id: str) -> Shipment | None:
        """Return one shipment whatever its status, or None."""
        query = sa.select(self.shipments).where(self.shipments.c.id == shipment_id)
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().one_or_none()
        return None if row is None else _shipment_from_row(row)

    def reschedule(
        self, reschedule: Reschedule, *, reason: str, event_id: str
    ) -> RescheduleResult:
        """Update the windows and record the change, once per event and shipment.

        Raises:
            TMSRejectedError: The shipment is missing or no longer open.
        """
        shipment_id = reschedule.shipment.id
        key = idempotency_key(event_id, shipment_id)
        with self._engine.begin() as connection:
            # Locks the row on MySQL/MariaDB; SQLite serializes writers anyway.
            row = (
                connection.execute(
                    sa.select(self.shipments)
                    .where(self.shipments.c.id == shipment_id)
                    .with_for_update()
                )
                .mappings()
                .one_or_none()
            )
            if row is None:
                detail = f"Shipment {shipment_id!r} not found."
                raise TMSRejectedError(
                    f"{detail} Check the id in table {self.shipments.name!r}.",
                    status_code=None,
                    detail=detail,
                )
            already_applied = connection.execute(
                sa.select(self.updates.c.id).where(
                    self.updates.c.idempotency_key == key
                )
            ).first()
            if already_applied is not None:
                return RescheduleResult(shipment=_shipment_from_row(row), replayed=True)
            if row["status"] != OPEN_STATUS:
                detail = (
                    f"Shipment {shipment_id!r} has status {row['status']!r} and "
                    "cannot be rescheduled."
                )
                raise TMSRejectedError(detail, status_code=None, detail=detail)

            new_windows = reschedule.windows()
            connection.execute(
                self.updates.insert().values(
                    idempotency_key=key,
                    shipment_id=shipment_id,
                    event_id=event_id,
                    reason=reason,
                    previous_windows={name: row[name] for name in WINDOW_FIELDS},
                    new_windows=new_windows,
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
            connection.execute(
                self.shipments.update()
                .where(self.shipments.c.id == shipment_id)
                .values(**new_windows)
            )
            updated = {**row, **new_windows}
        logger.info("Rescheduled shipment %s for event %s", shipment_id, event_id)
        return RescheduleResult(shipment=_shipment_from_row(updated), replayed=False)

    def updates_for(self, shipment_id: str) -> list[dict[str, Any]]:
        """Return the recorded changes of one shipment, oldest first."""
        query = (
            sa.select(self.updates)
            .where(self.updates.c.shipment_id == shipment_id)
            .order_by(self.updates.c.id)
        )
        with self._engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]


def _shipment_row(shipment: Shipment) -> dict[str, Any]:
    row = shipment.model_dump(mode="python")
    for name in WINDOW_FIELDS:
        row[name] = getattr(shipment, name).isoformat()
    return row


def _shipment_from_row(row: Any) -> Shipment:
    return Shipment.model_validate({name: row[name] for name in Shipment.model_fields})


def _demo_shipments(today: date) -> list[tuple[Shipment, str]]:
    zone = ZoneInfo("Europe/Berlin")

    def at(days: int, hour: int) -> datetime:
        day = today + timedelta(days=days)
        return datetime(day.year, day.month, day.day, hour, tzinfo=zone)

    def demo(
        number: int, material: str, customer: str, locale: str, start_in_days: int
    ) -> Shipment:
        return Shipment(
            id=f"DEMO-SHP-{number}",
            order_id=f"DEMO-SO-{number}",
            material=material,
            customer_id=customer,
            customer_locale=locale,
            pickup_start=at(start_in_days, 8),
            pickup_end=at(start_in_days, 12),
            delivery_start=at(start_in_days + 2, 9),
            delivery_end=at(start_in_days + 2, 17),
            promised_date=(today + timedelta(days=start_in_days + 3)),
        )

    return [
        (demo(1001, "A03-205", "DEMO-C-17", "de-DE", 3), OPEN_STATUS),
        (demo(1002, "A03-205", "DEMO-C-42", "en-GB", 5), OPEN_STATUS),
        (demo(1003, "A03-205", "DEMO-C-17", "de-DE", -4), "delivered"),
        (demo(1004, "A03-207", "DEMO-C-08", "fr-FR", 4), OPEN_STATUS),
        (demo(1005, "B11-010", "DEMO-C-42", "en-GB", 6), OPEN_STATUS),
    ]


def seed_demo_shipments(
    engine: sa.Engine, *, today: date | None = None, table_prefix: str = ""
) -> int:
    """Insert demo shipments (ids `DEMO-SHP-*`) for A03-205, A03-207 and B11-010.

    Windows lie a few days after `today` in Europe/Berlin time. Shipments whose id
    exists already are left as they are, so calling this twice inserts nothing the
    second time.

    Returns:
        The number of shipments inserted.
    """
    tms = DatabaseTMS(engine, table_prefix=table_prefix)
    inserted = 0
    for shipment, status in _demo_shipments(today or date.today()):
        inserted += tms.add_shipments([shipment], status=status)
    return inserted


def _is_tms_unavailable(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect retry condition: retry only `TMSUnavailableError`."""
    return isinstance(state.result(raise_on_failure=False), TMSUnavailableError)


@task(
    name="fetch-open-shipments",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_condition_fn=_is_tms_unavailable,
    cache_policy=NO_CACHE,
)
def fetch_open_shipments(tms: TMS, materials: Sequence[str]) -> list[Shipment]:
    """Return the open shipments of these materials, each once."""
    run_logger = get_run_logger()
    shipments = tms.open_shipments(materials)
    run_logger.info(
        "Found %d open shipments for materials %s", len(shipments), list(materials)
    )
    return shipments


@task(
    name="reschedule-shipments",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_condition_fn=_is_tms_unavailable,
    cache_policy=NO_CACHE,
)
def reschedule_shipments(
    tms: TMS,
    shipments: Sequence[Shipment],
    delay_days: int,
    *,
    reason: str,
    event_id: str,
    business_days: bool = False,
) -> list[tuple[Reschedule, RescheduleResult]]:
    """Move every shipment by `delay_days` and store it in the TMS.

    A retry after a partial failure sends the same idempotency keys, so shipments
    that were already moved are not moved twice.

    Returns:
        For each shipment, the computed reschedule and the TMS's result. When
        `result.replayed` is True the shipment was moved by an earlier run, and
        `result.shipment` contains the windows the TMS kept.
    """
    run_logger = get_run_logger()
    outcomes = []
    for shipment in shipments:
        reschedule = compute_reschedule(
            shipment, delay_days, business_days=business_days
        )
        result = tms.reschedule(reschedule, reason=reason, event_id=event_id)
        outcomes.append((reschedule, result))
        run_logger.info(
            "Shipment %s delivery now ends %s (promise missed: %s, replayed: %s)",
            shipment.id,
            result.shipment.delivery_end.isoformat(),
            reschedule.promise_missed,
            result.replayed,
        )
    return outcomes
