"""Dead letters as an operator meets them: items that exhausted their attempts are listed with
every attempt, and once the cause is gone a replay completes them with their own request ids,
so the registry applies the seizure once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

from gateway import testing
from gateway.client import GatewayClient
from gateway.config import load_config
from tests.conftest import TOKEN, running_gateway, wait_done
from tests.test_vrs_end_to_end import AGENCY_KEY, COURT_KEY, fixture, seize, until_final


async def dlq(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())",
        "dlq", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ))
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def write_config(tmp_path: Path, vrs_url: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f"""
[gateway]
port = 0
lease_seconds = 5

[store]
url = "sqlite+aiosqlite:///gateway.db"

[[callers]]
id = "court-110105"
token = "{TOKEN}"
courts = ["110105"]

[[agencies]]
id = "vrs"
kind = "vehicle"
adapter = "vrs"
endpoint = "{vrs_url}"
signing_key = "{COURT_KEY}"
agency_key = "{AGENCY_KEY}"
[agencies.limits]
rate_per_second = 1000
max_attempts = 2
breaker_failures = 1000  # this test is about dead letters, not the breaker
""", encoding="utf-8")
    return path


async def test_dead_letters_are_listed_shown_and_replayed(tmp_path: Path) -> None:
    fx = fixture([{"operation": "createSeizure", "code": "service-unavailable", "count": 100},
                  {"operation": "createVehicleQuery", "code": "service-unavailable",
                   "count": 100}])
    fx["behaviour"]["retryAfterSeconds"] = 1
    async with testing.mock_vrs(fx, AGENCY_KEY) as vrs:
        cfg_path = write_config(tmp_path, vrs.url)
        async with running_gateway(load_config(cfg_path)) as gw, \
                GatewayClient(gw.url, TOKEN) as client:
            request = seize()
            await client.control(request)
            await client.submit({"batchId": "dlq-1", "court": testing.DEMO_COURT,
                                 "officer": testing.DEMO_OFFICER},
                                testing.inquiry_items(testing.subjects(2, seed=9)))
            failed = await until_final(client, request["requestId"])
            batch = await wait_done(client, "dlq-1")
            assert failed["state"] == "failed" and failed["attempts"] == 2
            assert failed["phase"] == "dead"  # gave up after its attempts, not refused
            assert batch["totals"]["failed"] == 2

            code, out, err = await dlq("list", "--config", str(cfg_path))
            assert code == 0, err
            rows = [line.split() for line in out.splitlines()]
            assert len(rows) == 3 and all("service-unavailable" in r for r in rows)
            control_row = next(r for r in rows if "vehicle.seize" in r)
            code, out, _ = await dlq("show", control_row[0], "--config", str(cfg_path))
            shown = json.loads(out)
            assert shown["requestId"] == request["requestId"]
            assert [a["errorCode"] for a in shown["attempts"]] == ["service-unavailable"] * 2

            vrs.state.faults.inject.clear()  # the operator fixed the cause
            code, out, _ = await dlq("replay", control_row[0], "--config", str(cfg_path))
            assert code == 0 and "replayed 1 item" in out
            code, out, _ = await dlq("replay", "--all", "--agency", "vrs",
                                     "--config", str(cfg_path))
            assert code == 0 and "replayed 2 item" in out
            done = await until_final(client, request["requestId"])
            batch = await wait_done(client, "dlq-1")
            results = [r async for r in client.results("dlq-1")]
            code, out, _ = await dlq("list", "--config", str(cfg_path))
            assert out.strip() == "no dead letters"
        created = [e for e in vrs.state.registry.ledger_entries() if e["event"] == "created"]
    assert done["state"] == "done" and done["requestId"] == request["requestId"]
    assert done["attempts"] == 3  # two before the replay, one after
    assert len(created) == 1 and created[0]["requestId"] == request["requestId"]
    assert batch["totals"] == {"pending": 0, "done": 2, "failed": 0}
    # The withdrawn failure lines are gone; each item has one (done) line.
    assert sorted(r["itemSeq"] for r in results) == [0, 1]
    assert {r["status"] for r in results} == {"done"}


async def test_dlq_mistakes_are_one_line(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path, "http://127.0.0.1:9")
    code, _, err = await dlq("replay", "--config", str(cfg_path))
    assert code != 0 and err.count("\n") == 1 and "give an ID" in err
    code, _, err = await dlq("replay", "--all", "--config", str(cfg_path))
    assert code != 0 and "needs --agency" in err
    code, _, err = await dlq("show", "12345", "--config", str(cfg_path))
    assert code != 0 and err.startswith("gateway: no dead letter 12345")
    code, _, err = await dlq("replay", "--all", "--agency", "nope", "--config", str(cfg_path))
    assert code != 0 and "no agency 'nope'" in err


async def test_replaying_an_item_of_an_agency_no_longer_configured_is_refused(
        tmp_path: Path) -> None:
    import datetime as dt

    from gateway.store import open_store
    from gateway.store.base import Attempt, Completion, NewControl, WorkState

    cfg_path = write_config(tmp_path, "http://127.0.0.1:9")
    store = open_store(load_config(cfg_path).store_url)
    await store.open()
    now = dt.datetime.now(dt.UTC)
    try:
        await store.create_control(NewControl(
            owner="court-110105", request_id=str(uuid.uuid4()), court_code="110105",
            agency_id="gone", action="vehicle.seize", payload_json="{}",
            deadline_at=now + dt.timedelta(hours=1)))
        [item] = await store.claim(agency_id="gone", limit=1, lease_seconds=30, now=now)
        await store.complete([Completion(
            work_id=item.work_id, lease_token=item.lease_token, state=WorkState.FAILED,
            attempt=Attempt(started_at=now, finished_at=now, outcome="rejected"),
            error={"class": "RejectedError", "code": "x", "message": "no"})])
    finally:
        await store.close()
    code, _, err = await dlq("replay", str(item.work_id), "--config", str(cfg_path))
    assert code != 0 and "agency 'gone'" in err and "not in the configuration" in err
    code, out, _ = await dlq("list", "--config", str(cfg_path))
    assert str(item.work_id) in out  # still a dead letter, untouched
