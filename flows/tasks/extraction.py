"""Placeholder extraction; replaced by the rule parser and LLM path."""

from __future__ import annotations

import re
from datetime import date

from prefect import task
from pydantic import BaseModel


class DelayNotice(BaseModel):
    is_delay: bool
    materials: list[str]
    delay_days: int | None
    reason: str | None
    supplier: str | None = None
    original_date: date | None = None
    new_date: date | None = None
    confidence: float = 0.5
    analyzer: str = "rules"
    not_delay_reason: str | None = None


def parse_delay_rules(text: str) -> DelayNotice:
    materials = re.findall(r"[A-Z][A-Z0-9]*-\d+", text)
    days = re.search(r"(\d+)\s*(?:天|days?)", text)
    reason = re.search(r"受(.+?)影响", text)
    return DelayNotice(
        is_delay=bool(days),
        materials=materials,
        delay_days=int(days.group(1)) if days else None,
        reason=reason.group(1) if reason else None,
    )


@task(name="extract-delay-notice")
def extract_delay_notice(text: str, llm: object | None = None) -> DelayNotice:
    return parse_delay_rules(text)
