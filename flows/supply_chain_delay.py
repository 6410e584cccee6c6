"""Flow `supply-chain-delay`: a supplier's delay message becomes a ticket, new
transport windows and approved notices to the customers whose orders are late.

Steps: extract (LLM or rules), find or open the ticket, move the open shipments
in the TMS, draft a notice per order whose promised date is now missed, suspend
for a person's decision on each notice, send the approved ones, record every
step in the records database.

Suspending ends the process, and Prefect runs the flow again from the top when a
person resumes it. The extraction result is cached per flow run, and every other
step reads the records first (tickets by label, shipment updates and notices by
event id), so the second execution repeats no side effect. A replay of the event
in a new flow run finds the same records and does nothing twice either.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, runtime, tags
from prefect.cache_policies import INPUTS, RUN_ID, TASK_SOURCE
from prefect.client.orchestration import get_client
from prefect.flow_runs import suspend_flow_run
from prefect.states import Completed
from pydantic import BaseModel

from blocks.chat_webhook import ChatWebhookCredentials
from blocks.jira import JiraCredentials
from blocks.llm import LLMCredentials
from blocks.smtp import SMTPCredentials
from blocks.tms import TMSCredentials
from flows.tasks.channels import (
    ChatWebhookChannel,
    EmailChannel,
    NoticeChannel,
    NoticeDeliveryError,
    OutboxChannel,
    send_customer_notice,
)
from flows.tasks.extraction import DelayNotice, extract_delay_notice
from flows.tasks.notices import (
    CustomerNotice,
    at_risk_orders,
    decision_form,
    draft_customer_notices,
    read_customer_notices,
    record_notice_decision,
    record_notice_delivery,
)
from flows.tasks.records import (
    read_shipment_updates,
    store_delay_record,
    store_shipment_updates,
    store_ticket_record,
)
from flows.tasks.report import (
    emit_ticket_created,
    publish_run_report,
    render_run_report,
)
from flows.tasks.storage import (
    DEFAULT_RECORDS_BLOCK,
    RecordsDatabase,
    load_block,
    open_records_database,
)
from flows.tasks.tickets import (
    JiraTicketStore,
    LocalTicketStore,
    Ticket,
    TicketStore,
    open_ticket,
)
from flows.tasks.tms import (
    TMS,
    DatabaseTMS,
    HttpTMS,
    fetch_open_shipments,
    reschedule_shipments,
    seed_demo_shipments,
)

__all__ = ["DelayRunSummary", "supply_chain_delay"]

NOT_A_DELAY = "Not a delay"
DEFAULT_APPROVAL_TIMEOUT_HOURS = 72.0
_NOT_LABEL_CHARACTERS = re.compile(r"[^A-Za-z0-9_.:-]+")
_NOT_KEY_CHARACTERS = re.compile(r"[^a-z0-9-]+")

# The LLM may answer differently each time, so the execution after a resume must
# reuse the first answer. RUN_ID keys the cache on the flow run: a replay of the
# event in a new run extracts again.
_extract_once_per_run = extract_delay_notice.with_options(
    cache_policy=INPUTS + TASK_SOURCE + RUN_ID, persist_result=True
)


class DelayRunSummary(BaseModel):
    """What one run did, as its result."""

    event_id: str
    status: str
    analyzer: str
    is_delay: bool
    ticket_key: str | None = None
    ticket_url: str | None = None
    shipments_moved: int = 0
    orders_at_risk: list[str] = []
    notices: dict[str, str] = {}
    embedded_defaults: list[str] = []


def ticket_label(event_id: str) -> str:
    """Return the deduplication label of an event's ticket (no whitespace)."""
    return f"webhook-{_NOT_LABEL_CHARACTERS.sub('-', event_id)}"[:255]


def _ticket_summary(notice: DelayNotice) -> str:
    materials = ", ".join(notice.materials) or "unknown material"
    days = f"+{notice.delay_days} days" if notice.delay_days else "delay"
    supplier = f" ({notice.supplier})" if notice.supplier else ""
    return f"Supplier delay: {materials} {days}{supplier}"[:255]


