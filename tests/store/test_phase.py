"""The detailed phase callers and operators see, derived from the stored state and last error."""

from __future__ import annotations

import pytest

from gateway.store.base import WorkState, phase


@pytest.mark.parametrize(("state", "error_class", "expected"), [
    (WorkState.ACCEPTED, None, "accepted"),
    (WorkState.IN_FLIGHT, None, "in_flight"),
    (WorkState.WAITING, "ResultPendingError", "waiting_for_result"),
    (WorkState.WAITING, "TransientError", "waiting_for_retry"),
    (WorkState.WAITING, "OutcomeTimeoutError", "waiting_for_retry"),
    (WorkState.DONE, None, "done"),
    (WorkState.FAILED, "RejectedError", "failed"),
    (WorkState.FAILED, "SignatureRejectedError", "failed"),
    (WorkState.FAILED, "TransientError", "dead"),
    (WorkState.FAILED, "DeadlineExceeded", "dead"),
])
def test_phase(state: WorkState, error_class: str | None, expected: str) -> None:
    error = {"class": error_class} if error_class else None
    assert phase(state, error) == expected
