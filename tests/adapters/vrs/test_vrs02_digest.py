"""VRS-02 (court side): every request with a body carries one correct sha-256 Content-Digest
over the exact bytes sent; GETs carry none. (Response digests are checked under VRS-08.)"""

from __future__ import annotations

import base64
import hashlib

from http_sfv import Dictionary

from tests.adapters.vrs import (
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


async def test_content_digest_on_every_request_with_a_body() -> None:
    registry = await FakeRegistry([
        Reply(202, accepted_doc()), Reply(200, completed_doc()), Reply(201, seizure_doc()),
        Reply(200, {"seizureId": "SZ-1", "status": "ACTIVE", "rank": 1,
                    "previousSeizedUntil": "2026-06-02", "seizedUntil": "2028-06-01"}),
        Reply(200, {"seizureId": "SZ-1", "status": "RELEASED",
                    "releasedAt": "2026-10-08T01:20:03Z"}),
    ]).start()
    adapter = adapter_for(registry)
    try:
        for command in (inquiry(), seize(), renew("SZ-1"), release("SZ-1")):
            await adapter.execute(Checkpoints().call(command))
    finally:
        await adapter.aclose()
        await registry.close()
    assert [r.method for r in registry.requests] == ["POST", "GET", "POST", "POST", "DELETE"]
    for req in registry.requests:
        values = req.headers.getall("Content-Digest", [])
        if req.method == "GET":
            assert values == [] and req.body == b""
            continue
        assert len(values) == 1
        parsed = Dictionary()
        parsed.parse(values[0].encode("ascii"))
        assert list(parsed) == ["sha-256"]  # exactly one member
        assert parsed["sha-256"].value == hashlib.sha256(req.body).digest()
        expected = base64.b64encode(hashlib.sha256(req.body).digest()).decode()
        assert values[0] == f"sha-256=:{expected}:"
        assert req.headers["Content-Length"] == str(len(req.body))
        assert "Content-Encoding" not in req.headers  # VRS §1
