"""A flow that does nothing, served as `bench-noop/served`: `python -m bench.noop_flow`.

It isolates Prefect's scheduling delay (run created to Running) from flow work.
"""

from __future__ import annotations

from prefect import flow

__all__ = ["bench_noop", "main"]


@flow(name="bench-noop")
def bench_noop(event_id: str = "", text: str = "") -> str:
    """Return the event id, so a finished run shows which webhook created it."""
    return event_id


def main() -> None:
    bench_noop.serve(name="served")


if __name__ == "__main__":
    main()
