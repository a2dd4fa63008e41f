"""Issue 4, court side: the attack corpus (``tests/security/attack_corpus.py``) against the
CbasAdapter's response verification (CBAS-07).

Each attack is built from a real bank answer, signed with the bank key by ``FakeBank`` (a tiny
aiohttp server on loopback): a Receipt for a FreezeFunds, and a COMPLETED FetchResult answer for
the same command. The real adapter must raise ``ResponseVerificationError`` (transient, a
security event) naming the code and reason of the attack, and use nothing of the answer: no
checkpoint of the Receipt's ticket, no outcome returned. The XML parser attacks are refused
before the WS-Security checks as "not a SOAP envelope", which the adapter documents as code
``not-soap`` (``CbasAdapter._exchange``): discarded, transient and a security event all the same.
They make no network access (a canary on loopback sees no connection), read no file, and the
entity expansion costs no memory spike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lxml import etree

from gateway.errors import ResponseVerificationError, SecurityError, TransientError
from gateway.security.certs import load_certificate, load_private_key
from tests.adapters.cbas import (
    BANK_CERT,
    BANK_KEY,
    Checkpoints,
    Reply,
    example_result,
    fetch_answer,
    freeze,
    receipt,
    rid,
)
from tests.adapters.cbas.test_cbas07_verification import closing, start
from tests.security.attack_corpus import (
    CBAS_CORPUS,
    MEMORY_LIMIT,
    Attack,
    Canary,
    Material,
    foreign_pair,
    memory_probe,
    passwd_markers,
    signature_math_valid,
)

__all__ = ["closing"]  # the fixture, shared with the CBAS-07 tests

# answer kind -> (the bank's payload, the AgencyCall resume state, the operation polled)
ANSWERS: dict[str, tuple[Callable[[], etree._Element], dict[str, Any], str]] = {
    "receipt": (lambda: receipt("FreezeFunds", rid(2)), {}, "FreezeFunds"),
    "fetch-result": (
        lambda: fetch_answer("TKT-1", rid(2), "FreezeFunds", "COMPLETED",
                             result=example_result("freeze")),
        {"ticketId": "TKT-1"},
        "FetchResult",
    ),
}


def court_code(attack: Attack) -> str:
    """The ResponseVerificationError code: the §4 code, or ``not-soap`` for a parser attack."""
    return "not-soap" if attack.parser else attack.code


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listening:
        yield listening


def material(canary: Canary) -> Material:
    return Material(load_private_key(BANK_KEY), load_certificate(BANK_CERT), *foreign_pair(),
                    canary_url=canary.url)


def spoiled(answer: str, attack: Attack, canary: Canary, built: list[bytes]) -> Reply:
    """The answer, signed by the bank now, then turned into the attack (kept in ``built``)."""

    def after_signing(data: bytes) -> bytes:
        out = attack.build(data, material(canary))
        built.append(out)
        return out

    return Reply(ANSWERS[answer][0](), after_signing=after_signing)


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_control_the_untouched_answer_is_used(answer: str, closing: list[object]) -> None:
    """Without an attack the same answers go through: the assertions below can fail."""
    make, resume, _ = ANSWERS[answer]
    cps = Checkpoints()
    completed = fetch_answer("TKT-1", rid(2), "FreezeFunds", "COMPLETED",
                             result=example_result("freeze"))
    replies = [Reply(make())] + ([Reply(completed)] if answer == "receipt" else [])
    bank, adapter = await start(closing, replies)
    outcome = await adapter.execute(cps.call(freeze(), resume=resume))
    assert outcome is not None and bank.errors == []
    if answer == "receipt":
        assert cps.saved and cps.saved[0]["ticketId"] == "TKT-1"


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("attack", CBAS_CORPUS.attacks, ids=lambda a: a.id)
async def test_attacked_answer_is_discarded_and_never_used(
    attack: Attack, answer: str, canary: Canary, closing: list[object]
) -> None:
    _, resume, operation = ANSWERS[answer]
    built: list[bytes] = []
    bank, adapter = await start(closing, [spoiled(answer, attack, canary, built)])
    cps = Checkpoints()
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(cps.call(freeze(), resume=resume))  # never returns an outcome
    error = info.value
    assert error.code == court_code(attack)
    assert isinstance(error, TransientError) and isinstance(error, SecurityError)
    assert re.search(attack.reason, str(error)), str(error)
    assert cps.saved == []  # the ticket of an attacked Receipt is never checkpointed
    assert bank.operations == [operation] and bank.errors == []
    (data,) = built
    if attack.math_valid:  # the signature itself verifies: only the profile's rules refuse it
        assert signature_math_valid("cbas", data)
    assert canary.hits == []
    for marker in passwd_markers():
        assert marker.decode("utf-8", "replace") not in str(error)


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_entity_expansion_is_discarded_without_a_memory_spike(
    answer: str, canary: Canary, closing: list[object]
) -> None:
    """Peak memory of the whole attempt (sign, send, bank, refuse) against MEMORY_LIMIT: Python
    allocations by tracemalloc, native ones (libxml2) by the resident peak."""
    attack = CBAS_CORPUS["entity-expansion"]
    _, resume, _ = ANSWERS[answer]
    built: list[bytes] = []
    bank, adapter = await start(closing, [spoiled(answer, attack, canary, built)
                                          for _ in range(3)])
    cps = Checkpoints()

    async def attempt() -> ResponseVerificationError:
        with pytest.raises(ResponseVerificationError) as info:
            await adapter.execute(cps.call(freeze(), resume=resume))
        return info.value

    await attempt()  # warm-up: first-use costs (connection pool, ...) are not the attack's
    with memory_probe(trace=False) as resident:
        first = await attempt()
    with memory_probe(trace=True) as traced:
        second = await attempt()
    assert first.code == second.code == "not-soap"
    assert re.search(attack.reason, str(second))
    assert all(len(data) < 64 * 1024 for data in built)  # 3 * 10**9 characters once expanded
    assert traced.traced is not None and traced.traced < MEMORY_LIMIT, traced
    assert resident.resident < MEMORY_LIMIT, resident
    assert cps.saved == [] and bank.errors == []
