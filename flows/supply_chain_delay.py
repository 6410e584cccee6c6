"""Flow `supply-chain-delay`: a supplier's delay message becomes a ticket and a record."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.tasks.extraction import DelayNotice, extract_delay_notice
from flows.tasks.records import store_delay_record
from flows.tasks.storage import DEFAULT_RECORDS_BLOCK, open_records_database
from flows.tasks.tickets import LocalTicketStore, open_ticket

__all__ = ["supply_chain_delay"]


def _ticket_summary(notice: DelayNotice) -> str:
    materials = ", ".join(notice.materials) or "unknown material"
    return f"Supplier delay: {materials} +{notice.delay_days} days"


@flow(name="supply-chain-delay", log_prints=False)
def supply_chain_delay(
    event_id: str,
    text: str,
    route: str | None = None,
    sender: str | None = None,
    conversation: str | None = None,
    records_block: str = DEFAULT_RECORDS_BLOCK,
) -> DelayNotice:
    """Extract a delay notice, open a ticket for it and store the delay record.

    Args:
        event_id: The webhook event id; records and tickets are keyed by it.
        text: The supplier's message.
        route: The gateway route that received the message.
        sender: Who sent the message, as the chat platform names them.
        conversation: The chat group the message came from.
        records_block: Name of the MySQL block for records; SQLite when absent.
    """
    logger = get_run_logger()
    database = open_records_database(records_block)
    logger.info("records database: %s", database.description)

    notice = extract_delay_notice(text.strip())
    ticket_key = None
    if notice.is_delay:
        ticket = open_ticket(
            LocalTicketStore(database.engine),
            label=f"webhook-{event_id}",
            summary=_ticket_summary(notice),
            description=text,
            labels=[f"webhook-{event_id}"],
        )
        ticket_key = ticket.key
    else:
        logger.info("event %s is not a delay notice; no ticket", event_id)

    store_delay_record(
        database,
        event_id=event_id,
        route=route,
        notice=notice,
        message=text,
        sender=sender,
        ticket_key=ticket_key,
    )
    return notice
