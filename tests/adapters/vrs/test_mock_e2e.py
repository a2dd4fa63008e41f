"""End to end against the mock registry (mock_agencies.vrs) over loopback: the adapter and an
independent agency-side implementation of the same ICD must agree on every exchange, including
faults the mock injects (transient problems, lost answers, corrupted signatures, latency)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer, unused_port

from gateway.adapters.vrs import VrsAdapter, codec
from gateway.errors import (
    OutcomeTimeoutError,
    OutcomeUnknownError,
    RejectedError,
    ResponseVerificationError,
    SignatureRejectedError,
    TransientError,
)
from gateway.model.types import ControlOutcome, InquiryResult
from gateway.protocols.rest import RestResponse
from gateway.security.keys import generate_ed25519_jwk
from mock_agencies.common.clock import cst_date
from mock_agencies.common.faults import FaultConfig
from mock_agencies.vrs.server import VRS_KEY, VrsMock, create_app
from tests.adapters.vrs import (
    AGENCY_KEY,
    COMPANY,
    FIXTURE,
    NOBODY,
    PERSON,
    VIN,
    Checkpoints,
    adapter_for,
    inquiry,
    release,
    renew,
    replace,
    seize,
)

SEIZED_VIN = "LFWADRJF2K1012345"  # the company's, ACTIVE seizure by court 310115 in the fixture


@dataclass
class Harness:
    mock: VrsMock
    url: str
    adapters: list[VrsAdapter] = field(default_factory=list)
    responses: list[RestResponse] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def adapter(self, **kw: Any) -> VrsAdapter:
        adapter = adapter_for(self.url, sleeps=self.sleeps, **kw)
        rest = adapter._rest
        send: Callable[..., Awaitable[RestResponse]] = rest.request

        async def recording(*args: Any, **kwargs: Any) -> RestResponse:
            resp = await send(*args, **kwargs)
            self.responses.append(resp)
            return resp

        rest.request = recording  # type: ignore[method-assign]
        self.adapters.append(adapter)
        return adapter

    def faults(self, **config: Any) -> None:
        self.mock.faults.config = FaultConfig.from_json(config)

    def sent(self) -> list[str]:
        return [f"{r.request.method} {r.request.path_and_query}" for r in self.responses]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(FIXTURE, AGENCY_KEY, url)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    h = Harness(app[VRS_KEY], url)
    try:
        yield h
    finally:
        for adapter in h.adapters:
            await adapter.aclose()
        await server.close()


# --- inquiry -------------------------------------------------------------------------------


async def test_inquiry_returns_the_fixture_vehicles(harness: Harness) -> None:
    cps = Checkpoints()
    result = await harness.adapter().execute(cps.call(inquiry()))
    assert isinstance(result, InquiryResult) and result.subject == COMPANY
    # pendingPolls = 1: one PENDING poll, then COMPLETED; each wait = retryAfterSeconds (1).
    assert [s.split(" ")[0] for s in harness.sent()] == ["POST", "GET", "GET"]
    assert harness.sleeps == [1.0, 1.0]
    assert len(cps.saved) == 1 and cps.saved[0]["queryId"]
    vehicles = {v.vin: v for v in result.vehicles}
    assert set(vehicles) == {VIN, SEIZED_VIN}
    free, seized = vehicles[VIN], vehicles[SEIZED_VIN]
    assert (free.plate, free.make, free.model, free.status) == ("京AD12345", "示例汽车", "EX5",
                                                                "NORMAL")
    assert [(e.type, e.authority.name, e.rank) for e in free.encumbrances] == [
        ("MORTGAGE", "示例银行示例支行", 1)]
    (enc,) = seized.encumbrances
    today = cst_date(harness.mock.clock())
    assert (enc.type, enc.status, enc.rank, enc.case_no) == ("SEIZURE", "ACTIVE", 1,
                                                             "(2024)沪0115执567号")
    # Another court's seizure: the registry shows no id to court 110105 (README §8, as the
    # published example reads it), though our key may act for every court ("*").
    assert enc.measure_id is None
    assert enc.authority.court_code == "310115"
    assert (enc.effective_on, enc.until) == (today - dt.timedelta(days=63),
                                             today + dt.timedelta(days=666))


@pytest.mark.parametrize("subject", [NOBODY, PERSON], ids=["no vehicles", "scrapped only"])
async def test_inquiry_for_other_subjects(harness: Harness, subject: Any) -> None:
    result = await harness.adapter().execute(Checkpoints().call(inquiry(subject=subject)))
    assert isinstance(result, InquiryResult)
    if subject is NOBODY:
        assert result.vehicles == ()
    else:
        assert [(v.vin, v.status) for v in result.vehicles] == [("LVSHCAMB7CE012345", "SCRAPPED")]


async def test_resume_from_checkpoint_skips_the_post(harness: Harness) -> None:
    harness.mock.faults.add_rule(
        {"operation": "getVehicleQuery", "code": "service-unavailable", "count": 1})
    adapter = harness.adapter()
    cps = Checkpoints()
    with pytest.raises(TransientError) as info:
        await adapter.execute(cps.call(inquiry()))
    assert info.value.code == "service-unavailable" and info.value.retry_after == 1.0
    assert len(cps.saved) == 1
    result = await adapter.execute(cps.call(inquiry(), resume=cps.saved[-1]))
    assert isinstance(result, InquiryResult) and len(result.vehicles) == 2
    assert [s.split(" ")[0] for s in harness.sent()] == ["POST", "GET", "GET", "GET"]


# --- control actions -----------------------------------------------------------------------


async def test_seize_renew_release_round_trip(harness: Harness) -> None:
    adapter = harness.adapter()
    today = cst_date(harness.mock.clock())
    seized = await adapter.execute(Checkpoints().call(seize(days=730)))
    assert isinstance(seized, ControlOutcome) and seized.measure_id
    assert (seized.status, seized.rank, seized.replayed) == ("ACTIVE", 1, False)
    assert seized.effective_on == today
    assert seized.until == today + dt.timedelta(days=729)  # E + N - 1 (README §5)

    renewed = await adapter.execute(Checkpoints().call(renew(seized.measure_id, days=365)))
    assert isinstance(renewed, ControlOutcome)
    assert renewed.previous_until == seized.until
    assert renewed.until == seized.until + dt.timedelta(days=365)

    released = await adapter.execute(Checkpoints().call(release(seized.measure_id)))
    assert isinstance(released, ControlOutcome)
    assert (released.status, released.measure_id) == ("RELEASED", seized.measure_id)
    assert released.completed_at is not None
    assert abs(released.completed_at.timestamp() - harness.mock.clock()) < 5

    # Released: renewing or releasing again (new request ids) is refused for good.
    for command in (renew(seized.measure_id, n=8), release(seized.measure_id, n=9)):
        with pytest.raises(RejectedError) as info:
            await adapter.execute(Checkpoints().call(command))
        assert info.value.code == "seizure-not-active"


async def test_seizure_behind_an_active_one_is_waitlisted(harness: Harness) -> None:
    outcome = await harness.adapter().execute(Checkpoints().call(seize(vin=SEIZED_VIN,
                                                                       plate="京N8K2B7")))
    assert isinstance(outcome, ControlOutcome)
    assert (outcome.status, outcome.rank, outcome.effective_on, outcome.until) == (
        "WAITLISTED", 2, None, None)


async def test_replay_after_a_lost_response(harness: Harness) -> None:
    adapter = harness.adapter()
    harness.faults(dropRate=1.0, dropPhase="after")  # processed, answer lost
    with pytest.raises(OutcomeUnknownError):
        await adapter.execute(Checkpoints().call(seize()))
    harness.faults()
    replayed = await adapter.execute(Checkpoints().call(seize()))  # the dispatcher's resend
    assert isinstance(replayed, ControlOutcome)
    assert replayed.replayed and replayed.status == "ACTIVE"
    again = await adapter.execute(Checkpoints().call(seize()))
    assert again == replayed  # same seizure, same business content
    ours = [s for s in harness.mock.registry.seizures.values() if s.vin == VIN]
    assert [s.seizure_id for s in ours] == [replayed.measure_id]  # no second seizure


async def test_injected_transient_then_success_with_the_same_key(harness: Harness) -> None:
    harness.mock.faults.add_rule({"operation": "createSeizure", "code": "rate-limited",
                                  "count": 1})
    adapter = harness.adapter()
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(seize()))
    assert (info.value.code, info.value.retry_after) == ("rate-limited", 1.0)
    outcome = await adapter.execute(Checkpoints().call(seize()))
    assert isinstance(outcome, ControlOutcome)
    assert not outcome.replayed  # a problem is not recorded (README §7)


async def test_permanent_problems_from_the_mock(harness: Harness) -> None:
    adapter = harness.adapter()
    cases = [
        (seize(days=731), "period-exceeds-limit"),
        (seize(n=11, vin="LVSHCAMB7CE012345", plate=None), "subject-mismatch"),
        (seize(n=12, vin="LS5A3DBE3NB654321", plate=None), "vehicle-not-found"),
        (renew("SZ-NOPE", n=13), "seizure-not-found"),
    ]
    for command, code in cases:
        with pytest.raises(RejectedError) as info:
            await adapter.execute(Checkpoints().call(command))
        assert type(info.value) is RejectedError and info.value.code == code


async def test_same_key_different_body_is_rejected(harness: Harness) -> None:
    adapter = harness.adapter()
    await adapter.execute(Checkpoints().call(seize(days=100)))
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(seize(days=200)))  # same request id
    assert info.value.code == "idempotency-key-reuse"


async def test_unknown_key_is_a_signature_rejection(harness: Harness, tmp_path: Path) -> None:
    generate_ed25519_jwk(tmp_path / "stranger.jwk.json")
    adapter = harness.adapter()
    stranger = VrsAdapter(replace(adapter._agency, signing_key=tmp_path / "stranger.jwk.json"))
    harness.adapters.append(stranger)
    with pytest.raises(SignatureRejectedError) as info:
        await stranger.execute(Checkpoints().call(seize()))
    assert info.value.code == "key-untrusted"


async def test_corrupted_response_signature_is_discarded(harness: Harness) -> None:
    harness.faults(corruptSignatureRate=1.0)
    with pytest.raises(ResponseVerificationError):
        await harness.adapter().execute(Checkpoints().call(seize()))
    harness.faults()
    # The seizure was made; the resend fetches it as a replay.
    outcome = await harness.adapter().execute(Checkpoints().call(seize()))
    assert isinstance(outcome, ControlOutcome) and outcome.replayed


async def test_latency_past_the_timeout_is_an_outcome_timeout(harness: Harness) -> None:
    harness.faults(latency={"mode": "fixed", "ms": 2000})
    with pytest.raises(OutcomeTimeoutError):
        await harness.adapter(total_timeout=0.3).execute(Checkpoints().call(seize()))


async def test_connection_refused_is_transient() -> None:
    adapter = adapter_for(f"http://127.0.0.1:{unused_port()}")
    try:
        with pytest.raises(TransientError) as info:
            await adapter.execute(Checkpoints().call(seize()))
    finally:
        await adapter.aclose()
    assert not isinstance(info.value, OutcomeUnknownError)


# --- VRS-01: the mock's responses match the contract too --------------------------------------

_RESPONSE_SCHEMAS = {
    ("POST", r"/v2/vehicle-queries", 202): "VehicleQueryAccepted",
    ("GET", r"/v2/vehicle-queries/[^/]+", 200): "VehicleQuery",
    ("POST", r"/v2/seizures", 201): "Seizure",
    ("POST", r"/v2/seizures/[^/]+/renewals", 200): "SeizureRenewal",
    ("DELETE", r"/v2/seizures/[^/]+", 200): "SeizureRelease",
}


async def test_every_mock_response_validates(harness: Harness) -> None:
    adapter = harness.adapter()
    await adapter.execute(Checkpoints().call(inquiry()))
    seized = await adapter.execute(Checkpoints().call(seize()))
    assert isinstance(seized, ControlOutcome) and seized.measure_id
    await adapter.execute(Checkpoints().call(renew(seized.measure_id)))
    await adapter.execute(Checkpoints().call(release(seized.measure_id)))
    with pytest.raises(RejectedError):
        await adapter.execute(Checkpoints().call(seize(n=20, days=731)))
    assert len(harness.responses) == 7
    doc = codec.openapi_document()
    for resp in harness.responses:
        req = resp.request
        body = json.loads(resp.body)
        schema = next((name for (m, p, s), name in _RESPONSE_SCHEMAS.items()
                       if m == req.method and re.fullmatch(p, req.path_and_query)
                       and s == resp.status), "Problem")
        assert codec.schema_errors(schema, body) == [], (req.path_and_query, resp.status)
        assert schema != "Problem" or resp.headers["Content-Type"] == "application/problem+json"
        # The status is one the operation declares.
        template = re.sub(r"(VQ|SZ)-[^/]+", lambda m: "{queryId}" if m.group(1) == "VQ"
                          else "{seizureId}", req.path_and_query)
        assert str(resp.status) in doc["paths"][template][req.method.lower()]["responses"]
