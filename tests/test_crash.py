"""Crash safety across all three agency protocols: the gateway, a separate process, is killed with
SIGKILL at random moments while it works on inquiries and control requests to the vehicle
registry, a bank and the land registry; after the last restart everything completes, no result
is recorded twice, nothing accepted is lost, and the mocks' ledgers show every freeze, deduction,
seizure and seal applied exactly once, matching the gateway's own records.

Short by default (part of ``make test``); longer by hand, for example:
    CRASH_KILLS=20 CRASH_SUBJECTS=400 CRASH_CONTROLS=300 .venv/bin/pytest -s tests/test_crash.py
The figures it saw are printed (``-s`` shows them).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway import testing
from gateway.client import GatewayClient
from gateway.demo import free_port
from gateway.security.certs import cert_sha256, load_certificate
from gateway.security.keys import load_ed25519_public, public_jwk
from tests.conftest import DATA, TOKEN, start_gateway_process, wait_done, wait_ready

KEYS = DATA / "keys"
KILLS = int(os.environ.get("CRASH_KILLS", "3"))
SUBJECTS = int(os.environ.get("CRASH_SUBJECTS", "80"))
CONTROLS = int(os.environ.get("CRASH_CONTROLS", "40"))
SEED = int(os.environ.get("CRASH_SEED", "7"))
CONTEXT = {"court": testing.DEMO_COURT, "caseNo": "(2026)京0105执4242号",
           "officer": testing.DEMO_OFFICER,
           "documents": {"assistanceNotice": testing.document("notice", 4242),
                         "ruling": testing.document("ruling", 4242)}}


def _config(tmp_path: Path, port: int, vrs_url: str, bank_url: str, rers_url: str) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
host = "127.0.0.1"
port = {port}
lease_seconds = 2

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
signing_key = "{KEYS / 'vrs-court.jwk.json'}"
agency_key = "{KEYS / 'vrs-agency.jwk.json'}"
[agencies.limits]
concurrency = 16
rate_per_second = 1000
backoff_initial = 0.1
max_attempts = 10

[[agencies]]
id = "bank"
kind = "bank"
adapter = "cbas"
endpoint = "{bank_url}/cbas/v1"
signing_key = "{KEYS / 'cbas-court.key.pem'}"
signing_cert = "{KEYS / 'cbas-court.cert.pem'}"
agency_key = "{KEYS / 'cbas-bank.cert.pem'}"
[agencies.limits]
concurrency = 16
rate_per_second = 1000
backoff_initial = 0.1
max_attempts = 10
[agencies.options]
payee_account_name = "示例区人民法院"
payee_bank_name = "示例银行示例支行"

[[agencies]]
id = "land"
kind = "real_estate"
adapter = "rers"
endpoint = "{rers_url}/rers/v1"
signing_key = "{KEYS / 'rers-court.key.pem'}"
signing_cert = "{KEYS / 'rers-court.cert.pem'}"
agency_key = "{KEYS / 'rers-registry.cert.pem'}"
[agencies.limits]
concurrency = 16
rate_per_second = 1000
backoff_initial = 0.1
max_attempts = 10
""", encoding="utf-8")
    return cfg


