"""Moves stored work to the agencies: claim under a lease, call the adapter, record the outcome.

One lane per agency, each with its own concurrency cap, so a slow or failing agency only ever
fills its own lane. Retries live here and nowhere else: the adapter raises a typed error, the
lane decides (``gateway.dispatch.policy``) and the store parks the item until its next attempt,
so a retry survives a restart and keeps its request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters.base import AgencyCall
from gateway.adapters.registry import AdapterRegistry
from gateway.config import GatewayConfig
from gateway.dispatch.breaker import BreakerState, CircuitBreaker
from gateway.dispatch.policy import Decision, decide
from gateway.model.codec import control_command_from_json, inquiry_command_from_json, to_json
from gateway.model.types import Command
from gateway.ops.metrics import Metrics
from gateway.store.base import (
    Attempt,
    Completion,
    SecurityEvent,
    Store,
    WorkItem,
    WorkKind,
)

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

RAMP = 0.01  # seconds between full claims while a lane fills its free slots
# A checkpoint needed only later (before a poll the agency made us wait for) goes out with the
# next group commit, and at the latest this long before it is needed.
CHECKPOINT_MARGIN = 0.1
_EARLY = 0.002  # a timer may fire this much early (uvloop): count such a checkpoint as due


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LaneStats:
    """Counters an operator reads per agency (and the demo prints)."""

    calls: int = 0
    in_flight: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class _Lane:
    """The claim loop and the calls in flight for one agency."""

    def __init__(self, dispatcher: Dispatcher, agency_id: str) -> None:
        self.d = dispatcher
        self.agency_id = agency_id
        self.adapter = dispatcher.registry[agency_id]
        self.limits = dispatcher.registry.config(agency_id).limits
        self.slots = asyncio.Semaphore(self.limits.concurrency)
        self.breaker = CircuitBreaker(failure_threshold=self.limits.breaker_failures,
                                      reset_seconds=self.limits.breaker_reset_seconds)
        self.wake = asyncio.Event()
        self.running: dict[asyncio.Task[None], WorkItem] = {}
        self.stats = LaneStats()

    async def run(self) -> None:
        while not self.d.stopping:
            allowed = self.breaker.allowed()
            if allowed == 0:  # open: the agency is failing; work waits without spending attempts
                self.wake.clear()  # only a wake-up from now on ends this wait early
                await self._sleep(self.breaker.seconds_until_trial() or self.d.idle_poll)
                continue
            await self._acquire_one()
            if self.d.stopping:
                self.slots.release()
                break
            if self.breaker.allowed() == 0:  # it opened while we waited for a free slot
                self.slots.release()
                continue
            free = 1
            cap = self.d.config.claim_batch if allowed < 0 else allowed
            while free < cap and not self.slots.locked():
                await self.slots.acquire()
                free += 1
            # Work stored from here on must wake the sleep below, even when it is stored while
            # the claim waits for the database (PostgreSQL, or another process's write lock)
            # and this claim's read missed it.
            self.wake.clear()
            try:
                items = await self.d.store.claim(
                    agency_id=self.agency_id, limit=free,
                    lease_seconds=self.d.config.lease_seconds, now=self.d.clock(),
                )
            except Exception:  # store unreachable: keep the lane alive and try again shortly
                log.exception("agency %s: claiming work failed", self.agency_id)
                items = []
            for _ in range(free - len(items)):
                self.slots.release()
            if items and allowed == 1:
                self.breaker.started()  # the half-open trial call
            for item in items:
                task = asyncio.create_task(self._run_item(item))
                self.running[task] = item
                task.add_done_callback(self._finished)
            if len(items) < free:
                # Fewer than asked for: nothing else was ready (a claim takes every ready item
                # up to its limit). Sleep as after an empty claim, without making one: under a
                # stream of small batches that was a second write transaction for every batch.
                await self._sleep_until_work()
            elif len(items) == cap and not self.slots.locked():
                # A full claim with slots still free: more work is waiting. Start it a claim
                # at a time, RAMP apart, instead of opening thousands of connections to the
                # agency at once (a listen backlog overflows, and the SYN retransmissions that
                # follow stall calls past their connect timeout).
                await asyncio.sleep(RAMP)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self.running.pop(task, None)

    async def _acquire_one(self) -> None:
        await self.slots.acquire()

    async def _sleep(self, seconds: float) -> None:
        """Until ``wake`` is set (at once if it already is) or ``seconds`` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=max(seconds, 0.005))

    async def _sleep_until_work(self) -> None:
        """Sleep until woken by new work, the next parked retry, or the idle poll interval
        (which also picks up leases that expired under a dead worker). A wake-up since the
        claim began ends it at once: ``wake`` was cleared before the claim, not here."""
        timeout = self.d.idle_poll
        ready_at = await self.d.store.next_ready_at(self.agency_id)
        if ready_at is not None:
            timeout = min(timeout, max(0.0, (ready_at - self.d.clock()).total_seconds()))
        await self._sleep(timeout)

    async def _run_item(self, item: WorkItem) -> None:
        try:
            completion, event = await self._attempt(item)
            if event is not None:
                await self.d.store.record_security_event(event)
            await self.d.complete(completion)
            self.stats.outcomes[completion.attempt.outcome] += 1
            if self.d.metrics:
                self.d.metrics.attempts.labels(self.agency_id, completion.attempt.outcome).inc()
                if event is not None:
                    self.d.metrics.security_events.labels(self.agency_id, event.kind).inc()
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one item kill the lane; its lease expires and it is retried
            log.exception("agency %s: recording work item %s failed", self.agency_id, item.work_id)
        finally:
            self.slots.release()

    async def _attempt(self, item: WorkItem) -> tuple[Completion, SecurityEvent | None]:
        started = self.d.clock()
        attempt_no = item.attempts + 1
        if started >= item.deadline_at:
            self.breaker.trial_not_made()  # no call was made: it cannot have been the trial
            decision = Decision.deadline(item.deadline_at)
            return self._completion(item, started, decision), None
        command = _command(item)

        async def checkpoint(state: Mapping[str, Any], /, *, within: float | None = None
                             ) -> None:
            await self.d.checkpoint(item.work_id, item.lease_token, state, within=within)

        call = AgencyCall(command=command, attempt=attempt_no, resume=item.checkpoint,
                          checkpoint=checkpoint)
        self.stats.calls += 1
        self.stats.in_flight += 1
        metrics = self.d.metrics
        if metrics:
            metrics.in_flight.labels(self.agency_id).inc()
        t0 = time.perf_counter()
        try:
            outcome = await self.adapter.execute(call)
        except Exception as exc:  # the adapter's typed errors; anything else counts as transient
            self.breaker.record(exc)
            decision = decide(exc, item.tries + 1, self.limits, now=self.d.clock(),
                              deadline=item.deadline_at)
        else:
            self.breaker.record(None)
            decision = Decision.done(to_json(outcome))
        finally:
            self.stats.in_flight -= 1
            if metrics:
                metrics.in_flight.labels(self.agency_id).dec()
                metrics.latency.labels(self.agency_id).observe(time.perf_counter() - t0)
        event = None
        if decision.security:
            event = SecurityEvent(at=self.d.clock(), agency_id=self.agency_id,
                                  kind=decision.security, detail=decision.message or "",
                                  work_id=item.work_id)
            log.warning("security event at agency %s: %s (%s)", self.agency_id,
                        decision.security, decision.message)
        return self._completion(item, started, decision), event

    def _completion(self, item: WorkItem, started: dt.datetime, d: Decision) -> Completion:
        attempt = Attempt(started_at=started, finished_at=self.d.clock(), outcome=d.outcome,
                          error_class=d.error_class, error_code=d.error_code, message=d.message)
        return Completion(work_id=item.work_id, lease_token=item.lease_token, state=d.state,
                          attempt=attempt, result=d.result, error=d.error,
                          next_attempt_at=d.next_attempt_at)


