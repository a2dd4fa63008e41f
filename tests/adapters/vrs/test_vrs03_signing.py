"""VRS-03 (court side): requests are signed as VRS §5 says. The checks rebuild the signature
base by hand from what the registry received (RFC 9421 §2.5) and verify it with the court's
public key, independently of gateway.security.httpsig."""

from __future__ import annotations

import base64
import time

import pytest
from http_sfv import Dictionary, InnerList

from gateway.security.keys import load_ed25519_public
from tests.adapters.vrs import (
    COURT_KEY,
    COURT_KEYID,
    Captured,
    Checkpoints,
    FakeRegistry,
    Reply,
    accepted_doc,
    adapter_for,
    completed_doc,
    inquiry,
    release,
    renew,
    seize,
    seizure_doc,
)

WITH_BODY = ["@method", "@target-uri", "content-digest", "content-type", "idempotency-key"]


@pytest.fixture(scope="module")
def captured() -> list[tuple[str, Captured]]:
    """One request of each kind, each sent twice, as the registry received them."""
    import asyncio

    async def run() -> tuple[str, list[Captured]]:
        replies = [Reply(202, accepted_doc()), Reply(200, completed_doc()),
                   Reply(201, seizure_doc()),
                   Reply(200, {"seizureId": "SZ-1", "status": "ACTIVE", "rank": 1,
                               "previousSeizedUntil": "2026-06-02", "seizedUntil": "2028-06-01"}),
                   Reply(200, {"seizureId": "SZ-1", "status": "RELEASED",
                               "releasedAt": "2026-10-08T01:20:03Z"})]
        registry = await FakeRegistry(replies * 2).start()
        adapter = adapter_for(registry)
        try:
            for _ in range(2):
                for command in (inquiry(), seize(), renew("SZ-1"), release("SZ-1")):
                    await adapter.execute(Checkpoints().call(command))
        finally:
            await adapter.aclose()
            await registry.close()
        return registry.url, registry.requests

    url, requests = asyncio.run(run())
    return [(url, r) for r in requests]


def _signature_input(req: Captured) -> InnerList:
    values = req.headers.getall("Signature-Input", [])
    assert len(values) == 1
    parsed = Dictionary()
    parsed.parse(values[0].encode("ascii"))
    assert list(parsed) == ["sig1"]
    member = parsed["sig1"]
    assert isinstance(member, InnerList)
    return member


def test_components_in_exact_order_per_method(captured: list[tuple[str, Captured]]) -> None:
    assert len(captured) == 10
    for _, req in captured:
        components = [item.value for item in _signature_input(req)]
        assert all(not item.params for item in _signature_input(req))
        expected = ["@method", "@target-uri"] if req.method == "GET" else WITH_BODY
        assert components == expected, req.method


def test_parameters_in_order_with_tag_alg_and_keyid(captured: list[tuple[str, Captured]]) -> None:
    now = time.time()
    for _, req in captured:
        params = _signature_input(req).params
        assert list(params) == ["created", "expires", "keyid", "nonce", "alg", "tag"]
        assert params["alg"] == "ed25519" and params["tag"] == "vrs-v2"
        assert params["keyid"] == COURT_KEYID  # RFC 7638 thumbprint of our key
        assert abs(params["created"] - now) < 60
        assert 0 < params["expires"] - params["created"] <= 300


def test_nonces_are_fresh_and_long_enough(captured: list[tuple[str, Captured]]) -> None:
    nonces = [_signature_input(req).params["nonce"] for _, req in captured]
    assert len(set(nonces)) == len(nonces)  # never reused, not even by a resend
    for nonce in nonces:
        assert len(base64.urlsafe_b64decode(nonce + "==")) >= 16  # >= 128 random bits
        assert 22 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum()


def test_signature_verifies_over_a_hand_built_base(captured: list[tuple[str, Captured]]) -> None:
    public = load_ed25519_public(COURT_KEY)
    for url, req in captured:
        member = _signature_input(req)
        lines = []
        for item in member:
            name = str(item.value)
            if name == "@method":
                value = req.method
            elif name == "@target-uri":
                value = url + req.raw_path  # loopback http origin, no default port
            else:
                value = req.headers[name]
            lines.append(f'"{name}": {value}')
        signature_input = req.headers["Signature-Input"]
        lines.append(f'"@signature-params": {signature_input.removeprefix("sig1=")}')
        base = "\n".join(lines).encode("ascii")
        signature = Dictionary()
        signature.parse(req.headers["Signature"].encode("ascii"))
        assert list(signature) == ["sig1"]
        public.verify(signature["sig1"].value, base)  # raises InvalidSignature if wrong


def test_content_type_is_exactly_application_json(captured: list[tuple[str, Captured]]) -> None:
    for _, req in captured:
        if req.method != "GET":
            assert req.headers.getall("Content-Type") == ["application/json"]
            assert req.headers["Idempotency-Key"] == req.headers["Idempotency-Key"].strip()
