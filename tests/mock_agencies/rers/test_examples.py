"""The signed requests of examples/rers/, replayed against the mock at their own timestamps.

Freshness stays on: the mock's clock is set to each example's time, so the examples' own
``sentAt`` must pass check (4). ECDSA is randomised, so answers cannot be compared byte for byte;
but the layout, the ids, the dates and every timestamp the mock sets can be made the example's,
and then the answer equals the example file in everything but ``SignatureValue`` — the
``DigestValue`` included, which proves the signed content is the example's exactly (RERS-02,
RERS-03). Only ``QueryPropertiesResponse/asOf`` differs: the example registry took a second
between reading and answering, the mock does not.
"""

from __future__ import annotations

import dataclasses
import re

from lxml import etree

from gateway.security.certs import cert_sha256
from gateway.security.enveloped import EnvelopedVerifier
from mock_agencies.common.clock import ManualClock
from tests.mock_agencies.rers.client import (
    COURT_CERT,
    EXAMPLES,
    REGISTRY_CERT,
    Harness,
    at,
    query,
    release,
    start,
    to_data,
)

_SIGNATURE_VALUE = re.compile(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>")
_SEAL_ID = "SEAL-20240603-000731"


def _example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def _example_payload(name: str) -> etree._Element:
    root = etree.fromstring(_example(name))
    return root.find("{http://www.w3.org/2003/05/soap-envelope}Body")[0]


def _unsigned(data: bytes) -> bytes:
    """Everything but the randomised ECDSA value."""
    return _SIGNATURE_VALUE.sub(b"<ds:SignatureValue/>", data)


async def _replay(h: Harness, operation: str):
    data = _example(f"{operation}.request.xml")
    rid = re.search(rb"<rers:requestId>([^<]+)<", data).group(1).decode()  # type: ignore[union-attr]
    ct = f'application/soap+xml; charset=utf-8; action="urn:rers:v1:{operation}"'
    return await h.client.send(data, content_type=ct, request_id=rid)


def _assert_example(reply, name: str) -> None:
    assert _unsigned(reply.body) == _unsigned(_example(name)), reply.body.decode()


async def test_rers23_examples_verify_and_a_changed_byte_does_not(aiohttp_client) -> None:
    """RERS-23 with the mock's own verifier settings: every example verifies (freshness off,
    they are historical), and any changed signed byte is refused."""
    trusted = {cert_sha256(COURT_CERT): "court", cert_sha256(REGISTRY_CERT): "registry"}
    for path in sorted(EXAMPLES.glob("*.xml")):
        data = path.read_bytes()
        field = "sentAt" if path.name.endswith(".request.xml") else "respondedAt"
        verifier = EnvelopedVerifier(trusted, check_freshness=False, time_field=field)
        assert verifier.verify(data).cert_sha256 in trusted, path.name
    h = await start(aiohttp_client, clock=ManualClock(at("2024-06-03T02:45:04Z")))
    data = _example("SealProperty.request.xml").replace(b">1095<", b">1094<")
    ct = 'application/soap+xml; charset=utf-8; action="urn:rers:v1:SealProperty"'
    r = await h.client.send(data, content_type=ct)
    assert r.fault == "SIGNATURE_INVALID"  # RERS-04
    assert r.request_id == "a5f5d4e0-2c2a-57ef-a9de-23170d2d6d28"  # read, though not verified


async def test_rers13_to_17_examples_replayed_along_the_timeline(aiohttp_client) -> None:
    clock = ManualClock(at("2024-06-03T02:40:03Z"))
    h = await start(aiohttp_client, clock=clock)  # the fixture's "today" is 2024-06-03

    # 2024-06-03: inquiry (RERS-13): the example's units, shares, mortgage and foreign seal.
    r = await _replay(h, "QueryProperties")
    expected = to_data(_example_payload("QueryProperties.response.xml"))
    assert r.status == 200
    assert {**r.data, "asOf": "-"} == {**expected, "asOf": "-"}
    assert r.data["asOf"] == "2024-06-03T02:40:03Z"

    # SealProperty: WAITLISTED at rank 2 behind court 310115's seal (RERS-15).
    clock.set(at("2024-06-03T02:45:04Z"))
    h.mock.registry.set_next_id(731)
    _assert_example(await _replay(h, "SealProperty"), "SealProperty.response.xml")
    assert h.events() == [("waitlisted", _SEAL_ID)]

    # The other court's seal ends on 2026-01-13 (CST): ours is promoted at 24:00 CST (RERS-15).
    clock.set(at("2026-01-13T15:59:59Z"))
    assert len(h.ledger) == 1
    clock.set(at("2026-01-13T16:00:00Z"))
    expired, promoted = h.ledger[1:]
    assert (expired["event"], expired["sealId"]) == ("expired", "SEAL-FIXTURE-0001")
    assert (promoted["event"], promoted["sealId"], promoted["rank"]) == ("promoted", _SEAL_ID, 1)
    assert (promoted["effectiveOn"], promoted["sealedUntil"]) == ("2026-01-14", "2029-01-12")

    # 2028-12-20: renewal by 1095 days, to 2032-01-12 (RERS-17).
    clock.set(at("2028-12-20T01:30:02Z"))
    _assert_example(await _replay(h, "RenewSeal"), "RenewSeal.response.xml")

    # 2029-06-01: release (RERS-17); releasedAt is the mock's clock, as in the example.
    clock.set(at("2029-06-01T06:00:03Z"))
    _assert_example(await _replay(h, "ReleaseSeal"), "ReleaseSeal.response.xml")
    assert [e["event"] for e in h.ledger] == [
        "waitlisted", "expired", "promoted", "renewed", "released",
    ]  # fmt: skip

    # 2029-07-01: releasing it again is SEAL_NOT_ACTIVE, exactly the example fault (RERS-18).
    clock.set(at("2029-07-01T01:00:01Z"))
    rid = "ace8a73b-5bf0-5e7f-a386-ee74d832455c"
    r = await h.client.call("ReleaseSeal", release(_SEAL_ID, request_id=rid))
    assert r.fault == "SEAL_NOT_ACTIVE"
    _assert_example(r, "Fault.seal-not-active.xml")


async def test_rers19_example_busy_fault(aiohttp_client) -> None:
    clock = ManualClock(at("2024-06-03T02:50:10Z"))
    h = await start(aiohttp_client, clock=clock)
    registry = h.mock.registry
    registry.behaviour = dataclasses.replace(registry.behaviour, retry_after_seconds=5)
    h.mock.faults.add_rule({"operation": "QueryProperties", "code": "BUSY", "count": 1})
    rid = "358cddf0-8cd2-5f05-a04d-723046f280db"
    r = await h.client.call("QueryProperties", query(request_id=rid))
    assert r.fault == "BUSY" and r.retry_after == 5
    _assert_example(r, "Fault.busy.xml")
