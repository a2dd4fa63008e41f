"""The adapter seam: one async entry point from a canonical command to a canonical outcome.

An adapter knows one agency protocol and nothing else: retries, rate limits, circuit breakers,
persistence and metrics wrap it from the dispatcher. Third-party adapters plug in through the
``gateway.adapters`` entry-point group, exactly as the in-tree ones do (docs/adapters.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from gateway.model.types import Action, AgencyKind, Command, Outcome


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do: the agency kind it serves, inquiry, and which control actions."""

    kind: AgencyKind
    inquiry: bool = True
    actions: frozenset[Action] = frozenset()

    def supports(self, command: Command) -> bool:
        action = getattr(command, "action", None)
        return self.inquiry if action is None else action in self.actions


class Checkpoint(Protocol):
    """Stores an adapter's state for its work item durably; returns once it is.

    ``within``: the state is needed durable only that many seconds from now (before a poll
    the agency made us wait for), so the store may hold it back that long and write it with
    other changes in one commit. ``None``: as soon as it can.
    """

    def __call__(self, state: Mapping[str, Any], /, *,
                 within: float | None = None) -> Awaitable[None]: ...


async def _no_checkpoint(_state: Mapping[str, Any], /, *, within: float | None = None) -> None:
    return None


async def before_poll(
    call: AgencyCall,
    save: Mapping[str, Any] | None,
    wait: float,
    *,
    since: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Get ready for the next poll: store ``save`` (when given) durably and wait out the
    ``wait`` seconds the agency asked for, side by side. Both are over before the poll goes out,
    so a crash after it still finds the checkpoint, and the commit costs the call no time of
    its own: it runs while the protocol makes us wait anyway.

    The wait runs from ``since`` (on ``clock``): when the answer asking for it was received
    (``RestResponse.received``), so verifying and decoding that answer happen during the wait
    instead of before it. It ends no earlier than ``since + wait``, whatever the event loop's
    timers do (uvloop's may fire a millisecond early): the agency said not earlier.
    """
    ready_at = since + wait
    if save is None:
        await _sleep_until(ready_at, clock, sleep)
        return
    # The checkpoint in a task of its own, the wait in this one: when the wait ends, this call
    # goes on at once instead of a turn or two of the loop later (as through asyncio.gather).
    # It is needed only by the poll, so the store may hold it until then and commit it with
    # other writes instead of in a transaction of its own.
    saving = asyncio.ensure_future(call.checkpoint(save, within=max(0.0, ready_at - clock())))
    try:
        await _sleep_until(ready_at, clock, sleep)
    except BaseException:
        saving.cancel()
        if saving.done() and not saving.cancelled():
            saving.exception()  # retrieved: what we raise is the wait's
        raise
    await saving


# The shortest sleep after a wake-up before the deadline. The adapters sleep with
# ``gateway.protocols.timers.sleep``, which does not wake early; a ``sleep`` passed in may be the
# loop's own (uvloop's timers count whole milliseconds of a clock read once per turn of the loop,
# and end up to ~1.5 ms early), and sleeping the exact remainder again (often under a
# millisecond, which uvloop rounds to "now") would spin the loop until the deadline instead.
_RESLEEP = 0.001


async def _sleep_until(
    ready_at: float, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> None:
    while (left := ready_at - clock()) > 0:
        await sleep(max(left, _RESLEEP))


@dataclass(frozen=True, slots=True)
class AgencyCall:
    """One attempt at a command.

    ``resume`` is the state the adapter last checkpointed for this command (for example a query
    or ticket id), so a poll resumes after a restart instead of starting again. ``checkpoint``
    stores new state durably before the adapter goes on.
    """

    command: Command
    attempt: int = 1
    resume: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: Checkpoint = _no_checkpoint


@runtime_checkable
class Adapter(Protocol):
    """What every agency adapter is.

    ``execute`` returns a canonical outcome or raises one of ``gateway.errors``:
    ``TransientError`` (with ``retry_after``), ``OutcomeUnknownError``, ``RejectedError``,
    ``ResponseVerificationError`` or ``SignatureRejectedError``. It never retries by itself.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    async def execute(self, call: AgencyCall) -> Outcome: ...

    async def aclose(self) -> None: ...
