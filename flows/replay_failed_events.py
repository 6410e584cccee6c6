"""Flow `replay-failed-events`: re-dispatch events whose runs ended Failed or Crashed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from blocks.gateway import GatewayAdminCredentials
from flows.tasks.gateway_admin import replay_table_rows, request_bulk_replay

__all__ = ["DEFAULT_CREDENTIALS_BLOCK", "replay_failed_events"]

DEFAULT_CREDENTIALS_BLOCK = "webhook-gateway-admin"
DEFAULT_STATUSES = ("failed", "crashed")
DEFAULT_LOOKBACK = timedelta(days=7)


@flow(name="replay-failed-events", log_prints=False)
def replay_failed_events(
    route: str | None = None,
    statuses: list[str] | None = None,
    since: datetime | None = None,
    max_count: int = 100,
    max_replays_per_event: int = 3,
    dry_run: bool = False,
    credentials_block: str = DEFAULT_CREDENTIALS_BLOCK,
) -> dict[str, Any]:
    """Ask the gateway to replay failed events, or list them as a table artifact.

    Args:
        route: Only events of this route. None: every route.
        statuses: Event statuses to replay. None: failed and crashed.
        since: Only events received at or after this time. None: the last 7 days.
        max_count: Most events replayed by one run (the gateway allows 1000).
        max_replays_per_event: Skip events already replayed this many times, so a
            permanently failing event is not replayed every night.
        dry_run: List what would be replayed without replaying anything.
        credentials_block: Name of the `GatewayAdminCredentials` block.

    Returns:
        The gateway's response: matched events, requested replays and skipped events.
    """
    logger = get_run_logger()
    credentials = GatewayAdminCredentials.load(credentials_block)
    start = since or datetime.now(UTC) - DEFAULT_LOOKBACK
    request: dict[str, Any] = {
        "statuses": list(statuses or DEFAULT_STATUSES),
        "since": start.isoformat(),
        "limit": max_count,
        "max_replays": max_replays_per_event,
        "dry_run": dry_run,
        "requested_by": "flow:replay-failed-events",
    }
    if route:
        request["route"] = route
    answer = request_bulk_replay(credentials, request)

    rows = replay_table_rows(answer)
    verb = "would replay" if dry_run else "replayed"
    create_table_artifact(
        key="replay-failed-events-dry-run" if dry_run else "replay-failed-events",
        table=rows,
        description=(
            f"{verb} {len(rows)} events in {request['statuses']} since "
            f"{request['since']} (route: {route or 'all'})"
        ),
    )
    logger.info("%s %d events", verb, len(rows))
    return answer
