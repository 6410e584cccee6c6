"""Prometheus metrics of one gateway, in a registry of its own.

Counters and the latency histogram are counted by this process. The backlog and dead
gauges are read from the inbox at scrape time, so every gateway sharing an inbox
reports the same totals for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook_gateway.inbox import EventStatus, Inbox

__all__ = ["GatewayMetrics", "InboxCollector"]

logger = logging.getLogger(__name__)

# Dispatch latency covers the response to the sender, the dispatcher's poll interval and
# the run creation, so the buckets reach from tens of milliseconds to an outage.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class InboxCollector(Collector):
    """Report the pending backlog and the dead count, counted in the inbox."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "webhook_gateway_pending_backlog",
            "Events and replays stored but without a flow run yet.",
            labels=["kind"],
        )
        dead = GaugeMetricFamily(
            "webhook_gateway_dead_events",
            "Events that reached the maximum dispatch attempts without a flow run.",
        )
        try:
            events, replays = self._inbox.count_backlog()
            dead_count = self._inbox.count_by_status([EventStatus.DEAD.value]).get(
                EventStatus.DEAD.value, 0
            )
        except Exception:
            # A scrape must still return the counters while the database is down.
            logger.exception("reading the inbox counts for /metrics failed")
            return
        backlog.add_metric(["event"], events)
        backlog.add_metric(["replay"], replays)
        dead.add_metric([], dead_count)
        yield backlog
        yield dead


class GatewayMetrics:
    """The counters and histogram of one gateway app, in their own registry."""

    def __init__(self, inbox: Inbox | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "webhook_gateway_deliveries_received",
            "Deliveries that reached a configured route.",
            ["route"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "webhook_gateway_deliveries_accepted",
            "Deliveries answered 2xx, by outcome (new, duplicate, ignored, handshake).",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "webhook_gateway_deliveries_rejected",
            "Deliveries answered 4xx, by reason.",
            ["route", "reason"],
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "webhook_gateway_dispatch_latency_seconds",
            "Time from receiving an event to creating its flow run.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if inbox is not None:
            self.registry.register(InboxCollector(inbox))
