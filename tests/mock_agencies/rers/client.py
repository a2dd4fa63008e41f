"""A signing RERS test client and a harness around the mock registry, shared by its tests.

The client builds requests with its own small XML writer (not the mock's), signs them with the
real court test key (ICD §4, ECDSA P-256) and verifies every answer as a court would: signature
and registry certificate, ``respondedAt`` freshness, the echoed requestId, HTTP status,
``Content-Type``, and the payload (or FaultDetail) against the XSD (RERS-01, RERS-02, RERS-07,
RERS-18). Tests can tamper with the envelope before signing or with the bytes after.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import hashlib
import io
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from gateway.security.certs import cert_sha256, load_certificate, load_private_key
from gateway.security.enveloped import EnvelopedError, EnvelopedSigner, EnvelopedVerifier
from mock_agencies.common.clock import ManualClock
from mock_agencies.rers.server import DEFAULT_FIXTURE, RERS_KEY, RersMock, create_app, new_faults

ROOT = Path(__file__).resolve().parents[3]
KEYS = ROOT / "tests" / "data" / "keys"
if not (KEYS / "rers-court.key.pem").exists():
    KEYS = Path("/work/shared/agency-specs/examples/keys")
EXAMPLES = ROOT / "tests" / "data" / "rers"
if not (EXAMPLES / "SealProperty.request.xml").exists():
    EXAMPLES = Path("/work/shared/agency-specs/examples/rers")
FIXTURE_PATH = EXAMPLES / "fixture.json"
if not FIXTURE_PATH.exists():
    FIXTURE_PATH = DEFAULT_FIXTURE

COURT_KEY = load_private_key(KEYS / "rers-court.key.pem")
COURT_CERT = load_certificate(KEYS / "rers-court.cert.pem")
REGISTRY_KEY = load_private_key(KEYS / "rers-registry.key.pem")
REGISTRY_CERT = load_certificate(KEYS / "rers-registry.cert.pem")
COURT_SHA = cert_sha256(COURT_CERT)
XSD = etree.XMLSchema(etree.parse(str(ROOT / "mock_agencies/rers/land-registry-rers-v1.xsd")))

ENV = "http://www.w3.org/2003/05/soap-envelope"
RERS = "urn:rers:v1"
DS = "http://www.w3.org/2000/09/xmldsig#"
NSMAP = {"env": ENV, "rers": RERS}
CONTENT_TYPE = "application/soap+xml; charset=utf-8"

PERSON = {"idType": "RESIDENT_ID", "idNumber": "110105199003071239", "name": "张三"}
LISI = {"idType": "RESIDENT_ID", "idNumber": "11010519491231002X", "name": "李四"}
COMPANY = {"idType": "USCC", "idNumber": "91110105MA01C2XK5L", "name": "示例贸易有限公司"}
UNIT_SEALED = "110105003002GB00012F00010023"  # 张三, OWNERSHIP SOLE, ACTIVE seal by 310115
UNIT_PRE = "110105005001GB00231F00020105"  # 张三 0.5 + 李四 0.5, PRE_NOTICE BY_SHARE
UNIT_CORP = "110105007003GB00087F00050301"  # company, OWNERSHIP SOLE, no seals
CASE_NO = "(2024)京0105执1234号"
PDF = b"%PDF-1.4\n% test document\n%%EOF\n"
REPEATED = frozenset({"property", "mortgage", "seal"})


def fixture() -> dict[str, Any]:
    """A private copy of the example fixture (examples/rers/fixture.json, unchanged)."""
    return json.loads(FIXTURE_PATH.read_text(encoding="utf-8"))


def new_id() -> str:
    return str(uuid.uuid4())


def at(text: str) -> float:
    """POSIX seconds of an RFC 3339 UTC timestamp (whole seconds)."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def utc(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_certificate(
    *, days: tuple[int, int] = (-1, 365), digital_signature: bool = True
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh self-signed EC P-256 certificate valid from/until ``days`` relative to now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test court RERS (TEST)")])
    usage = x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=not digital_signature,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def cert_b64(cert: x509.Certificate) -> bytes:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER))


