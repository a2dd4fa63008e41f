"""VRS-01 (court side): paths, methods and request bodies match the agency's OpenAPI file, which
the adapter package carries unchanged; the ICD's example bodies round-trip through the codec."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.adapters.vrs import codec
from gateway.model.types import (
    Action,
    CaseContext,
    ControlCommand,
    Court,
    DocumentRef,
    Documents,
    IdType,
    InquiryCommand,
    Officer,
    Subject,
)
from tests.adapters.vrs import (
    COMPANY,
    DATA,
    OPENAPI_ORIGINAL,
    Checkpoints,
    FakeRegistry,
    Reply,
    accepted_doc,
    adapter_for,
    completed_doc,
    context,
    inquiry,
    release,
    renew,
    replace,
    seize,
    seizure_doc,
)
from tests.conftest import SPECS_BESIDE, need

EXAMPLES = DATA / "vrs"
PACKAGED = resources.files("gateway.adapters.vrs").joinpath(codec.OPENAPI_FILE)


def test_packaged_openapi_is_an_unchanged_copy() -> None:
    need(OPENAPI_ORIGINAL.exists(), f"the agencies' specification {OPENAPI_ORIGINAL}",
         provided_by=SPECS_BESIDE)
    assert PACKAGED.read_bytes() == OPENAPI_ORIGINAL.read_bytes()


# An independent reading of the contract: look the operation up by method and path in the
# OpenAPI document and validate against its declared request body schema.
_DOC: dict[str, Any] = yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))
_REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:test:vrs", Resource.from_contents(_DOC, default_specification=DRAFT202012))


def _operation(method: str, path: str) -> dict[str, Any]:
    for template, item in _DOC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[A-Za-z0-9_-]{1,64}", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            op: dict[str, Any] = item[method.lower()]
            return op
    raise AssertionError(f"{method} {path} is not in the OpenAPI file")


def _request_errors(method: str, path: str, body: bytes) -> list[str]:
    op = _operation(method, path)
    if "requestBody" not in op:
        assert body == b"", f"{method} {path} takes no body"
        return []
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    validator = Draft202012Validator({"$ref": "urn:test:vrs" + ref}, registry=_REGISTRY,
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in validator.iter_errors(json.loads(body))]


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    def script(req: Any) -> Reply:
        if req.raw_path == "/v2/vehicle-queries":
            return Reply(202, accepted_doc())
        if req.method == "GET":
            return Reply(200, completed_doc())
        if req.raw_path == "/v2/seizures":
            return Reply(201, seizure_doc())
        if req.method == "DELETE":
            return Reply(200, {"seizureId": "SZ-1", "status": "RELEASED",
                               "releasedAt": "2026-10-08T01:20:03.123Z"})
        return Reply(200, {"seizureId": "SZ-1", "status": "ACTIVE", "rank": 1,
                           "previousSeizedUntil": "2026-06-02", "seizedUntil": "2028-06-01"})

    reg = await FakeRegistry(script).start()
    yield reg
    await reg.close()


def _without_content(ctx: CaseContext, *, ruling: bool = True) -> CaseContext:
    docs = ctx.documents
    return replace(ctx, documents=Documents(
        replace(docs.assistance_notice, content=None),
        replace(docs.ruling, content=None) if ruling and docs.ruling else None))


async def test_every_request_body_the_adapter_sends_validates(registry: FakeRegistry) -> None:
    # validate_requests off: what reaches the wire is the codec's own output, unfiltered.
    adapter = adapter_for(registry, options={"validate_requests": False})
    commands = [
        inquiry(1),
        replace(inquiry(2), context=_without_content(context(2), ruling=False)),
        seize(3),
        seize(4, plate=None),
        replace(seize(5), context=_without_content(context(5))),
        renew("SZ-1", 6),
        release("SZ-1", 7),
    ]
    try:
        for command in commands:
            await adapter.execute(Checkpoints().call(command))
    finally:
        await adapter.aclose()
    sent = {(r.method, re.sub(r"/SZ-1|/VQ-1", "/{id}", r.raw_path)) for r in registry.requests}
    assert sent == {
        ("POST", "/v2/vehicle-queries"), ("GET", "/v2/vehicle-queries/{id}"),
        ("POST", "/v2/seizures"), ("POST", "/v2/seizures/{id}/renewals"),
        ("DELETE", "/v2/seizures/{id}"),
    }
    for req in registry.requests:
        assert _request_errors(req.method, req.raw_path, req.body) == [], req.raw_path
        if req.body:
            json.loads(req.body.decode("utf-8"))  # UTF-8 JSON (VRS §1)


def test_schema_violations_are_caught_before_sending() -> None:
    doc = codec.seizure_request(context(), COMPANY, "LS5A3DBE3NB12345I", None, 730)  # I: not VIN
    assert codec.schema_errors("SeizureRequest", doc)
    assert codec.schema_errors("SeizureRequest", {**doc, "vin": "LS5A3DBE3NB123456"}) == []


# --- the ICD's examples ----------------------------------------------------------------------


def _example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _ref(raw: dict[str, Any] | None) -> DocumentRef | None:
    if raw is None:
        return None
    content = base64.b64decode(raw["content"]) if "content" in raw else None
    return DocumentRef(raw["documentId"], raw["sha256"], content)


def _context(raw: dict[str, Any]) -> CaseContext:
    notice = _ref(raw["documents"]["assistanceNotice"])
    assert notice is not None
    return CaseContext(
        Court(raw["court"]["code"], raw["court"]["name"]), raw["caseNo"],
        Officer(raw["officer"]["name"], raw["officer"]["credentialNo"]),
        Documents(notice, _ref(raw["documents"].get("ruling"))),
    )


def _subject(raw: dict[str, str]) -> Subject:
    return Subject(IdType(raw["idType"]), raw["idNumber"], raw["name"])


def test_codec_reproduces_the_example_request_bodies() -> None:
    rid = "0bfa8244-bc30-5af3-b58c-cf5b8c976cfc"
    raw = _example("create-vehicle-query.request.json")
    query = InquiryCommand(rid, _context(raw), _subject(raw["subject"]))
    assert codec.query_request(query) == raw

    raw = _example("create-seizure.request.json")
    cmd = ControlCommand(rid, _context(raw), Action.SEIZE, subject=_subject(raw["subject"]),
                         vin=raw["vin"], plate=raw["plate"], days=raw["seizureDays"])
    assert cmd.subject is not None and cmd.vin is not None and cmd.days is not None
    assert codec.seizure_request(cmd.context, cmd.subject, cmd.vin, cmd.plate, cmd.days) == raw

    raw = _example("renew-seizure.request.json")
    assert codec.renewal_request(_context(raw), raw["seizureDays"]) == raw

    raw = _example("release-seizure.request.json")
    assert codec.release_request(_context(raw)) == raw


def test_example_responses_decode() -> None:
    assert codec.query_accepted(_example("create-vehicle-query.response.json")) == (
        "VQ-20240603-000057", 10)
    pending = codec.query_state(_example("get-vehicle-query.pending.response.json"), COMPANY)
    assert pending.result is None and pending.retry_after == 10
    done = codec.query_state(_example("get-vehicle-query.response.json"), COMPANY)
    assert done.result is not None and len(done.result.vehicles) == 2
    assert done.result.as_of == dt.datetime(2024, 6, 3, 3, 0, 20, tzinfo=dt.UTC)
    seized = codec.seizure_outcome(_example("create-seizure.response.json"), replayed=False)
    assert (seized.measure_id, seized.until) == ("SZ-20240603-000318", dt.date(2026, 6, 2))
    renewed = codec.renewal_outcome(_example("renew-seizure.response.json"), replayed=False)
    assert (renewed.previous_until, renewed.until) == (dt.date(2026, 6, 2), dt.date(2028, 6, 1))
    released = codec.release_outcome(_example("release-seizure.response.json"), replayed=False)
    assert released.status == "RELEASED" and released.completed_at is not None
    for name in ("problem-period-exceeds-limit.response.json",
                 "problem-rate-limited.response.json"):
        assert codec.schema_errors("Problem", _example(name)) == []


def test_request_bodies_are_deterministic_compact_utf8() -> None:
    body = codec.dumps(codec.seizure_request(context(), COMPANY, "LS5A3DBE3NB123456",
                                             "京AD12345", 730))
    assert body == codec.dumps(codec.seizure_request(context(), COMPANY, "LS5A3DBE3NB123456",
                                                     "京AD12345", 730))
    assert "京AD12345".encode() in body  # raw UTF-8, not \\u escapes
    assert body == json.dumps(json.loads(body), ensure_ascii=False,
                              separators=(",", ":")).encode()
    assert list(json.loads(body)) == ["court", "caseNo", "officer", "documents", "subject",
                                      "vin", "plate", "seizureDays"]


@pytest.mark.parametrize(
    "doc",
    [
        {"queryId": "VQ-1", "status": "COMPLETED", "subject": {}},  # schema
        {**completed_doc(), "completedAt": "2024-02-30T00:00:00Z"},  # calendar
        {**completed_doc(), "retryAfterSeconds": 3},  # COMPLETED never carries one
    ],
)
def test_invalid_query_bodies_are_not_protocol_responses(doc: dict[str, Any]) -> None:
    with pytest.raises(codec.InvalidResponse):
        codec.query_state(doc, COMPANY)


def test_duplicate_members_and_non_utf8_are_not_json() -> None:
    with pytest.raises(codec.InvalidResponse):
        codec.parse_json(b'{"status": "ACTIVE", "status": "RELEASED"}')
    with pytest.raises(codec.InvalidResponse):
        codec.parse_json('{"a": "京"}'.encode("gb18030"))