def _command(item: WorkItem) -> Command:
    if item.kind is WorkKind.INQUIRY:
        return inquiry_command_from_json(item.command, item.request_id)
    return control_command_from_json(item.command)


class Dispatcher:
    """Runs one lane per configured agency until stopped.

    Completions and checkpoints are written in groups by one flusher task (group commit): it
    writes whatever is queued at once, and what arrives meanwhile goes in the next group, so
    one transaction records many outcomes under load while a lone completion waits for nothing
    but its own commit. That is what keeps a durable store off the critical path of every call.
    A checkpoint that is needed only later (``within``: before a poll the agency made us wait
    for) does not start a group of its own: it goes with the next one, or alone once it is
    due (``CHECKPOINT_MARGIN`` before it is needed).
    """

    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        registry: AdapterRegistry,
        *,
        clock: Clock = utcnow,
        idle_poll: float = 1.0,
        flush_interval: float = 0.005,
        metrics: Metrics | None = None,
    ) -> None:
        self.config, self.store, self.registry = config, store, registry
        self.clock = clock
        self.idle_poll = idle_poll
        self.flush_interval = flush_interval
        self.stopping = False
        self.lanes = {agency_id: _Lane(self, agency_id) for agency_id in registry}
        self.metrics = metrics
        self._pending: list[tuple[Completion, asyncio.Future[None]]] = []
        self._checkpoints: list[tuple[tuple[int, str, Mapping[str, Any]], asyncio.Future[None]]]
        self._checkpoints = []
        self._checkpoints_due = math.inf  # time.monotonic(): the first queued one must go out
        self._flush_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def notify(self, agency_ids: set[str] | None = None) -> None:
        """New work was committed for these agencies (all when None): wake their lanes."""
        for agency_id, lane in self.lanes.items():
            if agency_ids is None or agency_id in agency_ids:
                lane.wake.set()

    async def start(self) -> None:
        self.stopping = False
        self._tasks = [asyncio.create_task(self._flusher(), name="dispatch-flusher")]
        self._tasks += [asyncio.create_task(lane.run(), name=f"lane-{lane.agency_id}")
                        for lane in self.lanes.values()]
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="dispatch-heartbeat"))

    async def _heartbeat(self) -> None:
        """Keep the leases of calls still running alive: a poll may outlast one lease, and an
        expired lease would let another worker start the same item while this one still runs."""
        period = self.config.lease_seconds / 3
        while not self.stopping:
            await asyncio.sleep(period)
            tokens = sorted({item.lease_token for lane in self.lanes.values()
                             for item in lane.running.values()})
            if tokens:
                try:
                    await self.store.extend_leases(tokens, lease_seconds=self.config.lease_seconds,
                                                   now=self.clock())
                except Exception:  # a missed beat is survivable; the next one tries again
                    log.exception("extending %d leases failed", len(tokens))

    async def complete(self, completion: Completion) -> None:
        """Queue a completion for the next group write and wait until it is durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((completion, fut))
        self._flush_wake.set()
        await fut

    async def checkpoint(self, work_id: int, lease_token: str, state: Mapping[str, Any], *,
                         within: float | None = None) -> None:
        """Queue an adapter's checkpoint for a group write and wait until it is durable (or
        ignored: the lease was lost), as ``Store.save_checkpoint`` would. ``within``: it is
        needed durable only that many seconds from now, so it waits for the next group."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._checkpoints.append(((work_id, lease_token, state), fut))
        due = 0.0 if within is None else time.monotonic() + within - CHECKPOINT_MARGIN
        if due < self._checkpoints_due:
            self._checkpoints_due = due
            self._flush_wake.set()
        await fut

    def _flush_due(self) -> bool:
        """Completions go at once (each call waits for its own); checkpoints with them, or on
        their own when the first of them is due; everything at once when stopping."""
        if self._pending:
            return True
        return bool(self._checkpoints) and (
            self.stopping or self._checkpoints_due <= time.monotonic() + _EARLY
        )

    async def _until_flush_due(self) -> None:
        """Sleep until woken by complete() or checkpoint(), or until the first queued
        checkpoint is due; while stopping, look again shortly (the last calls may finish)."""
        self._flush_wake.clear()
        timeout: float | None = None
        if self._checkpoints:
            timeout = self._checkpoints_due - time.monotonic()
        if self.stopping:
            timeout = self.flush_interval if timeout is None else min(timeout,
                                                                      self.flush_interval)
        if timeout is None:
            # Woken straight from complete() or checkpoint(): no timer, and no task in between
            # (wait_for's) to cost a turn of the loop before the write starts.
            await self._flush_wake.wait()
            return
        timer = asyncio.get_running_loop().call_later(max(timeout, 0.0), self._flush_wake.set)
        try:
            await self._flush_wake.wait()
        finally:
            timer.cancel()

    async def _flusher(self) -> None:
        while True:
            if not self._flush_due():
                if (self.stopping and not self._checkpoints
                        and not any(lane.running for lane in self.lanes.values())):
                    return
                await self._until_flush_due()
                continue
            self._flush_wake.clear()
            # Checkpoints and completions in one transaction: one commit for the lot. The
            # checkpoints go first; a completion never shares a group with its own checkpoint,
            # since a call waits for its checkpoint before it goes on.
            checkpoints, self._checkpoints = self._checkpoints, []
            self._checkpoints_due = math.inf
            batch, self._pending = self._pending, []
            futures = [fut for _, fut in checkpoints] + [fut for _, fut in batch]
            try:
                await self.store.record([entry for entry, _ in checkpoints],
                                        [entry for entry, _ in batch])
            except Exception as exc:  # the items keep their leases; they expire and are retried
                log.exception("recording %d checkpoints and %d completions failed",
                              len(checkpoints), len(batch))
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for fut in futures:
                    if not fut.done():
                        fut.set_result(None)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let calls in flight finish for up to ``grace`` seconds; give the
        leases of the rest back so the next start picks them up at once."""
        self.stopping = True
        self._flush_wake.set()  # the checkpoints still waiting for a group go out now
        for lane in self.lanes.values():
            lane.wake.set()
        lane_loops = self._tasks[1:]  # the lanes and the heartbeat
        in_flight = [t for lane in self.lanes.values() for t in lane.running]
        unfinished: list[str] = []
        if in_flight:
            _done, pending = await asyncio.wait(in_flight, timeout=grace)
            for lane in self.lanes.values():
                unfinished += [lane.running[t].lease_token for t in pending if t in lane.running]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for lane in self.lanes.values():  # over: the flusher need not wait for them
                for task in pending:
                    lane.running.pop(task, None)
        for task in lane_loops:
            task.cancel()
        await asyncio.gather(*lane_loops, return_exceptions=True)
        self._flush_wake.set()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tasks[0], timeout=5.0)
            self._tasks[0].cancel()
        if unfinished:
            await self.store.release(sorted(set(unfinished)))
        for lane in self.lanes.values():
            lane.running.clear()
        self._tasks = []

    def stats(self) -> dict[str, LaneStats]:
        return {agency_id: lane.stats for agency_id, lane in self.lanes.items()}

    def breaker_states(self) -> dict[str, BreakerState]:
        return {agency_id: lane.breaker.state for agency_id, lane in self.lanes.items()}

    def throttled_seconds(self) -> dict[str, float]:
        """Seconds each agency's requests waited for its rate limit, where the adapter's
        transport exposes its token bucket (``adapter.transport.throttle``)."""
        out: dict[str, float] = {}
        for agency_id, lane in self.lanes.items():
            bucket = getattr(getattr(lane.adapter, "transport", None), "throttle", None)
            if bucket is not None:
                out[agency_id] = float(bucket.waited)
        return out
