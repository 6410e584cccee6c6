"""Turn a supplier's chat message about a late shipment into a `DelayNotice`.

Two analyzers produce the same model: an LLM prompted for a JSON object, and a
rule-based parser (`flows.tasks.delay_rules`) that needs no network. The rule
parser is used when no LLM is configured and whenever the LLM call fails.
"""

from __future__ import annotations

import datetime
import functools
import logging
from pathlib import Path
from typing import Literal

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment
from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field, model_validator

from blocks.llm import LLMCredentials
from flows.tasks import delay_rules
from flows.tasks.llm import LLMError, complete_structured

__all__ = [
    "NOT_DELAY_REASONS",
    "DelayNotice",
    "DelayNoticeFields",
    "build_delay_messages",
    "extract_delay",
    "extract_delay_notice",
    "parse_delay_rules",
]

logger = logging.getLogger(__name__)

NotDelayReason = Literal["on_schedule", "question", "delay_lifted", "unrelated"]

NOT_DELAY_REASONS: dict[str, str] = {
    "on_schedule": "the shipment is or will be on time",
    "question": "the message asks whether there is a delay",
    "delay_lifted": "an earlier delay was cancelled and the original plan applies",
    "unrelated": "the message is about something else",
}

PROMPT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "delay_extraction.md"

SYSTEM_PROMPT = "You extract structured data and answer with one JSON object only."

RULES_ANALYZER = "rules"


class DelayNoticeFields(BaseModel):
    """Fields of a delay notice without the analyzer: the object the LLM returns."""

    model_config = ConfigDict(extra="ignore")

    is_delay: bool = Field(description="Whether the message announces a delay.")
    materials: list[str] = Field(
        default_factory=list, description="Part numbers named in the message."
    )
    delay_days: int | None = Field(
        default=None, ge=0, description="Delay in whole calendar days."
    )
    reason: str | None = Field(default=None, description="Stated cause of the delay.")
    supplier: str | None = Field(default=None, description="Supplier's name.")
    original_date: datetime.date | None = Field(
        default=None, description="Originally planned shipping or delivery date."
    )
    new_date: datetime.date | None = Field(
        default=None, description="New planned shipping or delivery date."
    )
    confidence: float = Field(
        ge=0, le=1, description="Analyzer's confidence from 0 to 1."
    )
    not_delay_reason: NotDelayReason | None = Field(
        default=None,
        description="Why the message is not a delay notice; None for a delay.",
    )

    @model_validator(mode="after")
    def _check_not_delay_reason(self) -> DelayNoticeFields:
        if self.is_delay and self.not_delay_reason is not None:
            raise ValueError(
                f"not_delay_reason must be null for a delay, got "
                f"{self.not_delay_reason!r}"
            )
        if not self.is_delay and self.not_delay_reason is None:
            raise ValueError(
                "not_delay_reason is missing for a message that is not a delay; "
                f"use one of {sorted(NOT_DELAY_REASONS)}"
            )
        return self


class DelayNotice(DelayNoticeFields):
    """Structured content of a supplier's delay message, with the analyzer used."""

    analyzer: str = Field(
        pattern=r"^(?:rules|llm:.+)$",
        description='"rules" or "llm:<litellm model name>".',
    )


# ---------------------------------------------------------------------------
# Rule parser


