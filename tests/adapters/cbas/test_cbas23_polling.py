"""CBAS-23 (court side): polls go out no earlier than retryAfterSeconds (of the Receipt, then of
each PENDING answer), each with a new requestId, and a REJECTED ticket is final. Long waits are
handed back to the dispatcher (ResultPendingError) with the ticket checkpointed, and an answer
that is not about our ticket, request or operation is not used."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.adapters.cbas import CbasAdapter
from gateway.errors import (
    RejectedError,
    ResponseVerificationError,
    ResultPendingError,
    SecurityError,
    TransientError,
)
from gateway.model.types import ControlOutcome
from tests.adapters.cbas import (
    Captured,
    Checkpoints,
    FakeBank,
    FakeTime,
    Reply,
    adapter_for,
    example_result,
    fetch_answer,
    freeze,
    inquiry,
    pending,
    receipt,
    rid,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NOW = dt.datetime(2025, 3, 1, 8, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
async def closing() -> AsyncIterator[list[object]]:
    things: list[object] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, CbasAdapter):
            await thing.aclose()
        else:
            assert isinstance(thing, FakeBank)
            assert thing.errors == []
            await thing.close()


async def start(closing: list[object], script: object, **kw: Any
                ) -> tuple[FakeBank, CbasAdapter]:
    bank = await FakeBank(script, clock=kw.get("now")).start()  # type: ignore[arg-type]
    adapter = adapter_for(bank, **kw)
    closing.extend([bank, adapter])
    return bank, adapter


def completed_freeze(request_id: str = rid(2), ticket: str = "TKT-1") -> Reply:
    return Reply(fetch_answer(ticket, request_id, "FreezeFunds", "COMPLETED",
                              result=example_result("freeze")))


async def test_polls_wait_for_retry_after_and_use_new_request_ids(closing: list[object]) -> None:
    time = FakeTime()
    polled_at: list[float] = []
    answers = iter([pending("TKT-1", rid(2), "FreezeFunds", 7),
                    pending("TKT-1", rid(2), "FreezeFunds", 2)])

    def script(req: Captured) -> Reply:
        if req.operation == "FreezeFunds":
            polled_at.append(time.now)
            return Reply(receipt("FreezeFunds", rid(2), "TKT-1", 5))
        polled_at.append(time.now)
        answer = next(answers, None)
        return Reply(answer) if answer is not None else completed_freeze()

    bank, adapter = await start(closing, script, time=time)
    outcome = await adapter.execute(Checkpoints().call(freeze()))
    assert isinstance(outcome, ControlOutcome)
    assert bank.operations == ["FreezeFunds"] + ["FetchResult"] * 3
    assert time.sleeps == [5.0, 7.0, 2.0]
    gaps = [b - a for a, b in itertools.pairwise(polled_at)]
    assert all(gap >= want for gap, want in zip(gaps, [5, 7, 2], strict=True))
    ids = [r.text("requestId") for r in bank.requests[1:]]
    assert len(set(ids)) == 3 and rid(2) not in ids
    assert all(UUID4.match(i) for i in ids)
    assert all(r.text("ticketId") == "TKT-1" for r in bank.requests[1:])


async def test_rejected_is_final(closing: list[object]) -> None:
    bank, adapter = await start(closing, [
        Reply(receipt("FreezeFunds", rid(2), "TKT-1", 1)),
        Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds", "REJECTED",
                           rejection=("ACCOUNT_NOT_FOUND", "No account held by the subject."))),
    ])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(freeze()))
    assert type(info.value) is RejectedError and not isinstance(info.value, SecurityError)
    assert info.value.code == "ACCOUNT_NOT_FOUND"
    assert "No account held by the subject." in str(info.value)
    assert bank.operations == ["FreezeFunds", "FetchResult"]  # no further poll


async def test_rejected_with_a_transient_looking_code_is_still_final(
    closing: list[object],
) -> None:
    _, adapter = await start(closing, [
        Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds", "REJECTED",
                           rejection=("INSUFFICIENT_FUNDS", "Nothing available."))),
    ])
    with pytest.raises(RejectedError) as info:
        await adapter.execute(Checkpoints().call(freeze(), resume={"ticketId": "TKT-1"}))
    assert info.value.code == "INSUFFICIENT_FUNDS"


async def test_a_long_wait_is_handed_back_with_the_ticket_checkpointed(
    closing: list[object],
) -> None:
    cps = Checkpoints()
    wall = [NOW]
    _, adapter = await start(closing, [
        Reply(receipt("FreezeFunds", rid(2), "TKT-1", 1)),
        Reply(pending("TKT-1", rid(2), "FreezeFunds", 45)),
    ], now=lambda: wall[0])
    with pytest.raises(ResultPendingError) as info:
        await adapter.execute(cps.call(freeze()))
    assert info.value.retry_after == 45.0
    assert cps.saved[-1]["ticketId"] == "TKT-1"
    assert cps.saved[-1]["nextPollAt"] == "2025-03-01T08:00:45Z"


async def test_resume_waits_out_the_rest_of_retry_after(closing: list[object]) -> None:
    """The dispatcher may park an item for less than asked (retry_after_cap): the adapter still
    polls no earlier than the bank allowed."""
    time = FakeTime()
    wall = [NOW]
    state = {"ticketId": "TKT-1", "pollAfter": 5, "nextPollAt": "2025-03-01T08:00:12Z"}
    bank, adapter = await start(closing, [completed_freeze()], time=time, now=lambda: wall[0])
    await adapter.execute(Checkpoints().call(freeze(), resume=state))
    assert time.sleeps == [12.0]
    assert bank.operations == ["FetchResult"]
    # Past nextPollAt (or none): poll at once.
    bank2, adapter2 = await start(closing, [completed_freeze()], time=time, now=lambda: wall[0])
    wall[0] = NOW + dt.timedelta(seconds=60)
    await adapter2.execute(Checkpoints().call(freeze(), resume=state))
    assert time.sleeps == [12.0]
    assert bank2.operations == ["FetchResult"]


async def test_a_wait_beyond_the_resumed_limit_is_handed_back_again(
    closing: list[object],
) -> None:
    cps = Checkpoints()
    state = {"ticketId": "TKT-1", "nextPollAt": "2025-03-01T08:05:00Z"}
    bank, adapter = await start(closing, [], now=lambda: NOW)
    with pytest.raises(ResultPendingError) as info:
        await adapter.execute(cps.call(freeze(), resume=state))
    assert info.value.retry_after == 300.0
    assert bank.requests == []
    assert cps.saved[-1]["nextPollAt"] == "2025-03-01T08:05:00Z"


async def test_the_poll_deadline_hands_back(closing: list[object]) -> None:
    time = FakeTime()
    cps = Checkpoints()
    bank, adapter = await start(closing, lambda req: Reply(
        receipt("FreezeFunds", rid(2), "TKT-1", 4) if req.operation == "FreezeFunds"
        else pending("TKT-1", rid(2), "FreezeFunds", 4)
    ), time=time, options={"poll_deadline_seconds": 10})
    with pytest.raises(ResultPendingError) as info:
        await adapter.execute(cps.call(freeze()))
    assert time.sleeps == [4.0, 4.0]  # a third wait would end past the 10 s deadline
    assert info.value.retry_after == 4.0
    assert bank.operations == ["FreezeFunds", "FetchResult", "FetchResult"]
    assert cps.saved[-1]["ticketId"] == "TKT-1"


WRONG = [
    ("other-ticket", completed_freeze(ticket="TKT-2")),
    ("other-request", completed_freeze(request_id=rid(99))),
    ("other-operation", Reply(fetch_answer("TKT-1", rid(2), "UnfreezeFunds", "COMPLETED",
                                           result=example_result("unfreeze")))),
    ("wrong-result-element", Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds", "COMPLETED",
                                                result=example_result("renewal")))),
    ("pending-with-result", Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds", "PENDING",
                                               retry=3, result=example_result("freeze")))),
    ("completed-without-result", Reply(fetch_answer("TKT-1", rid(2), "FreezeFunds",
                                                    "COMPLETED"))),
]


@pytest.mark.parametrize("reply", [r for _, r in WRONG], ids=[n for n, _ in WRONG])
async def test_an_answer_about_something_else_is_not_used(reply: Reply,
                                                           closing: list[object]) -> None:
    _, adapter = await start(closing, [reply])
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(freeze(), resume={"ticketId": "TKT-1"}))
    assert not isinstance(info.value, ResponseVerificationError | ResultPendingError)
    assert info.value.code == "invalid-response"


async def test_a_freeze_result_for_another_account_is_not_used(closing: list[object]) -> None:
    _, adapter = await start(closing, [completed_freeze()])
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(freeze(account_no="6222020200998877665"),
                                                 resume={"ticketId": "TKT-1"}))
    assert info.value.code == "invalid-response"


async def test_inquiry_result_for_another_subject_is_not_used(closing: list[object]) -> None:
    from tests.adapters.cbas import COMPANY

    _, adapter = await start(closing, [Reply(fetch_answer(
        "TKT-1", rid(1), "InquireAccounts", "COMPLETED", result=example_result("accounts")))])
    with pytest.raises(TransientError) as info:
        await adapter.execute(Checkpoints().call(inquiry(subject=COMPANY),
                                                 resume={"ticketId": "TKT-1"}))
    assert info.value.code == "invalid-response"
