"""Transport, schema, digest and signature conformance of the mock registry (VRS §1, §4-§6)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.security.digest import content_digest, parse_dictionary
from gateway.security.httpsig import target_uri
from tests.mock_agencies.vrs.client import (
    COURT_KEY,
    PUBLIC_URL,
    ROOT,
    VIN_SEIZED,
    dumps,
    fixture,
    query_body,
    seizure_body,
    start,
    validate,
)

EXAMPLES = ROOT / "tests" / "data" / "vrs"

# Example file stem -> (request schema, response schema)
EXAMPLE_SCHEMAS = {
    "create-vehicle-query": ("VehicleQueryRequest", "VehicleQueryAccepted"),
    "get-vehicle-query": (None, "VehicleQuery"),
    "get-vehicle-query.pending": (None, "VehicleQuery"),
    "create-seizure": ("SeizureRequest", "Seizure"),
    "create-seizure.replay": ("SeizureRequest", "Seizure"),
    "renew-seizure": ("SeizureRenewalRequest", "SeizureRenewal"),
    "release-seizure": ("SeizureReleaseRequest", "SeizureRelease"),
    "problem-period-exceeds-limit": ("SeizureRequest", "Problem"),
    "problem-rate-limited": (None, "Problem"),
}


@pytest.mark.parametrize("stem", sorted(EXAMPLE_SCHEMAS))
def test_vrs01_validator_accepts_the_examples(stem: str) -> None:
    """The validator the tests use is the OpenAPI file's: every example body passes it."""
    request_schema, response_schema = EXAMPLE_SCHEMAS[stem]
    if request_schema:
        validate(request_schema, json.loads((EXAMPLES / f"{stem}.request.json").read_bytes()))
    validate(response_schema, json.loads((EXAMPLES / f"{stem}.response.json").read_bytes()))


async def test_vrs01_every_operation_answers_per_openapi(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    c = h.client
    r = await c.create_query()
    assert r.status == 202 and r.headers["Content-Type"] == "application/json"
    validate("VehicleQueryAccepted", r.json)
    assert r.headers["Location"] == f"/v2/vehicle-queries/{r.json['queryId']}"
    pending = await c.get(r.headers["Location"])
    assert pending.status == 200 and pending.json["status"] == "PENDING"
    validate("VehicleQuery", pending.json)
    done = await c.get(r.headers["Location"])
    assert done.status == 200 and done.json["status"] == "COMPLETED"
    validate("VehicleQuery", done.json)

    active = await c.seize()
    assert active.status == 201 and active.json["status"] == "ACTIVE"
    validate("Seizure", active.json)
    assert active.headers["Location"] == f"/v2/seizures/{active.json['seizureId']}"
    waitlisted = await c.seize(VIN_SEIZED, 30)
    assert waitlisted.status == 201 and waitlisted.json["status"] == "WAITLISTED"
    validate("Seizure", waitlisted.json)
    renewed = await c.renew(active.json["seizureId"], 10)
    assert renewed.status == 200 and "Location" not in renewed.headers
    validate("SeizureRenewal", renewed.json)
    released = await c.release(active.json["seizureId"])
    assert released.status == 200
    validate("SeizureRelease", released.json)
    missing = await c.get("/v2/vehicle-queries/VQ-NOPE")
    assert missing.status == 404 and missing.problem == "query-not-found"


def _bodies():
    base = seizure_body()
    yield "unknown member", {**base, "colour": "red"}
    yield "missing member", {k: v for k, v in base.items() if k != "officer"}
    yield "wrong type", {**base, "seizureDays": "730"}
    yield "zero days", {**base, "seizureDays": 0}
    yield "boolean days", {**base, "seizureDays": True}
    yield "vin with newline", {**base, "vin": base["vin"] + "\n"}
    yield (
        "lowercase resident x",
        {
            **base,
            "subject": {"idType": "RESIDENT_ID", "idNumber": "11010519491231002x", "name": "李四"},
        },
    )
    yield (
        "unknown document member",
        {
            **base,
            "documents": {**base["documents"], "other": base["documents"]["ruling"]},
        },
    )
    yield (
        "ruling missing on a control request",
        {
            **base,
            "documents": {"assistanceNotice": base["documents"]["assistanceNotice"]},
        },
    )
    yield "not an object", [base]
    bad_b64 = json.loads(json.dumps(base))
    bad_b64["documents"]["ruling"]["content"] = "QUJD="  # not a multiple of 4
    yield "undecodable base64", bad_b64


@pytest.mark.parametrize(("name", "body"), list(_bodies()), ids=[n for n, _ in _bodies()])
async def test_vrs01_schema_violations_are_invalid_request(aiohttp_client, name, body) -> None:
    h = await start(aiohttp_client)
    r = await h.client.post("/v2/seizures", body)
    assert r.status == 400 and r.problem == "invalid-request", r.json
    assert not h.ledger


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/seizures/SZ-1"),
        ("POST", "/v2/unknown"),
        ("GET", "/v2/vehicle-queries"),
        ("GET", "/v2/vehicle-queries/bad.id"),
    ],
)
async def test_vrs01_unknown_operation_or_bad_id_is_invalid_request(aiohttp_client, method, path):
    h = await start(aiohttp_client)
    body = query_body() if method == "POST" else None
    r = await h.client.request(method, path, body)
    assert r.status == 400 and r.problem == "invalid-request"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "text/json", None])
