"""The dispatcher on a real SQLite store, with in-test adapters: retries keep the request id,
permanent errors stop at once, pending results resume from their checkpoint, a long call keeps
its lease, graceful stop hands work back, one slow agency never slows another, and a checkpoint
needed only later waits for the next group commit."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import testing
from gateway.adapters.base import AgencyCall, Capabilities
from gateway.adapters.registry import AdapterRegistry
from gateway.config import GatewayConfig
from gateway.dispatch.dispatcher import CHECKPOINT_MARGIN, Dispatcher
from gateway.errors import (
    RejectedError,
    ResponseVerificationError,
    ResultPendingError,
    TransientError,
)
from gateway.model.types import AgencyKind, InquiryCommand, InquiryResult, Outcome
from gateway.store import open_store
from gateway.store.base import NewBatch, NewItem, Store
from tests.conftest import gateway_config

Behaviour = Callable[[AgencyCall, int], Any]


class ScriptedAdapter:
    """Runs ``behaviour(call, n)`` on the n-th call; records every call it gets."""

    name = "scripted"
    capabilities = Capabilities(kind=AgencyKind.VEHICLE, inquiry=True)

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[AgencyCall] = []
        self.active = 0
        self.max_active = 0

    async def execute(self, call: AgencyCall) -> Outcome:
        self.calls.append(call)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            result = self.behaviour(call, len(self.calls))
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, BaseException):
                raise result
            return result  # type: ignore[no-any-return]
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        return None


def ok(call: AgencyCall) -> InquiryResult:
    assert isinstance(call.command, InquiryCommand)
    return InquiryResult(subject=call.command.subject, as_of=dt.datetime.now(dt.UTC))


def config(tmp_path: Path, ids: list[str], **kw: Any) -> GatewayConfig:
    agencies = [{"id": i, "kind": "vehicle", "adapter": "scripted",
                 "endpoint": "http://127.0.0.1:9", "limits": {"concurrency": 4,
                                                              "backoff_initial": 0.01,
                                                              "backoff_max": 0.05}}
                for i in ids]
    return gateway_config(tmp_path, agencies, **kw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}")
    await s.open()
    yield s
    await s.close()


async def submit(store: Store, agency_ids: tuple[str, ...], n: int, batch_id: str = "b") -> int:
    people = testing.subjects(n, seed=3)

    async def items() -> AsyncIterator[NewItem]:
        for seq, item in enumerate(testing.inquiry_items(people)):
            import json

            item = {**item, "court": testing.DEMO_COURT, "officer": testing.DEMO_OFFICER}
            yield NewItem(seq=seq, item_json=json.dumps(item, ensure_ascii=False),
                          agency_ids=agency_ids)

    record, _ = await store.create_batch(
        NewBatch(owner="court-110105", batch_id=batch_id, court_code="110105", header_json="{}"),
        items(), deadline_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    return record.pk


async def drain(d: Dispatcher, store: Store, batch_pk: int, within: float = 20.0) -> None:
    try:
        async with asyncio.timeout(within):
            while True:
                if all(p.pending == 0 for p in await store.batch_progress(batch_pk)):
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(await store.batch_progress(batch_pk)) from None


def registry(cfg: GatewayConfig, adapters: dict[str, ScriptedAdapter]) -> AdapterRegistry:
    return AdapterRegistry(adapters, {a.id: a for a in cfg.agencies})  # type: ignore[arg-type]


async def test_transient_errors_are_retried_with_the_same_request_id(
        tmp_path: Path, store: Store) -> None:
    adapter = ScriptedAdapter(lambda call, n: TransientError(
        "503", code="service-unavailable", retry_after=0.05) if n < 3 else ok(call))
    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=0.05)
    pk = await submit(store, ("a",), 1)
    await d.start()
    await drain(d, store, pk)
    await d.stop()
    assert len(adapter.calls) == 3
    assert len({c.command.request_id for c in adapter.calls}) == 1
    assert [c.attempt for c in adapter.calls] == [1, 2, 3]
    [row] = await store.batch_results(pk, after=0, limit=10)
    assert row.status == "done"
    attempts = await store.attempts((await _work_ids(store, pk))[0])
    assert [a.outcome for a in attempts] == ["transient", "transient", "ok"]


async def _work_ids(store: Store, pk: int) -> list[int]:
    from sqlalchemy import select

    from gateway.store.schema import work

    async with store._db.read() as conn:  # type: ignore[attr-defined]
        return list((await conn.execute(select(work.c.pk).where(work.c.batch_pk == pk)
                                        .order_by(work.c.pk))).scalars())


async def test_permanent_errors_are_not_retried(tmp_path: Path, store: Store) -> None:
    adapter = ScriptedAdapter(lambda call, n: RejectedError("no", code="subject-mismatch"))
    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=0.05)
    pk = await submit(store, ("a",), 2)
    await d.start()
    await drain(d, store, pk)
    await d.stop()
    assert len(adapter.calls) == 2
    rows = await store.batch_results(pk, after=0, limit=10)
    assert {r.status for r in rows} == {"failed"}
    assert rows[0].body["code"] == "subject-mismatch"


async def test_a_pending_result_resumes_from_its_checkpoint(tmp_path: Path, store: Store) -> None:
    async def behaviour(call: AgencyCall, n: int) -> Any:
        if n == 1:
            await call.checkpoint({"ticketId": "T-1"})
            return ResultPendingError("pending", retry_after=0.05)
        assert call.resume == {"ticketId": "T-1"}
        return ok(call)

    adapter = ScriptedAdapter(behaviour)
    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=0.05)
    pk = await submit(store, ("a",), 1)
    await d.start()
    await drain(d, store, pk)
    await d.stop()
    assert len(adapter.calls) == 2 and adapter.calls[1].resume == {"ticketId": "T-1"}


async def test_pending_polls_use_no_attempt(tmp_path: Path, store: Store) -> None:
    """Six polls that find the result pending, then one 503: with a budget of two attempts the
    item still succeeds, because only the 503 counted."""

    def behaviour(call: AgencyCall, n: int) -> Any:
        if n <= 6:
            return ResultPendingError("pending", retry_after=0.01)
        if n == 7:
            return TransientError("503", retry_after=0.01)
        return ok(call)

    adapter = ScriptedAdapter(behaviour)
    cfg = gateway_config(tmp_path, [{"id": "a", "kind": "vehicle", "adapter": "scripted",
                                     "endpoint": "http://127.0.0.1:9",
                                     "limits": {"max_attempts": 2}}])
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=0.02)
    pk = await submit(store, ("a",), 1)
    await d.start()
    await drain(d, store, pk)
    await d.stop()
    assert len(adapter.calls) == 8
    assert (await store.batch_results(pk, after=0, limit=1))[0].status == "done"
    attempts = await store.attempts((await _work_ids(store, pk))[0])
    assert [a.outcome for a in attempts] == ["pending"] * 6 + ["transient", "ok"]


async def test_a_bad_response_is_retried_and_recorded_as_a_security_event(
        tmp_path: Path, store: Store) -> None:
    adapter = ScriptedAdapter(lambda call, n: ResponseVerificationError(
        "signature-invalid", code="signature-invalid") if n == 1 else ok(call))
    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=0.05)
    pk = await submit(store, ("a",), 1)
    await d.start()
    await drain(d, store, pk)
    await d.stop()
    [event] = await store.security_events()
    assert event.kind == "response-verification-failed" and event.agency_id == "a"
    assert (await store.batch_results(pk, after=0, limit=1))[0].status == "done"


async def test_a_long_call_keeps_its_lease(tmp_path: Path, store: Store) -> None:
    """With a 0.6 s lease and a 1.5 s call, a second worker must not start the same item."""

    async def slow(call: AgencyCall, n: int) -> Any:
        await asyncio.sleep(1.5)
        return ok(call)

    first, second = ScriptedAdapter(slow), ScriptedAdapter(slow)
    cfg = config(tmp_path, ["a"], lease_seconds=0.6)
    d1 = Dispatcher(cfg, store, registry(cfg, {"a": first}), idle_poll=0.05)
    d2 = Dispatcher(cfg, store, registry(cfg, {"a": second}), idle_poll=0.05)
    pk = await submit(store, ("a",), 1)
    await d1.start()
    await asyncio.sleep(0.2)
    await d2.start()
    await drain(d1, store, pk)
    await d1.stop()
    await d2.stop()
    assert len(first.calls) == 1 and second.calls == []
    assert len(await store.batch_results(pk, after=0, limit=10)) == 1


async def test_graceful_stop_hands_unfinished_work_back(tmp_path: Path, store: Store) -> None:
    started = asyncio.Event()

    async def stuck(call: AgencyCall, n: int) -> Any:
        started.set()
        await asyncio.sleep(30)

    nxt = await stop_stuck_then_resume(tmp_path, store, stuck, started)
    assert len(nxt.calls) == 1 and nxt.calls[0].attempt == 1


async def stop_stuck_then_resume(tmp_path: Path, store: Store, stuck: Behaviour,
                                 started: asyncio.Event) -> ScriptedAdapter:
    """One item whose call never ends on its own: stop gracefully once ``started`` is set,
    then let a new dispatcher finish it; returns the new dispatcher's adapter. The stop ends
    within its grace and a moment, not the 5 s the flusher once waited for cancelled calls;
    the lease is 60 s, so the new dispatcher gets the item only because it was given back."""
    cfg = config(tmp_path, ["a"], lease_seconds=60)
    d = Dispatcher(cfg, store, registry(cfg, {"a": ScriptedAdapter(stuck)}), idle_poll=0.05)
    pk = await submit(store, ("a",), 1)
    await d.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(d.stop(grace=0.1), 3)
    nxt = ScriptedAdapter(lambda call, n: ok(call))
    d2 = Dispatcher(cfg, store, registry(cfg, {"a": nxt}), idle_poll=0.05)
    await d2.start()
    await drain(d2, store, pk)
    await d2.stop()
    return nxt


async def test_a_slow_agency_does_not_slow_another(tmp_path: Path, store: Store) -> None:
    async def slow(call: AgencyCall, n: int) -> Any:
        await asyncio.sleep(0.5)
        return ok(call)

    fast = ScriptedAdapter(lambda call, n: ok(call))
    slow_adapter = ScriptedAdapter(slow)
    cfg = config(tmp_path, ["fast", "slow"])
    d = Dispatcher(cfg, store, registry(cfg, {"fast": fast, "slow": slow_adapter}),
                   idle_poll=0.05)
    pk = await submit(store, ("fast", "slow"), 40)
    await d.start()
    while True:
        progress = {p.agency_id: p for p in await store.batch_progress(pk)}
        if progress["fast"].pending == 0:
            break
        await asyncio.sleep(0.01)
    # 40 half-second calls at concurrency 4 keep the slow lane busy for about 5 s; the fast
    # lane's 40 items were all recorded while most of the slow ones were still waiting.
    assert progress["fast"].done == 40
    assert progress["slow"].pending > 20
    await drain(d, store, pk)
    await d.stop()
    assert slow_adapter.max_active <= 4


async def test_an_agency_that_is_down_opens_its_breaker_and_spares_its_items(
        tmp_path: Path, store: Store) -> None:
    """A dead agency stops being called after the breaker opens: its items wait without spending
    their attempts, while another agency's work completes as usual."""
    down = ScriptedAdapter(lambda call, n: TransientError("refused", code="connect",
                                                          retry_after=0.01))
    up = ScriptedAdapter(lambda call, n: ok(call))
    cfg = gateway_config(tmp_path, [
        {"id": "down", "kind": "vehicle", "adapter": "scripted", "endpoint": "http://127.0.0.1:9",
         "limits": {"concurrency": 1, "breaker_failures": 3, "breaker_reset_seconds": 60,
                    "max_attempts": 5}},
        {"id": "up", "kind": "vehicle", "adapter": "scripted", "endpoint": "http://127.0.0.1:9",
         "limits": {"concurrency": 4}}])
    d = Dispatcher(cfg, store, registry(cfg, {"down": down, "up": up}), idle_poll=0.02)
    pk = await submit(store, ("down", "up"), 20)
    await d.start()
    while True:
        progress = {p.agency_id: p for p in await store.batch_progress(pk)}
        if progress["up"].pending == 0:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # time in which a closed breaker would have made many more calls
    states = d.breaker_states()
    await d.stop()
    assert progress["up"].done == 20
    assert states["down"].name == "OPEN"
    assert len(down.calls) == 3  # the failures that opened it, and no more
    assert progress["down"].failed == 0 and progress["down"].pending == 20  # nothing burnt


