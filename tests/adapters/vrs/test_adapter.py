"""VrsAdapter construction, options and protocol flow (inquiry polling, checkpoints, control
actions) against a scripted registry; the checklist-specific suites live in test_vrs*.py."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.adapters.base import Adapter, AgencyCall
from gateway.adapters.registry import adapter_class
from gateway.adapters.vrs import VrsAdapter
from gateway.errors import ConfigError, OutcomeUnknownError, RejectedError, TransientError
from gateway.model.types import (
    Action,
    AgencyKind,
    Authority,
    ControlCommand,
    ControlOutcome,
    Encumbrance,
    InquiryResult,
)
from tests.adapters import WaitAndSave
from tests.adapters.vrs import (
    AGENCY_KEYID,
    COMPANY,
    COURT_KEY,
    COURT_KEYID,
    PLATE,
    VIN,
    Captured,
    Checkpoints,
    FakeRegistry,
    Reply,
    accepted_doc,
    adapter_for,
    agency_config,
    completed_doc,
    context,
    inquiry,
    pending_doc,
    problem,
    release,
    renew,
    replace,
    rid,
    seize,
    seizure_doc,
)


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    """Registries and adapters to close after the test, whatever happens."""
    things: list[object] = []
    yield things
    for thing in reversed(things):
        await thing.aclose() if isinstance(thing, VrsAdapter) else await thing.close()  # type: ignore[attr-defined]


async def start(closing: list[object], script: object, **kw: object
                ) -> tuple[FakeRegistry, VrsAdapter]:
    registry = await FakeRegistry(script).start()  # type: ignore[arg-type]
    closing.append(registry)
    adapter = adapter_for(registry, **kw)  # type: ignore[arg-type]
    closing.append(adapter)
    return registry, adapter


# --- construction ----------------------------------------------------------------------------


def test_is_registered_and_satisfies_the_adapter_protocol() -> None:
    assert adapter_class("vrs") is VrsAdapter
    adapter = VrsAdapter(agency_config("https://vrs.registry.example"))
    assert isinstance(adapter, Adapter)
    assert VrsAdapter.name == "vrs"
    caps = VrsAdapter.capabilities
    assert caps.kind is AgencyKind.VEHICLE and caps.inquiry
    assert caps.actions == {Action.SEIZE, Action.RENEW_SEIZURE, Action.RELEASE_SEIZURE}
    # Keys are loaded once, at construction; keyids are the RFC 7638 thumbprints.
    assert adapter.keyid == COURT_KEYID
    assert adapter.agency_keyid == AGENCY_KEYID


@pytest.mark.parametrize("key", ["signing_key", "agency_key"])
def test_missing_key_is_a_config_error_naming_it(key: str) -> None:
    cfg = replace(agency_config("https://vrs.example"), **{key: None})
    with pytest.raises(ConfigError) as info:
        VrsAdapter(cfg)
    assert info.value.key == key


@pytest.mark.parametrize("key", ["signing_key", "agency_key"])
def test_unreadable_key_is_a_config_error_naming_it(key: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jwk.json"
    bad.write_text('{"kty": "RSA"}')
    for path in (bad, tmp_path / "missing.json"):
        with pytest.raises(ConfigError) as info:
            VrsAdapter(replace(agency_config("https://vrs.example"), **{key: path}))
        assert info.value.key == key


def test_public_key_is_not_a_signing_key(tmp_path: Path) -> None:
    public = tmp_path / "court.pub.json"
    public.write_text('{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}')
    with pytest.raises(ConfigError) as info:
        VrsAdapter(replace(agency_config("https://vrs.example"), signing_key=public))
    assert info.value.key == "signing_key"


def test_our_own_key_as_agency_key_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "court.json"
    shutil.copy(COURT_KEY, copy)
    with pytest.raises(ConfigError) as info:
        VrsAdapter(replace(agency_config("https://vrs.example"), agency_key=copy))
    assert info.value.key == "agency_key"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"poll_deadline": 5}, "options.poll_deadline"),
        ({"poll_deadline_seconds": 0}, "options.poll_deadline_seconds"),
        ({"poll_deadline_seconds": True}, "options.poll_deadline_seconds"),
        ({"max_poll_interval": "10"}, "options.max_poll_interval"),
        ({"validate_requests": 1}, "options.validate_requests"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        VrsAdapter(agency_config("https://vrs.example", options=options))
    assert info.value.key == key


def test_endpoint_must_be_an_origin() -> None:
    with pytest.raises(ConfigError) as info:
        VrsAdapter(agency_config("https://vrs.example/base"))
    assert info.value.key == "endpoint"


# --- inquiry -------------------------------------------------------------------------------


async def test_inquiry_posts_checkpoints_then_polls_no_earlier_than_told(
    closing: list[object],
) -> None:
    order: list[str] = []
    cps = Checkpoints()

    def script(req: Captured) -> Reply:
        order.append(f"{req.method} {req.raw_path}")
        if req.method == "POST":
            assert cps.saved == []  # nothing checkpointed before the query exists
            return Reply(202, accepted_doc("VQ-7", 3),
                         headers={"Location": "/v2/vehicle-queries/VQ-7"})
        assert cps.saved == [{"queryId": "VQ-7"}]  # checkpoint BEFORE the first poll
        polls = sum(1 for o in order if o.startswith("GET"))
        return Reply(200, pending_doc("VQ-7", 5) if polls == 1 else completed_doc("VQ-7"))

    sleeps: list[float] = []
    registry, adapter = await start(closing, script, sleeps=sleeps)
    result = await adapter.execute(cps.call(inquiry()))
    assert order == ["POST /v2/vehicle-queries", "GET /v2/vehicle-queries/VQ-7",
                     "GET /v2/vehicle-queries/VQ-7"]
    assert sleeps == [3.0, 5.0]  # retryAfterSeconds of the 202, then of the PENDING poll
    assert isinstance(result, InquiryResult)
    assert result.subject == COMPANY
    assert result.as_of == dt.datetime(2024, 6, 3, 3, 0, 20, tzinfo=dt.UTC)
    assert [v.vin for v in result.vehicles] == ["LS5A3DBE3NB123456", "LFWADRJF2K1012345"]
    first, second = result.vehicles
    assert first.plate == "京AD12345" and first.registered_on == dt.date(2022, 3, 18)
    assert first.encumbrances == (
        Encumbrance(type="MORTGAGE", authority=Authority("示例银行示例支行"), status="ACTIVE",
                    rank=1, effective_on=dt.date(2022, 3, 18)),
    )
    assert second.encumbrances == (
        Encumbrance(type="SEIZURE", authority=Authority("示例新区人民法院", "310115"),
                    status="ACTIVE", rank=1, case_no="(2024)沪0115执567号",
                    effective_on=dt.date(2024, 4, 1), until=dt.date(2026, 3, 31)),
    )
    # GETs carry no body, digest or idempotency key (VRS §4).
    for req in registry.requests[1:]:
        assert req.body == b""
        assert "Idempotency-Key" not in req.headers and "Content-Digest" not in req.headers


async def test_the_query_id_is_stored_while_waiting_and_before_the_first_poll(
    closing: list[object],
) -> None:
    """The checkpoint's commit overlaps the registry's retryAfterSeconds (it costs the call no
    time of its own), and the first GET still waits for it."""
    probe = WaitAndSave("queryId")
    log = probe.log

    def script(req: Captured) -> Reply:
        log.append(req.method)
        if req.method == "POST":
            return Reply(202, accepted_doc("VQ-7", 3))
        return Reply(200, completed_doc("VQ-7"))

    registry = await FakeRegistry(script).start()  # type: ignore[arg-type]
    closing.append(registry)
    adapter = VrsAdapter(agency_config(registry.url), clock=probe.clock, sleep=probe.sleep)
    closing.append(adapter)
    result = await adapter.execute(AgencyCall(inquiry(), checkpoint=probe.checkpoint))
    assert isinstance(result, InquiryResult)
    assert log == ["POST", "sleep 3", "slept", "saved VQ-7", "GET"]


async def test_seizure_ids_in_inquiries_become_measure_ids(closing: list[object]) -> None:
    vehicles = completed_doc()["vehicles"]
    vehicles[1]["encumbrances"][0]["seizureId"] = "SZ-FIXTURE-0001"
    _, adapter = await start(closing, [Reply(202, accepted_doc()),
                                       Reply(200, completed_doc(vehicles=vehicles))])
    result = await adapter.execute(Checkpoints().call(inquiry()))
    assert isinstance(result, InquiryResult)
    assert result.vehicles[1].encumbrances[0].measure_id == "SZ-FIXTURE-0001"


async def test_resume_from_checkpoint_skips_the_post(closing: list[object]) -> None:
    registry, adapter = await start(closing, [Reply(200, completed_doc("VQ-9"))])
    cps = Checkpoints()
    result = await adapter.execute(cps.call(inquiry(), resume={"queryId": "VQ-9"}))
    assert isinstance(result, InquiryResult)
    assert [(r.method, r.raw_path) for r in registry.requests] == [
        ("GET", "/v2/vehicle-queries/VQ-9")]
    assert cps.saved == []


async def test_unusable_resume_state_starts_over(closing: list[object]) -> None:
    registry, adapter = await start(closing, [Reply(202, accepted_doc()),
                                              Reply(200, completed_doc())])
    await adapter.execute(Checkpoints().call(inquiry(), resume={"queryId": "../../etc"}))
    assert registry.requests[0].method == "POST"


async def test_poll_deadline_hands_back_pending_query_with_retry_after(
    closing: list[object],
) -> None:
    registry, adapter = await start(
        closing, lambda req: Reply(202, accepted_doc(retry_after=4)) if req.method == "POST"
        else Reply(200, pending_doc(retry_after=4)),
        options={"poll_deadline_seconds": 10})
    cps = Checkpoints()
    with pytest.raises(TransientError) as info:
        await adapter.execute(cps.call(inquiry()))
    assert info.value.code == "query-pending" and info.value.retry_after == 4
    # POST at t=0, polls at t=4 and t=8; the next poll (t=12) would pass the deadline (t=10).
    assert [r.method for r in registry.requests] == ["POST", "GET", "GET"]
    # The checkpoint stays, so the dispatcher's next attempt resumes polling.
    assert cps.saved == [{"queryId": "VQ-1"}]


async def test_long_agency_delay_goes_back_to_the_dispatcher(closing: list[object]) -> None:
    registry, adapter = await start(closing, [Reply(202, accepted_doc(retry_after=120))],
                                    options={"max_poll_interval": 30})
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(inquiry()))
    assert info.value.retry_after == 120
    assert len(registry.requests) == 1  # no poll earlier than retryAfterSeconds


async def test_purged_query_is_rejected(closing: list[object]) -> None:
    _, adapter = await start(closing, [problem(404, "query-not-found")])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(inquiry(), resume={"queryId": "VQ-OLD"}))
    assert info.value.code == "query-not-found"


async def test_poll_answer_for_another_subject_is_not_used(closing: list[object]) -> None:
    other = completed_doc()
    other["subject"]["idNumber"] = "91350100M000100Y43"
    _, adapter = await start(closing, [Reply(200, other)])
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(inquiry(), resume={"queryId": "VQ-1"}))
    assert info.value.code == "invalid-response"


# --- control actions -------------------------------------------------------------------------


async def test_seizure_maps_to_control_outcome(closing: list[object]) -> None:
    registry, adapter = await start(closing, [
        Reply(201, seizure_doc("SZ-20240603-000318"),
              headers={"Location": "/v2/seizures/SZ-20240603-000318"}),
    ])
    outcome = await adapter.execute(Checkpoints().call(seize()))
    assert outcome == ControlOutcome(
        action=Action.SEIZE, status="ACTIVE", measure_id="SZ-20240603-000318", rank=1,
        effective_on=dt.date(2024, 6, 3), until=dt.date(2026, 6, 2), replayed=False)
    req = registry.requests[0]
    assert (req.method, req.raw_path) == ("POST", "/v2/seizures")
    assert req.headers["Idempotency-Key"] == rid(2)
    body = req.json()
    assert (body["vin"], body["plate"], body["seizureDays"]) == (VIN, PLATE, 730)


async def test_waitlisted_and_replayed_seizure(closing: list[object]) -> None:
    doc = {"seizureId": "SZ-W", "vin": "LS5A3DBE3NB123456", "status": "WAITLISTED", "rank": 3}
    _, adapter = await start(closing, [Reply(201, doc, headers={"Idempotent-Replayed": "true"})])
    outcome = await adapter.execute(Checkpoints().call(seize(plate=None)))
    assert outcome == ControlOutcome(action=Action.SEIZE, status="WAITLISTED", measure_id="SZ-W",
                                     rank=3, replayed=True)


async def test_renewal_and_release(closing: list[object]) -> None:
    registry, adapter = await start(closing, [
        Reply(200, {"seizureId": "SZ-1", "status": "ACTIVE", "rank": 1,
                    "previousSeizedUntil": "2026-06-02", "seizedUntil": "2028-06-01"}),
        Reply(200, {"seizureId": "SZ-1", "status": "RELEASED",
                    "releasedAt": "2026-10-08T01:20:03Z"}),
    ])
    renewed = await adapter.execute(Checkpoints().call(renew("SZ-1")))
    assert renewed == ControlOutcome(action=Action.RENEW_SEIZURE, status="ACTIVE",
                                     measure_id="SZ-1", rank=1, until=dt.date(2028, 6, 1),
                                     previous_until=dt.date(2026, 6, 2))
    released = await adapter.execute(Checkpoints().call(release("SZ-1")))
    assert released == ControlOutcome(
        action=Action.RELEASE_SEIZURE, status="RELEASED", measure_id="SZ-1",
        completed_at=dt.datetime(2026, 10, 8, 1, 20, 3, tzinfo=dt.UTC))
    renew_req, release_req = registry.requests
    assert (renew_req.method, renew_req.raw_path) == ("POST", "/v2/seizures/SZ-1/renewals")
    assert renew_req.json()["seizureDays"] == 730
    # VRS §2: DELETE with a JSON body holding the context only.
    assert (release_req.method, release_req.raw_path) == ("DELETE", "/v2/seizures/SZ-1")
    assert set(release_req.json()) == {"court", "caseNo", "officer", "documents"}
    assert release_req.headers["Content-Type"] == "application/json"


async def test_answer_for_another_seizure_is_not_used(closing: list[object]) -> None:
    _, adapter = await start(closing, [Reply(200, {"seizureId": "SZ-2", "status": "RELEASED",
                                                   "releasedAt": "2026-10-08T01:20:03Z"})])
    with pytest.raises(OutcomeUnknownError):
        await adapter.execute(Checkpoints().call(release("SZ-1")))


@pytest.mark.parametrize(
    "command",
    [
        ControlCommand(rid(1), context(), Action.SEIZE, subject=COMPANY, days=730),  # no vin
        ControlCommand(rid(1), context(), Action.RENEW_SEIZURE, seizure_id="SZ-1"),  # no days
        ControlCommand(rid(1), context(), Action.RELEASE_SEIZURE, seizure_id="../x"),
        ControlCommand(rid(1), context(), Action.FREEZE),
        ControlCommand("NOT-A-UUID", context(), Action.RELEASE_SEIZURE, seizure_id="SZ-1"),
        seize(days=0),  # fails the OpenAPI schema (Days minimum 1): never sent
    ],
)
async def test_bad_commands_are_rejected_without_a_request(
    closing: list[object], command: ControlCommand
) -> None:
    registry, adapter = await start(closing, [])
    with pytest.raises(RejectedError):
        await adapter.execute(Checkpoints().call(command))
    assert registry.requests == []


async def test_aclose_is_idempotent(closing: list[object]) -> None:
    _, adapter = await start(closing, [Reply(201, seizure_doc())])
    await adapter.execute(Checkpoints().call(seize()))
    await adapter.aclose()
    await adapter.aclose()
