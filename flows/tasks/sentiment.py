"""Offline sentiment, topic and urgency analysis of customer feedback."""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from flows.tasks.feedback_lexicon import (
    EMOJI_LEXICON,
    EN_LEXICON,
    EN_NEUTRAL_CUES,
    ESCALATION_URGENCY_KEYWORDS,
    REQUEST_MARKERS,
    SAFETY_URGENCY_KEYWORDS,
    TOPIC_KEYWORDS,
    ZH_LEXICON,
    ZH_NEUTRAL_CUES,
)

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = [
    "FeedbackAnalysis",
    "Language",
    "Sentiment",
    "Urgency",
    "analyze_feedback_offline",
    "analyze_feedback_offline_task",
    "classify_score",
    "detect_language",
    "extract_summary",
    "extract_topics",
    "rate_urgency",
]

logger = logging.getLogger(__name__)

Sentiment = Literal["positive", "negative", "neutral"]
Urgency = Literal["low", "normal", "high"]
Language = Literal["zh", "en"]

# Scores strictly inside (low, high) are neutral. Chosen on the labelled set in
# tests/data, see docs/feedback-analysis.md. snownlp scores many plain factual
# Chinese sentences below -0.3, so its negative edge sits lower than VADER's.
DEFAULT_NEUTRAL_BANDS: dict[Language, tuple[float, float]] = {
    "zh": (-0.35, 0.2),
    "en": (-0.05, 0.3),
}
# Share of the final score taken from the domain lexicon when a phrase matched.
LEXICON_WEIGHT = 0.6
# The same share when a matched phrase is a negation such as "不太好" or "not good".
NEGATED_PHRASE_WEIGHT = 0.85
# A question or "not used yet" cue multiplies the score by this factor.
NEUTRAL_CUE_DAMPING = 0.3
MAX_SUMMARY_CHARS: dict[Language, int] = {"zh": 60, "en": 120}
# Longer texts are cut before scoring to bound the time snownlp takes.
MAX_ANALYZED_CHARS = 5000

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_NEGATION_RE = re.compile(r"不|没|not |no ")
_WORD_RE = re.compile(r"\w")
_SENTENCE_END_RE = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)\s+")


class FeedbackAnalysis(BaseModel):
    """Result of analysing one piece of customer feedback."""

    sentiment: Sentiment = Field(description="Overall sentiment class.")
    score: float = Field(
        ge=-1.0,
        le=1.0,
        description="Sentiment score, -1 most negative, 1 most positive.",
    )
    summary: str = Field(description="One sentence with the core request or complaint.")
    topics: list[str] = Field(
        default_factory=list, description="Topic labels, e.g. delivery or price."
    )
    urgency: Urgency = Field(description="How fast a person should look at it.")
    analyzer: str = Field(
        description="What produced the result, e.g. offline:snownlp or llm:<model>."
    )


def detect_language(text: str, locale: str | None = None) -> Language:
    """Detect whether feedback is Chinese or English.

    The script of the text decides. The locale only breaks ties: text where
    neither script clearly dominates, or with neither (emoji or digits only).

    Args:
        text: The feedback text.
        locale: Optional locale hint such as ``zh-CN`` or ``en_US``.

    Returns:
        ``"zh"`` or ``"en"``. Other languages are returned as ``"en"``.
    """
    hint = _locale_language(locale)
    cjk_count = len(_CJK_RE.findall(text))
    latin_count = len(_LATIN_RE.findall(text))

    if cjk_count == 0 and latin_count == 0:
        return hint or "en"
    if cjk_count == 0:
        return "en"
    if latin_count == 0:
        return "zh"
    # One Chinese character carries about as much text as four Latin letters.
    # The hint decides only when neither script has twice the other's weight.
    zh_weight = cjk_count * 4
    if zh_weight >= 2 * latin_count:
        return "zh"
    if latin_count >= 2 * zh_weight:
        return "en"
    if hint is not None:
        return hint
    return "zh" if zh_weight >= latin_count else "en"


def classify_score(score: float, neutral_band: tuple[float, float]) -> Sentiment:
    """Map a score in -1..1 to a class: neutral strictly inside the band."""
    low, high = neutral_band
    if score >= high:
        return "positive"
    if score <= low:
        return "negative"
    return "neutral"


