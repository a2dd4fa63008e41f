"""VRS-21 (court side): transient errors carry the agency's Retry-After and a resend of the same
command repeats the same Idempotency-Key and body bytes, freshly signed; permanent problems are
rejections (our signature refused: a security rejection) and are never resent unchanged. The
adapter itself never retries: the dispatcher does, from the error class."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.errors import (
    OutcomeTimeoutError,
    OutcomeUnknownError,
    RejectedError,
    SecurityError,
    SignatureRejectedError,
    TransientError,
)
from gateway.model.types import Command
from tests.adapters.vrs import (
    Checkpoints,
    FakeRegistry,
    Reply,
    accepted_doc,
    adapter_for,
    completed_doc,
    inquiry,
    problem,
    release,
    renew,
    replace,
    seize,
    seizure_doc,
)


@pytest.fixture
async def registries() -> AsyncIterator[list[FakeRegistry]]:
    made: list[FakeRegistry] = []
    yield made
    for r in made:
        await r.close()


async def run(registries: list[FakeRegistry], replies: list[Reply], command: Command,
              **kw: object) -> tuple[FakeRegistry, BaseException | object]:
    registry = await FakeRegistry(replies).start()
    registries.append(registry)
    adapter = adapter_for(registry, **kw)  # type: ignore[arg-type]
    try:
        return registry, await adapter.execute(Checkpoints().call(command))
    except Exception as exc:
        return registry, exc
    finally:
        await adapter.aclose()


@pytest.mark.parametrize(
    ("reply", "code", "retry_after"),
    [
        (problem(409, "request-in-progress", 5), "request-in-progress", 5.0),
        (problem(429, "rate-limited", 2), "rate-limited", 2.0),
        (problem(500, "internal-error"), "internal-error", None),
        (problem(503, "service-unavailable", 30), "service-unavailable", 30.0),
        # Header only: the body member is optional for request-in-progress.
        (replace(problem(409, "request-in-progress"), headers={"Retry-After": "7"}),
         "request-in-progress", 7.0),
    ],
)
async def test_transient_problems_carry_retry_after(
    registries: list[FakeRegistry], reply: Reply, code: str, retry_after: float | None
) -> None:
    registry, err = await run(registries, [reply], seize())
    assert type(err) is TransientError
    assert err.code == code and err.retry_after == retry_after
    assert len(registry.requests) == 1  # no retry inside the adapter


@pytest.mark.parametrize(
    "command", [inquiry(), seize(), renew("SZ-1"), release("SZ-1")],
    ids=["query", "seize", "renew", "release"],
)
async def test_resend_has_same_key_and_bytes_but_a_fresh_signature(
    registries: list[FakeRegistry], command: Command
) -> None:
    success = {
        "query": Reply(202, accepted_doc()),
        "seize": Reply(201, seizure_doc()),
        "renew": Reply(200, {"seizureId": "SZ-1", "status": "ACTIVE", "rank": 1,
                             "previousSeizedUntil": "2026-06-02", "seizedUntil": "2028-06-01"}),
        "release": Reply(200, {"seizureId": "SZ-1", "status": "RELEASED",
                               "releasedAt": "2026-10-08T01:20:03Z"}),
    }
    kind = ("query" if not hasattr(command, "action")
            else {"vehicle.seize": "seize", "vehicle.renew": "renew",
                  "vehicle.release": "release"}[command.action.value])
    registry = await FakeRegistry([problem(503, "service-unavailable", 1), success[kind],
                                   Reply(200, completed_doc())]).start()
    registries.append(registry)
    adapter = adapter_for(registry)
    try:
        with pytest.raises(TransientError):
            await adapter.execute(Checkpoints().call(command))
        await adapter.execute(Checkpoints().call(command))  # the dispatcher's retry
    finally:
        await adapter.aclose()
    first, second = registry.requests[:2]
    assert (first.method, first.raw_path) == (second.method, second.raw_path)
    assert first.body == second.body  # byte-identical
    for header in ("Idempotency-Key", "Content-Digest", "Content-Type"):
        assert first.headers[header] == second.headers[header]
    assert first.headers["Idempotency-Key"] == command.request_id
    assert first.headers["Signature"] != second.headers["Signature"]
    assert first.headers["Signature-Input"] != second.headers["Signature-Input"]  # new nonce


@pytest.mark.parametrize(
    "name",
    ["signature-invalid", "key-untrusted", "signature-expired", "nonce-replayed",
     "digest-mismatch"],
)
async def test_401_is_a_security_rejection(registries: list[FakeRegistry], name: str) -> None:
    _, err = await run(registries, [problem(401, name)], seize())
    assert isinstance(err, SignatureRejectedError) and isinstance(err, SecurityError)
    assert not isinstance(err, TransientError)
    assert err.code == name


@pytest.mark.parametrize(
    ("reply", "command"),
    [
        (problem(400, "invalid-request"), seize()),
        (problem(403, "court-not-authorized"), seize()),
        (problem(404, "seizure-not-found"), renew("SZ-X")),
        (problem(404, "query-not-found"), inquiry()),
        (problem(409, "seizure-not-active"), renew("SZ-1")),
        (problem(409, "seizure-not-active"), release("SZ-1")),
        (problem(422, "idempotency-key-reuse"), seize()),
        (problem(422, "invalid-identifier"), seize()),
        (problem(422, "document-digest-mismatch"), seize()),
        (problem(422, "period-exceeds-limit"), renew("SZ-1", days=731)),
        (problem(422, "vehicle-not-found"), seize()),
        (problem(422, "subject-mismatch"), seize()),
    ],
)
async def test_permanent_problems_are_rejections_named_by_type(
    registries: list[FakeRegistry], reply: Reply, command: Command
) -> None:
    if command is not None and not hasattr(command, "action"):
        replies = [Reply(202, accepted_doc()), reply]  # the 404 comes on the poll
    else:
        replies = [reply]
    _, err = await run(registries, replies, command)
    assert type(err) is RejectedError
    assert err.code == reply.doc["type"].removeprefix("urn:vrs:problem:")


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (Reply(418, {"x": 1}), RejectedError, "http-418"),
        (Reply(404, {"x": 1}), RejectedError, "http-404"),  # not listed for createSeizure
        (Reply(200, seizure_doc()), OutcomeUnknownError, "http-200"),  # createSeizure is 201
        (Reply(302, b"", raw_body=b"", headers={"Location": "/elsewhere"}), RejectedError,
         "http-302"),
        (Reply(502, b"", raw_body=b"<html>bad gateway</html>", content_type="text/html"),
         TransientError, "http-502"),
        # Listed statuses with bodies that are not protocol responses (README §8): transient.
        (Reply(422, {"type": "urn:vrs:problem:new-thing", "title": "?", "status": 422},
               "application/problem+json"), TransientError, "invalid-response"),
        (Reply(503, b"", raw_body=b"down", content_type="text/plain"), TransientError,
         "invalid-response"),
        (Reply(422, {"type": "urn:vrs:problem:vehicle-not-found", "title": "x", "status": 422}),
         TransientError, "invalid-response"),  # a problem must be application/problem+json
        # A signed success we cannot read: the agency recorded it, so the outcome is unknown
        # and the resend with the same key fetches the replay.
        (Reply(201, {"seizureId": "SZ-1"}), OutcomeUnknownError, "invalid-response"),
        (Reply(201, b"", raw_body=b"{not json"), OutcomeUnknownError, "invalid-response"),
        (Reply(201, seizure_doc(), "text/html"), OutcomeUnknownError, "invalid-response"),
    ],
)
async def test_unexpected_statuses_and_bodies(
    registries: list[FakeRegistry], reply: Reply, error: type[Exception], code: str
) -> None:
    _, err = await run(registries, [reply], seize())
    assert type(err) is error
    assert err.code == code  # type: ignore[attr-defined]


async def test_unreadable_poll_is_transient_not_outcome_unknown(
    registries: list[FakeRegistry],
) -> None:
    _, err = await run(registries, [Reply(202, accepted_doc()), Reply(200, {"queryId": "VQ-1"})],
                       inquiry())
    assert type(err) is TransientError and err.code == "invalid-response"


async def test_slow_answer_is_an_outcome_timeout(registries: list[FakeRegistry]) -> None:
    registry, err = await run(registries, [replace(Reply(201, seizure_doc()), delay=2.0)],
                              seize(), total_timeout=0.3)
    assert isinstance(err, OutcomeTimeoutError) and isinstance(err, TimeoutError)
    assert len(registry.requests) == 1  # it was sent: only a same-key resend is safe
