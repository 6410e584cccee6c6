"""`webhook-gateway events|event|replay`: the admin API from the command line.

These commands talk to a running gateway over HTTP, so they work against any host
and use the same token check as every other admin client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

__all__ = ["AdminCommandError", "add_admin_commands"]

ADMIN_TIMEOUT_SECONDS = 30


class AdminCommandError(Exception):
    """The admin API could not be reached or rejected the request."""


def add_admin_commands(commands: Any) -> None:
    """Add the admin subcommands to the `webhook-gateway` parser."""
    events = commands.add_parser("events", help="list events (admin API)")
    _add_connection_options(events)
    _add_filter_options(events)
    events.add_argument("--event-id", help="the sender's event id")
    events.add_argument("--flow-run-id", help="a flow run id of the event")
    events.add_argument("--cursor", help="next_cursor of the previous page")
    events.set_defaults(handler=_command_events)

    event = commands.add_parser("event", help="show one event with attempts, replays")
    _add_connection_options(event)
    event.add_argument("id", help="the gateway's event id")
    event.set_defaults(handler=_command_event)

    replay = commands.add_parser(
        "replay",
        help="replay one event by id, or every event matching the filters",
    )
    _add_connection_options(replay)
    replay.add_argument("id", nargs="?", help="the gateway's event id")
    _add_filter_options(replay)
    replay.add_argument(
        "--max-replays", type=int, help="skip events replayed this many times"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="list the events without replaying"
    )
    replay.add_argument(
        "--rerender",
        action="store_true",
        help="render the parameters again from the stored body (single event)",
    )
    replay.set_defaults(handler=_command_replay)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help="gateway base URL (default: $WEBHOOK_GATEWAY_PUBLIC_URL, else "
        "http://$WEBHOOK_GATEWAY_HOST:$WEBHOOK_GATEWAY_PORT)",
    )
    parser.add_argument(
        "--token", help="admin token (default: $WEBHOOK_GATEWAY_ADMIN_TOKEN)"
    )


def _add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--route", help="only this route")
    parser.add_argument(
        "--status", action="append", help="only this status; repeat for several"
    )
    parser.add_argument("--since", help="received at or after (ISO 8601, UTC)")
    parser.add_argument("--until", help="received before (ISO 8601, UTC)")
    parser.add_argument("--limit", type=int, default=100, help="most events (100)")


def _client(args: argparse.Namespace) -> httpx.Client:
    from webhook_gateway.settings import get_settings

    settings = get_settings()
    token = args.token or (
        settings.admin_token.get_secret_value() if settings.admin_token else ""
    )
    if not token:
        raise AdminCommandError(
            "no admin token; pass --token or set WEBHOOK_GATEWAY_ADMIN_TOKEN"
        )
    base_url = (args.url or settings.effective_public_url).rstrip("/")
    return httpx.Client(
        base_url=base_url,
        headers={"X-Admin-Token": token},
        timeout=ADMIN_TIMEOUT_SECONDS,
    )


def _call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    with _client(args) as client:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminCommandError(
                f"the gateway at {client.base_url} could not be reached: {exc}; check "
                "--url"
            ) from None
    if response.status_code >= 400:
        raise AdminCommandError(
            f"{method} {path} failed with HTTP {response.status_code}: {response.text}"
        )
    return response.json()


def _print(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _command_events(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("route", "since", "until", "event_id", "flow_run_id", "cursor"):
        value = getattr(args, name, None)
        if value:
            params[name] = value
    if args.status:
        params["status"] = args.status
    _print(_call(args, "GET", "/admin/events", params=params))
    return 0


def _command_event(args: argparse.Namespace) -> int:
    _print(_call(args, "GET", f"/admin/events/{args.id}"))
    return 0


def _command_replay(args: argparse.Namespace) -> int:
    filters = [args.route, args.status, args.since, args.until, args.max_replays]
    if args.id:
        if any(value is not None for value in filters) or args.dry_run:
            raise AdminCommandError(
                "give either an event id or filters (--route, --status, --since, "
                "--until, --max-replays, --dry-run), not both"
            )
        body = {"rerender": args.rerender, "requested_by": _requested_by()}
        _print(_call(args, "POST", f"/admin/events/{args.id}/replay", json=body))
        return 0
    if args.rerender:
        raise AdminCommandError("--rerender applies to one event id only")
    request: dict[str, Any] = {
        "limit": args.limit,
        "dry_run": args.dry_run,
        "requested_by": _requested_by(),
    }
    for name in ("route", "since", "until", "max_replays"):
        value = getattr(args, name)
        if value is not None:
            request[name] = value
    if args.status:
        request["statuses"] = args.status
    _print(_call(args, "POST", "/admin/replays", json=request))
    return 0


def _requested_by() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"[:100]
