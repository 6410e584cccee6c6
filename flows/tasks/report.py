"""Markdown artifact and Prefect events of a supply-chain delay run."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

__all__ = [
    "TICKET_CREATED_EVENT",
    "artifact_key",
    "emit_ticket_created",
    "publish_run_report",
    "render_run_report",
]

TICKET_CREATED_EVENT = "supply-chain.ticket.created"
# Namespace of the event ids, so the same ticket always gets the same event id and
# the Prefect server stores a repeated emission once.
_EVENT_NAMESPACE = uuid.UUID("5b0c9a52-1d5e-4c62-9a8e-3f1f3c2f4b10")
_NOT_KEY_CHARACTERS = re.compile(r"[^a-z0-9-]+")


def artifact_key(event_id: str) -> str:
    """Return the artifact key of an event: lowercase letters, digits and dashes."""
    slug = _NOT_KEY_CHARACTERS.sub("-", event_id.lower()).strip("-")[:80]
    return f"supply-chain-delay-{slug or 'event'}"


def emit_ticket_created(
    *, ticket: Any, event_id: str, route: str | None, supplier: str | None, store: str
) -> None:
    """Emit `supply-chain.ticket.created` for a ticket this run created."""
    resource = {
        "prefect.resource.id": f"supply-chain.ticket.{ticket.key}",
        "prefect.resource.name": ticket.key,
        "ticket.store": store,
    }
    if ticket.url:
        resource["ticket.url"] = ticket.url
    emit_event(
        event=TICKET_CREATED_EVENT,
        resource=resource,
        related=[
            {
                "prefect.resource.id": f"webhook.event.{event_id}",
                "prefect.resource.role": "webhook-event",
            }
        ],
        payload={
            "event_id": event_id,
            "route": route,
            "supplier": supplier,
            "ticket_key": ticket.key,
            "ticket_url": ticket.url,
        },
        id=uuid.uuid5(_EVENT_NAMESPACE, f"{store}:{ticket.key}"),
    )


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_run_report(
    *,
    event_id: str,
    status: str,
    delay: Any,
    ticket: Any | None,
    updates: Sequence[dict[str, Any]],
    notices: Sequence[Any],
    defaults: Sequence[str],
) -> str:
    """Render the run's Markdown: extracted fields, ticket, TMS changes, notices."""
    lines = [
        f"# Supply-chain delay `{_cell(event_id)}`",
        "",
        f"**Status:** {status}",
        "",
    ]
    lines += ["## Extracted", "", "| field | value |", "| --- | --- |"]
    for name in (
        "is_delay",
        "materials",
        "delay_days",
        "reason",
        "supplier",
        "original_date",
        "new_date",
        "confidence",
        "analyzer",
        "not_delay_reason",
    ):
        value = getattr(delay, name, None)
        if isinstance(value, list):
            value = ", ".join(value)
        lines.append(f"| {name} | {_cell(value)} |")

    lines += ["", "## Ticket", ""]
    if ticket is None:
        lines.append("No ticket.")
    elif ticket.url:
        lines.append(f"[{ticket.key}]({ticket.url})")
    else:
        lines.append(f"{ticket.key} (local ticket store)")

    lines += ["", "## TMS changes", ""]
    if updates:
        lines += [
            (
                "| shipment | order | material | delivery end before "
                "| delivery end now | promised | missed |"
            ),
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for update in updates:
            lines.append(
                f"| {_cell(update['shipment_id'])} | {_cell(update['order_id'])} "
                f"| {_cell(update['material'])} "
                f"| {_cell(update['previous_windows']['delivery_end'])} "
                f"| {_cell(update['new_windows']['delivery_end'])} "
                f"| {_cell(update['promised_date'])} "
                f"| {'yes' if update['promise_missed'] else 'no'} |"
            )
    else:
        lines.append("No shipments moved.")

    lines += ["", "## Customer notices", ""]
    if notices:
        lines += [
            "| order | customer | language | drafted by | status | channel |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for notice in notices:
            lines.append(
                f"| {_cell(notice.order_id)} | {_cell(notice.customer_id)} "
                f"| {notice.language} | {_cell(notice.drafted_by)} "
                f"| {notice.status} | {_cell(notice.channel)} |"
            )
    else:
        lines.append("No customer notices.")

    if defaults:
        lines += ["", "## Embedded defaults", ""]
        lines += [f"- {_cell(item)}" for item in defaults]
    return "\n".join(lines) + "\n"


def publish_run_report(event_id: str, markdown: str, description: str) -> None:
    """Create a new version of the event's Markdown artifact."""
    create_markdown_artifact(
        markdown=markdown, key=artifact_key(event_id), description=description
    )