async def test_a_backlog_is_started_a_claim_at_a_time(tmp_path: Path, store: Store) -> None:
    """With many free slots and a long queue, a lane starts at most ``claim_batch`` calls per
    turn of the event loop (RAMP apart): thousands of connections opened at once overflow an
    agency's listen backlog."""
    turn = 0
    started_in_turn: list[int] = []
    release, all_started = asyncio.Event(), asyncio.Event()

    async def count_turns() -> None:
        nonlocal turn
        while True:
            turn += 1
            await asyncio.sleep(0)

    async def behaviour(call: AgencyCall, n: int) -> Any:
        started_in_turn.append(turn)
        if len(started_in_turn) == 160:
            all_started.set()
        await release.wait()  # stay in flight: every slot stays taken
        return ok(call)

    adapter = ScriptedAdapter(behaviour)
    agencies = [{"id": "a", "kind": "vehicle", "adapter": "scripted",
                 "endpoint": "http://127.0.0.1:9", "limits": {"concurrency": 400}}]
    cfg = gateway_config(tmp_path, agencies, claim_batch=16)
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=0.05)
    pk = await submit(store, ("a",), 160)
    ticker = asyncio.create_task(count_turns())
    await d.start()
    try:
        await asyncio.wait_for(all_started.wait(), 20)
    finally:
        ticker.cancel()
        release.set()
    await drain(d, store, pk)
    await d.stop()
    per_turn = [started_in_turn.count(t) for t in set(started_in_turn)]
    assert max(per_turn) <= 16
    assert len(per_turn) >= 10