async def test_vrs01_content_type_must_be_exactly_json(aiohttp_client, content_type) -> None:
    h = await start(aiohttp_client)

    def tamper(headers: dict[str, str]) -> None:
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type

    r = await h.client.post("/v2/vehicle-queries", query_body(), tamper=tamper)
    assert r.status == 400 and r.problem == "invalid-request"


async def test_vrs01_malformed_json_is_reported_before_the_signature(aiohttp_client) -> None:
    """README §9: well-formedness comes first and is reported as a schema error."""
    h = await start(aiohttp_client)
    r = await h.client.post("/v2/vehicle-queries", None, raw=b'{"court": ', sign=False)
    assert r.status == 400 and r.problem == "invalid-request"
    for raw in (b'{"a": NaN}', b'{"a": 1, "a": 2}', "\ufeff{}".encode(), b"\xff{}"):
        r = await h.client.post("/v2/vehicle-queries", None, raw=raw)
        assert r.status == 400 and r.problem == "invalid-request", raw


async def test_vrs02_every_response_carries_one_correct_content_digest(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    replies = [
        await h.client.create_query(),
        await h.client.get("/v2/vehicle-queries/nope"),
        await h.client.get("/v2/vehicle-queries/nope", sign=False, check_signature=False),
    ]
    for r in replies:
        digest = parse_dictionary(r.headers["Content-Digest"])
        assert list(digest) == ["sha-256"]
        assert digest["sha-256"].value == hashlib.sha256(r.body).digest()
        assert r.body and not r.body.endswith(b"\n")  # examples/: no trailing newline


async def test_vrs04_responses_are_signed_and_bound_to_the_request(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.create_query()  # the client verified signature and binding already
    assert r.headers["Signature-Input"].startswith(
        'sig1=("@status" "content-digest" "content-type" "@method";req "@target-uri";req '
        '"signature";req;key="sig1");created='
    )
    assert r.headers["Signature-Input"].endswith(
        ';keyid="-zTo9w69QNpzykGmtgHpZKiL3wEZxZI5EGgUB5JEyZ0";alg="ed25519";tag="vrs-v2"'
    )
    assert "nonce" not in r.headers["Signature-Input"]


async def test_vrs04_errors_are_signed_bound_when_sig1_parsable(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    stranger = h.client.with_key(Ed25519PrivateKey.generate())
    untrusted = await stranger.create_query()  # verified with binding to the stranger's sig1
    assert untrusted.problem == "key-untrusted"
    assert '"signature";req' in untrusted.headers["Signature-Input"]
    unsigned = await h.client.get("/v2/vehicle-queries/x", sign=False)  # verified, unbound
    assert unsigned.problem == "signature-invalid"
    assert '"signature";req' not in unsigned.headers["Signature-Input"]

    def garble(headers: dict[str, str]) -> None:
        headers["Signature"] = "sig1=not-a-byte-sequence"

    garbled = await h.client.get("/v2/vehicle-queries/x", tamper=garble)
    assert garbled.problem == "signature-invalid"
    assert '"signature";req' not in garbled.headers["Signature-Input"]


def _wrong_signature_tampers():
    def drop(*names):
        def tamper(headers):
            for n in names:
                del headers[n]

        return tamper

    def set_input(replace_from, replace_to):
        def tamper(headers):
            headers["Signature-Input"] = headers["Signature-Input"].replace(
                replace_from, replace_to
            )

        return tamper

    def second_member(headers):
        headers["Signature"] += ", sig2=" + headers["Signature"].removeprefix("sig1=")
        headers["Signature-Input"] += ", sig2=" + headers["Signature-Input"].removeprefix("sig1=")

    def relabel(headers):
        headers["Signature"] = headers["Signature"].replace("sig1=", "sig2=")
        headers["Signature-Input"] = headers["Signature-Input"].replace("sig1=", "sig2=")

    def flip(headers):
        raw = bytearray(base64.b64decode(headers["Signature"][6:-1]))
        raw[10] ^= 0x80
        headers["Signature"] = "sig1=:" + base64.b64encode(bytes(raw)).decode() + ":"

    yield "missing both", drop("Signature", "Signature-Input")
    yield "missing signature", drop("Signature")
    yield "missing input", drop("Signature-Input")
    yield "malformed", set_input("sig1=(", "sig1=((")
    yield (
        "component order",
        set_input('"content-type" "idempotency-key"', '"idempotency-key" "content-type"'),
    )
    yield "component missing", set_input(' "idempotency-key"', "")
    yield "wrong tag", set_input('tag="vrs-v2"', 'tag="vrs-v1"')
    yield "wrong alg", set_input('alg="ed25519"', 'alg="rsa-pss-sha512"')
    yield "two signatures", second_member
    yield "other label", relabel
    yield "bad bytes", flip


@pytest.mark.parametrize(
    ("name", "tamper"),
    list(_wrong_signature_tampers()),
    ids=[n for n, _ in _wrong_signature_tampers()],
)
async def test_vrs05_bad_signature_is_signature_invalid(aiohttp_client, name, tamper) -> None:
    h = await start(aiohttp_client)
    r = await h.client.post("/v2/seizures", seizure_body(), tamper=tamper)
    assert r.status == 401 and r.problem == "signature-invalid"
    assert not h.ledger


async def test_vrs05_correctly_signed_wrong_tag_is_rejected(aiohttp_client) -> None:
    """A signature that verifies but uses another tag still fails check (1)."""
    h = await start(aiohttp_client)
    path = "/v2/vehicle-queries/VQ-1"
    target = target_uri(PUBLIC_URL, path)
    good = h.client.signer.sign_request("GET", target, {}, created=int(h.clock()))
    params = good["Signature-Input"].removeprefix("sig1=").replace('tag="vrs-v2"', 'tag="other"')
    base = f'"@method": GET\n"@target-uri": {target}\n"@signature-params": {params}'
    signature = COURT_KEY.sign(base.encode("ascii"))  # RFC 9421 §2.5, built independently

    def tamper(headers: dict[str, str]) -> None:
        headers["Signature-Input"] = "sig1=" + params
        headers["Signature"] = "sig1=:" + base64.b64encode(signature).decode() + ":"

    r = await h.client.get(path, tamper=tamper)
    assert r.problem == "signature-invalid"


async def test_vrs06_unknown_key_and_altered_headers(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    r = await h.client.with_key(Ed25519PrivateKey.generate()).seize()
    assert r.status == 401 and r.problem == "key-untrusted"

    body = seizure_body()
    altered = dumps({**body, "seizureDays": 1})

    def body_and_digest_swapped(headers: dict[str, str]) -> None:
        headers["Content-Digest"] = content_digest(altered)  # consistent, but not what was signed

    r = await h.client.post("/v2/seizures", body, raw=None, tamper=body_and_digest_swapped)
    assert r.status == 401 and r.problem == "signature-invalid"  # check (3) precedes (6)

    async def send_altered() -> tuple[int, str]:
        headers = {
            "Content-Type": "application/json",
            "Content-Digest": content_digest(dumps(body)),
            "Idempotency-Key": "6f1d7c9e-0c2b-4c8e-9d7a-3b2f1e0d9c8b",
        }
        target = target_uri(PUBLIC_URL, "/v2/seizures")
        headers.update(
            h.client.signer.sign_request("POST", target, headers, created=int(h.clock()))
        )
        headers["Content-Digest"] = content_digest(altered)
        async with h.test_client.post("/v2/seizures", data=altered, headers=headers) as resp:
            return resp.status, json.loads(await resp.read())["type"]

    assert await send_altered() == (401, "urn:vrs:problem:signature-invalid")

    def other_key(headers: dict[str, str]) -> None:
        headers["Idempotency-Key"] = "00000000-0000-4000-8000-000000000000"

    r = await h.client.post("/v2/seizures", body, tamper=other_key)
    assert r.status == 401 and r.problem == "signature-invalid"
    assert not h.ledger


async def test_vrs06_altered_body_is_digest_mismatch(aiohttp_client) -> None:
    """Signed headers intact, body replaced in transit: check (6) → digest-mismatch."""
    h = await start(aiohttp_client)
    body = seizure_body()
    fake = dumps({**body, "seizureDays": 1})
    headers = {
        "Content-Type": "application/json",
        "Content-Digest": content_digest(dumps(body)),
        "Idempotency-Key": "6f1d7c9e-0c2b-4c8e-9d7a-3b2f1e0d9c8b",
    }
    target = target_uri(PUBLIC_URL, "/v2/seizures")
    headers.update(h.client.signer.sign_request("POST", target, headers, created=int(h.clock())))
    async with h.test_client.post("/v2/seizures", data=fake, headers=headers) as resp:
        body_out = json.loads(await resp.read())
    assert resp.status == 401 and body_out["type"] == "urn:vrs:problem:digest-mismatch"
    assert not h.ledger


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(300, None), (301, "signature-expired"), (-600, None), (-601, "signature-expired")],
)
async def test_vrs07_freshness_window(aiohttp_client, offset, expected) -> None:
    """created > now+300 s or expires (created+300) < now-300 s → 401 signature-expired."""
    h = await start(aiohttp_client)
    r = await h.client.get("/v2/vehicle-queries/VQ-1", created=int(h.clock()) + offset)
    assert r.problem == (expected or "query-not-found")


async def test_vrs07_reused_nonce_is_replayed(aiohttp_client) -> None:
    h = await start(aiohttp_client)
    sent: dict[str, str] = {}
    first = await h.client.get("/v2/vehicle-queries/VQ-1", tamper=sent.update)
    assert first.problem == "query-not-found"
    again = await h.client.get("/v2/vehicle-queries/VQ-1", tamper=lambda hd: hd.update(sent))
    assert again.status == 401 and again.problem == "nonce-replayed"


@pytest.mark.parametrize(
    "key",
    [None, '"0bfa8244-bc30-5af3-b58c-cf5b8c976cfc"', "0BFA8244-BC30-5AF3-B58C-CF5B8C976CFC", "abc"],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_vrs09_missing_or_quoted_idempotency_key(aiohttp_client, key, method) -> None:
    h = await start(aiohttp_client)
    if method == "POST":
        r = await h.client.post("/v2/seizures", seizure_body(), key=key)
    else:
        r = await h.client.delete("/v2/seizures/SZ-FIXTURE-0001", seizure_body(), key=key)
    assert r.status == 400 and r.problem == "invalid-request"
    assert not h.ledger


async def test_vrs20_rate_limit_carries_retry_after(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"]["retryAfterSeconds"] = 3
    h = await start(aiohttp_client, data, rate_limit=1.0, burst=2)
    assert (await h.client.create_query()).status == 202
    assert (await h.client.create_query()).status == 202
    r = await h.client.create_query()
    assert r.status == 429 and r.problem == "rate-limited"  # .problem checks Retry-After
    assert r.headers["Retry-After"] == "3" == str(r.json["retryAfterSeconds"])
    assert len(h.mock.registry.queries) == 2  # the limited request changed nothing


async def test_vrs20_injected_unavailable_carries_retry_after(aiohttp_client) -> None:
    data = fixture()
    data["behaviour"] = {
        "retryAfterSeconds": 5,
        "inject": [
            {"operation": "createVehicleQuery", "code": "service-unavailable", "count": 1},
            {"operation": "createVehicleQuery", "code": "internal-error", "count": 1},
        ],
    }
    h = await start(aiohttp_client, data)
    r = await h.client.create_query()
    assert r.status == 503 and r.problem == "service-unavailable"
    assert r.headers["Retry-After"] == "5"
    r = await h.client.create_query()
    assert r.status == 500 and r.problem == "internal-error"  # no Retry-After on 500
    assert (await h.client.create_query()).status == 202


@pytest.mark.parametrize(
    "signature",
    ["sig1=::", "sig1=:AAAA:;p=1", "sig1=:AAAA:, sig1=:BBBB:", "sig1=?1", "sig1=(:AAAA:)", "ß"],
)
async def test_vrs04_odd_signature_fields_still_get_a_signed_problem(aiohttp_client, signature):
    h = await start(aiohttp_client)

    def tamper(headers: dict[str, str]) -> None:
        headers["Signature"] = signature

    r = await h.client.get("/v2/vehicle-queries/VQ-1", tamper=tamper, check_signature=False)
    assert r.status == 401 and r.problem == "signature-invalid"
    assert r.headers["Signature-Input"].startswith('sig1=("@status"')
    assert (
        parse_dictionary(r.headers["Content-Digest"])["sha-256"].value
        == hashlib.sha256(r.body).digest()
    )
