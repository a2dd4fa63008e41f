"""GET /v1/inquiry-batches/{id}/results: NDJSON lines with cursors, resumed with ``after``.

Results are produced by driving the store directly (claim, then complete), as the dispatcher
would, so no agency is needed.
"""

from __future__ import annotations

import datetime as dt

from gateway.store.base import Attempt, Completion, Store, WorkState
from tests.api.conftest import TOKEN_SH, Api, header, item, ndjson

BATCHES = "/v1/inquiry-batches"


async def _finish(store: Store, agency: str, *, fail_every: int = 0) -> int:
    now = dt.datetime.now(dt.UTC)
    claimed = await store.claim(agency_id=agency, limit=1000, lease_seconds=60, now=now)
    attempt = Attempt(started_at=now, finished_at=now, outcome="ok")
    completions = []
    for i, w in enumerate(claimed):
        if fail_every and i % fail_every == 0:
            bad = Attempt(now, now, "rejected", "RejectedError", "NO_SUCH_SUBJECT", "unknown")
            completions.append(Completion(w.work_id, w.lease_token, WorkState.FAILED, bad,
                                          error={"class": "RejectedError",
                                                 "code": "NO_SUCH_SUBJECT", "message": "unknown"}))
        else:
            completions.append(Completion(w.work_id, w.lease_token, WorkState.DONE, attempt,
                                          result={"subject": w.command["subject"],
                                                  "accounts": []}))
    return await store.complete(completions)


async def test_results_stream_and_resume(api: Api, store: Store) -> None:
    body = ndjson(header("res", agencies=["bank-a", "vrs"]), [item(i) for i in range(30)])
    r = await api.post(BATCHES, data=body, content_type="application/x-ndjson")
    assert r.status == 202
    assert (await api.get(f"{BATCHES}/res/results")).lines == []  # nothing finished yet

    assert await _finish(store, "bank-a", fail_every=10) == 30
    status = await api.get(f"{BATCHES}/res")
    assert status.body["state"] == "running"
    assert status.body["progress"]["bank-a"] == {"pending": 0, "done": 27, "failed": 3}

    first = await api.get(f"{BATCHES}/res/results?limit=20")
    assert first.status == 200 and len(first.lines) == 20
    assert all(line["agency"] == "bank-a" for line in first.lines)
    failed = [line for line in first.lines if line["status"] == "failed"]
    assert failed and failed[0]["error"]["code"] == "NO_SUCH_SUBJECT"

    rest = await api.get(f"{BATCHES}/res/results?after={first.lines[-1]['cursor']}")
    assert len(rest.lines) == 10
    seen = [(x["itemSeq"], x["agency"]) for x in first.lines + rest.lines]
    assert sorted(seen) == [(i, "bank-a") for i in range(30)]
    # each line carries the caller's own ref of its item
    assert all(x["ref"] == f"ref-{x['itemSeq']}" for x in first.lines + rest.lines)
    cursors = [int(x["cursor"]) for x in first.lines + rest.lines]
    assert cursors == sorted(set(cursors))

    # more work finishes; the client picks up where it left off
    assert await _finish(store, "vrs") == 30
    tail = await api.get(f"{BATCHES}/res/results?after={rest.lines[-1]['cursor']}&limit=100000")
    assert len(tail.lines) == 30 and {x["agency"] for x in tail.lines} == {"vrs"}
    done = await api.get(f"{BATCHES}/res")
    assert done.body["state"] == "done"
    assert done.body["totals"] == {"pending": 0, "done": 57, "failed": 3}
    empty = await api.get(f"{BATCHES}/res/results?after={tail.lines[-1]['cursor']}")
    assert empty.lines == []


async def test_results_page_through_store_pages(api: Api, store: Store) -> None:
    body = ndjson(header("big", agencies=["bank-a"]), [item(i) for i in range(1200)])
    assert (await api.post(BATCHES, data=body, content_type="application/x-ndjson")).status == 202
    assert await _finish(store, "bank-a") == 1000
    assert await _finish(store, "bank-a") == 200
    r = await api.get(f"{BATCHES}/big/results?limit=1100")
    assert len(r.lines) == 1100
    r2 = await api.get(f"{BATCHES}/big/results?after={r.lines[-1]['cursor']}&limit=5000")
    assert len(r2.lines) == 100


async def test_bad_cursor_and_limit_are_400(api: Api) -> None:
    body = ndjson(header("cur"), [item(0)])
    assert (await api.post(BATCHES, data=body, content_type="application/x-ndjson")).status == 202
    for query in ("after=abc", "after=-1", "after=01", "after=1e3"):
        r = await api.get(f"{BATCHES}/cur/results?{query}")
        assert r.status == 400 and r.body["type"].endswith("/bad-cursor"), query
    for query in ("limit=0", "limit=100001", "limit=x"):
        r = await api.get(f"{BATCHES}/cur/results?{query}")
        assert r.status == 400 and r.body["type"].endswith("/bad-limit"), query


async def test_results_of_unknown_or_foreign_batch_are_404(api: Api) -> None:
    assert (await api.get(f"{BATCHES}/none/results")).status == 404
    body = ndjson(header("own"), [item(0)])
    assert (await api.post(BATCHES, data=body, content_type="application/x-ndjson")).status == 202
    assert (await api.get(f"{BATCHES}/own/results", token=TOKEN_SH)).status == 404
