"""Regular-expression scanners for supplier delay messages in Chinese and English.

Each function finds one kind of fact (dates, durations, part numbers, reason,
supplier, delay keywords) and returns plain values with their character spans.
`flows.tasks.extraction.parse_delay_rules` combines them into a `DelayNotice`.
All functions expect text that `normalize_text` has already processed.
"""

from __future__ import annotations

import datetime
import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

DateRole = Literal["original", "new"]

# Days per unit. A month counts as 30 days, and partial days round up.
DAYS_PER_UNIT: dict[str, Fraction] = {
    "hour": Fraction(1, 24),
    "day": Fraction(1),
    "week": Fraction(7),
    "month": Fraction(30),
}

# Maximum days by which a new date without a year may follow the original date
# after moving it into the next year.
MAX_YEAR_ROLLOVER_DAYS = 183

# Maximum characters between a delay keyword and the duration that belongs to it.
MAX_KEYWORD_DISTANCE = 25

# ---------------------------------------------------------------------------
# Numbers

_CHINESE_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4,
    "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
}  # fmt: skip
_CHINESE_MULTIPLIERS = {"十": 10, "百": 100}

_ENGLISH_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "a couple of": 2, "couple of": 2,
}  # fmt: skip

_CHINESE_NUMBER = r"[零〇一二两三四五六七八九十百]+"
_ARABIC_NUMBER = r"\d+(?:\.\d+)?"
_ENGLISH_NUMBER = (
    r"a couple of|couple of|an?|one|two|three|four|five|six|seven|eight|nine|ten"
    r"|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen"
    r"|nineteen|twenty|thirty"
)


def parse_chinese_number(text: str) -> int | None:
    """Convert a Chinese numeral such as 两, 十五 or 二十三 to an int.

    Returns None when `text` contains a character that is not a Chinese numeral.
    """
    total = 0
    current = 0
    for char in text:
        if char in _CHINESE_DIGITS:
            current = _CHINESE_DIGITS[char]
        elif char in _CHINESE_MULTIPLIERS:
            total += (current or 1) * _CHINESE_MULTIPLIERS[char]
            current = 0
        else:
            return None
    return total + current


def _parse_number(text: str) -> Fraction | None:
    text = text.strip().lower()
    if re.fullmatch(_ARABIC_NUMBER, text):
        return Fraction(text)
    if text == "半":
        return Fraction(1, 2)
    if text in _ENGLISH_NUMBERS:
        return Fraction(_ENGLISH_NUMBERS[text])
    chinese = parse_chinese_number(text)
    return Fraction(chinese) if chinese is not None else None


# ---------------------------------------------------------------------------
# Text preparation and sentences


def normalize_text(text: str) -> str:
    """Strip the text and fold full-width characters (，：？１２) to ASCII.

    NFKC keeps the string length for these characters, so spans found in the
    result can be shown to the user.
    """
    return unicodedata.normalize("NFKC", text).strip()


