"""The dispatcher: the only module that imports Prefect's client.

It claims pending events and replays from the inbox and creates one flow run per
claim with the idempotency key `<route>:<event id>` (`<route>:<event id>:replay:<n>`
for a replay). Prefect returns the run it already has for a key it has seen, so a
claim repeated after a crash or an expired lease never makes a second run. The
dispatcher never waits for a run to finish; it reads run states back in batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from webhook_gateway.inbox import DispatchJob, EventStatus, Inbox, RunCheck
from webhook_gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from webhook_gateway.metrics import GatewayMetrics

__all__ = ["Dispatcher", "event_log_extra", "flow_run_url", "prefect_ui_url"]

logger = logging.getLogger(__name__)

RETENTION_BATCH = 1000
RECONNECT_DELAY_SECONDS = 2.0
# Namespace for the ids of `webhook.received` events, so that a second emission for
# one inbox event carries the same Prefect event id.
RECEIVED_EVENT_NAMESPACE = uuid.UUID("7f1d6c9e-4a43-4d53-9a57-1f0c2b8e5d21")

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


class DeploymentNotFoundError(Exception):
    """The route's deployment does not exist on the Prefect server (yet)."""


# A missing deployment is retried too: `up` and fleets often start the gateway
# before the flows are served.
_RETRYABLE_ERRORS = (httpx.HTTPError, ObjectNotFound, DeploymentNotFoundError, OSError)
# Errors that mean Prefect cannot be reached at all: the rest of the round fails
# fast with the same error instead of each waiting for its own connect timeout.
_UNREACHABLE_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


class _RejectedError(Exception):
    """Prefect refused the run for a reason another attempt cannot fix."""


class _UnreachableError(Exception):
    """Prefect was unreachable earlier in this round; the attempt was not sent."""


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


