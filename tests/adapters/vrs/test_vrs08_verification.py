"""VRS-08 (court side): a response with a bad or missing signature, a foreign keyid, the wrong
request binding, a digest mismatch or stale timestamps is discarded as transient and flagged as
a security event; nothing of it (status, problem, body) is used."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import (
    RejectedError,
    ResponseVerificationError,
    SecurityError,
    TransientError,
)
from gateway.security.httpsig import Signer
from tests.adapters.vrs import (
    AGENCY_KEYID,
    Checkpoints,
    FakeRegistry,
    Reply,
    adapter_for,
    court_signer,
    inquiry,
    problem,
    replace,
    seize,
    seizure_doc,
)

GOOD = Reply(201, seizure_doc())
STRANGER = Signer(Ed25519PrivateKey.generate())


def _flip_signature(headers: dict[str, str]) -> None:
    raw = bytearray(base64.b64decode(headers["Signature"].removeprefix("sig1=:")[:-1]))
    raw[0] ^= 1
    headers["Signature"] = "sig1=:" + base64.b64encode(bytes(raw)).decode() + ":"


def _claim_agency_keyid(headers: dict[str, str]) -> None:
    headers["Signature-Input"] = headers["Signature-Input"].replace(STRANGER.keyid, AGENCY_KEYID)


def _our_request_signature_from_another_request() -> str:
    other = court_signer().sign_request(
        "POST", "https://vrs.registry.example/v2/seizures",
        {"Content-Digest": "sha-256=:" + "A" * 43 + "=:", "Content-Type": "application/json",
         "Idempotency-Key": "00000000-0000-4000-8000-000000000099"})
    return other["Signature"].removeprefix("sig1=")


CASES = {
    "bad signature": replace(GOOD, tamper=_flip_signature),
    "missing signature": replace(GOOD, drop_headers=("Signature", "Signature-Input")),
    "missing Signature only": replace(GOOD, drop_headers=("Signature",)),
    "unsigned": replace(GOOD, sign=False),
    "foreign keyid": replace(GOOD, signer=STRANGER),
    "foreign key claiming the agency keyid": replace(GOOD, signer=STRANGER,
                                                     tamper=_claim_agency_keyid),
    "signed by the court's own key": replace(GOOD, signer=court_signer()),
    "bound to no request": replace(GOOD, binding=None),
    "bound to another request signature": replace(
        GOOD, binding=_our_request_signature_from_another_request()),
    "bound to another target uri": replace(
        GOOD, target_uri="https://vrs.registry.example/v2/seizures"),
    "digest mismatch": replace(GOOD, body_after_signing=b'{"seizureId":"SZ-EVIL"}'),
    "digest header swapped": replace(
        GOOD, headers_after_signing={"Content-Digest": "sha-256=:" + "A" * 43 + "=:"}),
    "two digest members": replace(GOOD, tamper=lambda h: h.update(
        {"Content-Digest": h["Content-Digest"] + ", sha-512=:AAAA:"})),
    "status changed": replace(GOOD, status_after_signing=200),
    "content type changed": replace(GOOD, headers_after_signing={"Content-Type": "text/json"}),
    "stale": replace(GOOD, created=int(time.time()) - 1000),
    "from the future": replace(GOOD, created=int(time.time()) + 1000),
    "forged permanent problem": replace(problem(422, "vehicle-not-found"), signer=STRANGER),
    "forged signature rejection": replace(problem(401, "signature-invalid"), sign=False),
    "forged transient problem, stale": replace(problem(503, "service-unavailable", 5),
                                               created=int(time.time()) - 1000),
}


@pytest.fixture
async def registry_for() -> AsyncIterator[list[FakeRegistry]]:
    made: list[FakeRegistry] = []
    yield made
    for r in made:
        await r.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_unverifiable_response_is_discarded_as_transient(
    case: str, registry_for: list[FakeRegistry]
) -> None:
    registry = await FakeRegistry([CASES[case]]).start()
    registry_for.append(registry)
    adapter = adapter_for(registry)
    try:
        with pytest.raises(ResponseVerificationError) as info:
            await adapter.execute(Checkpoints().call(seize()))
    finally:
        await adapter.aclose()
    err = info.value
    assert isinstance(err, TransientError) and isinstance(err, SecurityError)
    assert not isinstance(err, RejectedError)
    assert err.code in {"signature-invalid", "key-untrusted", "signature-expired",
                        "digest-mismatch"}
    assert len(registry.requests) == 1  # discarded, not retried by the adapter


async def test_unverifiable_poll_keeps_the_checkpoint(registry_for: list[FakeRegistry]) -> None:
    registry = await FakeRegistry([
        Reply(202, {"queryId": "VQ-1", "status": "PENDING", "retryAfterSeconds": 1}),
        replace(GOOD, status=200, doc={"queryId": "VQ-1"}, signer=STRANGER),
    ]).start()
    registry_for.append(registry)
    adapter = adapter_for(registry)
    cps = Checkpoints()
    try:
        with pytest.raises(ResponseVerificationError):
            await adapter.execute(cps.call(inquiry()))
    finally:
        await adapter.aclose()
    assert cps.saved == [{"queryId": "VQ-1"}]


async def test_the_genuine_response_is_accepted(registry_for: list[FakeRegistry]) -> None:
    registry = await FakeRegistry([GOOD]).start()
    registry_for.append(registry)
    adapter = adapter_for(registry)
    try:
        outcome = await adapter.execute(Checkpoints().call(seize()))
    finally:
        await adapter.aclose()
    assert outcome.measure_id == "SZ-1"  # type: ignore[union-attr]
