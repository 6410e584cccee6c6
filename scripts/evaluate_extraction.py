"""Print the rule parser's field accuracy on the message table in tests/flows.

Run from the repository root: `uv run python -m scripts.evaluate_extraction`.
"""

from __future__ import annotations

from flows.tasks.extraction import DelayNotice, parse_delay_rules
from tests.flows.delay_cases import (
    ALL_CASES,
    FIELDS,
    TODAY,
    UNSEEN_CASES,
    measure_field_accuracy,
)


def _parse(text: str) -> DelayNotice:
    return parse_delay_rules(text, today=TODAY)


def main() -> None:
    """Print per-field accuracy on all and on unseen cases, then list the misses."""
    all_accuracy = measure_field_accuracy(_parse, ALL_CASES)
    unseen_accuracy = measure_field_accuracy(_parse, UNSEEN_CASES)

    print(f"{'field':<17} {'all':>7} {'unseen':>7}")
    print(f"{'(messages)':<17} {len(ALL_CASES):>7} {len(UNSEEN_CASES):>7}")
    for name in (*FIELDS, "overall"):
        print(f"{name:<17} {all_accuracy[name]:>7.1%} {unseen_accuracy[name]:>7.1%}")

    print("\nMisses:")
    for case in ALL_CASES:
        notice = _parse(case.text)
        for name in FIELDS:
            expected = getattr(case, name)
            actual = getattr(notice, name)
            if actual != expected:
                print(f"  {case.text!r}: {name} = {actual!r}, expected {expected!r}")


if __name__ == "__main__":
    main()