def event_log_extra(
    event_id: str,
    route: str,
    flow_run_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Return the `extra=` fields every log line about an event carries."""
    return {"event_id": event_id, "route": route, "flow_run_id": flow_run_id, **fields}


def _describe_state(flow_run: FlowRun) -> str:
    """Return a run's state name and message, such as "Failed: Flow run ..."."""
    state = flow_run.state
    if state is None:
        return flow_run.state_name or "unknown state"
    name = state.name or state.type.value.title()
    return f"{name}: {state.message}" if state.message else name


def _job_extra(job: DispatchJob, flow_run_id: str | None = None) -> dict[str, Any]:
    return event_log_extra(
        job.event.id,
        job.event.route,
        flow_run_id,
        sender_event_id=job.event.event_id,
        replay=job.replay_number,
    )


class Dispatcher:
    """Turn pending inbox events and replays into Prefect flow runs, in the background."""

    def __init__(
        self,
        inbox: Inbox,
        settings: GatewaySettings,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._inbox = inbox
        self._settings = settings
        self._metrics = metrics
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[
            -64:
        ]
        self._wake = asyncio.Event()
        self._deployment_ids: dict[str, uuid.UUID] = {}
        self._stopping = False
        self._last_sync = float("-inf")
        self._last_retention = float("-inf")
        self._unreachable: BaseException | None = None

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
        # The gateway keeps its own retry schedule per event, so Prefect's client
        # must not hold a whole round in its own backoff while the server is down.
        with temporary_settings(
            updates={
                PREFECT_CLIENT_MAX_RETRIES: self._settings.prefect_client_max_retries
            }
        ):
            while not self._stopping:
                try:
                    async with get_client() as client:
                        await self._run_rounds(client)
                except Exception:
                    logger.exception("dispatcher lost its Prefect client; reconnecting")
                    await self._sleep(RECONNECT_DELAY_SECONDS)
        logger.info("dispatcher %s stopped", self.owner)

    async def _run_rounds(self, client: PrefectClient) -> None:
        # Run-state checks and retention run in a task of their own, so reading many
        # run states never holds up the creation of new runs.
        housekeeping = asyncio.create_task(self._run_housekeeping(client))
        try:
            while not self._stopping:
                try:
                    claimed = await self.dispatch_once(client)
                except Exception:
                    logger.exception("dispatcher round failed; retrying next round")
                    claimed = 0
                if claimed >= self._settings.dispatch_batch_size:
                    continue
                await self._sleep(self._settings.dispatch_interval_seconds)
        finally:
            housekeeping.cancel()
            with suppress(asyncio.CancelledError):
                await housekeeping

    async def _run_housekeeping(self, client: PrefectClient) -> None:
        interval = min(self._settings.run_check_interval_seconds, 1.0)
        while not self._stopping:
            try:
                await self._maybe_sync_statuses(client)
                await self._maybe_purge_bodies()
            except Exception:
                logger.exception("dispatcher housekeeping failed; retrying")
            await asyncio.sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def dispatch_once(self, client: PrefectClient) -> int:
        """Claim one batch of events and replays, dispatch it, return the count."""
        events = await asyncio.to_thread(
            self._inbox.claim_due,
            owner=self.owner,
            limit=self._settings.dispatch_batch_size,
            lease_seconds=self._settings.dispatch_lease_seconds,
        )
        replays = await asyncio.to_thread(
            self._inbox.claim_due_replays,
            owner=self.owner,
            limit=self._settings.dispatch_batch_size,
            lease_seconds=self._settings.dispatch_lease_seconds,
        )
        jobs = [DispatchJob(event) for event in events] + replays
        if not jobs:
            return 0
        self._unreachable = None
        limiter = asyncio.Semaphore(self._settings.dispatch_concurrency)

        async def dispatch_limited(job: DispatchJob) -> None:
            async with limiter:
                await self._dispatch_job(client, job)

        results = await asyncio.gather(
            *(dispatch_limited(job) for job in jobs), return_exceptions=True
        )
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                # The lease expires and another round retries the job.
                logger.error(
                    "event %s: recording the dispatch outcome failed: %r",
                    job.event.id,
                    result,
                    exc_info=result,
                    extra=_job_extra(job),
                )
        return len(events) + len(replays)

    async def _dispatch_job(self, client: PrefectClient, job: DispatchJob) -> None:
        event = job.event
        started_at = datetime.now(UTC)
        replay_id = job.replay.id if job.replay else None
        try:
            if self._unreachable is not None:
                raise _UnreachableError(
                    f"{type(self._unreachable).__name__}: {self._unreachable} "
                    "(not sent: Prefect was unreachable earlier in this round)"
                )
            flow_run_id = await self._create_run(client, job)
        except _RejectedError as exc:
            logger.error(
                "event %s route=%s rejected by Prefect: %s",
                event.id,
                event.route,
                exc,
                extra=_job_extra(job),
            )
            await asyncio.to_thread(
                self._inbox.mark_final,
                event.id,
                owner=self.owner,
                status=EventStatus.REJECTED,
                error=str(exc),
                started_at=started_at,
                replay_id=replay_id,
            )
            self._announce(job, None, EventStatus.REJECTED)
            return
        except (*_RETRYABLE_ERRORS, _UnreachableError) as exc:
            if isinstance(exc, _UNREACHABLE_ERRORS):
                self._unreachable = exc
            self._deployment_ids.pop(event.deployment, None)
            await self._retry_later(job, exc, started_at)
            return
        except Exception as exc:
            # An unexpected error still counts as an attempt, so the event ends
            # dead after the maximum attempts instead of looping forever.
            logger.exception(
                "event %s: unexpected error while creating its flow run",
                event.id,
                extra=_job_extra(job),
            )
            await self._retry_later(job, exc, started_at)
            return

        self._announce(job, flow_run_id, EventStatus.DISPATCHED)
        recorded = await asyncio.to_thread(
            self._inbox.mark_dispatched,
            event.id,
            owner=self.owner,
            flow_run_id=flow_run_id,
            started_at=started_at,
            replay_id=replay_id,
        )
        if recorded and job.replay is None and self._metrics is not None:
            latency = (datetime.now(UTC) - event.received_at).total_seconds()
            self._metrics.dispatch_latency.labels(route=event.route).observe(latency)
        logger.info(
            "event %s route=%s event_id=%s dispatched to %s as flow run %s%s",
            event.id,
            event.route,
            event.event_id,
            event.deployment,
            flow_run_id,
            f" (replay {job.replay_number})" if job.replay else "",
            extra=_job_extra(job, flow_run_id),
        )

    async def _create_run(self, client: PrefectClient, job: DispatchJob) -> str:
        event = job.event
        deployment_id = await self._deployment_id(client, event.deployment)
        tags = [f"webhook-route:{event.route}"]
        if job.replay is not None:
            tags.append("webhook-replay")
        try:
            flow_run = await client.create_flow_run_from_deployment(
                deployment_id,
                parameters=job.parameters,
                idempotency_key=job.idempotency_key,
                tags=tags,
            )
        except PrefectHTTPStatusError as exc:
            status = exc.response.status_code
            if 400 <= status < 500 and status not in (404, 408, 429):
                raise _RejectedError(
                    f"HTTP {status} from Prefect: {exc.response.text[:2000]}"
                ) from exc
            raise
        return str(flow_run.id)

    async def _deployment_id(self, client: PrefectClient, name: str) -> uuid.UUID:
        cached = self._deployment_ids.get(name)
        if cached is not None:
            return cached
        try:
            deployment = await client.read_deployment_by_name(name)
        except ObjectNotFound as exc:
            raise DeploymentNotFoundError(
                f"deployment {name!r} was not found on the Prefect server at "
                f"{client.api_url}; serve it (python -m flows.serve) or deploy it "
                "(prefect deploy), and the gateway retries"
            ) from exc
        self._deployment_ids[name] = deployment.id
        return deployment.id

    async def _retry_later(
        self, job: DispatchJob, exc: BaseException, started_at: datetime
    ) -> None:
        event = job.event
        attempts = job.attempts + 1
        if isinstance(exc, _UnreachableError):
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}"
        replay_id = job.replay.id if job.replay else None
        if attempts >= self._settings.dispatch_max_attempts:
            logger.error(
                "event %s route=%s is dead after %d attempts: %s",
                event.id,
                event.route,
                attempts,
                error,
                extra=_job_extra(job),
            )
            await asyncio.to_thread(
                self._inbox.mark_final,
                event.id,
                owner=self.owner,
                status=EventStatus.DEAD,
                error=error,
                started_at=started_at,
                replay_id=replay_id,
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
            extra=_job_extra(job),
        )
        await asyncio.to_thread(
            self._inbox.mark_retry,
            event.id,
            owner=self.owner,
            error=error,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
            started_at=started_at,
            replay_id=replay_id,
        )

    def backoff_seconds(self, attempts: int) -> float:
        """Return the delay before attempt `attempts + 1`: doubling, capped, jittered."""
        base = self._settings.dispatch_backoff_seconds * 2 ** (attempts - 1)
        capped = min(base, self._settings.dispatch_backoff_max_seconds)
        # Jitter over the upper half keeps many gateways from retrying in step.
        return capped / 2 + random.uniform(0, capped / 2)

    def _announce(
        self, job: DispatchJob, flow_run_id: str | None, status: EventStatus
    ) -> None:
        """Emit the Prefect event `webhook.received` for an event's first dispatch.

        It is emitted before the outcome is stored, with an id derived from the
        inbox id, so a crash in between repeats the same Prefect event id.
        """
        if job.replay is not None or not self._settings.emit_prefect_events:
            return
        event = job.event
        related = []
        if flow_run_id:
            related.append(
                {
                    "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                    "prefect.resource.role": "flow-run",
                }
            )
        emit_event(
            event="webhook.received",
            resource={
                "prefect.resource.id": f"webhook-gateway.route.{event.route}",
                "prefect.resource.name": event.route,
            },
            related=related,
            occurred=event.received_at,
            id=uuid.uuid5(RECEIVED_EVENT_NAMESPACE, event.id),
            payload={
                "id": event.id,
                "event_id": event.event_id,
                "route": event.route,
                "deployment": event.deployment,
                "status": status.value,
                "flow_run_id": flow_run_id,
            },
        )

    async def _maybe_sync_statuses(self, client: PrefectClient) -> None:
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_sync < self._settings.run_check_interval_seconds:
            return
        self._last_sync = loop_time
        await self.sync_statuses(client)

    async def sync_statuses(self, client: PrefectClient) -> int:
        """Copy the state of in-flight runs back to their events, in one batch.

        Only events whose latest run is dispatched or running are read, the least
        recently checked first, so every such event is checked in turn however
        long the backlog.

        Returns:
            How many events changed status.
        """
        checks = await asyncio.to_thread(
            self._inbox.list_runs_to_check, limit=self._settings.run_check_batch_size
        )
        if not checks:
            return 0
        by_run = {check.flow_run_id: check for check in checks}
        flow_runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[uuid.UUID(run_id) for run_id in by_run])
            ),
            limit=len(by_run),
        )
        states: dict[str, EventStatus] = {}
        errors: dict[str, str] = {}
        for flow_run in flow_runs:
            check = by_run[str(flow_run.id)]
            state_type = flow_run.state_type.value if flow_run.state_type else ""
            status = _STATE_TO_STATUS.get(state_type)
            if status is not None and status.value != check.status:
                states[check.flow_run_id] = status
                errors[check.flow_run_id] = _describe_state(flow_run)
        changed = await asyncio.to_thread(
            self._inbox.apply_run_states, checks, states, errors
        )
        for run_id, status in states.items():
            check: RunCheck = by_run[run_id]
            logger.info(
                "event %s route=%s flow run %s is %s",
                check.event_id,
                check.route,
                run_id,
                status.value,
                extra=event_log_extra(check.event_id, check.route, run_id),
            )
        return changed

    async def _maybe_purge_bodies(self) -> None:
        days = self._settings.body_retention_days
        if days is None:
            return
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_retention < self._settings.retention_interval_seconds:
            return
        self._last_retention = loop_time
        cutoff = datetime.now(UTC) - timedelta(days=days)
        purged = await asyncio.to_thread(
            self._inbox.purge_bodies, older_than=cutoff, limit=RETENTION_BATCH
        )
        if purged:
            logger.info(
                "purged the bodies of %d completed events received before %s",
                purged,
                cutoff.isoformat(),
            )
        if purged >= RETENTION_BATCH:
            # More are due: check again next round instead of next interval.
            self._last_retention = float("-inf")