# -- building requests (independently of the mock's writer) ------------------------------------


def document(doc_id: str, *, content: bytes | None = None, sha: str | None = None) -> dict:
    data = content if content is not None else PDF
    out: dict[str, Any] = {"documentId": doc_id, "sha256": sha or hashlib.sha256(data).hexdigest()}
    if content is not None:
        out["content"] = base64.b64encode(content).decode("ascii")
    return out


def context(
    court: str = "110105",
    case_no: str = CASE_NO,
    *,
    request_id: str | None = None,
    ruling: bool = True,
    notice: dict | None = None,
    court_name: str = "示例区人民法院",
) -> dict[str, Any]:
    """The request context of ICD §2; ``sentAt`` is added by the client when it signs."""
    out: dict[str, Any] = {
        "requestId": request_id or new_id(),
        "court": {"code": court, "name": court_name},
        "caseNo": case_no,
        "officer": {"name": "王明", "credentialNo": "J110105000123"},
        "assistanceNotice": notice or document("NOTICE-1"),
    }
    if ruling:
        out["ruling"] = document("RULING-1")
    return out


def query(subject: Mapping[str, str] = PERSON, **kw: Any) -> dict[str, Any]:
    return {**context(ruling=kw.pop("ruling", False), **kw), "subject": dict(subject)}


def seal(
    unit: str = UNIT_CORP, mode: str = "SEAL", days: int | str = 1095, *,
    subject: Mapping[str, str] = COMPANY, **kw: Any,
) -> dict[str, Any]:  # fmt: skip
    return {**context(**kw), "subject": dict(subject), "unitNo": unit, "mode": mode,
            "sealDays": days}  # fmt: skip


def release(seal_id: str, **kw: Any) -> dict[str, Any]:
    return {**context(**kw), "sealId": seal_id}


def renew(seal_id: str, days: int | str = 365, **kw: Any) -> dict[str, Any]:
    return {**context(**kw), "sealId": seal_id, "sealDays": days}


