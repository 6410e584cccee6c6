"""Tests for the offline feedback analyzer."""

from __future__ import annotations

import pytest
from prefect.logging import disable_run_logger

from flows.tasks.sentiment import (
    FeedbackAnalysis,
    analyze_feedback_offline,
    analyze_feedback_offline_task,
    classify_score,
    detect_language,
    extract_summary,
)
from tests.flows.sentiment_eval import LABELS, evaluate, load_cases

# Floors sit a few points below the accuracy measured with
# `uv run python -m tests.flows.sentiment_eval` (91.7 % all, 88.1 % zh, 95.4 % en).
ACCURACY_FLOORS = {"all": 0.88, "zh": 0.84, "en": 0.91}


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return evaluate(load_cases())


def test_feedback_set_shape() -> None:
    cases = load_cases()
    locales = [case.locale for case in cases]

    assert len(cases) >= 200
    assert len({case.text for case in cases}) == len(cases)
    assert set(locales) == {"zh", "en"}
    assert abs(locales.count("zh") - locales.count("en")) <= len(cases) // 10
    for label in LABELS:
        assert sum(case.sentiment == label for case in cases) >= 40


@pytest.mark.parametrize("group", ["all", "zh", "en"])
def test_accuracy_floor(evaluation: dict, group: str) -> None:
    result = evaluation[group]

    assert result.total > 0
    assert result.accuracy >= ACCURACY_FLOORS[group], (
        f"{group}: {result.correct}/{result.total} = {result.accuracy:.1%}"
    )


def test_lexicon_improves_accuracy(evaluation: dict) -> None:
    without_lexicon = evaluate(load_cases(), use_lexicon=False)

    assert evaluation["all"].accuracy > without_lexicon["all"].accuracy + 0.05


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("不太好用，吸力很弱。", "zh", "negative"),
        ("不太好", "zh", "negative"),
        ("不是很满意", "zh", "negative"),
        ("面料柔软，洗了几次也不掉色不起球。", "zh", "positive"),
        ("Not bad at all, works as described.", "en", "positive"),
        ("Not good, the zipper broke on day one.", "en", "negative"),
        ("Not worth the money.", "en", "negative"),
    ],
)
def test_negation(text: str, locale: str, expected: str) -> None:
    assert analyze_feedback_offline(text, locale).sentiment == expected


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("👍", None, "positive"),
        ("👎", "zh", "negative"),
        ("满意😊", "zh", "positive"),
        ("太差了😡", "zh", "negative"),
        ("Love it 😍", "en", "positive"),
        ("Broke on day two 👎", "en", "negative"),
    ],
)
def test_emoji(text: str, locale: str | None, expected: str) -> None:
    assert analyze_feedback_offline(text, locale).sentiment == expected


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("很好", "zh", "positive"),
        ("失望", "zh", "negative"),
        ("Great!", "en", "positive"),
        ("Disappointed", "en", "negative"),
        ("Received.", "en", "neutral"),
        ("ok", None, "neutral"),
        ("!!!", None, "neutral"),
    ],
)
def test_very_short(text: str, locale: str | None, expected: str) -> None:
    assert analyze_feedback_offline(text, locale).sentiment == expected


def test_mixed_with_complaint_not_positive() -> None:
    analysis = analyze_feedback_offline(
        "质量很好，但是物流太慢了，等了十天，希望改进一下配送。", "zh"
    )

    assert analysis.sentiment == "neutral"
    assert analysis.topics == ["delivery", "quality"]


def test_mixed_refund_request_negative() -> None:
    analysis = analyze_feedback_offline(
        "Great phone, but the battery died after a week and support ignored me. "
        "I want a refund.",
        "en",
    )

    assert analysis.sentiment == "negative"
    assert analysis.urgency == "high"
    assert analysis.summary == "I want a refund."


def test_question_is_neutral() -> None:
    assert analyze_feedback_offline("请问什么时候能发货？", "zh").sentiment == "neutral"
    assert analyze_feedback_offline("Does it support fast charging?").sentiment == (
        "neutral"
    )


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", "\u3000"])
def test_empty_text_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="text is empty or whitespace only"):
        analyze_feedback_offline(text)


