"""Tests for the rule-based delay parser on a table of realistic supplier messages."""

from __future__ import annotations

import datetime

import pytest

from flows.tasks.delay_rules import find_durations, parse_chinese_number
from flows.tasks.extraction import parse_delay_rules
from tests.flows.delay_cases import (
    ALL_CASES,
    DELAY_CASES,
    FIELDS,
    KNOWN_GAP_CASES,
    NOT_DELAY_CASES,
    TODAY,
    UNSEEN_CASES,
    DelayCase,
    measure_field_accuracy,
)


def _params(cases: list[DelayCase], prefix: str) -> list[object]:
    params = []
    for index, case in enumerate(cases):
        marks = []
        if case.known_gap:
            marks.append(pytest.mark.xfail(strict=True, reason=case.known_gap))
        params.append(pytest.param(case, id=f"{prefix}-{index:02d}", marks=marks))
    return params


TABLE = (
    _params(DELAY_CASES, "delay")
    + _params(NOT_DELAY_CASES, "not-delay")
    + _params(KNOWN_GAP_CASES, "gap")
    + _params(UNSEEN_CASES, "unseen")
)


def test_table_size() -> None:
    assert len(DELAY_CASES) + len(NOT_DELAY_CASES) >= 40
    assert len(NOT_DELAY_CASES) >= 6


@pytest.mark.parametrize("case", TABLE)
def test_parse_rules_table(case: DelayCase) -> None:
    notice = parse_delay_rules(case.text, today=TODAY)

    assert notice.is_delay == case.is_delay, case.text
    assert notice.materials == case.materials, case.text
    assert notice.delay_days == case.delay_days, case.text
    assert notice.reason == case.reason, case.text
    assert notice.supplier == case.supplier, case.text
    assert notice.original_date == case.original_date, case.text
    assert notice.new_date == case.new_date, case.text
    assert notice.not_delay_reason == case.not_delay_reason, case.text
    assert notice.analyzer == "rules"
    assert 0 <= notice.confidence <= 1


def test_parse_rules_accuracy() -> None:
    accuracy = measure_field_accuracy(lambda text: parse_delay_rules(text, today=TODAY))

    print(f"\nRule parser field accuracy on {len(ALL_CASES)} messages:")
    for name in (*FIELDS, "overall"):
        print(f"  {name:<17} {accuracy[name]:.1%}")
    # The table test allows misses only in known-gap cases, so this threshold
    # catches a new gap that is marked as known instead of being fixed.
    assert accuracy["overall"] >= 0.95


def test_parse_rules_dingtalk_payload_text() -> None:
    text = " 受台风影响,A03-205芯片推迟3天发货"

    notice = parse_delay_rules(text, today=TODAY)

    assert notice.is_delay is True
    assert notice.materials == ["A03-205"]
    assert notice.delay_days == 3
    assert notice.reason is not None
    assert "台风" in notice.reason


def test_parse_rules_full_width_punctuation() -> None:
    notice = parse_delay_rules("受台风影响，A03-205芯片推迟３天发货。", today=TODAY)

    assert notice.materials == ["A03-205"]
    assert notice.delay_days == 3
    assert notice.reason == "台风"


def test_parse_rules_default_today() -> None:
    today = datetime.date.today()

    notice = parse_delay_rules("原定12月10日发货,推迟至12月15日")

    assert notice.delay_days == 5
    assert notice.original_date is not None
    assert abs((notice.original_date - today).days) <= 183


def test_parse_rules_new_date_before_original() -> None:
    # A new date earlier than the original one is not a delay in days.
    notice = parse_delay_rules("X-12 推迟, 原定12月15日, 改为12月10日", today=TODAY)

    assert notice.is_delay is True
    assert notice.delay_days is None
    assert notice.original_date == datetime.date(2024, 12, 15)
    assert notice.new_date == datetime.date(2024, 12, 10)


def test_parse_rules_impossible_date() -> None:
    notice = parse_delay_rules("A03-205推迟至2月30日", today=TODAY)

    assert notice.is_delay is True
    assert notice.new_date is None
    # "30日" belongs to the date, so it is no 30-day duration.
    assert notice.delay_days is None


def test_parse_rules_delay_then_question() -> None:
    notice = parse_delay_rules("A03-205推迟3天,能否接受?", today=TODAY)

    assert notice.is_delay is True
    assert notice.delay_days == 3


def test_parse_rules_question_after_comma() -> None:
    notice = parse_delay_rules("请问,A03-205会延期吗?", today=TODAY)

    assert notice.is_delay is False
    assert notice.not_delay_reason == "question"


def test_parse_rules_bracketed_supplier() -> None:
    notice = parse_delay_rules("[Acme Corp] X-12 delayed 3 days", today=TODAY)

    assert notice.supplier == "Acme Corp"
    assert notice.delay_days == 3


@pytest.mark.parametrize(
    ("numeral", "expected"),
    [
        ("两", 2),
        ("三", 3),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("二十三", 23),
        ("一百零五", 105),
        ("三十", 30),
    ],
)
def test_parse_chinese_number(numeral: str, expected: int) -> None:
    assert parse_chinese_number(numeral) == expected


def test_parse_chinese_number_invalid() -> None:
    assert parse_chinese_number("三天") is None


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("48小时", 2),
        ("49小时", 3),
        ("48 hours", 2),
        ("25 hrs", 2),
        ("半天", 1),
        ("两周", 14),
        ("三个星期", 21),
        ("2 weeks", 14),
        ("1个月", 30),
        ("a month", 30),
        ("半个月", 15),
        ("3-5天", 5),
        ("a couple of days", 2),
        ("10-day", 10),
    ],
)
def test_find_durations_days(text: str, days: int) -> None:
    durations = find_durations(text)

    assert len(durations) == 1
    assert durations[0].days == days


def test_find_durations_month_name_is_no_duration() -> None:
    # "3月" is March; a duration of months needs 个 (3个月).
    assert find_durations("推迟到3月") == []
