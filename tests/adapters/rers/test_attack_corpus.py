"""Issue 5, court side: the RERS attack corpus (``tests/security/attack_corpus.py``) against the
RersAdapter's response verification (RERS-07).

Each attack is built from a real registry answer, signed with the registry key by
``FakeRegistry`` (``tests/adapters/rers``): a SealPropertyResponse to a SealProperty, a
QueryPropertiesResponse to a QueryProperties, and a permanent fault (UNIT_NOT_FOUND) to a
SealProperty, which would end the command for good if it were obeyed. The real adapter must
raise ``ResponseVerificationError`` (transient, a security event, not "outcome unknown")
naming the code and reason of the attack, and use nothing of the answer: no outcome returned,
no fault obeyed, no attacker's value in the error. The XML parser attacks are refused before
the §4 checks as "not a SOAP envelope", which the adapter reports as code ``not-soap``
(``RersAdapter._exchange``): discarded, transient and a security event all the same. They make
no network access (a canary on loopback sees no connection), read no file, and the entity
expansion costs no memory spike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from lxml import etree

from gateway.errors import RejectedError, ResponseVerificationError, SecurityError
from gateway.model.types import Command, ControlOutcome, InquiryResult
from gateway.security.certs import load_certificate, load_private_key
from tests.adapters.rers import (
    REGISTRY_CERT,
    REGISTRY_KEY,
    Captured,
    Harness,
    Reply,
    call,
    fault,
    inquiry,
    query_response,
    seal,
    seal_response,
)
from tests.adapters.rers.test_rers07_verification import _check_discarded, harness
from tests.security.attack_corpus import (
    MEMORY_LIMIT,
    RERS_CORPUS,
    RERS_EVIL,
    Attack,
    Canary,
    Material,
    foreign_ec_pair,
    memory_probe,
    passwd_markers,
    signature_math_valid,
)

__all__ = ["harness"]  # the fixture, shared with the RERS-07 tests

# answer kind -> (the registry's payload for a request, the command, the operation it answers)
ANSWERS: dict[str, tuple[Callable[[Captured], etree._Element], Callable[[], Command], str]] = {
    "seal-response": (
        lambda req: seal_response(req.text("requestId"), seal_id="SEAL-GOOD"), seal,
        "SealProperty",
    ),
    "query-response": (lambda req: query_response(req.text("requestId")), inquiry,
                       "QueryProperties"),
    "fault": (lambda req: fault("UNIT_NOT_FOUND", req.text("requestId")), seal, "SealProperty"),
}


def court_code(attack: Attack) -> str:
    """The ResponseVerificationError code: the §4 code, or ``not-soap`` for a parser attack."""
    return "not-soap" if attack.parser else attack.code


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as listening:
        yield listening


def material(canary: Canary) -> Material:
    return Material(load_private_key(REGISTRY_KEY), load_certificate(REGISTRY_CERT),
                    *foreign_ec_pair(), canary_url=canary.url)


def spoiling(answer: str, attack: Attack, canary: Canary,
             built: list[bytes]) -> Callable[[Captured], Reply]:
    """A registry script: the answer, signed by the registry now, then turned into the attack
    (each kept in ``built``)."""
    make = ANSWERS[answer][0]

    def after_signing(data: bytes) -> bytes:
        out = attack.build(data, material(canary))
        built.append(out)
        return out

    return lambda req: Reply(make(req), after_signing=after_signing)


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_control_the_untouched_answer_is_used(answer: str, harness: Harness) -> None:
    """Without an attack the same answers are used: the assertions below can fail."""
    make, command, _ = ANSWERS[answer]
    built: list[bytes] = []

    def script(req: Captured) -> Reply:
        def keep(data: bytes) -> bytes:
            built.append(data)
            return data

        return Reply(make(req), after_signing=keep)

    _, adapter = await harness.start(script)
    if answer == "fault":  # obeyed: a permanent refusal, never resent
        with pytest.raises(RejectedError) as info:
            await adapter.execute(call(command()))
        assert info.value.code == "UNIT_NOT_FOUND"
        assert not isinstance(info.value, SecurityError)
    else:
        outcome = await adapter.execute(call(command()))
        if answer == "seal-response":
            assert isinstance(outcome, ControlOutcome) and outcome.measure_id == "SEAL-GOOD"
        else:
            assert isinstance(outcome, InquiryResult)
    (data,) = built
    assert signature_math_valid("rers", data)


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("attack", RERS_CORPUS.attacks, ids=lambda a: a.id)
async def test_attacked_answer_is_discarded_and_never_used(
    attack: Attack, answer: str, canary: Canary, harness: Harness
) -> None:
    _, command, operation = ANSWERS[answer]
    built: list[bytes] = []
    registry, adapter = await harness.start(spoiling(answer, attack, canary, built))
    with pytest.raises(ResponseVerificationError) as info:
        await adapter.execute(call(command()))  # never returns an outcome, never obeys a fault
    error = info.value
    _check_discarded(error, court_code(attack))  # transient, a security event, not "unknown"
    assert re.search(attack.reason, str(error)), str(error)
    assert registry.operations == [operation]  # the adapter itself never resends
    (data,) = built
    if attack.math_valid:  # the signature itself verifies: only the profile's rules refuse it
        assert signature_math_valid("rers", data)
    assert canary.hits == []
    for marker in passwd_markers():
        assert marker.decode("utf-8", "replace") not in str(error)
    for evil in RERS_EVIL:
        assert evil not in str(error)
    # (the fake registry's own checks of what the adapter sent run when the harness closes)


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_entity_expansion_is_discarded_without_a_memory_spike(
    answer: str, canary: Canary, harness: Harness
) -> None:
    """Peak memory of the whole attempt (sign, send, registry, refuse) against MEMORY_LIMIT:
    Python allocations by tracemalloc, native ones (libxml2) by the resident peak."""
    attack = RERS_CORPUS["entity-expansion"]
    _, command, _ = ANSWERS[answer]
    built: list[bytes] = []
    _, adapter = await harness.start(spoiling(answer, attack, canary, built))

    async def attempt() -> ResponseVerificationError:
        with pytest.raises(ResponseVerificationError) as info:
            await adapter.execute(call(command()))
        return info.value

    await attempt()  # warm-up: first-use costs (connection pool, ...) are not the attack's
    with memory_probe(trace=False) as resident:
        first = await attempt()
    with memory_probe(trace=True) as traced:
        second = await attempt()
    assert first.code == second.code == "not-soap"
    assert re.search(attack.reason, str(second))
    assert len(built) == 3 and all(len(data) < 64 * 1024 for data in built)  # 3 * 10**9 once
    assert traced.traced is not None and traced.traced < MEMORY_LIMIT, traced
    assert resident.resident < MEMORY_LIMIT, resident
