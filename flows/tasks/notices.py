"""Customer notices about late orders: drafts, the approval form and their records.

Each order whose promised date is missed gets one row in `delay_customer_notices`,
keyed by (event id, order id). The row moves through these statuses:

    draft ──approve/edit──> approved ──> sent
      │                        └──────> failed ──(rerun)──> sent
      └──reject──> rejected

A rerun of the flow (a resumed, retried or replayed run) reads the row first, so it
never drafts, requests a decision or sends twice for the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import BaseModel, Field

from flows.tasks.records import insert_if_absent, records_metadata, upsert_row
from flows.tasks.storage import RecordsDatabase

__all__ = [
    "AtRiskOrder",
    "CustomerNotice",
    "NoticeDecision",
    "NoticeStatus",
    "at_risk_orders",
    "decision_form",
    "draft_customer_notices",
    "notice_language",
    "read_customer_notices",
    "record_notice_decision",
    "record_notice_delivery",
    "render_template_notice",
]

logger = logging.getLogger(__name__)

FLOWS_DIRECTORY = Path(__file__).resolve().parents[1]
NOTICE_PROMPT = FLOWS_DIRECTORY / "prompts" / "customer_notice.md"
TEMPLATES_DIRECTORY = FLOWS_DIRECTORY / "templates"
LANGUAGE_NAMES = {"zh": "Simplified Chinese", "en": "English"}
MAX_SUBJECT_LENGTH = 255

NoticeStatus = Literal["draft", "approved", "rejected", "sent", "failed"]

delay_customer_notices = sa.Table(
    "delay_customer_notices",
    records_metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("customer_locale", sa.String(35), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("shipment_ids", sa.JSON, nullable=False),
    sa.Column("materials", sa.JSON, nullable=False),
    sa.Column("promised_date", sa.Date, nullable=False),
    sa.Column("new_delivery_date", sa.Date, nullable=False),
    sa.Column("subject", sa.String(MAX_SUBJECT_LENGTH), nullable=False),
    sa.Column("draft_text", sa.Text, nullable=False),
    sa.Column("drafted_by", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(16), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("sent_text", sa.Text, nullable=True),
    sa.Column("channel", sa.String(32), nullable=True),
    sa.Column("recipient", sa.String(320), nullable=True),
    sa.Column("delivery_id", sa.String(255), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("flow_run_id", sa.String(36), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


class AtRiskOrder(BaseModel, frozen=True):
    """An order whose delivery now ends after the date promised to the customer.

    Attributes:
        order_id: The customer order.
        customer_id: The customer, as the TMS names them.
        customer_locale: BCP 47 locale such as `zh-CN` or `en-GB`.
        shipment_ids: The order's moved shipments whose promise is missed.
        materials: Delayed materials in those shipments.
        promised_date: The earliest promised date of those shipments.
        new_delivery_date: The latest new delivery end, as a local date.
    """

    order_id: str
    customer_id: str
    customer_locale: str
    shipment_ids: list[str]
    materials: list[str]
    promised_date: date
    new_delivery_date: date


class CustomerNotice(BaseModel):
    """A row of `delay_customer_notices`."""

    event_id: str
    order_id: str
    customer_id: str
    customer_locale: str
    language: str
    shipment_ids: list[str]
    materials: list[str]
    promised_date: date
    new_delivery_date: date
    subject: str
    draft_text: str
    drafted_by: str
    status: NoticeStatus
    decision: str | None = None
    comment: str | None = None
    sent_text: str | None = None
    channel: str | None = None
    recipient: str | None = None
    delivery_id: str | None = None
    error: str | None = None


class NoticeDecision(RunInput):
    """The approval form the Prefect UI shows for one customer notice.

    Both "approve" and "edit" send `text` as it is in the form; "edit" records
    that the person changed the draft. "reject" sends nothing.
    """

    action: Literal["approve", "edit", "reject"] = Field(
        default="approve",
        description="approve: send the text; edit: send your edited text; "
        "reject: send nothing.",
    )
    text: str = Field(default="", description="The notice the customer receives.")
    comment: str = Field(default="", description="Why, for the record (optional).")


class _DraftAnswer(BaseModel):
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT_LENGTH)
    body: str = Field(min_length=1)


def notice_language(locale: str) -> Literal["zh", "en"]:
    """Return "zh" for a Chinese locale (zh, zh-CN, zh_TW, ...), else "en"."""
    primary = locale.replace("_", "-").split("-", 1)[0].strip().lower()
    return "zh" if primary == "zh" else "en"


def at_risk_orders(updates: Sequence[dict[str, Any]]) -> list[AtRiskOrder]:
    """Group the recorded shipment updates whose promise is missed by order.

    Args:
        updates: Rows of `delay_shipment_updates`.

    Returns:
        One entry per order, sorted by order id.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for update in updates:
        if update["promise_missed"]:
            grouped.setdefault(update["order_id"], []).append(update)

    orders = []
    for order_id in sorted(grouped):
        rows = grouped[order_id]
        new_dates = [
            datetime.fromisoformat(row["new_windows"]["delivery_end"]).date()
            for row in rows
        ]
        orders.append(
            AtRiskOrder(
                order_id=order_id,
                customer_id=rows[0]["customer_id"],
                customer_locale=rows[0]["customer_locale"],
                shipment_ids=[row["shipment_id"] for row in rows],
                materials=list(dict.fromkeys(row["material"] for row in rows)),
                promised_date=min(row["promised_date"] for row in rows),
                new_delivery_date=max(new_dates),
            )
        )
    return orders