async def test_work_stored_while_a_claim_waits_wakes_the_lane(
        tmp_path: Path, store: Store) -> None:
    """A claim can wait for the database (PostgreSQL; another process's write lock), and a
    batch can be stored and announced meanwhile, after the claim's read missed it. That
    wake-up must not be lost: the lane claims the batch at once, not at the idle poll (a
    minute here). The same holds after a claim that found fewer items than it asked for,
    which is not followed by another claim."""
    adapter = ScriptedAdapter(lambda call, n: ok(call))
    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": adapter}), idle_poll=60.0)
    claim = store.claim
    claims = 0
    arrived: list[int] = []
    both_arrived = asyncio.Event()

    async def claim_then_a_batch_arrives(**kw: Any) -> Any:
        nonlocal claims
        claims += 1
        items = await claim(**kw)
        if claims <= 2:  # the first finds nothing, the second one item of the several asked
            arrived.append(await submit(store, ("a",), 1, batch_id=f"late-{claims}"))
            d.notify({"a"})
            if len(arrived) == 2:
                both_arrived.set()
        return items

    store.claim = claim_then_a_batch_arrives  # type: ignore[method-assign]
    await d.start()
    try:
        await asyncio.wait_for(both_arrived.wait(), 10)
        for pk in arrived:
            await drain(d, store, pk, within=10)
    finally:
        await d.stop()
    assert len(adapter.calls) == 2


