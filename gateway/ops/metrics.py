"""Integration health for operators, in Prometheus' exposition format.

Per agency: attempts by outcome, call latency, calls in flight, time spent throttled, security
events by kind, and the backlog of unfinished work by state (read from the store at scrape time,
so it is right across restarts and across several gateway processes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.store.base import Store

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per gateway instance (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter(
            "gateway_agency_attempts", "Agency call attempts by outcome",
            ["agency", "outcome"], registry=self.registry)
        self.latency = Histogram(
            "gateway_agency_call_seconds", "Time an adapter call took (polls included)",
            ["agency"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.in_flight = Gauge(
            "gateway_agency_calls_in_flight", "Adapter calls running now", ["agency"],
            registry=self.registry)
        self.security_events = Counter(
            "gateway_security_events", "Security events (bad signatures, rejected keys, ...)",
            ["agency", "kind"], registry=self.registry)
        self.backlog = Gauge(
            "gateway_work_items", "Unfinished work items by state", ["agency", "state"],
            registry=self.registry)
        self.breaker = Gauge(
            "gateway_agency_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["agency"], registry=self.registry)
        self.throttled = Gauge(
            "gateway_agency_throttled_seconds", "Seconds requests waited for the agency's rate "
            "limit since start", ["agency"], registry=self.registry)

    async def render(self, store: Store, throttled: dict[str, float],
                     breakers: dict[str, int] | None = None) -> bytes:
        self.backlog.clear()
        for agency, breaker in (breakers or {}).items():
            self.breaker.labels(agency).set(int(breaker))
        for agency, state, count in await store.work_backlog():
            self.backlog.labels(agency, state).set(count)
        for agency, seconds in throttled.items():
            self.throttled.labels(agency).set(seconds)
        return generate_latest(self.registry)