def parse_delay_rules(text: str, *, today: datetime.date | None = None) -> DelayNotice:
    """Parse a delay message with regular expressions, without a network call.

    Args:
        text: Message text, in Chinese or English, with any surrounding whitespace.
        today: Date used to fill in years that the message omits. Defaults to
            today's date.

    Returns:
        The notice with `analyzer="rules"`. Its confidence is a heuristic score
        from the number of fields found, not a calibrated probability.

    Examples:
        >>> notice = parse_delay_rules(" 受台风影响,A03-205芯片推迟3天发货")
        >>> notice.materials, notice.delay_days, notice.reason
        (['A03-205'], 3, '台风')
    """
    today = today or datetime.date.today()
    normalized = delay_rules.normalize_text(text)
    all_dates = delay_rules.find_dates(normalized)
    masked = delay_rules.mask_spans(normalized, [(d.start, d.end) for d in all_dates])
    dates = [mention for mention in all_dates if mention.is_possible]
    materials = delay_rules.find_part_numbers(masked)
    supplier = delay_rules.find_supplier(normalized)

    if delay_rules.find_keywords(delay_rules.DELAY_LIFTED_KEYWORDS, masked):
        return _not_delay(materials, supplier, "delay_lifted")

    keywords = _statement_delay_keywords(masked)
    original_date, new_date = _resolve_dates(dates, keywords, today)
    dates_show_delay = (
        original_date is not None and new_date is not None and new_date > original_date
    )
    if not keywords and not dates_show_delay:
        return _not_delay(materials, supplier, _classify_not_delay(masked))

    duration = delay_rules.pick_delay_duration(
        masked, delay_rules.find_durations(masked), keywords
    )
    delay_days = duration.days if duration is not None else None
    if delay_days is None and dates_show_delay:
        delay_days = (new_date - original_date).days
    # Derive the missing date from the other one and the delay.
    if delay_days is not None and original_date is not None and new_date is None:
        new_date = original_date + datetime.timedelta(days=delay_days)
    elif delay_days is not None and new_date is not None and original_date is None:
        original_date = new_date - datetime.timedelta(days=delay_days)

    reason = delay_rules.find_reason(normalized)
    confidence = _delay_confidence(
        has_materials=bool(materials),
        has_days=delay_days is not None,
        has_reason=reason is not None,
        has_context=original_date is not None or supplier is not None,
    )
    return DelayNotice(
        is_delay=True,
        materials=materials,
        delay_days=delay_days,
        reason=reason,
        supplier=supplier,
        original_date=original_date,
        new_date=new_date,
        confidence=confidence,
        not_delay_reason=None,
        analyzer=RULES_ANALYZER,
    )


def _delay_confidence(
    *, has_materials: bool, has_days: bool, has_reason: bool, has_context: bool
) -> float:
    """Score a rule-parsed delay from 0.4 (keyword only) to 0.95 (all fields)."""
    score = 0.4
    if has_materials:
        score += 0.2
    if has_days:
        score += 0.2
    if has_reason:
        score += 0.1
    if has_context:
        score += 0.05
    return round(score, 2)


def _statement_delay_keywords(text: str) -> list[tuple[int, int]]:
    """Return delay keywords outside questions ("会延期吗?" announces nothing)."""
    statements = [
        (start, end)
        for start, end in delay_rules.split_clauses(text)
        if not delay_rules.is_question(text[start:end])
    ]
    return [
        (start, end)
        for start, end in delay_rules.find_keywords(delay_rules.DELAY_KEYWORDS, text)
        if any(s_start <= start < s_end for s_start, s_end in statements)
    ]


def _classify_not_delay(text: str) -> NotDelayReason:
    sentences = [text[start:end] for start, end in delay_rules.split_sentences(text)]
    questions = [
        sentence for sentence in sentences if delay_rules.is_question(sentence)
    ]
    if any(_is_about_shipping(question) for question in questions):
        return "question"
    on_schedule = delay_rules.find_keywords(delay_rules.ON_SCHEDULE_KEYWORDS, text)
    negated_delay = delay_rules.find_keywords(
        delay_rules.DELAY_KEYWORDS, text, negated=True
    )
    if on_schedule or negated_delay:
        return "on_schedule"
    return "unrelated"


def _is_about_shipping(sentence: str) -> bool:
    """Return whether a sentence mentions a delay, a schedule, shipping or a part."""
    return bool(
        delay_rules.DELAY_KEYWORDS.search(sentence)
        or delay_rules.ON_SCHEDULE_KEYWORDS.search(sentence)
        or delay_rules.SHIPPING_WORDS.search(sentence)
        or delay_rules.find_part_numbers(sentence)
    )