def _controls(rng: random.Random, vrs_fx: dict[str, Any], bank_fx: dict[str, Any],
              rers_fx: dict[str, Any], people: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Freezes, deductions, seizures and seals on assets the fixtures hold."""
    accounts = [a for a in bank_fx["accounts"] if a["status"] != "CLOSED"]
    out: list[dict[str, Any]] = []
    for n in range(CONTROLS):
        base = {"requestId": str(uuid.uuid4()), **CONTEXT}
        pick = n % 4
        if pick == 3 and rers_fx["properties"]:
            p = rng.choice(rers_fx["properties"])
            action = ("real_estate.pre_seal" if p["registrationType"] == "PRE_NOTICE"
                      else "real_estate.seal")
            out.append({**base, "agency": "land", "action": action,
                        "subject": people[p["owners"][0]["idNumber"]], "unitNo": p["unitNo"],
                        "days": 1095})
            continue
        if pick == 0 and vrs_fx["vehicles"]:
            v = rng.choice(vrs_fx["vehicles"])
            out.append({**base, "agency": "vrs", "action": "vehicle.seize",
                        "subject": people[v["owner"]], "vin": v["vin"], "days": 365})
        elif pick == 1 or not vrs_fx["vehicles"]:
            a = rng.choice(accounts)
            out.append({**base, "agency": "bank", "action": "bank.freeze",
                        "subject": people[a["owner"]], "accountNo": a["accountNo"],
                        "amount": {"value": f"{Decimal(rng.randint(100, 99999)) / 100:.2f}"},
                        "days": 180})
        else:
            a = rng.choice(accounts)
            out.append({**base, "agency": "bank", "action": "bank.deduct",
                        "subject": people[a["owner"]], "accountNo": a["accountNo"],
                        "amount": {"value": "1.00"}, "payeeAccount": "110060776018800012345"})
    return out


_EVENTS = {"vehicle.seize": ("created",), "bank.freeze": ("placed", "waitlisted"),
           "bank.deduct": ("deducted",), "real_estate.seal": ("sealed", "waitlisted"),
           "real_estate.pre_seal": ("sealed", "waitlisted")}


async def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    subjects = testing.subjects(SUBJECTS, seed=SEED)
    people = {s.id_number: s.wire() for s in subjects}
    court = json.loads((KEYS / "vrs-court.jwk.json").read_text())
    vrs_fx = testing.vrs_fixture(subjects, [{
        "keyid": court["kid"], "publicKeyJwk": public_jwk(load_ed25519_public(
            KEYS / "vrs-court.jwk.json")), "courts": ["110105"]}], seed=SEED, hit_ratio=0.5)
    bank_fx = testing.cbas_fixture(subjects, [cert_sha256(load_certificate(
        KEYS / "cbas-court.cert.pem"))], seed=SEED, hit_ratio=0.5)
    rers_fx = testing.rers_fixture(subjects, [cert_sha256(load_certificate(
        KEYS / "rers-court.cert.pem"))], seed=SEED, hit_ratio=0.5)
    controls = _controls(rng, vrs_fx, bank_fx, rers_fx, people)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    kills = 0
    async with testing.mock_vrs(vrs_fx, KEYS / "vrs-agency.jwk.json", rate_limit=5000) as vrs, \
            testing.mock_cbas(bank_fx, KEYS / "cbas-bank.key.pem", KEYS / "cbas-bank.cert.pem",
                              rate_limit=5000) as bank, \
            testing.mock_rers(rers_fx, KEYS / "rers-registry.key.pem",
                              KEYS / "rers-registry.cert.pem", rate_limit=5000) as land:
        cfg = _config(tmp_path, port, vrs.url, bank.url, land.url)
        proc = await start_gateway_process(cfg, log)
        await wait_ready(url, proc, log)
        async with GatewayClient(url, TOKEN) as client:
            await client.submit({"batchId": "crash", "court": testing.DEMO_COURT,
                                 "officer": testing.DEMO_OFFICER}, testing.inquiry_items(subjects))
            for request in controls:
                await client.control(request)
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            kills += 1
            proc = await start_gateway_process(cfg, log)
            await wait_ready(url, proc, log)
        try:
            async with GatewayClient(url, TOKEN) as client:
                batch = await wait_done(client, "crash", within=120)
                results = [r async for r in client.results("crash")]
                states = []
                for request in controls:
                    for _ in range(1200):
                        st = await client.control_status(request["requestId"])
                        if st["state"] in ("done", "failed"):
                            break
                        await asyncio.sleep(0.1)
                    states.append(st)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        ledgers = {"vrs": vrs.state.registry.ledger_entries(),
                   "bank": bank.state.bank.ledger_entries(),
                   "land": land.state.ledger_entries()}
        queries = len(vrs.state.registry.queries)

    # Every (subject, agency) recorded once; nothing accepted is missing.
    keys = Counter((r["itemSeq"], r["agency"]) for r in results)
    duplicates = sum(n - 1 for n in keys.values() if n > 1)
    lost = SUBJECTS * 3 - len(keys) + sum(1 for s in states if s["state"] not in ("done", "failed"))
    applied = Counter(e.get("requestId") for ledger in ledgers.values() for e in ledger
                      if e["event"] in ("created", "placed", "waitlisted", "deducted", "sealed"))
    twice = [rid for rid, n in applied.items() if n > 1]
    print(f"\ncrash test: {kills} SIGKILLs, {SUBJECTS} subjects x 3 agencies, "
          f"{len(controls)} control requests; results {len(results)}, duplicates {duplicates}, "
          f"lost {lost}, measures applied twice {len(twice)}, "
          f"control outcomes {Counter(s['state'] for s in states)}")
    assert kills == KILLS
    assert duplicates == 0 and lost == 0 and not twice
    assert batch["totals"]["pending"] == 0 and batch["totals"]["done"] == SUBJECTS * 3
    assert queries == SUBJECTS  # resent queries kept their Idempotency-Key
    for request, st in zip(controls, states, strict=True):
        entries = [e for e in ledgers[request["agency"]]
                   if e.get("requestId") == request["requestId"]
                   and e["event"] in _EVENTS[request["action"]]]
        if st["state"] == "done":
            # Applied exactly once, and the gateway's record names what the agency did.
            assert len(entries) == 1, (request["action"], st)
            measure = (entries[0].get("seizureId") or entries[0].get("freezeId")
                       or entries[0].get("sealId"))
            if request["action"] != "bank.deduct" or measure:
                assert st["outcome"].get("measureId") == measure
        else:  # rejected by the agency (closed account, no funds): applied never
            assert st["error"]["class"] == "RejectedError" and entries == [], st