def spy_on_records(store: Store) -> list[tuple[float, int, int]]:
    """Each group commit the dispatcher makes: (when, checkpoints, completions)."""
    log: list[tuple[float, int, int]] = []
    record = store.record  # type: ignore[attr-defined]

    async def spy(checkpoints: Any, completions: Any) -> int:
        log.append((time.monotonic(), len(checkpoints), len(completions)))
        return await record(checkpoints, completions)  # type: ignore[no-any-return]

    store.record = spy  # type: ignore[attr-defined]
    return log


async def test_a_checkpoint_needed_later_goes_with_the_next_completion(
    tmp_path: Path, store: Store
) -> None:
    """A checkpoint needed only before a poll a while away does not commit on its own: the
    next group (a completion, here another item's) takes it along, long before it is due."""
    saved = asyncio.Event()
    log = spy_on_records(store)

    async def behaviour(call: AgencyCall, n: int) -> Any:
        if n == 1:
            await call.checkpoint({"queryId": "VQ-1"}, within=30.0)
            saved.set()
        else:
            await asyncio.sleep(0.05)  # the first has queued its checkpoint by now
        return ok(call)

    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": ScriptedAdapter(behaviour)}), idle_poll=0.05)
    pk = await submit(store, ("a",), 2)
    await d.start()
    await asyncio.wait_for(saved.wait(), 5)  # not 30 s: it went with the completion
    await drain(d, store, pk)
    await d.stop()
    assert log[0][1:] == (1, 1)
    assert sum(n for _, n, _ in log) == 1


async def test_a_lone_checkpoint_commits_when_it_is_due(tmp_path: Path, store: Store) -> None:
    """With nothing else to write, a checkpoint waits until CHECKPOINT_MARGIN before it is
    needed, then commits on its own; one needed at once (``within`` None) does not wait."""
    within = CHECKPOINT_MARGIN + 0.3
    took: list[float] = []
    log = spy_on_records(store)

    async def behaviour(call: AgencyCall, n: int) -> Any:
        t0 = time.monotonic()
        await call.checkpoint({"queryId": "VQ-1"}, within=within)
        took.append(time.monotonic() - t0)
        await call.checkpoint({"queryId": "VQ-2"})
        return ok(call)

    cfg = config(tmp_path, ["a"])
    d = Dispatcher(cfg, store, registry(cfg, {"a": ScriptedAdapter(behaviour)}), idle_poll=0.05)
    pk = await submit(store, ("a",), 1)
    await d.start()
    await drain(d, store, pk)
    await d.stop()
    assert took[0] >= within - CHECKPOINT_MARGIN - 0.01
    assert [entry[1:] for entry in log] == [(1, 0), (1, 0), (0, 1)]
    assert log[1][0] - log[0][0] < within - CHECKPOINT_MARGIN  # the second did not linger


async def test_stopping_commits_the_checkpoints_still_waiting(
    tmp_path: Path, store: Store
) -> None:
    """A graceful stop writes what is queued at once, and the next start resumes from it."""
    queued = asyncio.Event()

    async def stuck(call: AgencyCall, n: int) -> Any:
        saving = asyncio.ensure_future(call.checkpoint({"queryId": "VQ-9"}, within=60.0))
        queued.set()
        await asyncio.sleep(30)
        await saving

    nxt = await stop_stuck_then_resume(tmp_path, store, stuck, queued)
    assert nxt.calls[0].resume == {"queryId": "VQ-9"}