def extract_topics(text: str) -> list[str]:
    """Return the topic labels whose keywords occur in the text, in a fixed order."""
    folded = text.casefold()
    return [
        topic
        for topic, keywords in TOPIC_KEYWORDS.items()
        if any(_contains_keyword(folded, keyword) for keyword in keywords)
    ]


def rate_urgency(text: str, sentiment: Sentiment) -> Urgency:
    """Rate urgency from keywords and the sentiment class.

    Safety words give ``high`` whatever the sentiment. Escalation words such as
    refund or complaint give ``high`` unless the feedback is positive. Other
    negative feedback is ``normal`` and the rest ``low``.
    """
    # NOTE: keywords ignore negation, so "no need for a refund" still counts.
    folded = text.casefold()
    if any(_contains_keyword(folded, word) for word in SAFETY_URGENCY_KEYWORDS):
        return "high"
    if sentiment != "positive" and any(
        _contains_keyword(folded, word) for word in ESCALATION_URGENCY_KEYWORDS
    ):
        return "high"
    if sentiment == "negative":
        return "normal"
    return "low"


def extract_summary(text: str, language: Language, max_chars: int | None = None) -> str:
    """Pick the most informative sentence and trim it to a readable length.

    A sentence earns points for request markers, urgency words and topic
    keywords, plus a small bonus for length. Ties go to the earlier sentence.

    Args:
        text: The feedback text, not empty.
        language: Language of the text, which sets the default length.
        max_chars: Maximum length of the summary, ellipsis included.

    Returns:
        One sentence of at most ``max_chars`` characters.
    """
    limit = max_chars if max_chars is not None else MAX_SUMMARY_CHARS[language]
    # Pieces without a letter or digit ("!!", an emoji) are not sentences.
    sentences = [part.strip() for part in _SENTENCE_END_RE.split(text)]
    sentences = [part for part in sentences if _WORD_RE.search(part)] or [text.strip()]

    best = max(
        enumerate(sentences),
        key=lambda item: (_score_sentence(item[1]), -item[0]),
    )[1]
    return _trim(best, limit, language)


