"""RERS-02/03 (court side): every payload we send validates against the registry's XSD (the
original file, not only our copy) and ends with exactly one ``ds:Signature`` of the §4 profile:
exclusive c14n, ecdsa-sha256, one ``Reference URI=""`` with enveloped-signature then exc-c14n,
SHA-256, a 64-byte ``r || s`` value and our certificate. For the examples' commands we send the
examples' very content, down to the DigestValue. RERS-21: every attempt has a fresh ``sentAt``
and a new signature, and nothing else changes."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.adapters.rers import RersAdapter, codec
from gateway.errors import OutcomeTimeoutError
from gateway.model.types import Command
from gateway.security.certs import load_certificate
from tests.adapters.rers import (
    CONTRACT_ORIGINALS,
    COURT_CERT,
    DS,
    NS,
    PRE_UNIT,
    SHORT,
    Captured,
    Harness,
    Reply,
    adapter_for,
    call,
    command_from_example,
    content,
    court_verifier,
    example_request,
    inquiry,
    release,
    renew,
    seal,
    seal_response,
)

EXAMPLES = ["QueryProperties", "SealProperty", "RenewSeal", "ReleaseSeal"]
COMMANDS: list[Command] = [inquiry(), inquiry(ruling=True, content=True), seal(content=True),
                           seal(unit_no=PRE_UNIT, pre=True), renew("SEAL-1"), release("SEAL-1")]
IDS = ["query", "query-with-ruling", "seal", "pre-seal", "renew", "release"]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with Harness() as h:
        yield h


def signed_request(adapter: RersAdapter, command: Command, sent_at: dt.datetime) -> bytes:
    """What the adapter puts on the wire for ``command`` at ``sent_at`` (its own build path)."""
    operation, payload = codec.request_payload(command, sent_at)
    return adapter._signer.sign(codec.wire_envelope(adapter._soap.build(operation, **payload)))


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_payloads_validate_against_the_original_xsd(command: Command) -> None:
    adapter = adapter_for("https://rers.example/rers/v1")
    data = signed_request(adapter, command, dt.datetime.now(dt.UTC))
    payload = etree.fromstring(data).find("env:Body", NS)[0]  # type: ignore[index]
    original = etree.XMLSchema(etree.parse(str(CONTRACT_ORIGINALS / codec.XSD_FILE)))
    # Signed, as sent: the XSD allows the enveloped signature as the last child (lax).
    assert original.validate(etree.ElementTree(payload)), original.error_log


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_one_signature_of_the_profile_as_the_payloads_last_child(command: Command) -> None:
    adapter = adapter_for("https://rers.example/rers/v1")
    data = signed_request(adapter, command, dt.datetime.now(dt.UTC))
    verified = court_verifier().verify(data)  # the registry's §4 checks (1)-(4) pass
    root = etree.fromstring(data)
    payload = root.find("env:Body", NS)[0]  # type: ignore[index]
    assert verified.payload.tag == payload.tag
    signatures = root.findall(f".//{{{DS}}}Signature")
    assert len(signatures) == 1 and payload[-1] is signatures[0]  # RERS-02: the last child
    sig = signatures[0]

    def algorithm(path: str) -> list[str | None]:
        return [e.get("Algorithm") for e in sig.iterfind(path, NS)]

    assert algorithm("ds:SignedInfo/ds:CanonicalizationMethod") == [
        "http://www.w3.org/2001/10/xml-exc-c14n#"]
    assert algorithm("ds:SignedInfo/ds:SignatureMethod") == [
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"]
    references = sig.findall("ds:SignedInfo/ds:Reference", NS)
    assert [r.get("URI") for r in references] == [""]
    assert algorithm("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform") == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#"]
    assert algorithm("ds:SignedInfo/ds:Reference/ds:DigestMethod") == [
        "http://www.w3.org/2001/04/xmlenc#sha256"]
    value = sig.findtext("ds:SignatureValue", namespaces=NS)
    assert value is not None and len(base64.b64decode(value)) == 64  # r || s, not DER
    certs = sig.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    der = load_certificate(COURT_CERT).public_bytes(serialization.Encoding.DER)
    assert [base64.b64decode(c.text or "") for c in certs] == [der]
    assert sig.find(".//ds:Object", NS) is None


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_examples_commands_give_the_examples_requests(name: str) -> None:
    """Same content, same layout: the DigestValue over the whole envelope is the example's."""
    command, sent_at = command_from_example(name)
    adapter = adapter_for("https://rers.example/rers/v1", now=lambda: sent_at)
    data = signed_request(adapter, command, sent_at)
    ours = etree.fromstring(data).find("env:Body", NS)[0]  # type: ignore[index]
    theirs = example_request(name)
    assert content(ours) == content(theirs)
    assert ours.findtext("rers:sentAt", namespaces=NS) == theirs.findtext("rers:sentAt",
                                                                         namespaces=NS)
    digest = ".//ds:SignedInfo/ds:Reference/ds:DigestValue"
    assert ours.findtext(digest, namespaces=NS) == theirs.findtext(digest, namespaces=NS)
    court_verifier(check_freshness=False).verify(data)


async def test_each_attempt_has_a_fresh_sent_at_and_nothing_else_changes(
    harness: Harness,
) -> None:
    """RERS-21: the dispatcher's resend after a timeout is the same requestId and content,
    a new sentAt, signed again; the registry then answers the recorded seal, replayed."""
    moments = iter([dt.datetime.now(dt.UTC), dt.datetime.now(dt.UTC) + dt.timedelta(seconds=37)])
    current = next(moments)

    def now() -> dt.datetime:
        return current

    def script(req: Captured) -> Reply:
        first = len(registry.requests) == 1
        return Reply(seal_response(req.text("requestId"), replayed=not first),
                     delay=1.0 if first else 0.0)  # the first answer comes too late

    registry, adapter = await harness.start(script, now=now, timeout=SHORT)
    command = seal(content=True)
    with pytest.raises(OutcomeTimeoutError):
        await adapter.execute(call(command))
    current = next(moments)
    outcome = await adapter.execute(call(command))
    assert outcome.replayed  # type: ignore[union-attr]
    first, second = registry.requests
    assert first.text("requestId") == second.text("requestId") == command.request_id
    assert content(first.payload) == content(second.payload)  # README §7 content equality
    assert first.text("sentAt") != second.text("sentAt")
    assert dt.datetime.fromisoformat(second.text("sentAt")) - dt.datetime.fromisoformat(
        first.text("sentAt")) == dt.timedelta(seconds=37)
    sig = "ds:Signature/ds:SignatureValue"
    assert first.payload.findtext(sig, namespaces=NS) != second.payload.findtext(sig,
                                                                                namespaces=NS)