def _ticket_description(
    notice: DelayNotice,
    *,
    text: str,
    event_id: str,
    route: str | None,
    sender: str | None,
    conversation: str | None,
) -> str:
    """Return the ticket body in Jira wiki markup: the fields, then the message."""
    fields = [
        ("Materials", ", ".join(notice.materials) or "none found"),
        ("Delay", f"{notice.delay_days} days" if notice.delay_days else "unknown"),
        ("Reason", notice.reason),
        ("Supplier", notice.supplier),
        ("Original date", notice.original_date),
        ("New date", notice.new_date),
        ("Analyzer", f"{notice.analyzer} (confidence {notice.confidence:.2f})"),
        ("Webhook event", event_id),
        ("Route", route),
        ("Sender", sender),
        ("Chat group", conversation),
    ]
    lines = [f"*{name}:* {value}" for name, value in fields if value not in (None, "")]
    return "\n".join([*lines, "", "Original message:", "{quote}", text, "{quote}"])


def _pause_key(notice: CustomerNotice) -> str:
    """Return a suspend key that is unique per order and valid as an input key."""
    slug = _NOT_KEY_CHARACTERS.sub("-", notice.order_id.lower()).strip("-")[:40]
    digest = hashlib.sha256(notice.order_id.encode()).hexdigest()[:8]
    return f"notice-{slug}-{digest}"


def _tag_flow_run(run_tags: Sequence[str]) -> None:
    """Add tags to the current flow run, so the runs list can filter by them."""
    flow_run_id = runtime.flow_run.id
    if not flow_run_id:
        return
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        merged = list(dict.fromkeys([*flow_run.tags, *run_tags]))
        if merged != list(flow_run.tags):
            client.update_flow_run(flow_run_id, tags=merged)


def _open_ticket_store(
    jira: JiraCredentials | None, database: RecordsDatabase, defaults: list[str]
) -> tuple[TicketStore, str]:
    if jira is not None:
        return JiraTicketStore(jira), "jira"
    defaults.append("tickets: local ticket tables in the records database")
    return LocalTicketStore(database.engine), "local"


def _open_tms(
    credentials: TMSCredentials | None,
    database: RecordsDatabase,
    defaults: list[str],
    *,
    demo_shipments: bool,
) -> tuple[TMS, str]:
    if credentials is not None:
        return HttpTMS(credentials), "http"
    tms = DatabaseTMS(database.engine)
    if demo_shipments:
        seed_demo_shipments(database.engine)
    defaults.append(
        "TMS: the shipments table in the records database"
        + (" (with demo shipments)" if demo_shipments else "")
    )
    return tms, "database"


def _open_channel(
    smtp: SMTPCredentials | None,
    webhook: ChatWebhookCredentials | None,
    database: RecordsDatabase,
    defaults: list[str],
) -> NoticeChannel:
    if smtp is not None:
        return EmailChannel(smtp, database.engine)
    if webhook is not None:
        return ChatWebhookChannel(webhook)
    defaults.append("customer notices: the notice_outbox table in the records database")
    return OutboxChannel(database.engine)


def _move_shipments(
    tms: TMS,
    tms_kind: str,
    database: RecordsDatabase,
    notice: DelayNotice,
    *,
    event_id: str,
    business_days: bool,
) -> list[dict[str, Any]]:
    """Reschedule the open shipments not yet moved for this event; return all moves."""
    logger = get_run_logger()
    recorded = read_shipment_updates(database, event_id)
    shipments = fetch_open_shipments(tms, notice.materials)
    to_move = [shipment for shipment in shipments if shipment.id not in recorded]
    if len(to_move) < len(shipments):
        logger.info(
            "%d shipments were moved for event %s before; not moving them again",
            len(shipments) - len(to_move),
            event_id,
        )
    if to_move:
        reason = f"Supplier delay of {notice.delay_days} days"
        if notice.reason:
            reason += f": {notice.reason}"
        outcomes = reschedule_shipments(
            tms,
            to_move,
            notice.delay_days,
            reason=reason,
            event_id=event_id,
            business_days=business_days,
        )
        recorded = store_shipment_updates(
            database, event_id=event_id, tms=tms_kind, outcomes=outcomes
        )
    return list(recorded.values())