def _facts(order: AtRiskOrder, delay: Any) -> dict[str, Any]:
    return {
        "customer_id": order.customer_id,
        "order_id": order.order_id,
        "materials": ", ".join(order.materials),
        "delay_days": delay.delay_days,
        "reason": delay.reason,
        "promised_date": order.promised_date.isoformat(),
        "new_delivery_date": order.new_delivery_date.isoformat(),
    }


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader([TEMPLATES_DIRECTORY, NOTICE_PROMPT.parent]),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render_template_notice(order: AtRiskOrder, delay: Any) -> tuple[str, str]:
    """Render the subject and text of a notice from the template of its language.

    Args:
        order: The late order.
        delay: The extracted delay notice (`delay_days`, `reason`).

    Returns:
        The subject and the text.
    """
    language = notice_language(order.customer_locale)
    facts = _facts(order, delay)
    environment = _environment()
    subject = environment.get_template("customer_notice_subject.txt").render(
        language=language, **facts
    )
    text = environment.get_template(f"customer_notice.{language}.txt").render(**facts)
    return subject.strip(), text.strip()


def _draft_with_llm(order: AtRiskOrder, delay: Any, llm: Any) -> tuple[str, str]:
    """Ask the LLM for the notice; raises `LLMError` when it cannot give one."""
    from flows.tasks.llm import complete_structured

    language = notice_language(order.customer_locale)
    prompt = (
        _environment()
        .get_template(NOTICE_PROMPT.name)
        .render(language_name=LANGUAGE_NAMES[language], **_facts(order, delay))
    )
    messages = [
        {"role": "system", "content": prompt},
        {"role": "user", "content": f"Write the notice for order {order.order_id}."},
    ]
    answer = complete_structured(llm, messages, _DraftAnswer)
    return answer.subject.strip(), answer.body.strip()


def draft_notice(
    order: AtRiskOrder, delay: Any, llm: Any | None
) -> tuple[str, str, str]:
    """Draft one notice with the LLM, or from the template when it fails or is absent.

    Returns:
        The subject, the text and what drafted it ("llm:<model>" or "template").
    """
    if llm is not None:
        from flows.tasks.llm import LLMError

        try:
            subject, text = _draft_with_llm(order, delay, llm)
        except LLMError as exc:
            logger.warning(
                "LLM draft of the notice for order %s failed, using the template: %s",
                order.order_id,
                exc,
            )
        else:
            return subject, text, f"llm:{llm.model}"
    subject, text = render_template_notice(order, delay)
    return subject, text, "template"


def read_customer_notices(
    database: RecordsDatabase, event_id: str
) -> list[CustomerNotice]:
    """Return the notices of an event, sorted by order id."""
    records_metadata.create_all(database.engine, tables=[delay_customer_notices])
    query = (
        sa.select(delay_customer_notices)
        .where(delay_customer_notices.c.event_id == event_id)
        .order_by(delay_customer_notices.c.order_id)
    )
    with database.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [CustomerNotice.model_validate(dict(row)) for row in rows]


@task(
    name="draft-customer-notices",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_policy=NO_CACHE,
)
def draft_customer_notices(
    database: RecordsDatabase,
    *,
    event_id: str,
    orders: Sequence[AtRiskOrder],
    delay: Any,
    llm: Any | None,
) -> list[CustomerNotice]:
    """Draft a notice for each order that has none yet, and store it as "draft".

    Orders with a stored notice keep it, whatever its status, so a rerun never
    drafts again or loses a decision.

    Returns:
        The notices of all `orders`, sorted by order id.
    """
    run_logger = get_run_logger()
    existing = {notice.order_id for notice in read_customer_notices(database, event_id)}
    now = datetime.now(UTC)
    for order in orders:
        if order.order_id in existing:
            continue
        subject, text, drafted_by = draft_notice(order, delay, llm)
        with database.engine.begin() as connection:
            insert_if_absent(
                connection,
                delay_customer_notices,
                {
                    "event_id": event_id,
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "customer_locale": order.customer_locale,
                    "language": notice_language(order.customer_locale),
                    "shipment_ids": order.shipment_ids,
                    "materials": order.materials,
                    "promised_date": order.promised_date,
                    "new_delivery_date": order.new_delivery_date,
                    "subject": subject[:MAX_SUBJECT_LENGTH],
                    "draft_text": text,
                    "drafted_by": drafted_by,
                    "status": "draft",
                    "created_at": now,
                    "updated_at": now,
                },
            )
        run_logger.info(
            "drafted notice for order %s (customer %s) with %s",
            order.order_id,
            order.customer_id,
            drafted_by,
        )
    wanted = {order.order_id for order in orders}
    return [
        notice
        for notice in read_customer_notices(database, event_id)
        if notice.order_id in wanted
    ]


