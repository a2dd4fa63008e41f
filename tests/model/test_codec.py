"""Caller JSON ⇄ canonical dataclasses: every rule, every pointer, and the round trip."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import random
from decimal import Decimal
from typing import Any

import pytest

from gateway.errors import FieldError, ValidationError
from gateway.model import (
    Account,
    Action,
    AgencyKind,
    Authority,
    BatchHeader,
    ControlCommand,
    ControlOutcome,
    ControlRequest,
    Court,
    DocumentRef,
    Encumbrance,
    IdType,
    InquiryCommand,
    InquiryItem,
    InquiryResult,
    Money,
    Officer,
    Subject,
    Vehicle,
    canonical_json,
    check_character_resident,
    control_command_from_json,
    inquiry_command_from_json,
    json_pointer,
    parse_batch_header,
    parse_context,
    parse_control_request,
    parse_inquiry_item,
    parse_subject,
    to_json,
)

# Copied from agency-specs/examples/vrs/create-seizure.request.json (the tests never read
# the shared folder): content hashes to sha256 in both documents.
NOTICE: dict[str, str] = {
    "documentId": "NOTICE-2024-110105-001234-22",
    "sha256": "b95f9cbe552d235d0addbbd5012e54c258ece482c9adcfce7de9e623b3aa71ee",
    "content": "JVBERi0xLjQKJSBURVNUIERPQ1VNRU5UIC0gYXNzaXN0YW5jZSBub3RpY2UgKDIwMjQpIGNh"
    "c2UgMTIzNAoxIDAg"
    "b2JqIDw8IC9UeXBlIC9DYXRhbG9nIC9QYWdlcyAyIDAgUiA+PiBlbmRvYmoKMiAwIG9iaiA8PCAvVHlwZSAvUGFnZXMg"
    "L0tpZHMgW10gL0NvdW50IDAgPj4gZW5kb2JqCnRyYWlsZXIgPDwgL1Jvb3QgMSAwIFIgPj4KJSVFT0YK",
}
RULING: dict[str, str] = {
    "documentId": "(2024)京0105执1234号之一",
    "sha256": "c6559121f11a2aef17aebba34b725b46765745543a7df875523a1047f5ccb36e",
    "content": "JVBERi0xLjQKJSBURVNUIERPQ1VNRU5UIC0gcnVsaW5nICgyMDI0KSBjYXNlIDEyMzQKMSAw"
    "IG9iaiA8PCAvVHlw"
    "ZSAvQ2F0YWxvZyAvUGFnZXMgMiAwIFIgPj4gZW5kb2JqCjIgMCBvYmogPDwgL1R5cGUgL1BhZ2VzIC9LaWRzIFtdIC9D"
    "b3VudCAwID4+IGVuZG9iagp0cmFpbGVyIDw8IC9Sb290IDEgMCBSID4+CiUlRU9GCg==",
}
COURT = {"code": "110105", "name": "示例区人民法院"}
CASE_NO = "(2024)京0105执1234号"
OFFICER = {"name": "王明", "credentialNo": "J110105000123"}
COMPANY = {"idType": "USCC", "idNumber": "91110105MA01C2XK5L", "name": "示例贸易有限公司"}
PERSON = {"idType": "RESIDENT_ID", "idNumber": "110105199003071239", "name": "张三"}
REQUEST_ID = "0bfa8244-bc30-5af3-b58c-cf5b8c976cfc"


def context(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "court": dict(COURT),
        "caseNo": CASE_NO,
        "officer": dict(OFFICER),
        "documents": {"assistanceNotice": dict(NOTICE), "ruling": dict(RULING)},
    }
    d.update(overrides)
    return d


# One valid request per action: the action fields beside the context.
ACTION_FIELDS: dict[Action, dict[str, Any]] = {
    Action.FREEZE: {
        "subject": PERSON, "accountNo": "6222020200112233445",
        "amount": {"value": "100000.00", "currency": "CNY"}, "days": 365,
    },
    Action.UNFREEZE: {"freezeId": "FRZ-2024-0001"},
    Action.RENEW_FREEZE: {"freezeId": "FRZ-2024-0001", "days": 365},
    Action.DEDUCT: {
        "subject": PERSON, "accountNo": "6222020200112233445", "amount": {"value": "30000.00"},
        "payeeAccount": "110060149018000123456", "freezeId": "FRZ-2024-0001",
    },
    Action.SEAL: {"subject": PERSON, "unitNo": "110105003002GB00012F00010023", "days": 1095},
    Action.PRE_SEAL: {"subject": PERSON, "unitNo": "110105003002GB00012F00010023", "days": 30},
    Action.RELEASE_SEAL: {"sealId": "SEAL_77"},
    Action.RENEW_SEAL: {"sealId": "SEAL_77", "days": 1095},
    Action.SEIZE: {
        "subject": COMPANY, "vin": "LS5A3DBE3NB123456", "plate": "京AD12345", "days": 730,
    },
    Action.RELEASE_SEIZURE: {"seizureId": "SZ-2024-000123"},
    Action.RENEW_SEIZURE: {"seizureId": "SZ-2024-000123", "days": 730},
}  # fmt: skip


def control(action: Action = Action.SEIZE, /, **overrides: Any) -> dict[str, Any]:
    d = {"requestId": REQUEST_ID, "agency": "vrs", "action": action.value, **context()}
    d.update(copy.deepcopy(ACTION_FIELDS[action]))
    d.update(overrides)
    return d


def item(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "ref": "row-17",
        "caseNo": CASE_NO,
        "documents": {"assistanceNotice": dict(NOTICE)},
        "subject": dict(PERSON),
    }
    d.update(overrides)
    return d


def pointers(errors: list[FieldError]) -> list[str]:
    return [e.pointer for e in errors]


def only_error(errors: list[FieldError]) -> FieldError:
    assert len(errors) == 1, errors
    return errors[0]


# --- pointers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "tokens", "pointer"),
    [
        ("", ("items", 17, "subject"), "/items/17/subject"),
        ("/items/3", ("a/b", "m~n"), "/items/3/a~1b/m~0n"),
        ("", (), ""),
        # one token, the common case with a path of its own
        ("/items/3", ("subject",), "/items/3/subject"),
        ("", (17,), "/17"),
        ("/items/3", ("a/b",), "/items/3/a~1b"),
        ("/x", ("m~n",), "/x/m~0n"),
    ],
)
def test_json_pointer(base: str, tokens: tuple[str | int, ...], pointer: str) -> None:
    assert json_pointer(base, *tokens) == pointer


# --- subjects ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (COMPANY, Subject(IdType.USCC, "91110105MA01C2XK5L", "示例贸易有限公司")),
        (PERSON, Subject(IdType.RESIDENT_ID, "110105199003071239", "张三")),
        (
            {"idType": "RESIDENT_ID", "idNumber": "11010519491231002X", "name": "李四"},
            Subject(IdType.RESIDENT_ID, "11010519491231002X", "李四"),
        ),
        (
            {"idType": "USCC", "idNumber": "91350100M000100Y43", "name": "某公司"},
            Subject(IdType.USCC, "91350100M000100Y43", "某公司"),
        ),
    ],
)
def test_parse_subject(subject: dict[str, Any], expected: Subject) -> None:
    assert parse_subject(subject, "/subject") == (expected, [])


@pytest.mark.parametrize(
    ("subject", "pointer", "fragment"),
    [
        ({**PERSON, "idNumber": "110105194912310021"}, "/s/idNumber", "should be 'X'"),
        ({**PERSON, "idNumber": "11010519491231002x"}, "/s/idNumber", "GB 11643"),
        ({**COMPANY, "idNumber": "91350100M000100Y44"}, "/s/idNumber", "should be '3'"),
        ({**COMPANY, "idNumber": "91350100M000I00Y43"}, "/s/idNumber", "GB 32100"),
        # a valid USCC is no resident id, and the other way round
        ({**PERSON, "idNumber": "91110105MA01C2XK5L"}, "/s/idNumber", "GB 11643"),
        ({**COMPANY, "idNumber": "11010519491231002X"}, "/s/idNumber", "check character"),
        ({**PERSON, "idType": "PASSPORT"}, "/s/idType", "RESIDENT_ID or USCC"),
        ({**PERSON, "idNumber": 110105199003071239}, "/s/idNumber", "string"),
        ({**PERSON, "name": ""}, "/s/name", "1 to 100"),
        ({**PERSON, "name": "张" * 101}, "/s/name", "1 to 100"),
        ({**PERSON, "name": None}, "/s/name", "not null"),
        ({"idType": "USCC", "idNumber": "91110105MA01C2XK5L"}, "/s/name", "required"),
        ({**PERSON, "nickname": "三"}, "/s/nickname", "unknown member"),
        (["not", "an", "object"], "/s", "object"),
    ],
)
def test_parse_subject_errors(subject: Any, pointer: str, fragment: str) -> None:
    value, errors = parse_subject(subject, "/s")
    assert value is None
    error = only_error(errors)
    assert error.pointer == pointer
    assert fragment in error.message


def test_synthetic_resident_ids_parse() -> None:
    first17 = "44030619800101123"
    subject = {"idType": "RESIDENT_ID", "idNumber": first17 + check_character_resident(first17),
               "name": "测试"}  # fmt: skip
    assert parse_subject(subject)[0] is not None


# --- contexts ----------------------------------------------------------------------------


def test_parse_context_example() -> None:
    ctx, errors = parse_context(context(), control=True)
    assert errors == []
    assert ctx is not None
    assert ctx.court == Court("110105", "示例区人民法院")
    assert ctx.case_no == CASE_NO
    assert ctx.officer == Officer("王明", "J110105000123")
    notice = ctx.documents.assistance_notice
    assert notice.content is not None
    assert hashlib.sha256(notice.content).hexdigest() == NOTICE["sha256"]
    assert ctx.documents.ruling is not None and ctx.documents.ruling.content is not None


def test_parse_context_inquiry_needs_no_ruling_control_does() -> None:
    docs = {"documents": {"assistanceNotice": dict(NOTICE)}}
    ctx, errors = parse_context(context(**docs), control=False)
    assert errors == [] and ctx is not None and ctx.documents.ruling is None
    ctx, errors = parse_context(context(**docs), "/req", control=True)
    assert ctx is None
    assert errors == [FieldError("/req/documents/ruling", "is required")]


def test_parse_context_document_without_content() -> None:
    notice = {k: v for k, v in NOTICE.items() if k != "content"}
    ctx, errors = parse_context(context(documents={"assistanceNotice": notice}), control=False)
    assert errors == [] and ctx is not None
    assert ctx.documents.assistance_notice == DocumentRef(NOTICE["documentId"], NOTICE["sha256"])


@pytest.mark.parametrize(
    "case_no", ["(2024)京0105执1234号", "（2024）京0105执1234号", "(2024)京0105执恢7号"]
)
def test_parse_context_case_numbers(case_no: str) -> None:
    ctx, errors = parse_context(context(caseNo=case_no), control=True)
    assert errors == [] and ctx is not None and ctx.case_no == case_no  # kept as received


def _oversize_document() -> dict[str, str]:
    data = b"%" * (5 * 1024 * 1024 + 1)
    return {"documentId": "BIG", "sha256": hashlib.sha256(data).hexdigest(),
            "content": base64.b64encode(data).decode()}  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "pointer", "fragment"),
    [
        ({"caseNo": "(2024）京0105执1234号"}, "/caseNo", "enforcement case number"),
        ({"caseNo": "(2024)京0105民1234号"}, "/caseNo", "enforcement case number"),
        ({"caseNo": "(2024)京0106执1234号"}, "/caseNo", "does not match court 110105"),
        ({"caseNo": "(2024)京01执1234号"}, "/caseNo", "designator is 京0105"),
        ({"court": {"code": "110001", "name": "X"}}, "/court/code", "court code"),
        ({"court": {"code": "990105", "name": "X"}}, "/court/code", "court code"),
        ({"court": {"code": "110105"}}, "/court/name", "required"),
        ({"court": "110105"}, "/court", "object"),
        ({"officer": {**OFFICER, "credentialNo": "J 1"}}, "/officer/credentialNo", "1 to 32"),
        ({"officer": {**OFFICER, "credentialNo": "J" * 33}}, "/officer/credentialNo", "1 to 32"),
        ({"officer": {"name": "王明"}}, "/officer/credentialNo", "required"),
        ({"documents": {"ruling": RULING}}, "/documents/assistanceNotice", "required"),
        (
            {"documents": {"assistanceNotice": {**NOTICE, "sha256": RULING["sha256"]},
                           "ruling": RULING}},
            "/documents/assistanceNotice/content", "does not match sha256",
        ),
        (
            {"documents": {"assistanceNotice": NOTICE,
                           "ruling": {**RULING, "content": NOTICE["content"]}}},
            "/documents/ruling/content", "does not match sha256",
        ),
        (
            {"documents": {"assistanceNotice": {**NOTICE, "content": "QQ"}, "ruling": RULING}},
            "/documents/assistanceNotice/content", "base64",
        ),
        (
            {"documents": {"assistanceNotice": {**NOTICE, "content": NOTICE["content"][:76] + "\n"
                                                + NOTICE["content"][76:]}, "ruling": RULING}},
            "/documents/assistanceNotice/content", "base64",
        ),
        (
            {"documents": {"assistanceNotice": _oversize_document(), "ruling": RULING}},
            "/documents/assistanceNotice/content", "exceeds 5242880 bytes",
        ),
        (
            {"documents": {"assistanceNotice": {**NOTICE, "sha256": NOTICE["sha256"].upper()},
                           "ruling": RULING}},
            "/documents/assistanceNotice/sha256", "lowercase hex",
        ),
        (
            {"documents": {"assistanceNotice": {**NOTICE, "documentId": "D" * 129},
                           "ruling": RULING}},
            "/documents/assistanceNotice/documentId", "1 to 128",
        ),
        (
            {"documents": {"assistanceNotice": {**NOTICE, "title": "x"}, "ruling": RULING}},
            "/documents/assistanceNotice/title", "unknown member 'title'",
        ),
        ({"documents": {"assistanceNotice": NOTICE, "ruling": RULING, "order": NOTICE}},
         "/documents/order", "unknown member"),
        ({"subject": PERSON}, "/subject", "unknown member 'subject'"),
    ],
)  # fmt: skip
def test_parse_context_errors(overrides: dict[str, Any], pointer: str, fragment: str) -> None:
    ctx, errors = parse_context(context(**overrides), control=True)
    assert ctx is None
    error = only_error(errors)
    assert error.pointer == pointer
    assert fragment in error.message


@pytest.mark.parametrize("member", ["court", "caseNo", "officer", "documents"])
def test_parse_context_required_members(member: str) -> None:
    d = context()
    del d[member]
    ctx, errors = parse_context(d, "/ctx", control=True)
    assert ctx is None
    assert errors == [FieldError(f"/ctx/{member}", "is required")]


def test_parse_context_not_an_object() -> None:
    assert parse_context(None, "/x", control=False) == (
        None, [FieldError("/x", "must be an object, not null")]
    )  # fmt: skip


# --- inquiry items -----------------------------------------------------------------------

HEADER_COURT = Court("110105", "示例区人民法院")
HEADER_OFFICER = Officer("王明", "J110105000123")


def test_parse_inquiry_item_takes_header_defaults() -> None:
    value, errors = parse_inquiry_item(
        item(), "/items/0", court=HEADER_COURT, officer=HEADER_OFFICER
    )
    assert errors == []
    assert value is not None
    assert value.context.court == HEADER_COURT
    assert value.context.officer == HEADER_OFFICER
    assert value.subject.id_number == PERSON["idNumber"]
    assert value.ref == "row-17"
    assert value.agencies is None and value.kinds is None


def test_parse_inquiry_item_officer_override() -> None:
    own = {"name": "李华", "credentialNo": "J110105000999"}
    value, errors = parse_inquiry_item(
        item(officer=own), court=HEADER_COURT, officer=HEADER_OFFICER
    )
    assert errors == [] and value is not None
    assert value.context.officer == Officer("李华", "J110105000999")
    value, errors = parse_inquiry_item(item(officer=own), court=HEADER_COURT)
    assert errors == [] and value is not None


def test_parse_inquiry_item_targets() -> None:
    value, errors = parse_inquiry_item(
        item(agencies=["vrs", "cbas-icbc"], kinds=["bank", "vehicle"]), court=HEADER_COURT,
        officer=HEADER_OFFICER,
    )  # fmt: skip
    assert errors == [] and value is not None
    assert value.agencies == ("vrs", "cbas-icbc")
    assert value.kinds == (AgencyKind.BANK, AgencyKind.VEHICLE)


@pytest.mark.parametrize(
    ("overrides", "pointer", "fragment"),
    [
        ({"court": COURT}, "/items/4/court", "batch header sets it"),
        ({"ref": ""}, "/items/4/ref", "1 to 128"),
        ({"ref": "r" * 129}, "/items/4/ref", "1 to 128"),
        ({"ref": 17}, "/items/4/ref", "string"),
        ({"agencies": []}, "/items/4/agencies", "not be empty"),
        ({"agencies": "vrs"}, "/items/4/agencies", "array"),
        ({"agencies": ["vrs", "vrs"]}, "/items/4/agencies/1", "duplicate"),
        ({"agencies": ["vrs", "bad agency"]}, "/items/4/agencies/1", "agency id"),
        ({"agencies": ["vrs", 3]}, "/items/4/agencies/1", "string"),
        ({"kinds": ["bank", "boat"]}, "/items/4/kinds/1", "bank, real_estate, vehicle"),
        ({"kinds": ["bank", "bank"]}, "/items/4/kinds/1", "duplicate"),
        ({"documents": {"assistanceNotice": {**NOTICE, "sha256": "0" * 64}}},
         "/items/4/documents/assistanceNotice/content", "does not match sha256"),
        ({"caseNo": "(2024)京0106执1234号"}, "/items/4/caseNo", "does not match court"),
        ({"subject": {**PERSON, "idNumber": "110105194912310021"}},
         "/items/4/subject/idNumber", "should be 'X'"),
        ({"items": []}, "/items/4/items", "unknown member"),
    ],
)  # fmt: skip
def test_parse_inquiry_item_errors(overrides: dict[str, Any], pointer: str, fragment: str) -> None:
    value, errors = parse_inquiry_item(
        item(**overrides), "/items/4", court=HEADER_COURT, officer=HEADER_OFFICER
    )
    assert value is None
    error = only_error(errors)
    assert error.pointer == pointer
    assert fragment in error.message


def test_parse_inquiry_item_without_any_officer() -> None:
    value, errors = parse_inquiry_item(item(), "/items/2", court=HEADER_COURT)
    assert value is None
    error = only_error(errors)
    assert error.pointer == "/items/2/officer"
    assert "batch header" in error.message


def test_parse_inquiry_item_self_contained_needs_court() -> None:
    value, errors = parse_inquiry_item(item(officer=OFFICER), "/i")
    assert value is None
    assert errors == [FieldError("/i/court", "is required")]
    value, errors = parse_inquiry_item(item(officer=OFFICER, court=COURT), "/i")
    assert errors == [] and value is not None and value.context.court == HEADER_COURT


# --- batch headers -----------------------------------------------------------------------


def test_parse_batch_header_full_and_minimal() -> None:
    header = {
        "batchId": "2024-06-03:batch.1_a",
        "court": COURT,
        "officer": OFFICER,
        "agencies": ["vrs"],
        "kinds": ["vehicle", "real_estate"],
        "deadlineSeconds": 86400,
    }
    value, errors = parse_batch_header(header)
    assert errors == []
    assert value == BatchHeader(
        "2024-06-03:batch.1_a", HEADER_COURT, HEADER_OFFICER, ("vrs",),
        (AgencyKind.VEHICLE, AgencyKind.REAL_ESTATE), 86400,
    )  # fmt: skip
    value, errors = parse_batch_header({"batchId": "b1", "court": COURT})
    assert errors == [] and value == BatchHeader("b1", HEADER_COURT)


@pytest.mark.parametrize(
    ("overrides", "pointer", "fragment"),
    [
        ({"batchId": ""}, "/batchId", "1 to 128"),
        ({"batchId": "b" * 129}, "/batchId", "1 to 128"),
        ({"batchId": "batch/1"}, "/batchId", "1 to 128"),
        ({"batchId": 7}, "/batchId", "string"),
        ({"court": {"code": "110001", "name": "X"}}, "/court/code", "court code"),
        ({"officer": {"name": "王明", "credentialNo": ""}}, "/officer/credentialNo", "1 to 32"),
        ({"deadlineSeconds": 0}, "/deadlineSeconds", "from 1"),
        ({"deadlineSeconds": -5}, "/deadlineSeconds", "from 1"),
        ({"deadlineSeconds": 90 * 86400 + 1}, "/deadlineSeconds", "90 days"),
        ({"deadlineSeconds": 1.5}, "/deadlineSeconds", "whole number"),
        ({"deadlineSeconds": True}, "/deadlineSeconds", "whole number"),
        ({"deadlineSeconds": "60"}, "/deadlineSeconds", "whole number"),
        ({"kinds": []}, "/kinds", "not be empty"),
        ({"items": [item()]}, "/items", "unknown member 'items'"),
    ],
)
def test_parse_batch_header_errors(overrides: dict[str, Any], pointer: str, fragment: str) -> None:
    value, errors = parse_batch_header({"batchId": "b1", "court": COURT, **overrides})
    assert value is None
    error = only_error(errors)
    assert error.pointer == pointer
    assert fragment in error.message


# --- control requests --------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
def test_parse_control_request_every_action(action: Action) -> None:
    value, errors = parse_control_request(control(action))
    assert errors == []
    assert value is not None
    assert value.agency == "vrs"
    command = value.command
    assert command.action is action
    assert command.request_id == REQUEST_ID
    assert command.context.documents.ruling is not None
    for wire, raw in ACTION_FIELDS[action].items():
        attr = {"accountNo": "account_no", "payeeAccount": "payee_account", "freezeId":
                "freeze_id", "unitNo": "unit_no", "sealId": "seal_id", "seizureId":
                "seizure_id"}.get(wire, wire)  # fmt: skip
        got = getattr(command, attr)
        if wire == "amount":
            assert got == Money(Decimal(raw["value"]), raw.get("currency", "CNY"))
        elif wire == "subject":
            assert got == parse_subject(raw)[0]
        else:
            assert got == raw


def test_parse_control_request_example_seizure() -> None:
    value, _ = parse_control_request(control(Action.SEIZE))
    assert value is not None
    assert value.command == ControlCommand(
        request_id=REQUEST_ID,
        context=value.command.context,
        action=Action.SEIZE,
        subject=Subject(IdType.USCC, "91110105MA01C2XK5L", "示例贸易有限公司"),
        days=730,
        vin="LS5A3DBE3NB123456",
        plate="京AD12345",
    )


@pytest.mark.parametrize(
    ("action", "field"),
    [(a, f) for a, fs in ACTION_FIELDS.items() for f in fs if (a, f) != (Action.DEDUCT, "freezeId")
     and (a, f) != (Action.SEIZE, "plate")],
)  # fmt: skip
def test_parse_control_request_missing_required(action: Action, field: str) -> None:
    d = control(action)
    del d[field]
    value, errors = parse_control_request(d, "/req")
    assert value is None
    assert errors == [FieldError(f"/req/{field}", f"is required for {action.value}")]


@pytest.mark.parametrize(
    ("action", "field"), [(Action.DEDUCT, "freezeId"), (Action.SEIZE, "plate")]
)
def test_parse_control_request_optional_fields(action: Action, field: str) -> None:
    d = control(action)
    del d[field]
    value, errors = parse_control_request(d)
    assert errors == [] and value is not None


@pytest.mark.parametrize(
    ("action", "field", "value"),
    [
        (Action.SEIZE, "freezeId", "FRZ-1"),
        (Action.SEIZE, "amount", {"value": "1.00"}),
        (Action.UNFREEZE, "days", 30),
        (Action.UNFREEZE, "subject", PERSON),
        (Action.RELEASE_SEAL, "unitNo", "110105003002GB00012F00010023"),
        (Action.FREEZE, "freezeId", "FRZ-1"),  # freezing names no freeze
        (Action.RENEW_SEIZURE, "vin", "LS5A3DBE3NB123456"),
        (Action.SEAL, "plate", "京AD12345"),
    ],
)
def test_parse_control_request_field_not_allowed(action: Action, field: str, value: Any) -> None:
    d = control(action, **{field: value})
    result, errors = parse_control_request(d)
    assert result is None
    assert errors == [FieldError(f"/{field}", f"is not allowed for {action.value}")]


@pytest.mark.parametrize(
    ("action", "days", "ok"),
    [
        (Action.FREEZE, 365, True),
        (Action.FREEZE, 366, False),
        (Action.RENEW_FREEZE, 365, True),
        (Action.RENEW_FREEZE, 366, False),
        (Action.SEIZE, 730, True),
        (Action.SEIZE, 731, False),
        (Action.RENEW_SEIZURE, 731, False),
        (Action.SEAL, 1095, True),
        (Action.SEAL, 1096, False),
        (Action.PRE_SEAL, 1096, False),
        (Action.RENEW_SEAL, 1095, True),
        (Action.RENEW_SEAL, 1096, False),
        (Action.SEIZE, 1, True),
        (Action.SEIZE, 0, False),
        (Action.SEIZE, -30, False),
    ],
)
def test_parse_control_request_period_limits(action: Action, days: int, ok: bool) -> None:
    value, errors = parse_control_request(control(action, days=days))
    if ok:
        assert errors == [] and value is not None and value.command.days == days
    else:
        assert value is None
        assert pointers(errors) == ["/days"]


@pytest.mark.parametrize("days", [30.0, "30", True, None])
def test_parse_control_request_days_must_be_an_integer(days: Any) -> None:
    value, errors = parse_control_request(control(Action.SEIZE, days=days))
    assert value is None
    assert pointers(errors) == ["/days"]
    assert "whole number" in errors[0].message


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ({"value": "100.00"}, Money(Decimal("100.00"), "CNY")),  # currency defaults to CNY
        ({"value": "0.01", "currency": "CNY"}, Money(Decimal("0.01"), "CNY")),
        ({"value": "250.50", "currency": "USD"}, Money(Decimal("250.50"), "USD")),
    ],
)
def test_parse_control_request_amounts(amount: dict[str, Any], expected: Money) -> None:
    value, errors = parse_control_request(control(Action.FREEZE, amount=amount))
    assert errors == [] and value is not None
    assert value.command.amount == expected
    assert value.command.amount.amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("amount", "pointer", "fragment"),
    [
        ({"value": "0.00"}, "/amount/value", "greater than 0.00"),  # requested: > 0.00
        ({"value": 100}, "/amount/value", "not a JSON number"),
        ({"value": 100.5}, "/amount/value", "not a JSON number"),
        ({"value": "1e3"}, "/amount/value", "two fraction digits"),
        ({"value": "-1.00"}, "/amount/value", "two fraction digits"),
        ({"value": "1.0"}, "/amount/value", "two fraction digits"),
        ({"value": "01.00"}, "/amount/value", "two fraction digits"),
        ({"value": None}, "/amount/value", "two fraction digits"),
        ({"currency": "CNY"}, "/amount/value", "required"),
        ({"value": "1.00", "currency": "cny"}, "/amount/currency", "ISO 4217"),
        ({"value": "1.00", "currency": "RMB1"}, "/amount/currency", "ISO 4217"),
        ({"value": "1.00", "scale": 2}, "/amount/scale", "unknown member"),
        ("100.00", "/amount", "object"),
        (100, "/amount", "object"),
    ],
)
def test_parse_control_request_amount_errors(amount: Any, pointer: str, fragment: str) -> None:
    value, errors = parse_control_request(control(Action.DEDUCT, amount=amount))
    assert value is None
    error = only_error(errors)
    assert error.pointer == pointer
    assert fragment in error.message


@pytest.mark.parametrize(
    ("overrides", "pointer", "fragment"),
    [
        ({"requestId": REQUEST_ID.upper()}, "/requestId", "lowercase UUID"),
        ({"requestId": "not-a-uuid"}, "/requestId", "lowercase UUID"),
        ({"agency": ""}, "/agency", "agency id"),
        ({"agency": "v r s"}, "/agency", "agency id"),
        ({"action": "vehicle.crush"}, "/action", "vehicle.seize"),
        ({"action": "SEIZE"}, "/action", "must be one of"),
        ({"vin": "LS5A3DBE3NB12345O"}, "/vin", "VIN"),
        ({"plate": "AD12345"}, "/plate", "plate"),
        ({"subject": {**COMPANY, "idNumber": "91350100M000I00Y43"}}, "/subject/idNumber", "GB"),
        ({"documents": {"assistanceNotice": NOTICE}}, "/documents/ruling", "required"),
        ({"seizureDays": 730}, "/seizureDays", "unknown member"),
    ],
)
def test_parse_control_request_errors(
    overrides: dict[str, Any], pointer: str, fragment: str
) -> None:
    value, errors = parse_control_request(control(Action.SEIZE, **overrides))
    assert value is None
    error = only_error(errors)
    assert error.pointer == pointer
    assert fragment in error.message


@pytest.mark.parametrize(
    ("action", "field", "bad"),
    [
        (Action.FREEZE, "accountNo", "62-22"),
        (Action.DEDUCT, "payeeAccount", "acct"),
        (Action.UNFREEZE, "freezeId", "FRZ 1"),
        (Action.RELEASE_SEAL, "sealId", "S" * 65),
        (Action.SEAL, "unitNo", "110105003002GB00012F0001002"),
        (Action.RELEASE_SEIZURE, "seizureId", ""),
    ],
)
def test_parse_control_request_field_formats(action: Action, field: str, bad: str) -> None:
    value, errors = parse_control_request(control(action, **{field: bad}))
    assert value is None
    assert pointers(errors) == [f"/{field}"]


def test_one_request_reports_every_error() -> None:
    d = control(Action.SEIZE)
    d["requestId"] = "0BFA8244"
    d["caseNo"] = "(2024)京0106执1234号"
    d["officer"] = {"name": "", "credentialNo": "J 1"}
    d["documents"] = {
        "assistanceNotice": {**NOTICE, "sha256": RULING["sha256"]},
        "ruling": {**RULING, "content": "not base64!"},
    }
    d["subject"] = {"idType": "RESIDENT_ID", "idNumber": "110105194912310021", "name": "张三"}
    d["days"] = 731
    d["freezeId"] = "FRZ-1"
    d["colour"] = "red"
    del d["vin"]
    value, errors = parse_control_request(d, "/batch/3")
    assert value is None
    assert sorted(pointers(errors)) == sorted(
        [
            "/batch/3/colour",
            "/batch/3/requestId",
            "/batch/3/caseNo",
            "/batch/3/officer/name",
            "/batch/3/officer/credentialNo",
            "/batch/3/documents/assistanceNotice/content",
            "/batch/3/documents/ruling/content",
            "/batch/3/subject/idNumber",
            "/batch/3/days",
            "/batch/3/freezeId",
            "/batch/3/vin",
        ]
    )
    messages = {e.pointer: e.message for e in errors}
    assert "does not match court 110105" in messages["/batch/3/caseNo"]
    assert "730" in messages["/batch/3/days"]
    assert messages["/batch/3/vin"] == "is required for vehicle.seize"
    assert messages["/batch/3/colour"] == "unknown member 'colour'"


def test_unknown_action_still_reports_the_rest() -> None:
    d = control(Action.SEIZE, action="vehicle.paint", days=0, vin="bad")
    value, errors = parse_control_request(d)
    assert value is None
    assert sorted(pointers(errors)) == ["/action", "/days", "/vin"]


def test_control_request_not_an_object() -> None:
    assert parse_control_request([1, 2], "/r") == (
        None, [FieldError("/r", "must be an object, not an array")]
    )  # fmt: skip


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
def test_control_round_trip(action: Action) -> None:
    value, _ = parse_control_request(control(action))
    assert value is not None
    wire = to_json(value)
    assert parse_control_request(wire) == (value, [])
    assert parse_control_request(json.loads(canonical_json(value))) == (value, [])
    assert control_command_from_json(wire) == value.command
    command_wire = to_json(value.command)
    assert "agency" not in command_wire
    assert control_command_from_json(command_wire) == value.command


def test_control_wire_form() -> None:
    value, _ = parse_control_request(control(Action.DEDUCT))
    assert value is not None
    wire = to_json(value)
    assert wire["amount"] == {"value": "30000.00", "currency": "CNY"}
    assert wire["action"] == "bank.deduct"
    assert wire["documents"]["assistanceNotice"] == NOTICE
    assert wire["court"] == COURT and wire["officer"] == OFFICER and wire["caseNo"] == CASE_NO
    assert "vin" not in wire and "context" not in wire and "command" not in wire


def test_item_round_trip_and_command() -> None:
    value, _ = parse_inquiry_item(
        item(kinds=["vehicle"], agencies=["vrs"]), court=HEADER_COURT, officer=HEADER_OFFICER
    )
    assert value is not None
    wire = to_json(value)
    assert wire["court"] == COURT and wire["officer"] == OFFICER  # self-contained
    assert parse_inquiry_item(wire) == (value, [])
    command = inquiry_command_from_json(wire, REQUEST_ID)
    assert command == InquiryCommand(REQUEST_ID, value.context, value.subject)


def test_inquiry_command_from_json_rejects() -> None:
    value, _ = parse_inquiry_item(item(), court=HEADER_COURT, officer=HEADER_OFFICER)
    wire = to_json(value)
    with pytest.raises(ValidationError):
        inquiry_command_from_json(wire, "NOT-A-UUID")
    del wire["court"]
    with pytest.raises(ValidationError) as info:
        inquiry_command_from_json(wire, REQUEST_ID)
    assert info.value.errors == (FieldError("/court", "is required"),)


def test_control_command_from_json_rejects() -> None:
    with pytest.raises(ValidationError):
        control_command_from_json(control(Action.SEIZE, days=800))


def test_header_context_subject_round_trip() -> None:
    header, _ = parse_batch_header(
        {"batchId": "b1", "court": COURT, "officer": OFFICER, "kinds": ["bank"],
         "deadlineSeconds": 60}
    )  # fmt: skip
    assert header is not None
    assert parse_batch_header(to_json(header)) == (header, [])
    ctx, _ = parse_context(context(), control=True)
    assert parse_context(to_json(ctx), control=True) == (ctx, [])
    subject, _ = parse_subject(PERSON)
    assert to_json(subject) == PERSON


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def test_canonical_json_ignores_member_order() -> None:
    rng = random.Random(7)
    original = control(Action.DEDUCT)
    texts, plain = set(), set()
    for _ in range(5):
        shuffled = _shuffled(original, rng)
        value, errors = parse_control_request(shuffled)
        assert errors == [] and value is not None
        texts.add(canonical_json(value))
        plain.add(canonical_json(shuffled))  # plain dicts serialise the same way
    assert len(texts) == 1
    assert len(plain) == 1
    text = texts.pop()
    assert " " not in text.replace("示例区人民法院", "")  # no insignificant whitespace
    assert "示例区人民法院" in text  # UTF-8 characters kept, not \u-escaped
    assert text == canonical_json(json.loads(text))


# --- serialising results -----------------------------------------------------------------


def test_to_json_results() -> None:
    freeze = Encumbrance(
        type="FREEZE",
        authority=Authority("示例区人民法院", "110105"),
        status="ACTIVE",
        rank=1,
        measure_id="FRZ-2024-0001",
        case_no=CASE_NO,
        effective_on=dt.date(2024, 6, 3),
        until=dt.date(2025, 6, 2),
        requested_amount=Money(Decimal("100000.00")),
        frozen_amount=Money(Decimal("100000.00")),
    )
    account = Account("6222020200112233445", "DEBIT", "CNY", Decimal("250000"),
                      Decimal("150000.50"), "ACTIVE", dt.date(2015, 3, 1), (freeze,))  # fmt: skip
    vehicle = Vehicle("京AD12345", "LS5A3DBE3NB123456", "示例", "X1", dt.date(2022, 1, 5),
                      "NORMAL")  # fmt: skip
    result = InquiryResult(
        subject=Subject(IdType.RESIDENT_ID, "110105199003071239", "张三"),
        as_of=dt.datetime(2024, 6, 3, 10, 20, 31, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        accounts=(account,),
        vehicles=(vehicle,),
    )
    assert to_json(result) == {
        "subject": PERSON,
        "asOf": "2024-06-03T02:20:31Z",
        "accounts": [
            {
                "accountNo": "6222020200112233445",
                "accountType": "DEBIT",
                "currency": "CNY",
                "balance": "250000.00",
                "availableBalance": "150000.50",
                "status": "ACTIVE",
                "openedOn": "2015-03-01",
                "encumbrances": [
                    {
                        "type": "FREEZE",
                        "authority": {"name": "示例区人民法院", "courtCode": "110105"},
                        "status": "ACTIVE",
                        "rank": 1,
                        "measureId": "FRZ-2024-0001",
                        "caseNo": CASE_NO,
                        "effectiveOn": "2024-06-03",
                        "until": "2025-06-02",
                        "requestedAmount": {"value": "100000.00", "currency": "CNY"},
                        "frozenAmount": {"value": "100000.00", "currency": "CNY"},
                    }
                ],
            }
        ],
        "properties": [],
        "vehicles": [
            {
                "plate": "京AD12345",
                "vin": "LS5A3DBE3NB123456",
                "make": "示例",
                "model": "X1",
                "registeredOn": "2022-01-05",
                "status": "NORMAL",
                "encumbrances": [],
            }
        ],
    }


def test_to_json_outcome_and_scalars() -> None:
    outcome = ControlOutcome(
        action=Action.UNFREEZE,
        status="RELEASED",
        measure_id="FRZ-2024-0001",
        released_amount=Money(Decimal("70000.00")),
        completed_at=dt.datetime(2025, 9, 15, 1, 2, 3, 500000, tzinfo=dt.UTC),
        extra={"releasedAt": "2025-09-15T01:02:03Z"},
    )
    assert to_json(outcome) == {
        "action": "bank.unfreeze",
        "status": "RELEASED",
        "measureId": "FRZ-2024-0001",
        "releasedAmount": {"value": "70000.00", "currency": "CNY"},
        "completedAt": "2025-09-15T01:02:03.500000Z",
        "replayed": False,
        "extra": {"releasedAt": "2025-09-15T01:02:03Z"},
    }
    assert to_json(DocumentRef("D", "0" * 64, b"%PDF")) == {
        "documentId": "D", "sha256": "0" * 64, "content": "JVBERg=="
    }  # fmt: skip
    assert to_json((AgencyKind.BANK, Decimal("1.5"), None)) == ["bank", "1.50", None]


@pytest.mark.parametrize(
    "bad",
    [
        dt.datetime(2024, 6, 3, 2, 20, 31),  # naive
        Money(Decimal("1.001")),  # not two places
        Money(Decimal("-1.00")),
        {1: "non-string key"},
        object(),
    ],
)
def test_to_json_refuses(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        to_json(bad)


def test_control_request_dataclass_shape() -> None:
    value, _ = parse_control_request(control(Action.RELEASE_SEIZURE))
    assert isinstance(value, ControlRequest)
    assert isinstance(value.command, ControlCommand)
    assert isinstance(parse_inquiry_item(item(officer=OFFICER, court=COURT))[0], InquiryItem)
