"""Flow `customer-feedback`: classify feedback, route it, store it.

Negative feedback becomes a customer-service ticket, positive feedback a message to
the product team's Feishu group, and every feedback a row in `customer_feedback`.
`RoutingRules` changes which sentiment leads to what.
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State
from pydantic import BaseModel, Field

from blocks.feishu import FeishuBotCredentials
from blocks.jira import JiraCredentials
from blocks.llm import LLMCredentials
from flows.tasks.feedback import (
    FeedbackAction,
    FeedbackSubmission,
    RoutingRules,
    analyze_submission,
    parse_submission,
)
from flows.tasks.feedback_records import (
    NotificationStatus,
    queue_outbox_message,
    read_feedback_record,
    record_feedback_outcome,
    store_feedback_record,
)
from flows.tasks.feishu import FeishuBotError, notify_feishu_group
from flows.tasks.sentiment import FeedbackAnalysis
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

__all__ = ["FeedbackOutcome", "customer_feedback"]

DEFAULT_LLM_BLOCK = "llm"
DEFAULT_TICKET_BLOCK = "jira-service"
DEFAULT_FEISHU_BLOCK = "feishu-product"
TICKET_LABEL = "customer-feedback"
# Characters of the feedback quoted in a ticket summary or a Feishu message.
MAX_QUOTED_CHARS = 500
MAX_TICKET_SUMMARY_CHARS = 255


class FeedbackOutcome(BaseModel):
    """Result of one run for one feedback: the flow's return value, without contact."""

    event_id: str
    sentiment: str
    urgency: str
    analyzer: str
    actions: list[FeedbackAction]
    ticket_key: str | None = None
    notification_status: NotificationStatus
    notification_code: int | None = None
    defaults: list[str] = Field(default_factory=list)


def _ticket_store(
    block_name: str | None, database: RecordsDatabase
) -> tuple[TicketStore, str | None, str | None]:
    """Return the ticket store, the assignee, and a note when it is the default."""
    credentials = load_block(JiraCredentials, block_name)
    if credentials is not None:
        return JiraTicketStore(credentials), credentials.default_assignee, None
    note = (
        f"tickets: local ticket table in the records database "
        f"(no Jira Credentials block named {block_name!r})"
    )
    return LocalTicketStore(database.engine), None, note


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _ticket_summary(submission: FeedbackSubmission, analysis: FeedbackAnalysis) -> str:
    title = f"Customer feedback on {submission.subject}: {analysis.summary}"
    return _one_line(title, MAX_TICKET_SUMMARY_CHARS)


def _ticket_description(
    submission: FeedbackSubmission, analysis: FeedbackAnalysis
) -> str:
    lines = [
        f"Feedback {submission.feedback_id} on {submission.subject}",
        f"Urgency: {analysis.urgency}; topics: {', '.join(analysis.topics) or 'none'}",
        (
            f"User: {submission.user_id or 'unknown'}; "
            f"contact: {submission.masked_contact or 'none'} "
            "(full value in the customer_feedback table)"
        ),
        f"Page: {submission.page or 'unknown'}",
        f"Analyzer: {analysis.analyzer}",
        "",
        submission.text,
    ]
    return "\n".join(lines)


def _feishu_text(submission: FeedbackSubmission, analysis: FeedbackAnalysis) -> str:
    heading = {"positive": "好评", "negative": "差评", "neutral": "反馈"}
    lines = [
        f"[{heading[analysis.sentiment]}] {submission.subject}",
        f"摘要: {analysis.summary}",
        f"话题: {', '.join(analysis.topics) or '-'}; 紧急程度: {analysis.urgency}",
        f"原文: {_one_line(submission.text, MAX_QUOTED_CHARS)}",
        f"反馈编号: {submission.feedback_id}",
    ]
    return "\n".join(lines)


def _artifact_key(event_id: str) -> str:
    # Prefect artifact keys allow lower-case letters, digits and dashes only.
    slug = re.sub(r"[^a-z0-9-]+", "-", event_id.lower()).strip("-")
    return f"customer-feedback-{slug[:80] or 'event'}"


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _artifact_markdown(
    submission: FeedbackSubmission,
    analysis: FeedbackAnalysis,
    outcome: FeedbackOutcome,
    notification_error: str | None,
) -> str:
    rows = [
        ("Event id", submission.feedback_id),
        ("Product", submission.product or "-"),
        ("Page", submission.page or "-"),
        ("User id", submission.user_id or "-"),
        ("Contact", submission.masked_contact or "-"),
        ("Locale", submission.locale or "-"),
        ("Submitted at", submission.submitted_at or "-"),
        ("Sentiment", f"{analysis.sentiment} (score {analysis.score:.2f})"),
        ("Urgency", analysis.urgency),
        ("Topics", ", ".join(analysis.topics) or "-"),
        ("Summary", analysis.summary),
        ("Analyzer", analysis.analyzer),
        ("Actions", ", ".join(outcome.actions) or "store only"),
        ("Ticket", outcome.ticket_key or "-"),
        ("Notification", outcome.notification_status),
        ("Notification code", outcome.notification_code or "-"),
        ("Notification error", notification_error or "-"),
    ]
    table = "\n".join(f"| {name} | {_markdown_cell(value)} |" for name, value in rows)
    lines = [
        f"# Customer feedback {_markdown_cell(submission.feedback_id)}",
        "",
        "| Field | Value |",
        "| --- | --- |",
        table,
        "",
        "## Feedback",
        "",
        "> " + _markdown_cell(_one_line(submission.text, 2000)),
    ]
    if outcome.defaults:
        lines += ["", "## Embedded defaults in use", ""]
        lines += [f"- {item}" for item in outcome.defaults]
    return "\n".join(lines) + "\n"