def _add(parent: etree._Element, name: str, value: Any) -> None:
    if value is None:
        return
    el = etree.SubElement(parent, f"{{{RERS}}}{name}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _add(el, k, v)
    else:
        el.text = str(value)


def payload(operation: str, members: Mapping[str, Any], sent_at: str | None) -> etree._Element:
    """The request element; ``sentAt`` goes right after ``requestId`` (XSD RequestContext)."""
    root = etree.Element(f"{{{RERS}}}{operation}", nsmap={"rers": RERS})
    for k, v in members.items():
        _add(root, k, v)
        if k == "requestId" and sent_at is not None and "sentAt" not in members:
            _add(root, "sentAt", sent_at)
    return root


def envelope(body_payload: etree._Element | None, *, header: bool = False) -> etree._Element:
    env = etree.Element(f"{{{ENV}}}Envelope", nsmap=NSMAP)
    if header:
        etree.SubElement(env, f"{{{ENV}}}Header")
    body = etree.SubElement(env, f"{{{ENV}}}Body")
    if body_payload is not None:
        body.append(body_payload)
    etree.indent(env, space="  ")
    return env


# -- reading answers ----------------------------------------------------------------------------


def to_data(el: etree._Element) -> Any:
    """A payload as plain data: leaves are text (money leaves (text, currency)), ``property``,
    ``mortgage`` and ``seal`` lists; ``ds:Signature`` left out; element order kept."""
    children = [c for c in el if isinstance(c.tag, str) and c.tag != f"{{{DS}}}Signature"]
    if not children:
        text = el.text or ""
        return (text, el.get("currency")) if "currency" in el.attrib else text
    out: dict[str, Any] = {}
    for c in children:
        name = etree.QName(c).localname
        if name in REPEATED:
            out.setdefault(name, []).append(to_data(c))
        else:
            out[name] = to_data(c)
    return out


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes
    verify_error: EnvelopedError | None
    envelope: etree._Element | None
    signed: etree._Element | None  # the verified payload (operation element or FaultDetail)

    @property
    def payload(self) -> etree._Element:
        assert self.envelope is not None, self.body[:300]
        body = self.envelope.find(f"{{{ENV}}}Body")
        assert body is not None
        children = [c for c in body if isinstance(c.tag, str)]
        assert len(children) == 1
        return children[0]

    @property
    def data(self) -> Any:
        return to_data(self.payload)

    @property
    def detail(self) -> etree._Element:
        el = self.payload.find(f"{{{ENV}}}Detail/{{{RERS}}}FaultDetail")
        assert el is not None, self.body[:500]
        return el

    @property
    def fault(self) -> str:
        """The fault code, after checking the fault's shape (ICD §5, RERS-01, RERS-18)."""
        el = self.payload
        assert el.tag == f"{{{ENV}}}Fault", self.body[:500]
        names = [etree.QName(c).localname for c in el]
        assert names == ["Code", "Reason", "Detail"], names
        detail = self.detail
        assert detail is self.signed  # the FaultDetail carries the verified signature
        code = str(detail.findtext(f"{{{RERS}}}code"))
        receiver = code == "BUSY"
        assert self.status == (500 if receiver else 400), (self.status, code)
        value = el.findtext(f"{{{ENV}}}Code/{{{ENV}}}Value") or ""
        prefix, _, local = value.partition(":")
        assert el.nsmap.get(prefix) == ENV and local == ("Receiver" if receiver else "Sender")
        sub = el.findtext(f"{{{ENV}}}Code/{{{ENV}}}Subcode/{{{ENV}}}Value") or ""
        prefix, _, local = sub.partition(":")
        assert el.nsmap.get(prefix) == RERS and local == code, sub  # RERS-18
        reason = el.find(f"{{{ENV}}}Reason/{{{ENV}}}Text")
        assert reason is not None and reason.get("{http://www.w3.org/XML/1998/namespace}lang")
        assert reason.text == detail.findtext(f"{{{RERS}}}message")
        assert detail.find(f"{{{RERS}}}respondedAt") is not None  # RERS-18
        retry = detail.find(f"{{{RERS}}}retryAfterSeconds")
        assert (retry is not None) == (code in ("BUSY", "RATE_LIMITED")), code  # RERS-19
        return code

    @property
    def message(self) -> str:
        return str(self.detail.findtext(f"{{{RERS}}}message"))

    @property
    def request_id(self) -> str | None:
        return self.detail.findtext(f"{{{RERS}}}requestId")

    @property
    def retry_after(self) -> int:
        return int(self.detail.findtext(f"{{{RERS}}}retryAfterSeconds") or 0)


class SignedClient:
    """Signs as a court (ICD §4) and verifies each answer as the court side would."""

    def __init__(
        self,
        client: Any,
        clock: Callable[[], float],
        key: Any = COURT_KEY,
        cert: Any = COURT_CERT,
        path: str = "/rers/v1",
    ) -> None:
        self.client = client
        self.clock = clock
        self.key, self.cert = key, cert
        # The signer judges its certificate by the clock: sign inside the validity window
        # (tests of RERS-05 swap bad certificates in after signing).
        self.signer = EnvelopedSigner(key, cert, clock=lambda: datetime.datetime.now(datetime.UTC))
        self.path = path
        self.verifier = EnvelopedVerifier(
            {cert_sha256(REGISTRY_CERT): "registry"}, clock=self.now, time_field="respondedAt"
        )

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)

    def with_cert(self, key: Any, cert: Any) -> SignedClient:
        return SignedClient(self.client, self.clock, key, cert, self.path)

    def sign(self, env: etree._Element) -> bytes:
        return self.signer.sign(env)

    async def send(
        self,
        data: bytes,
        *,
        content_type: str | None = CONTENT_TYPE,
        check: bool = True,
        request_id: str | None = None,
        path: str | None = None,
    ) -> Reply:
        headers = {} if content_type is None else {"Content-Type": content_type}
        body_data: Any = io.BytesIO(data) if len(data) > 1 << 20 else data  # no loop stall
        async with self.client.post(path or self.path, data=body_data, headers=headers) as resp:
            status, resp_headers, body = resp.status, resp.headers, await resp.read()
        reply = Reply(status, resp_headers, body, None, None, None)
        try:
            verified = self.verifier.verify(body)
            reply.envelope, reply.signed = verified.envelope, verified.payload
        except EnvelopedError as exc:
            reply.verify_error = exc
            with contextlib.suppress(etree.XMLSyntaxError):
                reply.envelope = etree.fromstring(body)
        if check:
            assert reply.verify_error is None, (reply.verify_error, body[:300])  # RERS-02/03
            assert resp_headers["Content-Type"] == CONTENT_TYPE  # RERS-01
            assert status in (200, 400, 500)
            signed = reply.signed
            assert signed is not None
            XSD.assertValid(etree.ElementTree(copy.deepcopy(signed)))  # RERS-02
            if status == 200:
                assert signed is reply.payload
            if request_id is not None and (status == 200 or signed.find(f"{{{RERS}}}requestId")
                                           is not None):  # fmt: skip
                assert signed.findtext(f"{{{RERS}}}requestId") == request_id  # RERS-07
        return reply

    async def call(
        self,
        operation: str,
        members: Mapping[str, Any],
        *,
        action: str | None = "auto",
        tamper: Callable[[etree._Element], None] | None = None,
        after: Callable[[bytes], bytes] | None = None,
        sent_at: float | None = None,
        **kw: Any,
    ) -> Reply:
        """Build, sign and send one request with ``sentAt`` = the clock (or ``sent_at``);
        ``tamper`` edits the envelope before signing, ``after`` the signed bytes."""
        stamp = utc(self.clock() if sent_at is None else sent_at)
        env = envelope(payload(operation, members, stamp))
        if tamper is not None:
            tamper(env)
        data = self.sign(env)
        if after is not None:
            data = after(data)
        if "content_type" not in kw:  # ICD §1: the action names the operation
            name = f"urn:rers:v1:{operation}" if action == "auto" else action
            kw["content_type"] = f'{CONTENT_TYPE}; action="{name}"' if name else CONTENT_TYPE
        return await self.send(data, request_id=members.get("requestId"), **kw)

    async def ok(self, operation: str, members: Mapping[str, Any]) -> dict[str, Any]:
        """Send and return the success response's members (asserting HTTP 200)."""
        reply = await self.call(operation, members)
        assert reply.status == 200, reply.body[:800]
        return dict(reply.data)


@dataclass
class Harness:
    app: web.Application
    mock: RersMock
    client: SignedClient
    clock: ManualClock
    test_client: TestClient

    @property
    def ledger(self) -> list[dict[str, Any]]:
        return self.mock.ledger_entries()

    def events(self) -> list[tuple[str, str]]:
        return [(e["event"], e["sealId"]) for e in self.ledger]


async def start(
    aiohttp_client: Callable[..., Any],
    fixture_data: Mapping[str, Any] | None = None,
    *,
    clock: ManualClock | None = None,
    seed: int | None = 1,
    **app_kw: Any,
) -> Harness:
    """The registry on a loopback test server with a manual clock, and a signed client for it."""
    clock = clock or ManualClock(float(int(time.time())))  # whole seconds: exact boundaries
    data = copy.deepcopy(dict(fixture_data)) if fixture_data is not None else fixture()
    app = create_app(
        data, REGISTRY_KEY, REGISTRY_CERT, clock=clock, faults=new_faults(seed), **app_kw
    )
    test_client = await aiohttp_client(app)
    return Harness(app, app[RERS_KEY], SignedClient(test_client, clock), clock, test_client)