def test_non_string_rejected() -> None:
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        analyze_feedback_offline(b"good")  # type: ignore[arg-type]


def test_analyzer_names() -> None:
    assert analyze_feedback_offline("物流很快").analyzer == "offline:snownlp"
    assert analyze_feedback_offline("Fast delivery").analyzer == "offline:vader"
    assert analyze_feedback_offline("👍", "zh").analyzer == "offline:vader"


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("物流很快", None, "zh"),
        ("Fast delivery", None, "en"),
        ("App 一打开就闪退", "en", "zh"),
        ("I love my new Xiaomi 小米 phone", None, "en"),
        ("Redmi 手机", None, "zh"),
        ("Redmi 手机", "en", "en"),
        ("👍", "zh-CN", "zh"),
        ("👍", "en_US", "en"),
        ("👍", None, "en"),
        ("Great", "zh", "en"),
    ],
)
def test_detect_language(text: str, locale: str | None, expected: str) -> None:
    assert detect_language(text, locale) == expected


def test_neutral_band_argument() -> None:
    text = "Works great, highly recommended."
    default = analyze_feedback_offline(text)
    wide = analyze_feedback_offline(text, neutral_band=(-0.99, 0.99))

    assert default.sentiment == "positive"
    assert wide.sentiment == "neutral"
    assert wide.score == default.score


def test_classify_score_edges() -> None:
    band = (-0.2, 0.3)

    assert classify_score(0.3, band) == "positive"
    assert classify_score(0.2999, band) == "neutral"
    assert classify_score(-0.2, band) == "negative"
    assert classify_score(-0.1999, band) == "neutral"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("物流很快", ["delivery"]),
        ("价格有点贵，客服态度也不好", ["price", "service"]),
        ("App keeps crashing after the update, please fix the bug", ["app"]),
        ("The charger sparked and smells burnt", ["safety"]),
        ("I shipped it back", []),
        ("Nice relationship with the seller", []),
    ],
)
def test_topics(text: str, expected: list[str]) -> None:
    assert analyze_feedback_offline(text).topics == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("质量很差，要求退款！", "high"),
        ("我要投诉你们", "high"),
        ("插座用了两次就烧了，差点引起火灾，请立刻处理！", "high"),
        ("I will contact my lawyer if this is not fixed.", "high"),
        ("The charger sparked, but otherwise great.", "high"),
        ("They refunded the difference quickly, great store.", "low"),
        ("Screen cracked within a week. Poor quality.", "normal"),
        ("物流很快，好评", "low"),
        ("请问有大一号的吗？", "low"),
    ],
)
def test_urgency(text: str, expected: str) -> None:
    assert analyze_feedback_offline(text).urgency == expected


def test_summary_prefers_request() -> None:
    text = (
        "I bought this for my daughter last month. The color is nice. "
        "Please add a longer cable option for the charger."
    )

    assert extract_summary(text, "en") == (
        "Please add a longer cable option for the charger."
    )


def test_summary_trimmed() -> None:
    text = "质量" * 100

    summary = extract_summary(text, "zh")

    assert len(summary) == 60
    assert summary.endswith("…")


def test_summary_trimmed_at_word() -> None:
    text = "word " * 60

    summary = extract_summary(text.strip(), "en", max_chars=30)

    assert summary == "word word word word word word…"


def test_long_text_analyzed() -> None:
    analysis = analyze_feedback_offline("Great product. " * 2000)

    assert analysis.sentiment == "positive"
    assert len(analysis.summary) <= 120


def test_analysis_model_validates() -> None:
    analysis = analyze_feedback_offline("物流很快，好评")

    assert FeedbackAnalysis.model_validate(analysis.model_dump()) == analysis
    with pytest.raises(ValueError):
        FeedbackAnalysis(
            sentiment="positive",
            score=1.5,
            summary="x",
            urgency="low",
            analyzer="offline:vader",
        )


def test_task_wrapper_name() -> None:
    assert analyze_feedback_offline_task.name == "analyze-feedback-offline"
    with disable_run_logger():
        analysis = analyze_feedback_offline_task.fn("很好")

    assert analysis.sentiment == "positive"