def _notify_group(
    database: RecordsDatabase,
    block_name: str,
    event_id: str,
    text: str,
    defaults: list[str],
) -> tuple[NotificationStatus, int | None, str | None]:
    """Post the message once per event: to the bot, or to the local outbox."""
    logger = get_run_logger()
    previous = read_feedback_record(database, event_id)
    if previous is not None and previous["notification_status"] == "delivered":
        logger.info(
            "feedback %s was already posted to Feishu; not posting again", event_id
        )
        return "delivered", None, None

    bot = load_block(FeishuBotCredentials, block_name)
    if bot is None:
        defaults.append(
            "notifications: local feishu_outbox table "
            f"(no Feishu Bot Credentials block named {block_name!r})"
        )
        added = queue_outbox_message(database, event_id, text)
        logger.info(
            "feedback %s: Feishu message %s the local outbox",
            event_id,
            "added to" if added else "already in",
        )
        return "outbox", None, None

    try:
        notify_feishu_group(bot, text)
    except FeishuBotError as exc:
        logger.error(
            "Feishu bot %r rejected the message for feedback %s (code %s): %s",
            block_name,
            event_id,
            exc.code,
            exc,
        )
        return "failed", exc.code, str(exc)
    return "delivered", None, None


@flow(name="customer-feedback", log_prints=False)
def customer_feedback(
    feedback: dict[str, Any],
    route: str | None = None,
    rules: RoutingRules | None = None,
    llm_block: str = DEFAULT_LLM_BLOCK,
    ticket_block: str = DEFAULT_TICKET_BLOCK,
    feishu_block: str = DEFAULT_FEISHU_BLOCK,
    records_block: str = DEFAULT_RECORDS_BLOCK,
) -> FeedbackOutcome | State:
    """Analyse one feedback, open a ticket or notify the Feishu group, store it.

    A rerun of the same feedback id finds the ticket of the first run (by its
    label) and does not post to Feishu again once a message was delivered.

    Args:
        feedback: The submitted JSON object, validated as a `FeedbackSubmission`;
            its `feedback_id` is the event id. It is a plain dict so that Prefect's
            parameter check, whose errors quote the input, never logs the contact.
        route: The gateway route that received it.
        rules: Routing rules; None uses the defaults (negative: ticket, positive:
            Feishu, neutral: store only).
        llm_block: Name of the LLM Credentials block; the offline analyzer when
            absent.
        ticket_block: Name of the Jira Credentials block; a local ticket table
            when absent.
        feishu_block: Name of the Feishu Bot Credentials block; a local outbox
            table when absent.
        records_block: Name of the MySQL block for records; SQLite when absent.

    Returns:
        The outcome. When the Feishu bot rejected the message, a Failed state
        whose message names Feishu's code, after the row has been stored with
        notification status `failed`.

    Raises:
        InvalidFeedbackError: The payload is invalid; nothing is stored.
    """
    logger = get_run_logger()
    submission = parse_submission(feedback)
    rules = rules or RoutingRules()
    event_id = submission.feedback_id
    defaults: list[str] = []

    database = open_records_database(records_block)
    logger.info("records database: %s", database.description)
    if database.is_default:
        defaults.append(f"records: {database.description}")

    llm = load_block(LLMCredentials, llm_block)
    if llm is None:
        defaults.append(
            f"analysis: offline analyzer (no LLM Credentials block named {llm_block!r})"
        )
    analysis = analyze_submission(submission, llm)
    actions = rules.actions_for(analysis.sentiment, analysis.urgency)
    logger.info(
        "feedback %s on %s (contact %s): actions %s",
        event_id,
        submission.subject,
        submission.masked_contact or "none",
        actions or ["store only"],
    )

    store_feedback_record(
        database,
        submission=submission,
        analysis=analysis,
        route=route,
        notification_status="pending" if "feishu" in actions else "not_required",
    )

    ticket: Ticket | None = None
    if "ticket" in actions:
        store, assignee, note = _ticket_store(ticket_block, database)
        if note:
            defaults.append(note)
        ticket = open_ticket(
            store,
            label=f"webhook-{event_id}",
            summary=_ticket_summary(submission, analysis),
            description=_ticket_description(submission, analysis),
            labels=[TICKET_LABEL],
            assignee=assignee,
            priority=rules.priority_for(analysis.urgency),
        )

    status: NotificationStatus = "not_required"
    code: int | None = None
    error: str | None = None
    if "feishu" in actions:
        status, code, error = _notify_group(
            database,
            feishu_block,
            event_id,
            _feishu_text(submission, analysis),
            defaults,
        )

    record_feedback_outcome(
        database,
        event_id,
        ticket_key=ticket.key if ticket else None,
        ticket_url=ticket.url if ticket else None,
        notification_status=status,
        notification_code=code,
        notification_error=error,
    )
    outcome = FeedbackOutcome(
        event_id=event_id,
        sentiment=analysis.sentiment,
        urgency=analysis.urgency,
        analyzer=analysis.analyzer,
        actions=actions,
        ticket_key=ticket.key if ticket else None,
        notification_status=status,
        notification_code=code,
        defaults=defaults,
    )
    for item in defaults:
        logger.info("embedded default in use: %s", item)
    create_markdown_artifact(
        key=_artifact_key(event_id),
        markdown=_artifact_markdown(submission, analysis, outcome, error),
        description=f"Customer feedback {event_id}",
    )

    if status == "failed":
        return Failed(
            message=(
                f"Feishu bot rejected the message for feedback {event_id!r} "
                f"(code {code}): {error}. The feedback is stored with notification "
                "status 'failed'; fix the bot block and retry this run."
            )
        )
    return outcome