def _resolve_dates(
    dates: list[delay_rules.DateMention],
    keywords: list[tuple[int, int]],
    today: datetime.date,
) -> tuple[datetime.date | None, datetime.date | None]:
    """Pick the original and the new date, completing missing years and months.

    Dates without a role marker fill the free roles in text order. A single date
    without a marker is the original date when it comes before the first delay
    keyword ("Dec 10 shipment delayed 5 days"), otherwise the new date.
    """
    original = next((d for d in dates if d.role == "original"), None)
    new = next((d for d in dates if d.role == "new"), None)
    unmarked = [d for d in dates if d.role is None]
    if original is None and new is None and len(unmarked) >= 2:
        original, new = unmarked[0], unmarked[1]
    elif original is None and new is None and len(unmarked) == 1:
        first_keyword = keywords[0][0] if keywords else 0
        if unmarked[0].start < first_keyword:
            original = unmarked[0]
        else:
            new = unmarked[0]
    elif original is None and unmarked:
        original = unmarked[0]
    elif new is None and unmarked:
        new = unmarked[0]

    original_date = delay_rules.resolve_date(original, today) if original else None
    new_date = (
        delay_rules.resolve_date(new, today, after=original_date) if new else None
    )
    return original_date, new_date


def _not_delay(
    materials: list[str], supplier: str | None, reason: NotDelayReason
) -> DelayNotice:
    # An unrelated message has no pattern behind the verdict, so it scores lower.
    confidence = 0.6 if reason == "unrelated" else 0.8
    return DelayNotice(
        is_delay=False,
        materials=materials,
        supplier=supplier,
        confidence=confidence,
        not_delay_reason=reason,
        analyzer=RULES_ANALYZER,
    )


# ---------------------------------------------------------------------------
# LLM analyzer


@functools.cache
def _prompt_template() -> Template:
    environment = SandboxedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    return environment.from_string(PROMPT_PATH.read_text(encoding="utf-8"))


def build_delay_messages(text: str, *, today: datetime.date) -> list[dict[str, str]]:
    """Render the extraction prompt for `text` as chat messages.

    The template `flows/prompts/delay_extraction.md` is rendered in Jinja2's
    sandbox, with the variables `message`, `today` (ISO date) and
    `not_delay_reasons` (a dict of reason to meaning).
    """
    prompt = _prompt_template().render(
        message=text.strip(),
        today=today.isoformat(),
        not_delay_reasons=NOT_DELAY_REASONS,
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": prompt},
    ]


def extract_delay(
    text: str,
    llm: LLMCredentials | None,
    *,
    today: datetime.date | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> DelayNotice:
    """Extract a delay notice with the LLM, falling back to the rule parser.

    Args:
        text: Message text as the chat platform sent it.
        llm: LLM settings, or None to use only the rule parser.
        today: Date used to complete dates without a year. Defaults to today.
        log: Logger for the fallback warning. Defaults to this module's logger.

    Returns:
        The notice. Its `analyzer` is "llm:<model>" when the LLM responded with a
        valid object, and "rules" otherwise.
    """
    log = log or logger
    today = today or datetime.date.today()
    if llm is None:
        return parse_delay_rules(text, today=today)

    messages = build_delay_messages(text, today=today)
    try:
        fields = complete_structured(llm, messages, DelayNoticeFields)
    except LLMError as exc:
        log.warning(
            "LLM extraction with model %r failed, using the rule parser: %s",
            llm.model,
            exc,
        )
        return parse_delay_rules(text, today=today)
    return DelayNotice(**fields.model_dump(), analyzer=f"llm:{llm.model}")


# NOTE: no Prefect retries, because extract_delay catches every LLMError and falls
# back to the rule parser, so a failed LLM call never fails the task.
@task(name="extract-delay-notice")
def extract_delay_notice(
    text: str,
    llm: LLMCredentials | None = None,
    today: datetime.date | None = None,
) -> DelayNotice:
    """Extract a delay notice from a supplier message (see `extract_delay`).

    Args:
        text: Message text as the chat platform sent it.
        llm: LLM settings, or None to use only the rule parser.
        today: Date used to complete dates without a year. Defaults to today.

    Returns:
        The notice, with the analyzer that produced it.
    """
    run_logger = get_run_logger()
    notice = extract_delay(text, llm, today=today, log=run_logger)
    run_logger.info(
        "Extracted notice with analyzer %s: is_delay=%s, %d materials, delay_days=%s",
        notice.analyzer,
        notice.is_delay,
        len(notice.materials),
        notice.delay_days,
    )
    return notice
