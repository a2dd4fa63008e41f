"""``gateway dlq``: operators list, inspect and replay the work that failed for good.

It talks to the store named in the configuration, not to a running gateway, so it works while
the gateway is down; a running gateway picks replayed items up at its next claim (within its
idle poll, a second by default).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.model.serial import to_json
from gateway.store import open_store
from gateway.store.base import DeadLetter


def _row(d: DeadLetter) -> str:
    what = f"batch {d.batch_id} item {d.item_seq}" if d.batch_id else f"control {d.action}"
    error = d.error or {}
    reason = error.get("code") or error.get("class") or "?"
    return (f"{d.work_id:>8}  {d.agency_id:<16} {what:<40} {reason:<24} "
            f"{d.attempts:>3} attempts  {to_json(d.updated_at)}")


async def run(config: GatewayConfig, command: str, *, work_id: int | None = None,
              all_: bool = False, agency: str | None = None, limit: int = 100,
              out: Any = print) -> int:
    store = open_store(config.store_url)
    await store.open()
    try:
        if command == "list":
            letters = await store.dead_letters(agency_id=agency, limit=limit)
            if not letters:
                out("no dead letters" + (f" for {agency}" if agency else ""))
            for d in letters:
                out(_row(d))
            return 0
        if command == "show":
            assert work_id is not None
            d = await store.dead_letter(work_id)
            attempts = await store.attempts(work_id)
            out(json.dumps({
                "workId": d.work_id, "kind": d.kind.value, "agency": d.agency_id,
                "requestId": d.request_id, "owner": d.owner, "batchId": d.batch_id,
                "itemSeq": d.item_seq, "action": d.action, "error": d.error,
                "createdAt": to_json(d.created_at), "updatedAt": to_json(d.updated_at),
                "attempts": [{"n": n, "startedAt": to_json(a.started_at),
                              "finishedAt": to_json(a.finished_at), "outcome": a.outcome,
                              "errorClass": a.error_class, "errorCode": a.error_code,
                              "message": a.message} for n, a in enumerate(attempts, 1)],
            }, ensure_ascii=False, indent=2))
            return 0
        if command == "replay":
            if agency is not None and agency not in {a.id for a in config.agencies}:
                raise GatewayError(f"no agency {agency!r} in the configuration")
            deadline = dt.datetime.now(dt.UTC) + dt.timedelta(
                seconds=config.default_deadline_seconds)
            if all_:
                replayed, too_old = await store.replay(agency_id=agency, deadline_at=deadline)
            else:
                assert work_id is not None
                letter = await store.dead_letter(work_id)  # NotFoundError when it is not one
                if letter.agency_id not in {a.id for a in config.agencies}:
                    raise GatewayError(f"dead letter {work_id} belongs to agency "
                                       f"{letter.agency_id!r}, which is not in the configuration")
                replayed, too_old = await store.replay(work_ids=[work_id], deadline_at=deadline)
            out(f"replayed {len(replayed)} item(s) with their request ids"
                + (f"; {len(too_old)} older than 89 days not replayed (the agency may have "
                   f"forgotten their request ids): {', '.join(map(str, too_old))}"
                   if too_old else ""))
            return 0 if replayed or not too_old else 1
        raise GatewayError(f"unknown dlq command {command!r}")
    finally:
        await store.close()
