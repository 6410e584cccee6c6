"""Measure the offline feedback analyzer on the labelled feedback set.

Run ``uv run python -m tests.flows.sentiment_eval`` from the repository root to
print accuracy and confusion tables as Markdown. ``--no-lexicon`` scores with
the packaged models alone.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from flows.tasks.sentiment import Sentiment, analyze_feedback_offline

DATA_PATH = Path(__file__).parent.parent / "data" / "feedback_reviews.jsonl"
LABELS: tuple[Sentiment, ...] = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class LabelledFeedback:
    """One labelled case from the feedback set."""

    text: str
    locale: str
    sentiment: Sentiment


@dataclass
class Evaluation:
    """Counts of (expected, predicted) labels for one group of cases."""

    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.confusion.values())

    @property
    def correct(self) -> int:
        return sum(self.confusion[(label, label)] for label in LABELS)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def load_cases(path: Path = DATA_PATH) -> list[LabelledFeedback]:
    """Load the JSON Lines feedback set."""
    cases = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                cases.append(LabelledFeedback(**json.loads(line)))
    return cases


def evaluate(
    cases: list[LabelledFeedback], *, use_lexicon: bool = True
) -> dict[str, Evaluation]:
    """Score every case and group the results under ``all``, ``zh`` and ``en``."""
    results = {"all": Evaluation(), "zh": Evaluation(), "en": Evaluation()}
    for case in cases:
        predicted = analyze_feedback_offline(
            case.text, case.locale, use_lexicon=use_lexicon
        ).sentiment
        for group in ("all", case.locale):
            results[group].confusion[(case.sentiment, predicted)] += 1
    return results


def format_report(results: dict[str, Evaluation]) -> str:
    """Format accuracy per group and a confusion table as Markdown."""
    lines = ["| group | cases | correct | accuracy |", "|---|---|---|---|"]
    for group, result in results.items():
        lines.append(
            f"| {group} | {result.total} | {result.correct} | {result.accuracy:.1%} |"
        )
    for group, result in results.items():
        lines += ["", f"Confusion ({group}), rows expected, columns predicted:", ""]
        lines.append("| expected \\ predicted | " + " | ".join(LABELS) + " |")
        lines.append("|---" * (len(LABELS) + 1) + "|")
        for expected in LABELS:
            counts = " | ".join(
                str(result.confusion[(expected, predicted)]) for predicted in LABELS
            )
            lines.append(f"| {expected} | {counts} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-lexicon",
        action="store_true",
        help="score with the packaged models alone, without the domain lexicon",
    )
    parser.add_argument(
        "--errors", action="store_true", help="also list the misclassified cases"
    )
    args = parser.parse_args()

    cases = load_cases()
    print(format_report(evaluate(cases, use_lexicon=not args.no_lexicon)))
    if args.errors:
        print()
        for case in cases:
            analysis = analyze_feedback_offline(
                case.text, case.locale, use_lexicon=not args.no_lexicon
            )
            if analysis.sentiment != case.sentiment:
                print(
                    f"{case.sentiment:>8} -> {analysis.sentiment:<8} "
                    f"{analysis.score:+.2f} {case.text}"
                )


if __name__ == "__main__":
    main()
