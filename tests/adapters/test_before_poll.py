"""``before_poll``: a checkpoint is stored while the protocol's wait runs, and both are over
before the poll goes out (the commit must be durable first; it need not cost the call time)."""

from __future__ import annotations

import pytest

from gateway.adapters.base import AgencyCall, before_poll
from gateway.model.types import InquiryCommand
from tests.adapters import WaitAndSave


def call(probe: WaitAndSave) -> AgencyCall:
    command = InquiryCommand.__new__(InquiryCommand)  # never read by before_poll
    return AgencyCall(command=command, checkpoint=probe.checkpoint)


async def test_the_checkpoint_is_stored_during_the_wait_and_before_returning() -> None:
    probe = WaitAndSave("queryId")
    await before_poll(call(probe), {"queryId": "VQ-1"}, 3.0, probe.sleep)
    # Both ran side by side (the wait was over first), and the poll may go only now.
    assert probe.log == ["sleep 3.0", "slept", "saved VQ-1"]


async def test_no_wait_still_stores_the_checkpoint_first() -> None:
    probe = WaitAndSave("ticketId")
    probe.sleeping.set()
    await before_poll(call(probe), {"ticketId": "T-1"}, 0.0, probe.sleep)
    assert probe.log == ["saved T-1"]


async def test_nothing_to_store_only_waits() -> None:
    probe = WaitAndSave("queryId")
    await before_poll(call(probe), None, 2.0, probe.sleep)
    assert probe.log == ["sleep 2.0", "slept"]


async def test_a_failed_checkpoint_stops_the_poll() -> None:
    probe = WaitAndSave("queryId", fail=True)
    with pytest.raises(OSError, match="disk full"):
        await before_poll(call(probe), {"queryId": "VQ-1"}, 1.0, probe.sleep)
    assert probe.log == ["sleep 1.0", "slept"]
