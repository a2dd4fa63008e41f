"""POST/GET /v1/control-requests: acceptance, idempotency by requestId, capability checks,
and isolation between callers."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.api.conftest import (
    COURT_BJ,
    COURT_SH,
    NOTICE,
    OFFICER,
    RULING,
    TOKEN_SH,
    Api,
    resident_id,
)

CONTROLS = "/v1/control-requests"


def freeze(request_id: str | None = None, **over: Any) -> dict[str, Any]:
    body = {
        "requestId": request_id or str(uuid.uuid4()),
        "agency": "bank-a",
        "action": "bank.freeze",
        "court": COURT_BJ,
        "caseNo": "(2024)京0105执1234号",
        "officer": OFFICER,
        "documents": {"assistanceNotice": NOTICE, "ruling": RULING},
        "subject": {"idType": "RESIDENT_ID", "idNumber": resident_id(7), "name": "张三"},
        "accountNo": "6222020200112233",
        "amount": {"value": "150000.00", "currency": "CNY"},
        "days": 365,
    }
    body.update(over)
    return body


async def test_create_and_get(api: Api, woken: list[set[str]]) -> None:
    body = freeze()
    r = await api.post(CONTROLS, json_body=body)
    assert r.status == 202, r.body
    assert r.headers["Location"] == f"{CONTROLS}/{body['requestId']}"
    assert r.body["state"] == "accepted" and r.body["attempts"] == 0
    assert r.body["agency"] == "bank-a" and r.body["action"] == "bank.freeze"
    assert woken == [{"bank-a"}]
    got = await api.get(r.headers["Location"])
    assert got.status == 200 and got.body == r.body


async def test_same_request_again_is_200_different_is_409(api: Api,
                                                          woken: list[set[str]]) -> None:
    body = freeze()
    assert (await api.post(CONTROLS, json_body=body)).status == 202
    reordered = dict(reversed(list(body.items())))
    again = await api.post(CONTROLS, json_body=reordered)
    assert again.status == 200
    assert len(woken) == 1
    r = await api.post(CONTROLS, json_body={**body, "days": 30})
    assert r.status == 409 and r.body["type"].endswith("/conflict")
    # another caller reusing the id (for its own court) is a conflict too: ids are global
    other = freeze(body["requestId"], court=COURT_SH, caseNo="(2024)沪0115执1号")
    assert (await api.post(CONTROLS, json_body=other, token=TOKEN_SH)).status == 409


async def test_other_caller_gets_404(api: Api) -> None:
    body = freeze()
    assert (await api.post(CONTROLS, json_body=body)).status == 202
    assert (await api.get(f"{CONTROLS}/{body['requestId']}", token=TOKEN_SH)).status == 404
    assert (await api.get(f"{CONTROLS}/{uuid.uuid4()}")).status == 404


async def test_court_not_allowed_is_403(api: Api) -> None:
    r = await api.post(CONTROLS, json_body=freeze(court=COURT_SH, caseNo="(2024)沪0115执1号"))
    assert r.status == 403
    assert r.body["errors"] == [{"pointer": "/court/code",
                                 "detail": "this caller may not act for this court"}]


async def test_unknown_agency_is_422_at_agency(api: Api) -> None:
    r = await api.post(CONTROLS, json_body=freeze(agency="bank-z"))
    assert r.status == 422
    assert [e["pointer"] for e in r.body["errors"]] == ["/agency"]


async def test_action_the_adapter_lacks_is_422_at_action(api: Api) -> None:
    r = await api.post(CONTROLS, json_body=freeze(agency="bank-b"))  # bank-b: inquiry only
    assert r.status == 422
    assert [e["pointer"] for e in r.body["errors"]] == ["/action"]
    r = await api.post(CONTROLS, json_body=freeze(agency="vrs"))  # a bank action at a registry
    assert r.status == 422
    assert [e["pointer"] for e in r.body["errors"]] == ["/action"]
    assert "vehicle agency" in r.body["errors"][0]["detail"]


async def test_every_bad_field_is_reported(api: Api) -> None:
    body = freeze(requestId="NOT-A-UUID", days=400, amount={"value": 10})
    del body["documents"]["ruling"]
    r = await api.post(CONTROLS, json_body=body)
    assert r.status == 422
    assert {e["pointer"] for e in r.body["errors"]} == {
        "/requestId", "/days", "/amount/value", "/documents/ruling"}


async def test_malformed_and_wrong_type(api: Api) -> None:
    r = await api.post(CONTROLS, data=b'{"requestId": ', content_type="application/json")
    assert r.status == 400 and r.body["type"].endswith("/malformed-body")
    r = await api.post(CONTROLS, data=b'{"a": NaN}', content_type="application/json")
    assert r.status == 400
    r = await api.post(CONTROLS, data=b"\xff\xfe", content_type="application/json")
    assert r.status == 400
    r = await api.post(CONTROLS, data=b"{}", content_type="application/x-ndjson")
    assert r.status == 415
    r = await api.post(CONTROLS, data=b"[]", content_type="application/json")
    assert r.status == 422 and r.body["errors"][0]["pointer"] == ""


async def test_unpaired_surrogate_is_422(api: Api) -> None:
    text = json.dumps(freeze()).replace("\\u5f20", "\\ud800")  # the subject's name
    r = await api.post(CONTROLS, data=text.encode(), content_type="application/json")
    assert r.status == 422 and r.body["errors"][0]["pointer"] == ""
