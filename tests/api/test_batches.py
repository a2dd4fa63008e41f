"""POST /v1/inquiry-batches and GET of a batch: both body forms, idempotency, every bad field,
isolation between callers, and agency fan-out."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import (
    COURT_SH,
    OFFICER,
    TOKEN_BJ,
    TOKEN_SH,
    Api,
    header,
    item,
    ndjson,
)

BATCHES = "/v1/inquiry-batches"


def batch(batch_id: str = "batch-1", n: int = 3, **head: Any) -> dict[str, Any]:
    return {**header(batch_id, **head), "items": [item(i) for i in range(n)]}


async def test_json_batch_is_accepted_and_stored(api: Api, woken: list[set[str]]) -> None:
    r = await api.post(BATCHES, json_body=batch(n=3))
    assert r.status == 202
    assert r.headers["Location"] == "/v1/inquiry-batches/batch-1"
    assert r.body["items"] == 3
    # default: every agency that answers inquiries (bank-a, bank-b, vrs; rers does not)
    assert r.body["workItems"] == 9
    assert r.body["state"] == "running"
    assert r.body["totals"] == {"pending": 9, "done": 0, "failed": 0}
    assert set(r.body["progress"]) == {"bank-a", "bank-b", "vrs"}
    assert woken == [{"bank-a", "bank-b", "vrs"}]

    got = await api.get(r.headers["Location"])
    assert got.status == 200
    assert got.body == r.body


async def test_ndjson_batch_is_accepted(api: Api) -> None:
    body = ndjson(header("nd-1", kinds=["vehicle"]), [item(i) for i in range(4)])
    r = await api.post(BATCHES, data=body, content_type="application/x-ndjson")
    assert r.status == 202, r.body
    assert r.body["items"] == 4 and r.body["workItems"] == 4
    assert set(r.body["progress"]) == {"vrs"}


async def test_ndjson_tolerates_blank_lines_and_no_final_newline(api: Api) -> None:
    body = b"\n" + ndjson(header("nd-2"), [item(0)]) + b"\r\n\n" + json.dumps(item(1)).encode()
    r = await api.post(BATCHES, data=body, content_type="application/x-ndjson")
    assert r.status == 202, r.body
    assert r.body["items"] == 2


async def test_resubmission_of_same_content_returns_existing(api: Api, woken: list[set[str]]
                                                              ) -> None:
    first = await api.post(BATCHES, json_body=batch("same"))
    assert first.status == 202
    # Same content, other member order and the other body form: still the same batch.
    reordered = {"officer": OFFICER, "court": {"name": header()["court"]["name"],
                                               "code": "110105"}, "batchId": "same"}
    items = [dict(reversed(list(item(i).items()))) for i in range(3)]
    again = await api.post(BATCHES, data=ndjson(reordered, items),
                           content_type="application/x-ndjson")
    assert again.status == 200
    assert again.headers["Location"] == first.headers["Location"]
    assert again.body["createdAt"] == first.body["createdAt"]
    assert len(woken) == 1  # a replay creates no work


async def test_same_id_different_content_is_409(api: Api) -> None:
    assert (await api.post(BATCHES, json_body=batch("dup", n=2))).status == 202
    r = await api.post(BATCHES, json_body=batch("dup", n=3))
    assert r.status == 409
    assert r.body["type"].endswith("/conflict")


async def test_every_bad_field_is_reported_and_nothing_stored(api: Api) -> None:
    body = batch("bad", n=5)
    body["items"][1]["subject"]["idNumber"] = "110105194912310021"  # wrong check character
    body["items"][3]["caseNo"] = "(2024)沪0115执1号"  # another court's designator
    body["items"][3]["subject"]["idType"] = "PASSPORT"
    body["items"][4]["agencies"] = ["bank-a", "nowhere", "rers"]
    del body["items"][2]["documents"]
    body["items"][0]["extra"] = 1
    r = await api.post(BATCHES, json_body=body)
    assert r.status == 422
    assert r.headers["Content-Type"].startswith("application/problem+json")
    pointers = {e["pointer"] for e in r.body["errors"]}
    assert pointers == {
        "/items/0/extra",
        "/items/1/subject/idNumber",
        "/items/2/documents",
        "/items/3/caseNo",
        "/items/3/subject/idType",
        "/items/4/agencies/1",
        "/items/4/agencies/2",
    }
    assert r.body["errorCount"] == 7
    assert (await api.get(f"{BATCHES}/bad")).status == 404


async def test_ndjson_errors_use_item_pointers(api: Api) -> None:
    items = [item(0), item(1, subject={"idType": "USCC", "idNumber": "91350100M000100Y44",
                                       "name": "某公司"}), item(2)]
    r = await api.post(BATCHES, data=ndjson(header("nd-bad"), items),
                       content_type="application/x-ndjson")
    assert r.status == 422
    assert [e["pointer"] for e in r.body["errors"]] == ["/items/1/subject/idNumber"]


async def test_header_errors_and_item_errors_together(api: Api) -> None:
    body = batch("hdr", n=2, officer={"name": "x"}, deadlineSeconds=0)
    body["items"][1]["subject"]["name"] = ""
    r = await api.post(BATCHES, json_body=body)
    assert r.status == 422
    pointers = [e["pointer"] for e in r.body["errors"]]
    # the header's bad officer is reported once, not again for every item that inherits it
    assert pointers == ["/officer/credentialNo", "/deadlineSeconds", "/items/1/subject/name"]


async def test_error_list_is_capped_but_counted(api: Api) -> None:
    items = [item(i, subject={"idType": "RESIDENT_ID", "idNumber": "1", "name": ""})
             for i in range(600)]
    r = await api.post(BATCHES, data=ndjson(header("many"), items),
                       content_type="application/x-ndjson")
    assert r.status == 422
    assert len(r.body["errors"]) == 1000
    assert r.body["errorCount"] == 1200


async def test_malformed_ndjson_line_is_400_with_pointer(api: Api) -> None:
    body = ndjson(header("mal"), [item(0)]) + b'{"caseNo": \n' + json.dumps(item(2)).encode()
    r = await api.post(BATCHES, data=body, content_type="application/x-ndjson")
    assert r.status == 400
    assert r.body["type"].endswith("/malformed-body")
    assert [e["pointer"] for e in r.body["errors"]] == ["/items/1"]
    assert "line 3" in r.body["errors"][0]["detail"]
    assert (await api.get(f"{BATCHES}/mal")).status == 404


async def test_malformed_json_is_400_with_pointer(api: Api) -> None:
    text = json.dumps(batch("mal-json", n=3), ensure_ascii=False)
    cut = text.rindex('{"ref": "ref-2"')
    r = await api.post(BATCHES, data=(text[:cut] + '{"ref": }]}').encode(),
                       content_type="application/json")
    assert r.status == 400
    assert [e["pointer"] for e in r.body["errors"]] == ["/items/2"]


async def test_header_after_items_is_rejected(api: Api) -> None:
    body = {"batchId": "late", "court": header()["court"], "items": [item(0)], "officer": OFFICER}
    r = await api.post(BATCHES, json_body=body)
    assert r.status == 422
    assert {"/officer", "/items/0/officer"} == {e["pointer"] for e in r.body["errors"]}


async def test_empty_and_missing_items_are_422(api: Api) -> None:
    r = await api.post(BATCHES, json_body={**header("empty"), "items": []})
    assert r.status == 422 and [e["pointer"] for e in r.body["errors"]] == ["/items"]
    r = await api.post(BATCHES, json_body=header("none"))
    assert r.status == 422 and [e["pointer"] for e in r.body["errors"]] == ["/items"]
    r = await api.post(BATCHES, data=ndjson(header("nd-empty"), []),
                       content_type="application/x-ndjson")
    assert r.status == 422 and [e["pointer"] for e in r.body["errors"]] == ["/items"]
    r = await api.post(BATCHES, json_body={**header("notarray"), "items": {}})
    assert r.status == 422 and [e["pointer"] for e in r.body["errors"]] == ["/items"]


async def test_body_that_is_not_an_object(api: Api) -> None:
    r = await api.post(BATCHES, json_body=[1, 2])
    assert r.status == 422 and r.body["errors"][0]["pointer"] == ""
    r = await api.post(BATCHES, data=b"", content_type="application/json")
    assert r.status == 400
    r = await api.post(BATCHES, data=b"", content_type="application/x-ndjson")
    assert r.status == 400


async def test_wrong_content_type_is_415(api: Api) -> None:
    r = await api.post(BATCHES, data=b"batchId=x", content_type="application/x-www-form-urlencoded")
    assert r.status == 415
    assert "application/x-ndjson" in r.headers["Accept-Post"]
    r = await api.post(BATCHES, data=b"{}", content_type="application/json; charset=latin-1")
    assert r.status == 415


async def test_court_not_allowed_is_403(api: Api) -> None:
    body = {**header("sh", court=COURT_SH), "items": [item(0)]}
    r = await api.post(BATCHES, json_body=body)
    assert r.status == 403
    assert r.body["errors"][0]["pointer"] == "/court/code"
    assert (await api.get(f"{BATCHES}/sh")).status == 404


async def test_other_caller_cannot_see_a_batch(api: Api) -> None:
    assert (await api.post(BATCHES, json_body=batch("mine"))).status == 202
    r = await api.get(f"{BATCHES}/mine", token=TOKEN_SH)
    assert r.status == 404
    assert (await api.get(f"{BATCHES}/mine/results", token=TOKEN_SH)).status == 404
    nonexistent = await api.get(f"{BATCHES}/nothing", token=TOKEN_SH)
    assert nonexistent.body["detail"].replace("nothing", "X") == r.body["detail"].replace(
        "mine", "X")
    # batch ids are per caller: the other caller may use the same id for its own court
    body = {**header("mine", court=COURT_SH, officer=OFFICER),
            "items": [item(0, caseNo="(2024)沪0115执9号")]}
    assert (await api.post(BATCHES, json_body=body, token=TOKEN_SH)).status == 202
    assert (await api.get(f"{BATCHES}/mine", token=TOKEN_BJ)).body["court"]["code"] == "110105"


async def test_kinds_fan_out_to_every_agency_of_the_kind(api: Api) -> None:
    body = batch("fan", n=2, kinds=["bank"])
    body["items"][1]["agencies"] = ["vrs"]  # item-level overrides the header
    r = await api.post(BATCHES, json_body=body)
    assert r.status == 202, r.body
    assert r.body["workItems"] == 3
    assert {k: v["pending"] for k, v in r.body["progress"].items()} == {
        "bank-a": 1, "bank-b": 1, "vrs": 1}


async def test_agencies_that_cannot_inquire_are_rejected(api: Api) -> None:
    r = await api.post(BATCHES, json_body=batch("nope", n=1, agencies=["rers", "ghost"],
                                                kinds=["real_estate"]))
    assert r.status == 422
    assert [e["pointer"] for e in r.body["errors"]] == ["/agencies/0", "/agencies/1", "/kinds/0"]


async def test_item_may_not_name_a_court(api: Api) -> None:
    body = batch("ct", n=1)
    body["items"][0]["court"] = COURT_SH
    r = await api.post(BATCHES, json_body=body)
    assert r.status == 422
    assert [e["pointer"] for e in r.body["errors"]] == ["/items/0/court"]


async def test_ndjson_header_not_json_is_400(api: Api) -> None:
    r = await api.post(BATCHES, data=b"{batchId: 1}\n" + json.dumps(item(0)).encode(),
                       content_type="application/x-ndjson")
    assert r.status == 400 and r.body["errors"][0]["pointer"] == ""


async def _small_api(aiohttp_client: Any, config: Any, store: Any, **kw: Any) -> Api:
    from gateway.api.app import create_app
    from gateway.api.ingest import IngestLimits
    from tests.api.conftest import make_registry

    app = create_app(config, store, make_registry(config),
                     limits=IngestLimits(max_items=5, max_line_bytes=2000), **kw)
    return Api(await aiohttp_client(app))


async def test_limits_are_413(aiohttp_client: Any, config: Any, store: Any) -> None:
    api = await _small_api(aiohttp_client, config, store)
    r = await api.post(BATCHES, json_body=batch("six", n=6))
    assert r.status == 413 and r.body["type"].endswith("/batch-too-large")
    assert r.body["errors"][0]["pointer"] == "/items/5"
    assert (await api.get(f"{BATCHES}/six")).status == 404
    long_item = item(0, ref="x" * 3000)
    r = await api.post(BATCHES, data=ndjson(header("long"), [long_item]),
                       content_type="application/x-ndjson")
    assert r.status == 413 and r.body["type"].endswith("/line-too-long")
    assert (await api.post(BATCHES, json_body=batch("five", n=5))).status == 202


async def test_failing_wakeup_does_not_fail_the_request(aiohttp_client: Any, config: Any,
                                                        store: Any) -> None:
    def broken(_: set[str]) -> None:
        raise RuntimeError("dispatcher gone")

    api = await _small_api(aiohttp_client, config, store, on_new_work=broken)
    assert (await api.post(BATCHES, json_body=batch("wake", n=1))).status == 202


async def test_unpaired_surrogate_is_a_validation_error(api: Api) -> None:
    line = json.dumps(item(0)).replace("\\u5f20", "\\ud800")  # the subject's name
    body = json.dumps(header("sur")).encode() + b"\n" + line.encode()
    r = await api.post(BATCHES, data=body, content_type="application/x-ndjson")
    assert r.status == 422 and [e["pointer"] for e in r.body["errors"]] == ["/items/0"]
