"""The signed exchanges of examples/vrs/, replayed against the mock at their own timestamps.

Ed25519 is deterministic, so where the mock's answer has the example's status, headers, body
and ``created``, its ``Signature`` must be byte-identical to the example's: the strongest
check that the mock signs (VRS-04), digests (VRS-02) and answers (VRS-01, VRS-14, VRS-19)
exactly as the ICD's authors' reference implementation did.
"""

from __future__ import annotations

from mock_agencies.common.clock import ManualClock
from tests.mock_agencies.vrs.client import ROOT, fixture, start

EXAMPLES = ROOT / "tests" / "data" / "vrs"


def _message(stem: str) -> tuple[str, dict[str, str], bytes]:
    """(start line, headers, body) of an example; the body is the exact .json bytes."""
    text = (EXAMPLES / f"{stem}.http").read_text("utf-8")
    head = text.split("\n\n", 1)[0].split("\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    json_file = EXAMPLES / f"{stem}.json"
    return head[0], headers, json_file.read_bytes() if json_file.exists() else b""


async def _send(h, stem: str):
    start_line, headers, body = _message(f"{stem}.request")
    method, path, _ = start_line.split(" ")
    headers = {k: v for k, v in headers.items() if k not in ("Host", "Content-Length")}
    async with h.test_client.request(method, path, data=body or None, headers=headers) as resp:
        return resp.status, resp.headers, await resp.read()


def _expected(stem: str) -> tuple[int, dict[str, str], bytes]:
    start_line, headers, body = _message(f"{stem}.response")
    return int(start_line.split(" ")[1]), headers, body


def _assert_identical(stem: str, status: int, headers, body: bytes) -> None:
    want_status, want_headers, want_body = _expected(stem)
    assert status == want_status
    assert body == want_body
    for name in (
        "Content-Type",
        "Content-Digest",
        "Location",
        "Retry-After",
        "Signature-Input",
        "Signature",
    ):
        assert headers.get(name) == want_headers.get(name), name


def _with_example_seizure() -> dict:
    """The example fixture plus the seizure the renewal and release examples act on."""
    data = fixture()
    data["vehicles"][0]["seizures"].append(
        {
            "seizureId": "SZ-20240603-000318",
            "authority": {"name": "示例区人民法院", "courtCode": "110105"},
            "caseNo": "(2024)京0105执1234号",
            "status": "ACTIVE",
            "effectiveOn": "2024-06-03",
            "seizedUntil": "2026-06-02",
        }
    )
    return data


async def test_vrs04_renewal_and_release_examples_byte_identical(aiohttp_client) -> None:
    clock = ManualClock(1779242401)  # the example response's created
    h = await start(aiohttp_client, _with_example_seizure(), clock=clock)
    _assert_identical("renew-seizure", *await _send(h, "renew-seizure"))
    clock.set(1791422403)
    _assert_identical("release-seizure", *await _send(h, "release-seizure"))


async def test_vrs14_period_problem_example_byte_identical(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(1717384200))
    _assert_identical(
        "problem-period-exceeds-limit", *await _send(h, "problem-period-exceeds-limit")
    )


async def test_vrs10_seizure_examples_and_replay(aiohttp_client) -> None:
    """Same dates and body as the example, except the agency-issued seizureId."""
    clock = ManualClock(1717383902)
    h = await start(aiohttp_client, clock=clock)
    status, headers, body = await _send(h, "create-seizure")
    want_status, _, want_body = _expected("create-seizure")
    seizure_id = headers["Location"].rsplit("/", 1)[1]
    assert status == want_status == 201
    assert body == want_body.replace(b"SZ-20240603-000318", seizure_id.encode())
    clock.set(1717384050)
    status, headers, again = await _send(h, "create-seizure.replay")
    assert status == 201 and again == body and headers["Idempotent-Replayed"] == "true"
    assert [e["event"] for e in h.ledger] == ["created"]


async def test_vrs15_query_example_accepted(aiohttp_client) -> None:
    h = await start(aiohttp_client, clock=ManualClock(1717383601))
    status, headers, _ = await _send(h, "create-vehicle-query")
    assert status == 202 and headers["Location"].startswith("/v2/vehicle-queries/VQ-20240603-")