def _decide_and_send(
    notices: Sequence[CustomerNotice],
    *,
    database: RecordsDatabase,
    channel: NoticeChannel,
    ticket_key: str | None,
    timeout_seconds: int,
    report: Any,
) -> list[CustomerNotice]:
    """Ask a person about each draft, one suspend per order, and send approved ones."""
    decided = []
    for notice in notices:
        if notice.status == "draft":
            report(f"awaiting approval of the notice for order {notice.order_id}")
            decision = suspend_flow_run(
                wait_for_input=decision_form(notice, ticket_key),
                key=_pause_key(notice),
                timeout=timeout_seconds,
            )
            notice = record_notice_decision(
                database, notice, decision, flow_run_id=str(runtime.flow_run.id)
            )
        if notice.status in ("approved", "failed") and notice.sent_text:
            try:
                recipient, delivery_id = send_customer_notice(
                    channel, notice, notice.sent_text
                )
            except NoticeDeliveryError as exc:
                get_run_logger().error(
                    "notice for order %s failed: %s", notice.order_id, exc
                )
                notice = record_notice_delivery(
                    database,
                    notice,
                    channel=channel.name,
                    recipient=None,
                    delivery_id=None,
                    error=str(exc),
                )
            else:
                notice = record_notice_delivery(
                    database,
                    notice,
                    channel=channel.name,
                    recipient=recipient,
                    delivery_id=delivery_id,
                    error=None,
                )
        decided.append(notice)
    return decided


