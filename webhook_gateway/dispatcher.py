"""The dispatcher: the only module that imports Prefect's client.

It claims pending events from the inbox and creates one flow run per event with the
idempotency key `<route>:<event id>`, so a second attempt for the same event returns
the run Prefect already has. It never waits for a run to finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from datetime import datetime, timedelta, timezone

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from webhook_gateway.inbox import EventRecord, EventStatus, Inbox
from webhook_gateway.settings import GatewaySettings

__all__ = ["Dispatcher", "flow_run_url", "prefect_ui_url"]

logger = logging.getLogger(__name__)

CONCURRENT_CREATES = 8
STATUS_SYNC_INTERVAL_SECONDS = 2.0
STATUS_SYNC_BATCH = 200

_STATE_TO_STATUS = {
    "SCHEDULED": EventStatus.DISPATCHED,
    "PENDING": EventStatus.DISPATCHED,
    "PAUSED": EventStatus.RUNNING,
    "RUNNING": EventStatus.RUNNING,
    "CANCELLING": EventStatus.RUNNING,
    "COMPLETED": EventStatus.COMPLETED,
    "FAILED": EventStatus.FAILED,
    "CRASHED": EventStatus.CRASHED,
    "CANCELLED": EventStatus.CANCELLED,
}
_ACTIVE_STATUSES = (EventStatus.DISPATCHED.value, EventStatus.RUNNING.value)


class _RejectedError(Exception):
    """Prefect refused the run for a reason another attempt cannot fix."""


def prefect_ui_url() -> str | None:
    """Return the Prefect UI base URL, derived from the API URL when unset."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui_url = PREFECT_UI_URL.value()
    if ui_url:
        return str(ui_url).rstrip("/")
    api_url = PREFECT_API_URL.value()
    if api_url and str(api_url).rstrip("/").endswith("/api"):
        return str(api_url).rstrip("/")[: -len("/api")]
    return None


def flow_run_url(flow_run_id: str | None) -> str | None:
    """Return the Prefect UI page of a flow run."""
    base = prefect_ui_url()
    if not flow_run_id or not base:
        return None
    return f"{base}/runs/flow-run/{flow_run_id}"