def decision_form(
    notice: CustomerNotice, ticket_key: str | None
) -> type[NoticeDecision]:
    """Return the form class for one notice, prefilled with its draft.

    The description is Markdown that the Prefect UI shows above the form.
    """
    description = "\n".join(
        [
            f"### Customer notice for order {notice.order_id}",
            "",
            f"- customer: {notice.customer_id} (locale {notice.customer_locale})",
            f"- shipments: {', '.join(notice.shipment_ids)}",
            f"- materials: {', '.join(notice.materials)}",
            f"- promised date: {notice.promised_date.isoformat()}",
            f"- new delivery date: {notice.new_delivery_date.isoformat()}",
            f"- ticket: {ticket_key or 'none'}",
            f"- subject: {notice.subject}",
            f"- drafted by: {notice.drafted_by}",
            "",
            (
                "Choose approve to send the text below, edit after changing it, "
                "or reject to send nothing."
            ),
        ]
    )
    return NoticeDecision.with_initial_data(
        description=description, action="approve", text=notice.draft_text, comment=""
    )


def _read_notice(
    database: RecordsDatabase, event_id: str, order_id: str
) -> CustomerNotice:
    query = sa.select(delay_customer_notices).where(
        delay_customer_notices.c.event_id == event_id,
        delay_customer_notices.c.order_id == order_id,
    )
    with database.engine.connect() as connection:
        row = connection.execute(query).mappings().one()
    return CustomerNotice.model_validate(dict(row))


def _update_notice(
    database: RecordsDatabase, notice: CustomerNotice, values: dict[str, Any]
) -> None:
    with database.engine.begin() as connection:
        upsert_row(
            connection,
            delay_customer_notices,
            {"event_id": notice.event_id, "order_id": notice.order_id},
            {**values, "updated_at": datetime.now(UTC)},
        )


@task(
    name="record-notice-decision",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
)
def record_notice_decision(
    database: RecordsDatabase,
    notice: CustomerNotice,
    decision: NoticeDecision,
    *,
    flow_run_id: str | None,
) -> CustomerNotice:
    """Store a person's decision: "approved" with the text to send, or "rejected".

    Raises:
        ValueError: An approve or edit decision has an empty text.
    """
    run_logger = get_run_logger()
    text = decision.text.strip()
    if decision.action != "reject" and not text:
        raise ValueError(
            f"The {decision.action!r} decision for order {notice.order_id!r} has an "
            "empty text. Resume the run with the notice text, or reject it."
        )
    status: NoticeStatus = "rejected" if decision.action == "reject" else "approved"
    now = datetime.now(UTC)
    values = {
        "status": status,
        "decision": decision.action,
        "comment": decision.comment.strip() or None,
        "sent_text": None if status == "rejected" else text,
        "flow_run_id": flow_run_id,
        "decided_at": now,
        "updated_at": now,
    }
    table = delay_customer_notices
    # Only a draft takes a decision, so a replayed run that was suspended at the
    # same time cannot overwrite the first decision.
    with database.engine.begin() as connection:
        result = connection.execute(
            table.update()
            .where(table.c.event_id == notice.event_id)
            .where(table.c.order_id == notice.order_id)
            .where(table.c.status == "draft")
            .values(**values)
        )
    if not result.rowcount:
        stored = _read_notice(database, notice.event_id, notice.order_id)
        run_logger.warning(
            "notice for order %s was already decided (%s); keeping that decision",
            notice.order_id,
            stored.status,
        )
        return stored
    run_logger.info(
        "notice for order %s: %s (text changed: %s)",
        notice.order_id,
        decision.action,
        text != notice.draft_text.strip(),
    )
    return notice.model_copy(update=values)


@task(
    name="record-notice-delivery",
    retries=3,
    retry_delay_seconds=[1, 5, 15],
    cache_policy=NO_CACHE,
)
def record_notice_delivery(
    database: RecordsDatabase,
    notice: CustomerNotice,
    *,
    channel: str,
    recipient: str | None,
    delivery_id: str | None,
    error: str | None,
) -> CustomerNotice:
    """Store the outcome of sending: "sent" with the delivery id, or "failed"."""
    values: dict[str, Any] = {
        "status": "failed" if error else "sent",
        "channel": channel,
        "recipient": recipient,
        "delivery_id": delivery_id,
        "error": error,
    }
    if not error:
        values["sent_at"] = datetime.now(UTC)
    _update_notice(database, notice, values)
    return notice.model_copy(update=values)