def analyze_feedback_offline(
    text: str,
    locale: str | None = None,
    *,
    neutral_band: tuple[float, float] | None = None,
    use_lexicon: bool = True,
) -> FeedbackAnalysis:
    """Analyse feedback with packaged models that need no network.

    Chinese goes to snownlp (a naive Bayes model trained on shopping reviews) and
    English to VADER (a rule-based lexicon that also scores emoji). A small
    domain lexicon corrects phrases both get wrong, and questions are damped
    towards neutral.

    Args:
        text: The feedback text.
        locale: Optional locale hint such as ``zh-CN``; the text's script wins.
        neutral_band: ``(low, high)``: scores strictly inside are neutral. The
            default depends on the model used, see ``DEFAULT_NEUTRAL_BANDS``.
        use_lexicon: Whether to apply the domain lexicon and neutral cues. Off
            gives the packaged model's score alone, to measure what they add.

    Returns:
        The analysis, with ``analyzer`` set to ``offline:snownlp`` or
        ``offline:vader``.

    Raises:
        TypeError: If ``text`` is not a string.
        ValueError: If ``text`` is empty or whitespace only.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(
            f"text is empty or whitespace only ({text!r}): "
            "pass the feedback text the user submitted"
        )

    analyzed = text.strip()[:MAX_ANALYZED_CHARS]
    language = detect_language(analyzed, locale)
    has_letters = bool(_CJK_RE.search(analyzed) or _LATIN_RE.search(analyzed))
    if language == "zh" and has_letters:
        model_score = _score_snownlp(analyzed)
        analyzer = "offline:snownlp"
        band = neutral_band or DEFAULT_NEUTRAL_BANDS["zh"]
    else:
        # VADER also covers emoji-only text, whatever the locale hint is.
        model_score = _score_vader(analyzed)
        analyzer = "offline:vader"
        band = neutral_band or DEFAULT_NEUTRAL_BANDS["en"]

    score = model_score
    if use_lexicon:
        score = _adjust_score(analyzed, language, model_score)
    sentiment = classify_score(score, band)

    logger.debug(
        "Scored feedback: language=%s model_score=%.3f score=%.3f sentiment=%s",
        language,
        model_score,
        score,
        sentiment,
    )
    return FeedbackAnalysis(
        sentiment=sentiment,
        score=round(score, 4),
        summary=extract_summary(analyzed, language),
        topics=extract_topics(analyzed),
        urgency=rate_urgency(analyzed, sentiment),
        analyzer=analyzer,
    )


@task(name="analyze-feedback-offline")
def analyze_feedback_offline_task(
    text: str, locale: str | None = None
) -> FeedbackAnalysis:
    """Analyse feedback offline as a Prefect task. See ``analyze_feedback_offline``."""
    run_logger = get_run_logger()
    analysis = analyze_feedback_offline(text, locale)
    run_logger.info(
        "Analysed feedback of %d characters: sentiment=%s score=%.2f urgency=%s "
        "topics=%s analyzer=%s",
        len(text),
        analysis.sentiment,
        analysis.score,
        analysis.urgency,
        analysis.topics,
        analysis.analyzer,
    )
    return analysis


def _locale_language(locale: str | None) -> Language | None:
    if not locale:
        return None
    prefix = re.split(r"[-_]", locale.strip().lower(), maxsplit=1)[0]
    if prefix == "zh":
        return "zh"
    if prefix == "en":
        return "en"
    return None


@functools.cache
def _vader() -> SentimentIntensityAnalyzer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _score_vader(text: str) -> float:
    return float(_vader().polarity_scores(text)["compound"])


def _score_snownlp(text: str) -> float:
    # NOTE: importing snownlp loads its segmenter, tagger and sentiment models,
    # which takes about 2 s, so it waits until the first Chinese text.
    from snownlp import SnowNLP

    positive_probability = float(SnowNLP(text).sentiments)
    return 2.0 * positive_probability - 1.0


def _adjust_score(text: str, language: Language, model_score: float) -> float:
    lexicon = ZH_LEXICON if language == "zh" else EN_LEXICON
    cues = ZH_NEUTRAL_CUES if language == "zh" else EN_NEUTRAL_CUES
    folded = text.casefold()

    matches = _match_lexicon(folded, {**lexicon, **EMOJI_LEXICON})

    score = model_score
    if matches:
        lexicon_score = math.tanh(sum(matches.values()))
        # Both packaged models read "不是很满意" or "not worth" by its positive
        # word, so a negated phrase outweighs the model score.
        weight = LEXICON_WEIGHT
        if any(_NEGATION_RE.match(phrase) for phrase in matches):
            weight = NEGATED_PHRASE_WEIGHT
        score = (1 - weight) * model_score + weight * lexicon_score
    if any(cue in folded for cue in cues):
        score *= NEUTRAL_CUE_DAMPING
    return max(-1.0, min(1.0, score))


def _match_lexicon(folded: str, lexicon: Mapping[str, float]) -> dict[str, float]:
    """Return the summed weight of each matched phrase, longest phrases first."""
    matches: dict[str, float] = {}
    remaining = folded
    for phrase in sorted(lexicon, key=len, reverse=True):
        remaining, count = _keyword_pattern(phrase).subn("\0", remaining)
        if count:
            matches[phrase] = lexicon[phrase] * count
    return matches


def _contains_keyword(folded: str, keyword: str) -> bool:
    return _keyword_pattern(keyword).search(folded) is not None


@functools.cache
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    # ASCII keywords match whole words, so "ship" does not match "relationship".
    escaped = re.escape(keyword.casefold())
    if keyword.isascii() and keyword[:1].isalnum():
        return re.compile(rf"(?<![a-z0-9]){escaped}(?![a-z0-9])")
    return re.compile(escaped)


def _score_sentence(sentence: str) -> float:
    folded = sentence.casefold()
    points = 0.0
    points += 3 * _count_keywords(folded, REQUEST_MARKERS)
    points += 2 * _count_keywords(
        folded, SAFETY_URGENCY_KEYWORDS + ESCALATION_URGENCY_KEYWORDS
    )
    for keywords in TOPIC_KEYWORDS.values():
        points += _count_keywords(folded, keywords)
    points += min(len(sentence), 60) / 60
    return points


def _count_keywords(folded: str, keywords: Sequence[str]) -> int:
    return sum(1 for keyword in keywords if _contains_keyword(folded, keyword))


def _trim(sentence: str, limit: int, language: Language) -> str:
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1]
    # Drop a partial last word unless the cut fell on a space.
    if language == "en" and not sentence[limit - 1].isspace() and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,，、;；:") + "…"
