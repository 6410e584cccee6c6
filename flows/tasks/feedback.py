"""Customer feedback: the submitted payload, its analysis and the routing rules.

The analysis requests a `FeedbackAnalysis` from the configured LLM and falls back to
the offline analyzer (`flows.tasks.sentiment`) when no LLM is configured or the call
fails. The routing rules decide, per sentiment, whether a feedback also becomes a
customer-service ticket or a message to the product team's Feishu group. Every
feedback is stored.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from blocks.llm import LLMCredentials
from flows.tasks.llm import LLMError, complete_structured
from flows.tasks.sentiment import (
    FeedbackAnalysis,
    Sentiment,
    Urgency,
    analyze_feedback_offline,
)

__all__ = [
    "FeedbackAction",
    "FeedbackSubmission",
    "InvalidFeedbackError",
    "LLMFeedbackAnswer",
    "RoutingRules",
    "analyze_feedback",
    "analyze_submission",
    "mask_contact",
    "parse_submission",
]

logger = logging.getLogger(__name__)

FeedbackAction = Literal["ticket", "feishu"]

MAX_FEEDBACK_CHARS = 10_000
MAX_SUMMARY_CHARS = 300
MAX_TOPICS = 8
# Characters of the feedback sent to the LLM; longer texts are cut.
MAX_PROMPT_CHARS = 4000

_EMAIL_RE = re.compile(r"^([^@\s]+)@([^@\s]+)$")
_PHONE_CHARS_RE = re.compile(r"^\+?[\d\s()-]{7,}$")


class FeedbackSubmission(BaseModel):
    """One feedback that a product page's backend sends to the gateway.

    `contact` is personal data: it is a `SecretStr`, so the model's repr and any
    log line that prints it show `**********`. Use `mask_contact` for display.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    feedback_id: str = Field(
        min_length=1,
        max_length=255,
        description="Unique id of the feedback, used as the webhook event id.",
    )
    text: str = Field(
        min_length=1,
        max_length=MAX_FEEDBACK_CHARS,
        description="The feedback as the user typed it.",
    )
    user_id: str | None = Field(
        default=None, max_length=255, description="The user's id in the shop."
    )
    contact: SecretStr | None = Field(
        default=None,
        description="E-mail address or phone number the user left; personal data.",
    )
    product: str | None = Field(
        default=None,
        max_length=255,
        description="Product id or name the feedback is about.",
    )
    page: str | None = Field(
        default=None,
        max_length=2000,
        description="URL or path of the page the feedback was submitted on.",
    )
    locale: str | None = Field(
        default=None,
        max_length=35,
        description="The page's locale, for example zh-CN or en-US.",
    )
    submitted_at: datetime | None = Field(
        default=None, description="When the user submitted it, ISO 8601."
    )

    @field_validator("contact")
    @classmethod
    def _blank_contact_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @property
    def contact_value(self) -> str | None:
        """The contact in clear text, for its database column only."""
        return self.contact.get_secret_value().strip() if self.contact else None

    @property
    def masked_contact(self) -> str | None:
        """The contact with most characters replaced by `*`, for logs and artifacts."""
        value = self.contact_value
        return mask_contact(value) if value else None

    @property
    def subject(self) -> str:
        """The product, else the page, else a placeholder; for titles and logs."""
        return self.product or self.page or "unknown product"


class InvalidFeedbackError(ValueError):
    """The payload is not a valid `FeedbackSubmission`.

    The message lists the invalid fields without their values, so it never
    contains the contact.
    """


def parse_submission(payload: dict[str, Any]) -> FeedbackSubmission:
    """Validate a delivered payload as a `FeedbackSubmission`.

    Raises:
        InvalidFeedbackError: A field is missing or invalid.
    """
    try:
        return FeedbackSubmission.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'payload'}: "
            f"{error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        feedback_id = payload.get("feedback_id") if isinstance(payload, dict) else None
        raise InvalidFeedbackError(
            f"invalid feedback payload (feedback_id={feedback_id!r}): {problems}. "
            "Send the fields documented in docs/feedback-flow.md."
        ) from None


def mask_contact(contact: str) -> str:
    """Mask an e-mail address or a phone number for display.

    An address keeps its first character and the domain (`a***@example.com`). A
    phone number keeps its first three and last four digits with one `*` per hidden
    digit (`138****5678`). Anything else keeps only its first character.
    """
    value = contact.strip()
    email = _EMAIL_RE.match(value)
    if email:
        return f"{email.group(1)[0]}***@{email.group(2)}"
    if _PHONE_CHARS_RE.match(value):
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 8:
            prefix = "+" if value.startswith("+") else ""
            hidden = len(digits) - 7
            return f"{prefix}{digits[:3]}{'*' * hidden}{digits[-4:]}"
        return "*" * len(digits)
    return f"{value[0]}***" if value else ""