@flow(name="supply-chain-delay", log_prints=False)
def supply_chain_delay(
    event_id: str,
    text: str,
    route: str | None = None,
    sender: str | None = None,
    conversation: str | None = None,
    records_block: str = DEFAULT_RECORDS_BLOCK,
    llm_block: str = "llm",
    jira_block: str = "jira",
    tms_block: str = "tms",
    smtp_block: str = "smtp",
    notice_webhook_block: str = "notice-webhook",
    business_days: bool = False,
    notify_customers: bool = True,
    demo_shipments: bool = True,
    approval_timeout_hours: float = DEFAULT_APPROVAL_TIMEOUT_HOURS,
) -> Any:
    """Turn a supplier's delay message into a ticket, new windows and notices.

    Each `*_block` parameter names a block; when no block of that name exists (or
    the name is empty) the run uses the embedded default and logs it.

    Args:
        event_id: The webhook event id; tickets and records are keyed by it.
        text: The supplier's message.
        route: The gateway route that received the message.
        sender: Who sent the message, as the chat platform names them.
        conversation: The chat group the message came from.
        records_block: MySQLCredentials block for records; SQLite when absent.
        llm_block: LLMCredentials block; the rule parser and templates when absent.
        jira_block: JiraCredentials block; local ticket tables when absent.
        tms_block: TMSCredentials block; the shipments table when absent.
        smtp_block: SMTPCredentials block for e-mailed notices.
        notice_webhook_block: ChatWebhookCredentials block, used when there is no
            SMTP block; the notice_outbox table when both are absent.
        business_days: Count the delay in weekdays when moving windows.
        notify_customers: Draft notices and wait for approval; False stops after
            the TMS step.
        demo_shipments: Seed demo shipments into the embedded shipments table.
        approval_timeout_hours: The run fails when nobody decides on a notice
            within this time.

    Returns:
        A `DelayRunSummary`; a message that is not a delay ends in the Completed
        state named "Not a delay".
    """
    logger = get_run_logger()
    database = open_records_database(records_block)
    defaults: list[str] = []
    if database.is_default:
        defaults.append(f"records: {database.description}")
    logger.info("records database: %s", database.description)

    llm = load_block(LLMCredentials, llm_block)
    if llm is None:
        defaults.append(
            f"LLM: none (no block {llm_block!r}); rules extract, templates draft"
        )
    run_tags = [f"route:{route}"] if route else []
    with tags(*run_tags):
        notice = _extract_once_per_run(text.strip(), llm)
    logger.info(
        "event %s: is_delay=%s, analyzer=%s", event_id, notice.is_delay, notice.analyzer
    )
    if notice.supplier:
        run_tags.append(f"supplier:{notice.supplier}")
    _tag_flow_run(run_tags)

    def publish(status: str, **parts: Any) -> None:
        markdown = render_run_report(
            event_id=event_id,
            status=status,
            delay=notice,
            ticket=parts.get("ticket"),
            updates=parts.get("updates", []),
            notices=parts.get("notices", []),
            defaults=defaults,
        )
        publish_run_report(event_id, markdown, f"Supply-chain delay {event_id}")

    summary = DelayRunSummary(
        event_id=event_id,
        status="completed",
        analyzer=notice.analyzer,
        is_delay=notice.is_delay,
        embedded_defaults=defaults,
    )
    if not notice.is_delay:
        logger.info(
            "event %s is not a delay notice (%s); no ticket",
            event_id,
            notice.not_delay_reason,
        )
        store_delay_record(
            database,
            event_id=event_id,
            route=route,
            notice=notice,
            message=text,
            sender=sender,
            ticket_key=None,
        )
        _log_defaults(defaults)
        publish(NOT_A_DELAY)
        summary.status = NOT_A_DELAY
        return Completed(name=NOT_A_DELAY, message=NOT_A_DELAY, data=summary)

    with tags(*run_tags):
        jira = load_block(JiraCredentials, jira_block)
        store, store_kind = _open_ticket_store(jira, database, defaults)
        assignee = (
            jira.assignee_for(notice.materials, notice.supplier) if jira else None
        )
        summary_line = _ticket_summary(notice)
        ticket: Ticket = open_ticket(
            store,
            label=ticket_label(event_id),
            summary=summary_line,
            description=_ticket_description(
                notice,
                text=text,
                event_id=event_id,
                route=route,
                sender=sender,
                conversation=conversation,
            ),
            labels=["supply-chain-delay"],
            assignee=assignee,
        )
        if ticket.created:
            emit_ticket_created(
                ticket=ticket,
                event_id=event_id,
                route=route,
                supplier=notice.supplier,
                store=store_kind,
            )
        store_ticket_record(
            database,
            event_id=event_id,
            ticket=ticket,
            store=store_kind,
            assignee=assignee,
            summary=summary_line,
        )
        store_delay_record(
            database,
            event_id=event_id,
            route=route,
            notice=notice,
            message=text,
            sender=sender,
            ticket_key=ticket.key,
        )
        summary.ticket_key, summary.ticket_url = ticket.key, ticket.url

        updates: list[dict[str, Any]] = []
        if notice.delay_days and notice.materials:
            tms_credentials = load_block(TMSCredentials, tms_block)
            tms, tms_kind = _open_tms(
                tms_credentials, database, defaults, demo_shipments=demo_shipments
            )
            updates = _move_shipments(
                tms,
                tms_kind,
                database,
                notice,
                event_id=event_id,
                business_days=business_days,
            )
        else:
            logger.info(
                "event %s names no materials or no delay length; TMS not changed",
                event_id,
            )
        summary.shipments_moved = len(updates)
        orders = at_risk_orders(updates)
        summary.orders_at_risk = [order.order_id for order in orders]

        notices: list[CustomerNotice] = []
        if orders and notify_customers:
            channel = _open_channel(
                load_block(SMTPCredentials, smtp_block),
                load_block(ChatWebhookCredentials, notice_webhook_block),
                database,
                defaults,
            )
            _log_defaults(defaults)
            drafts = draft_customer_notices(
                database, event_id=event_id, orders=orders, delay=notice, llm=llm
            )
            notices = _decide_and_send(
                drafts,
                database=database,
                channel=channel,
                ticket_key=ticket.key,
                timeout_seconds=int(approval_timeout_hours * 3600),
                report=lambda status: publish(
                    status,
                    ticket=ticket,
                    updates=updates,
                    notices=read_customer_notices(database, event_id),
                ),
            )
        else:
            _log_defaults(defaults)
            if orders:
                logger.info("notify_customers is off; no notices drafted")

    summary.notices = {item.order_id: item.status for item in notices}
    failed = [item.order_id for item in notices if item.status == "failed"]
    publish(
        "notices failed" if failed else "completed",
        ticket=ticket,
        updates=updates,
        notices=notices,
    )
    if failed:
        raise NoticeDeliveryError(
            f"Notices for orders {failed!r} of event {event_id!r} could not be sent; "
            "see the errors in table delay_customer_notices, fix the channel and "
            "retry the flow run."
        )
    return summary


def _log_defaults(defaults: Sequence[str]) -> None:
    logger = get_run_logger()
    for item in defaults:
        logger.info("embedded default: %s", item)