_SENTENCE_END = re.compile(r"[。!?;\n]|\.(?=\s|$)")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) spans of the sentences, each with its end mark."""
    spans = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if text[start : match.end()].strip():
            spans.append((start, match.end()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


_CLAUSE_END = re.compile(r"[,。!?;\n]|\.(?=\s|$)")


def split_clauses(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) spans of the clauses, split at commas and sentence ends.

    Questions are detected per clause, so "A03-205推迟3天,能否接受?" keeps its
    delay statement.
    """
    spans = []
    start = 0
    for match in _CLAUSE_END.finditer(text):
        if text[start : match.end()].strip():
            spans.append((start, match.end()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _sentence_index(sentences: list[tuple[int, int]], position: int) -> int:
    for index, (start, end) in enumerate(sentences):
        if start <= position < end:
            return index
    return len(sentences) - 1


_QUESTION_WORDS = re.compile(
    r"吗|是否|会不会|能不能|能否|可否|有没有|是不是|什么时候|何时|多久"
    r"|^\s*(?:will|would|is|are|was|were|can|could|do|does|did|has|have|any|when)\b",
    re.IGNORECASE,
)


def is_question(sentence: str) -> bool:
    """Return whether the sentence ends with a question mark or has a question word."""
    stripped = sentence.strip()
    return stripped.endswith("?") or bool(_QUESTION_WORDS.search(stripped))


# ---------------------------------------------------------------------------
# Keywords


def _keyword_pattern(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


DELAY_KEYWORDS = _keyword_pattern(
    r"推迟|延期|延迟|延后|延误|顺延|推后|往后推|拖期|拖延|滞后|改期|延至|延到",
    r"晚(?:到|发|交|几天|\d|[一二两三四五六七八九十半])|迟(?:到|发|交)",
    r"(?:无法|不能|未能|没法|赶不上)(?:按时|按期|如期|准时)|赶不上|来不及",
    r"\bdelay(?:s|ed)?\b|\bpostpone[sd]?\b|\bpush(?:ed|ing)?\s+(?:back|out)\b",
    r"\bslip(?:s|ped|ping)?\b|\blate\b(?!\s+(?:reply|response|answer))",
    r"\bbehind\s+schedule\b|\breschedul(?:e|ed)\b",
    r"\bmoved?\s+(?:out\s+)?to\b|\b(?:can't|cannot|won't|will\s+not)\s+"
    r"(?:ship|deliver|make\s+it)\s+on\s+time\b",
)

DELAY_LIFTED_KEYWORDS = _keyword_pattern(
    r"延期取消|取消(?:延期|推迟|延迟)|撤销延期|(?:延期|推迟)(?:通知)?(?:已)?撤销",
    r"恢复(?:原计划|原定|原交期|正常交期)|按原(?:定)?计划|不再延期|如期恢复",
    r"\bdelay\s+(?:has\s+been\s+|is\s+|was\s+)?(?:cancel+ed|lifted|withdrawn"
    r"|called\s+off|resolved)\b",
    r"\bno\s+longer\s+delayed\b|\bback\s+on\s+(?:schedule|track)\b",
    r"\b(?:original|previous)\s+schedule\s+(?:is\s+|has\s+been\s+)?"
    r"(?:restored|reinstated|back)\b|\brevert(?:s|ed|ing)?\s+to\s+the\s+original\b",
)

ON_SCHEDULE_KEYWORDS = _keyword_pattern(
    r"按时|准时|如期|按期|按计划|正常发货|正常交货",
    r"已发货|已经发货|已出货|已经出货|已发出",
    r"\bon\s+(?:schedule|time|track)\b|\bas\s+(?:planned|scheduled)\b",
    r"\b(?:has|have|was|were)\s+(?:been\s+)?(?:shipped|dispatched|delivered)\b",
    r"\bshipped\s+(?:today|yesterday)\b",
)

SHIPPING_WORDS = _keyword_pattern(
    r"发货|出货|到货|交货|交期|送货|物流|货期",
    r"\b(?:ship(?:s|ped|ping|ment)?|deliver(?:y|ed|ies)?|dispatch(?:ed)?|eta)\b",
)

_NEGATION_BEFORE = re.compile(
    r"(?:(?<!不得)不|没|未|无|别|非)(?:会|再|有|要|用|需|必|曾)?\s*$"
    r"|\b(?:no|not|never|without|won't|isn't|aren't|wasn't|weren't|nor)\s+"
    r"(?:be\s+|been\s+)?(?:any\s+|further\s+)?$",
    re.IGNORECASE,
)


def find_keywords(
    pattern: re.Pattern[str], text: str, *, negated: bool = False
) -> list[tuple[int, int]]:
    """Return the spans of keyword matches that are not negated just before.

    With `negated=True`, return only the negated matches instead ("不会延期",
    "will not be delayed").
    """
    spans = []
    for match in pattern.finditer(text):
        before = text[max(0, match.start() - 15) : match.start()]
        # A keyword that itself starts with a negation ("无法按时") is a positive match.
        is_negated = bool(_NEGATION_BEFORE.search(before))
        if is_negated == negated:
            spans.append(match.span())
    return spans


# ---------------------------------------------------------------------------
# Dates

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH_NAME = (
    r"(?P<month_name>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?"
    r"|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?"
    r"|dec(?:ember)?)\.?"
)
_ORDINAL = r"(?:st|nd|rd|th)?"

_DATE_PATTERNS = [
    # 2024-12-15, 2024/12/15, 2024.12.15
    re.compile(
        r"(?<!\d)(?P<year>\d{4})[-/.](?P<month>\d{1,2})[-/.](?P<day>\d{1,2})(?!\d)"
    ),
    # 2024年12月15日, 12月15日, 12月15号, 12月15
    re.compile(
        r"(?:(?P<year>\d{4})\s*年\s*)?(?<!\d)(?P<month>\d{1,2})\s*月\s*"
        r"(?P<day>\d{1,2})(?!\d)\s*(?:日|号)?"
    ),
    # Dec 15, December 15th, 2024
    re.compile(
        rf"\b{_MONTH_NAME}\s+(?P<day>\d{{1,2}}){_ORDINAL}\b(?:,?\s+(?P<year>\d{{4}}))?",
        re.IGNORECASE,
    ),
    # 15 Dec, 15th December 2024
    re.compile(
        rf"\b(?P<day>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?{_MONTH_NAME}"
        rf"(?:,?\s+(?P<year>\d{{4}}))?\b",
        re.IGNORECASE,
    ),
    # 12/15, read as month/day.
    re.compile(r"(?<![\d/A-Za-z-])(?P<month>\d{1,2})/(?P<day>\d{1,2})(?![\d/])"),
    # 15号, or 15日 after 至/到/为/于: a day of the month that the context gives.
    re.compile(
        r"(?:(?<=至)|(?<=到)|(?<=为)|(?<=于)|(?<=在))\s*(?P<day>\d{1,2})\s*[日号]"
        r"|(?<!\d)(?P<day_hao>\d{1,2})\s*号"
    ),
]


@dataclass(frozen=True)
class DateMention:
    """A calendar date in the text. Year and month are None when the text omits them."""

    start: int
    end: int
    year: int | None
    month: int | None
    day: int
    role: DateRole | None
    is_possible: bool = True


# Maximum characters between a role marker ("原定", "now") and the date it names.
MAX_MARKER_DISTANCE = 12

_ORIGINAL_MARKERS = re.compile(
    r"原定于?|原计划|原来|原本|原先|原交期|本应|本来|计划"
    r"|\b(?:from|originally|instead\s+of|(?:was|were)\s+(?:due|scheduled|planned)"
    r"|scheduled|planned|due)\b"
    r"|\boriginal(?:\s+(?:date|eta|ship(?:ping)?\s+date|delivery\s+date))?\b",
    re.IGNORECASE,
)
_NEW_MARKERS = re.compile(
    r"(?:推迟|延期|延迟|延后|顺延|推后|延|改|调整|变更|更改)(?:至|到|为)"
    r"|预计|现在|现|新的|新交期"
    r"|\b(?:to|until|till|now|new\s+(?:date|eta|ship(?:ping)?\s+date)"
    r"|rescheduled\s+(?:for|to)|(?<!original\s)eta|expected"
    r"|will\s+(?:now\s+)?(?:ship|arrive)(?:\s+on)?)\b",
    re.IGNORECASE,
)


def _last_marker(pattern: re.Pattern[str], window: str) -> tuple[int, int] | None:
    """Return (end, -start) of the marker closest to the window's end, or None."""
    best = None
    for match in pattern.finditer(window):
        if len(window) - match.end() > MAX_MARKER_DISTANCE:
            continue
        key = (match.end(), -match.start())
        if best is None or key > best:
            best = key
    return best


def _classify_date(text: str, start: int) -> DateRole | None:
    window = text[max(0, start - 24) : start]
    boundary = max(window.rfind(mark) for mark in ",。;!?\n")
    window = window[boundary + 1 :]
    original = _last_marker(_ORIGINAL_MARKERS, window)
    new = _last_marker(_NEW_MARKERS, window)
    if original is None and new is None:
        return None
    if new is None:
        return "original"
    if original is None:
        return "new"
    # The closer marker wins. At a tie ("original ETA"), the longer one wins.
    return "original" if original > new else "new"


def find_dates(text: str) -> list[DateMention]:
    """Find dates in the text, in text order, each with its role when a marker names it.

    "原定12月10日" and "originally due Dec 10" mark an original date; "推迟至12月15日"
    and "now Dec 15" mark a new one. Impossible dates (2月30日) are returned with
    `is_possible=False`, so that callers can mask them and ignore them.
    """
    mentions: list[DateMention] = []
    claimed_spans: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(
                start < other_end and other_start < end
                for other_start, other_end in claimed_spans
            ):
                continue
            groups = match.groupdict()
            day = int(groups.get("day") or groups.get("day_hao"))
            month_name = groups.get("month_name")
            if month_name:
                month: int | None = _MONTHS[month_name[:3].lower()]
            else:
                month = int(groups["month"]) if groups.get("month") else None
            year = int(groups["year"]) if groups.get("year") else None
            claimed_spans.append((start, end))
            mentions.append(
                DateMention(
                    start=start,
                    end=end,
                    year=year,
                    month=month,
                    day=day,
                    role=_classify_date(text, start),
                    is_possible=_is_possible_date(year, month, day),
                )
            )
    return sorted(mentions, key=lambda mention: mention.start)


def _is_possible_date(year: int | None, month: int | None, day: int) -> bool:
    if month is not None and not 1 <= month <= 12:
        return False
    try:
        # 2024 is a leap year, so 2月29日 without a year counts as possible.
        datetime.date(year or 2024, month or 1, day)
    except ValueError:
        return False
    return True


def resolve_date(
    mention: DateMention, today: datetime.date, *, after: datetime.date | None = None
) -> datetime.date | None:
    """Turn a mention into a date, filling a missing year or month.

    A missing year becomes the one that puts the date closest to `today`. A
    missing month becomes the month of `after`, or of `today`. When `after` is
    given, a date without an explicit month that falls before it moves to the
    next month, and a date without a year moves to the next year if that puts it
    at most `MAX_YEAR_ROLLOVER_DAYS` after `after`.
    Returns None when no such date exists (31日 in a 30-day month).
    """
    reference = after or today
    if mention.month is None:
        candidate = _safe_date(reference.year, reference.month, mention.day)
        if candidate is not None and after is not None and candidate < after:
            year, month = divmod(reference.year * 12 + reference.month, 12)
            candidate = _safe_date(year, month + 1, mention.day)
        return candidate
    if mention.year is not None:
        return _safe_date(mention.year, mention.month, mention.day)

    candidates = [
        _safe_date(year, mention.month, mention.day)
        for year in (today.year - 1, today.year, today.year + 1)
    ]
    valid = [candidate for candidate in candidates if candidate is not None]
    if not valid:
        return None
    best = min(valid, key=lambda candidate: abs((candidate - today).days))
    if after is not None and best < after:
        # Only a year boundary moves the date ("原定12月28日, 推迟到1月5日"). A date
        # far before the original one stays, so the caller sees no delay.
        later = _safe_date(best.year + 1, best.month, best.day)
        if later is not None and (later - after).days <= MAX_YEAR_ROLLOVER_DAYS:
            best = later
    return best


def _safe_date(year: int, month: int, day: int) -> datetime.date | None:
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace the characters in `spans` with spaces, keeping positions."""
    characters = list(text)
    for start, end in spans:
        characters[start:end] = " " * (end - start)
    return "".join(characters)


# ---------------------------------------------------------------------------
# Durations

_NUMBER = rf"{_ARABIC_NUMBER}|{_CHINESE_NUMBER}|半"
_CHINESE_DURATION = re.compile(
    rf"(?<![A-Za-z0-9.\-_/])(?P<number>{_NUMBER})"
    rf"(?:\s*(?:-|~|到|至)\s*(?P<upper>{_NUMBER}))?"
    r"\s*(?:个)?(?P<half>半)?\s*(?:个)?\s*"
    r"(?P<unit>(?:个)?工作日|天|日|周|星期|礼拜|(?<=个)月|(?<=个半)月|小时|钟头)"
)
_ENGLISH_DURATION = re.compile(
    rf"(?<![A-Za-z0-9.\-_/])(?P<number>{_ARABIC_NUMBER}|{_ENGLISH_NUMBER})"
    rf"(?:\s*(?:-|~|to)\s*(?P<upper>{_ARABIC_NUMBER}))?"
    r"(?:\s*-\s*|\s+|)(?:more\s+|additional\s+|extra\s+)?"
    r"(?:business\s+|working\s+|calendar\s+)?"
    r"(?P<unit>days?|weeks?|wks?|months?|hours?|hrs?|h)\b",
    re.IGNORECASE,
)
_UNIT_NAMES = {
    "工作日": "day", "天": "day", "日": "day", "周": "week", "星期": "week",
    "礼拜": "week", "月": "month", "小时": "hour", "钟头": "hour",
    "day": "day", "week": "week", "wk": "week", "month": "month",
    "hour": "hour", "hr": "hour", "h": "hour",
}  # fmt: skip


@dataclass(frozen=True)
class DurationMention:
    """A length of time in the text, converted to whole days (partial days round up)."""

    start: int
    end: int
    days: int


def find_durations(text: str) -> list[DurationMention]:
    """Find durations ("3天", "两周", "一个半月", "48 hours", "2-week") in text order.

    A range ("3-5天") counts as its upper bound. Mask dates first, because
    "10日" and "12月" in a date would otherwise read as durations.
    """
    mentions = []
    for pattern in (_CHINESE_DURATION, _ENGLISH_DURATION):
        for match in pattern.finditer(text):
            days = _duration_days(match)
            if days is not None:
                mentions.append(DurationMention(match.start(), match.end(), days))
    return sorted(mentions, key=lambda mention: mention.start)


def _duration_days(match: re.Match[str]) -> int | None:
    number = _parse_number(match.group("upper") or match.group("number"))
    if number is None:
        return None
    if match.groupdict().get("half"):
        number += Fraction(1, 2)
    unit = match.group("unit").lower().removeprefix("个")
    unit = unit.rstrip("s")
    days = number * DAYS_PER_UNIT[_UNIT_NAMES[unit]]
    return math.ceil(days) if days > 0 else None


def pick_delay_duration(
    text: str,
    durations: list[DurationMention],
    keywords: list[tuple[int, int]],
) -> DurationMention | None:
    """Return the duration closest to a delay keyword in the same sentence.

    A lead time elsewhere in the message ("交期30天") is ignored that way.
    Durations more than `MAX_KEYWORD_DISTANCE` characters away from every
    keyword are ignored unless the message has exactly one duration.
    """
    sentences = split_sentences(text)
    best: DurationMention | None = None
    best_distance = MAX_KEYWORD_DISTANCE + 1
    for duration in durations:
        sentence = _sentence_index(sentences, duration.start)
        for keyword_start, keyword_end in keywords:
            if _sentence_index(sentences, keyword_start) != sentence:
                continue
            if duration.start >= keyword_end:
                distance = duration.start - keyword_end
            else:
                distance = max(0, keyword_start - duration.end)
            if distance < best_distance:
                best, best_distance = duration, distance
    if best is None and len(durations) == 1:
        return durations[0]
    return best


# ---------------------------------------------------------------------------
# Part numbers

_PART_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_-])[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)*(?![A-Za-z0-9_])"
)
# Codes with digits that are not part numbers: order and delivery numbers,
# quarters, half years and the like.
_NOT_PART_NUMBER = re.compile(
    r"^(?:PO|SO|DN|INV|ORD)[-_]?\d[\dA-Z_-]*$|^(?:Q[1-4]|H[12]|FY\d{2,4}|W\d{1,2})$"
    r"|^COVID-19$"
)
_ORDER_NUMBER_BEFORE = re.compile(
    r"(?:订单|单号|order|PO)\s*(?:号|no\.?|#|:)?\s*$", re.IGNORECASE
)


def find_part_numbers(text: str) -> list[str]:
    """Return the part numbers (A03-205, X-12, MAT001) in text order, once each.

    A part number starts with an upper-case letter, contains a digit and consists
    of upper-case letters, digits, hyphens and underscores. Order numbers
    (PO-2024-118, or a code right after 订单号/order #) are skipped.
    """
    found: list[str] = []
    for match in _PART_NUMBER.finditer(text):
        code = match.group()
        if not any(char.isdigit() for char in code):
            continue
        if _NOT_PART_NUMBER.match(code):
            continue
        if _ORDER_NUMBER_BEFORE.search(
            text[max(0, match.start() - 12) : match.start()]
        ):
            continue
        if code not in found:
            found.append(code)
    return found


# ---------------------------------------------------------------------------
# Reason

_CLAUSE_CHARS = r"[^,。;!?\n]"
# Words that end a Chinese reason clause ("因缺料延期" gives "缺料").
_REASON_STOP = (
    r"\s*(?:推迟|延期|延迟|延后|延误|顺延|晚到|晚发|不得不|只能|将|需要|无法|不能)"
)
_REASON_PATTERNS = [
    re.compile(rf"受(?:到)?(?P<reason>{_CLAUSE_CHARS}{{1,20}}?)(?:的)?影响"),
    re.compile(
        rf"(?:由于|因为|鉴于|(?<!原)因(?!此|而|故))"
        rf"(?P<reason>{_CLAUSE_CHARS}{{1,30}}?)"
        rf"(?:(?:的)?(?:影响|原因)|(?=[,。;!?\n]|导致|造成|致使|所致|{_REASON_STOP}|$))"
    ),
    re.compile(rf"原因(?:是|为|:)\s*(?P<reason>{_CLAUSE_CHARS}{{1,30}})"),
    re.compile(rf"(?P<reason>{_CLAUSE_CHARS}{{1,15}}?)(?:导致|造成|致使)"),
    re.compile(
        r"\b(?:due\s+to(?!\s+(?:ship|arrive|deliver|be|leave|depart|dispatch)\b)"
        r"|because\s+of|owing\s+to|as\s+a\s+result\s+of|caused\s+by|on\s+account\s+of)"
        r"\s+(?P<reason>[^,;!?\n]{1,60}?)(?=\s*(?:[,;!?\n]|\.(?:\s|$)|$))",
        re.IGNORECASE,
    ),
    re.compile(
        r"\breason(?:\s+is|\s*:)\s*(?P<reason>[^,;!?\n]{1,60}?)"
        r"(?=\s*(?:[,;!?\n]|\.(?:\s|$)|$))",
        re.IGNORECASE,
    ),
]
_REASON_TRIM = re.compile(r"^(?:the|a|an)\s+|(?:的)?(?:影响|原因)$", re.IGNORECASE)


def find_reason(text: str) -> str | None:
    """Return the stated cause ("台风" from "受台风影响"), or None."""
    for pattern in _REASON_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        reason = _REASON_TRIM.sub("", match.group("reason").strip()).strip()
        if reason:
            return reason
    return None


# ---------------------------------------------------------------------------
# Supplier

_CHINESE_COMPANY_SUFFIX = (
    r"(?:有限公司|公司|电子|科技|集团|实业|工厂|厂|精密"
    r"|材料|半导体|机电|光电|贸易|物流)"
)
_CHINESE_COMPANY = (
    rf"(?P<supplier>[\u4e00-\u9fffA-Za-z0-9()]{{2,20}}?{_CHINESE_COMPANY_SUFFIX})"
)
_ENGLISH_COMPANY_SUFFIX = (
    r"(?:Corp(?:oration)?|Inc|Ltd|LLC|Co|GmbH|AG|Electronics|Industries"
    r"|Technolog(?:y|ies)|Tech|Group|Manufacturing|Components|Materials"
    r"|Semiconductors?|Logistics|Metals|Plastics|Systems)\b\.?"
)
_ENGLISH_COMPANY = (
    rf"(?P<supplier>(?:[A-Z][\w&'-]*\s+){{0,4}}{_ENGLISH_COMPANY_SUFFIX})"
)
_SUPPLIER_PATTERNS = [
    re.compile(r"^\s*(?:【(?P<supplier>[^】]{2,30})】|\[(?P<bracketed>[^\]]{2,30})\])"),
    re.compile(
        r"(?:供应商|supplier|vendor)\s*:\s*(?P<supplier>[^,。;!?\n]{2,40}?)"
        r"(?=\s*(?:[,。;!?\n]|\.(?:\s|$)|$))",
        re.IGNORECASE,
    ),
    re.compile(
        rf"{_CHINESE_COMPANY}"
        r"(?:刚刚|刚才|今天|今日|已)?"
        r"(?:通知|告知|反馈|来函|来电|回复|表示|称|说|确认|发来)"
    ),
    re.compile(rf"来自{_CHINESE_COMPANY}"),
    re.compile(rf"\b(?i:from|supplier|vendor)\s+{_ENGLISH_COMPANY}"),
    re.compile(
        rf"{_ENGLISH_COMPANY}\s+(?:has\s+)?(?:informed|notified|reports|reported|says"
        r"|announced|confirmed|advises|advised|writes|wrote)\b"
    ),
]
_SUPPLIER_PREFIX = re.compile(r"^(?:供应商|据|经|今天|今日|刚刚|刚才|来自)+")


def find_supplier(text: str) -> str | None:
    """Return the supplier's name when the text names it, or None.

    Recognized forms: a leading 【华强电子】 or [Acme Corp] tag, "供应商:"/"Supplier:",
    a Chinese company name before 通知/告知/反馈 (XX电子通知), and an English
    company name with a suffix such as Corp or Ltd after "from" or before
    "informed"/"reports".
    """
    for pattern in _SUPPLIER_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        name = match.group("supplier") or match.groupdict().get("bracketed") or ""
        name = _SUPPLIER_PREFIX.sub("", name.strip()).rstrip(".").strip()
        if len(name) >= 2:
            return name
    return None
