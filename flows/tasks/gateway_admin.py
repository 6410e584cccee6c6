"""Tasks that call the webhook gateway's admin API."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from blocks.gateway import GatewayAdminCredentials

__all__ = ["GatewayAdminError", "replay_table_rows", "request_bulk_replay"]


class GatewayAdminError(Exception):
    """The gateway rejected an admin request; retrying will not help."""


def _is_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an unreachable gateway or a 5xx response, never a rejected request."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, GatewayAdminError)


@task(retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=_is_retryable)
def request_bulk_replay(
    credentials: GatewayAdminCredentials, request: dict[str, Any]
) -> dict[str, Any]:
    """Send one bulk replay request (or dry run) and return the gateway's response body.

    Args:
        credentials: The gateway's admin API.
        request: The body of `POST /admin/replays`.

    Raises:
        GatewayAdminError: The gateway responded with 4xx, for example a wrong token.
        httpx.HTTPError: The gateway was unreachable or responded with 5xx (retried).
    """
    logger = get_run_logger()
    with credentials.get_client() as client:
        response = client.post("/admin/replays", json=request)
    if 400 <= response.status_code < 500:
        raise GatewayAdminError(
            f"POST /admin/replays on {credentials.base_url} was rejected with HTTP "
            f"{response.status_code}: {response.text[:500]}; check the block's token "
            "and the parameters"
        )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    logger.info(
        "gateway matched %d events; %d replays requested, %d skipped (dry run: %s)",
        answer["matched"],
        len(answer["replays"]),
        len(answer["skipped"]),
        answer["dry_run"],
    )
    return answer


def replay_table_rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one row per matched event for a Prefect table artifact."""
    replays = {replay["event"]: replay for replay in answer["replays"]}
    skipped = {item["id"]: item["reason"] for item in answer["skipped"]}
    rows = []
    for event in answer["events"]:
        replay = replays.get(event["id"])
        if answer["dry_run"]:
            action = "would replay"
        elif replay is not None:
            action = f"replay {replay['replay_number']} requested"
        else:
            action = f"skipped: {skipped.get(event['id'], 'unknown')}"
        rows.append(
            {
                "id": event["id"],
                "route": event["route"],
                "event_id": event["event_id"],
                "status": event["status"],
                "received_at": event["received_at"],
                "replays_before": event["replay_count"],
                "replayed_flow_run_id": event["latest_flow_run_id"],
                "action": action,
            }
        )
    return rows