class RoutingRules(BaseModel):
    """Actions for a feedback besides storage, per sentiment.

    An empty list stores the feedback only. `notify_negative_urgent` also posts a
    negative feedback whose urgency is in `urgent_levels` to the Feishu group.
    """

    model_config = ConfigDict(extra="forbid")

    negative: list[FeedbackAction] = Field(
        default_factory=lambda: ["ticket"],
        description="Actions for negative feedback.",
    )
    positive: list[FeedbackAction] = Field(
        default_factory=lambda: ["feishu"],
        description="Actions for positive feedback.",
    )
    neutral: list[FeedbackAction] = Field(
        default_factory=list, description="Actions for neutral feedback."
    )
    notify_negative_urgent: bool = Field(
        default=False,
        description="Also post urgent negative feedback to the Feishu group.",
    )
    urgent_levels: list[Urgency] = Field(
        default_factory=lambda: ["high"],
        description="Urgency levels that count as urgent.",
    )
    ticket_priorities: dict[Urgency, str] = Field(
        default_factory=lambda: {"low": "Low", "normal": "Medium", "high": "High"},
        description="Jira priority name for each urgency level.",
    )

    def actions_for(
        self, sentiment: Sentiment, urgency: Urgency
    ) -> list[FeedbackAction]:
        """Return the actions for one analysis, without duplicates, in rule order."""
        actions: list[FeedbackAction] = list(getattr(self, sentiment))
        is_urgent = urgency in self.urgent_levels
        if sentiment == "negative" and self.notify_negative_urgent and is_urgent:
            actions.append("feishu")
        return list(dict.fromkeys(actions))

    def priority_for(self, urgency: Urgency) -> str | None:
        """Return the ticket priority for an urgency, or None for Jira's default."""
        return self.ticket_priorities.get(urgency)


class LLMFeedbackAnswer(BaseModel):
    """The JSON object the LLM returns: a `FeedbackAnalysis` without the analyzer."""

    sentiment: Sentiment = Field(description="positive, negative or neutral.")
    score: float = Field(
        ge=-1.0, le=1.0, description="-1 most negative, 1 most positive."
    )
    summary: str = Field(
        min_length=1,
        max_length=MAX_SUMMARY_CHARS,
        description="One sentence with the customer's core request or complaint.",
    )
    topics: list[str] = Field(default_factory=list, description="Short topic labels.")
    urgency: Urgency = Field(description="low, normal or high.")

    @field_validator("summary")
    @classmethod
    def _one_line(cls, value: str) -> str:
        summary = " ".join(value.split())
        if not summary:
            raise ValueError("summary is empty")
        return summary

    @field_validator("topics")
    @classmethod
    def _clean_topics(cls, value: list[str]) -> list[str]:
        topics = [" ".join(topic.lower().split()) for topic in value]
        return list(dict.fromkeys(topic for topic in topics if topic))[:MAX_TOPICS]


SYSTEM_PROMPT = """\
You classify customer feedback about products of an online shop. The feedback may be
Chinese or English. Answer with one JSON object and nothing else:
{"sentiment": "positive" | "negative" | "neutral",
 "score": number from -1 (most negative) to 1 (most positive),
 "summary": one sentence with the customer's core request or complaint, in the
            language of the feedback,
 "topics": short lower-case topic labels such as "delivery", "price", "quality",
 "urgency": "high" for safety risks, threats to complain publicly or demands for a
            refund; "normal" for other problems; "low" for praise and questions}
"""


def _build_messages(text: str, locale: str | None) -> list[dict[str, Any]]:
    header = f"Locale: {locale}\n" if locale else ""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{header}Feedback:\n{text[:MAX_PROMPT_CHARS]}"},
    ]


def analyze_feedback(
    text: str,
    locale: str | None,
    llm: LLMCredentials | None,
    *,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> FeedbackAnalysis:
    """Analyse feedback with the LLM, falling back to the offline analyzer.

    Args:
        text: The feedback text.
        locale: Locale hint such as zh-CN, or None.
        llm: LLM settings, or None to use only the offline analyzer.
        log: Where to log the fallback.

    Returns:
        The analysis. Its `analyzer` is `llm:<model>` when the LLM returned a valid
        answer, else that of the offline analyzer (`offline:...`).
    """
    if llm is None:
        return analyze_feedback_offline(text, locale)
    try:
        answer = complete_structured(
            llm, _build_messages(text, locale), LLMFeedbackAnswer
        )
    except LLMError as exc:
        log.warning(
            "LLM analysis with model %r failed, using the offline analyzer: %s",
            llm.model,
            exc,
        )
        return analyze_feedback_offline(text, locale)
    return FeedbackAnalysis(**answer.model_dump(), analyzer=f"llm:{llm.model}")


# NOTE: no Prefect retries, because analyze_feedback catches every LLMError and
# falls back to the offline analyzer at once.
@task(name="analyze-feedback", cache_policy=NO_CACHE)
def analyze_submission(
    submission: FeedbackSubmission, llm: LLMCredentials | None = None
) -> FeedbackAnalysis:
    """Analyse one submission as a Prefect task; see `analyze_feedback`."""
    run_logger = get_run_logger()
    analysis = analyze_feedback(submission.text, submission.locale, llm, log=run_logger)
    run_logger.info(
        "feedback %s: sentiment=%s score=%.2f urgency=%s topics=%s analyzer=%s",
        submission.feedback_id,
        analysis.sentiment,
        analysis.score,
        analysis.urgency,
        analysis.topics,
        analysis.analyzer,
    )
    return analysis