class Dispatcher:
    """Turn pending inbox events into Prefect flow runs, in the background."""

    def __init__(self, inbox: Inbox, settings: GatewaySettings) -> None:
        self._inbox = inbox
        self._settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._deployment_ids: dict[str, uuid.UUID] = {}
        self._stopping = False
        self._last_sync = 0.0

    def wake(self) -> None:
        """Start the next round now instead of after the poll interval."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to finish its current round and return."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Dispatch until stopped; errors in one round never end the loop."""
        logger.info("dispatcher %s started", self.owner)
        async with get_client() as client:
            while not self._stopping:
                try:
                    claimed = await self.dispatch_once(client)
                    await self._maybe_sync_statuses(client)
                except Exception:
                    logger.exception("dispatcher round failed; retrying next round")
                    claimed = 0
                if claimed >= self._settings.dispatch_batch_size:
                    continue
                try:
                    await asyncio.wait_for(
                        self._wake.wait(), self._settings.dispatch_interval_seconds
                    )
                except TimeoutError:
                    pass
                self._wake.clear()
        logger.info("dispatcher %s stopped", self.owner)

    async def dispatch_once(self, client: PrefectClient) -> int:
        """Claim one batch and dispatch it; return how many events were claimed."""
        events = await asyncio.to_thread(
            self._inbox.claim_due,
            owner=self.owner,
            limit=self._settings.dispatch_batch_size,
            lease_seconds=self._settings.dispatch_lease_seconds,
        )
        if not events:
            return 0
        limiter = asyncio.Semaphore(CONCURRENT_CREATES)

        async def dispatch_limited(event: EventRecord) -> None:
            async with limiter:
                await self._dispatch_event(client, event)

        await asyncio.gather(*(dispatch_limited(event) for event in events))
        return len(events)

    async def _dispatch_event(self, client: PrefectClient, event: EventRecord) -> None:
        try:
            flow_run_id = await self._create_run(client, event)
        except _RejectedError as exc:
            logger.error(
                "event %s route=%s rejected by Prefect: %s", event.id, event.route, exc
            )
            await asyncio.to_thread(
                self._inbox.mark_final,
                event.id,
                owner=self.owner,
                status=EventStatus.REJECTED,
                error=str(exc),
            )
            return
        except (httpx.HTTPError, ObjectNotFound, OSError) as exc:
            await self._retry_later(event, exc)
            return
        await asyncio.to_thread(
            self._inbox.mark_dispatched,
            event.id,
            owner=self.owner,
            flow_run_id=flow_run_id,
        )
        logger.info(
            "event %s route=%s event_id=%s dispatched to %s as flow run %s",
            event.id,
            event.route,
            event.event_id,
            event.deployment,
            flow_run_id,
        )

    async def _create_run(self, client: PrefectClient, event: EventRecord) -> str:
        deployment_id = await self._deployment_id(client, event.deployment)
        try:
            flow_run = await client.create_flow_run_from_deployment(
                deployment_id,
                parameters=event.parameters or {},
                idempotency_key=event.idempotency_key,
                tags=[f"webhook-route:{event.route}"],
            )
        except PrefectHTTPStatusError as exc:
            status = exc.response.status_code
            if 400 <= status < 500 and status not in (408, 429):
                raise _RejectedError(
                    f"HTTP {status} from Prefect: {exc.response.text[:2000]}"
                ) from exc
            raise
        return str(flow_run.id)

    async def _deployment_id(self, client: PrefectClient, name: str) -> uuid.UUID:
        cached = self._deployment_ids.get(name)
        if cached is not None:
            return cached
        deployment = await client.read_deployment_by_name(name)
        self._deployment_ids[name] = deployment.id
        return deployment.id

    async def _retry_later(self, event: EventRecord, exc: BaseException) -> None:
        attempts = event.attempts + 1
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= self._settings.dispatch_max_attempts:
            logger.error(
                "event %s route=%s is dead after %d attempts: %s",
                event.id,
                event.route,
                attempts,
                error,
            )
            await asyncio.to_thread(
                self._inbox.mark_final,
                event.id,
                owner=self.owner,
                status=EventStatus.DEAD,
                error=error,
            )
            return
        delay = self.backoff_seconds(attempts)
        logger.warning(
            "event %s route=%s attempt %d failed, retrying in %.1f s: %s",
            event.id,
            event.route,
            attempts,
            delay,
            error,
        )
        await asyncio.to_thread(
            self._inbox.mark_retry,
            event.id,
            owner=self.owner,
            error=error,
            next_attempt_at=datetime.now(timezone.utc) + timedelta(seconds=delay),
        )

    def backoff_seconds(self, attempts: int) -> float:
        """Return the delay before attempt `attempts + 1`: doubling, capped, jittered."""
        base = self._settings.dispatch_backoff_seconds * 2 ** (attempts - 1)
        capped = min(base, self._settings.dispatch_backoff_max_seconds)
        # Full jitter in the upper half keeps many gateways from retrying in step.
        return capped / 2 + random.uniform(0, capped / 2)

    async def _maybe_sync_statuses(self, client: PrefectClient) -> None:
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_sync < STATUS_SYNC_INTERVAL_SECONDS:
            return
        self._last_sync = loop_time
        await self.sync_statuses(client)

    async def sync_statuses(self, client: PrefectClient) -> int:
        """Copy the state of active events' flow runs back to the inbox."""
        active = await asyncio.to_thread(
            self._inbox.list_active, statuses=_ACTIVE_STATUSES, limit=STATUS_SYNC_BATCH
        )
        by_run = {event.flow_run_id: event for event in active if event.flow_run_id}
        if not by_run:
            return 0
        flow_runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[uuid.UUID(run_id) for run_id in by_run])
            )
        )
        changed = 0
        for flow_run in flow_runs:
            event = by_run[str(flow_run.id)]
            state_type = flow_run.state_type.value if flow_run.state_type else None
            status = _STATE_TO_STATUS.get(state_type or "")
            if status is None or status.value == event.status:
                continue
            await asyncio.to_thread(self._inbox.set_status, event.id, status)
            changed += 1
            logger.info(
                "event %s route=%s flow run %s is %s",
                event.id,
                event.route,
                flow_run.id,
                status.value,
            )
        return changed

