"""``before_poll``: a checkpoint is stored while the protocol's wait runs, and both are over
before the poll goes out (the commit must be durable first; it need not cost the call time).
The wait runs from when the agency's answer was received, and never ends early."""

from __future__ import annotations

import pytest

from gateway.adapters.base import AgencyCall, before_poll
from gateway.model.types import InquiryCommand
from tests.adapters import WaitAndSave


def call(probe: WaitAndSave) -> AgencyCall:
    command = InquiryCommand.__new__(InquiryCommand)  # never read by before_poll
    return AgencyCall(command=command, checkpoint=probe.checkpoint)


async def wait(probe: WaitAndSave, save: dict[str, str] | None, seconds: float,
               since: float | None = None) -> None:
    await before_poll(call(probe), save, seconds, since=probe.now if since is None else since,
                      clock=probe.clock, sleep=probe.sleep)


async def test_the_checkpoint_is_stored_during_the_wait_and_before_returning() -> None:
    probe = WaitAndSave("queryId")
    await wait(probe, {"queryId": "VQ-1"}, 3.0)
    # Both ran side by side (the wait was over first), and the poll may go only now.
    assert probe.log == ["sleep 3", "slept", "saved VQ-1"]


async def test_the_checkpoint_is_needed_only_by_the_poll() -> None:
    """The store may hold it back until shortly before the poll and commit it with other
    writes: it is told how long it has, counted from the answer, not from now."""
    probe = WaitAndSave("queryId")
    received = probe.now
    probe.now += 0.25  # verifying the answer took a quarter of a second
    await wait(probe, {"queryId": "VQ-1"}, 2.0, since=received)
    assert probe.within == [1.75]


async def test_no_wait_still_stores_the_checkpoint_first() -> None:
    probe = WaitAndSave("ticketId")
    probe.sleeping.set()
    await wait(probe, {"ticketId": "T-1"}, 0.0)
    assert probe.log == ["saved T-1"]
    assert probe.within == [0.0]


async def test_nothing_to_store_only_waits() -> None:
    probe = WaitAndSave("queryId")
    await wait(probe, None, 2.0)
    assert probe.log == ["sleep 2", "slept"]


async def test_a_failed_checkpoint_stops_the_poll() -> None:
    probe = WaitAndSave("queryId", fail=True)
    with pytest.raises(OSError, match="disk full"):
        await wait(probe, {"queryId": "VQ-1"}, 1.0)
    assert probe.log == ["sleep 1", "slept"]


async def test_the_wait_runs_from_the_answer_not_from_now() -> None:
    """Verifying and decoding the answer took 0.25 s of the agency's 2 s: 1.75 s are left."""
    probe = WaitAndSave("queryId")
    received = probe.now
    probe.now += 0.25
    await wait(probe, None, 2.0, since=received)
    assert probe.log == ["sleep 1.75", "slept"]
    assert probe.now == received + 2.0


async def test_a_wait_already_over_does_not_sleep() -> None:
    probe = WaitAndSave("queryId")
    received = probe.now
    probe.now += 1.5
    await wait(probe, None, 1.0, since=received)
    assert probe.log == []


async def test_a_timer_that_fires_early_is_slept_again() -> None:
    """uvloop's timers may fire a millisecond early; the agency said "no earlier than"."""
    probe = WaitAndSave("queryId", early=0.002)
    received = probe.now
    await wait(probe, None, 1.0, since=received)
    assert probe.now >= received + 1.0
    assert probe.log[:2] == ["sleep 1", "slept"] and len(probe.log) > 2
