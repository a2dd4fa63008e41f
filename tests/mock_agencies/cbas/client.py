"""A signing CBAS test client and a harness around the mock bank, shared by its tests.

The client builds requests with its own small XML writer (not the mock's), signs them with the
real court test certificate (bank ICD §4) and verifies every answer as a court would: signature
and bank certificate, HTTP status, ``Content-Type``, and the payload against the XSD (CBAS-01,
CBAS-02). Tests can tamper with the envelope before signing or with the bytes after.
"""

from __future__ import annotations

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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from gateway.security.certs import cert_sha256, load_certificate, load_private_key
from gateway.security.wssec import WsSecurityError, WsSecuritySigner, WsSecurityVerifier
from mock_agencies.cbas.server import CBAS_KEY, DEFAULT_FIXTURE, CbasMock, create_app, new_faults
from mock_agencies.common.clock import ManualClock

ROOT = Path(__file__).resolve().parents[3]
KEYS = ROOT / "tests" / "data" / "keys"
if not (KEYS / "cbas-court.key.pem").exists():
    KEYS = Path("/work/shared/agency-specs/examples/keys")
EXAMPLES = ROOT / "tests" / "data" / "cbas"
if not (EXAMPLES / "FreezeFunds.request.xml").exists():
    EXAMPLES = Path("/work/shared/agency-specs/examples/cbas")
SPEC_FIXTURE = Path("/work/shared/agency-specs/examples/cbas/fixture.json")
FIXTURE_PATH = (
    EXAMPLES / "fixture.json" if (EXAMPLES / "fixture.json").exists() else DEFAULT_FIXTURE
)

COURT_KEY = load_private_key(KEYS / "cbas-court.key.pem")
COURT_CERT = load_certificate(KEYS / "cbas-court.cert.pem")
BANK_KEY = load_private_key(KEYS / "cbas-bank.key.pem")
BANK_CERT = load_certificate(KEYS / "cbas-bank.cert.pem")
COURT_SHA = cert_sha256(COURT_CERT)
XSD = etree.XMLSchema(etree.parse(str(ROOT / "mock_agencies" / "cbas" / "bank-cbas-v1.xsd")))

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
CBAS = "urn:cbas:v1"
NSMAP = {"soap": SOAP, "cbas": CBAS}

PERSON = {"idType": "RESIDENT_ID", "idNumber": "110105199003071239", "name": "张三"}
LISI = {"idType": "RESIDENT_ID", "idNumber": "11010519491231002X", "name": "李四"}
COMPANY = {"idType": "USCC", "idNumber": "91110105MA01C2XK5L", "name": "示例贸易有限公司"}
ACC_MAIN = "6222020200112233445"  # 张三, CNY 150000.00, ACTIVE freeze 20000.00 by 310115
ACC_TIME = "6222020200998877665"  # 张三, CNY 50000.00 all frozen (police) + WAITLISTED 310115
ACC_USD = "6222020200556677889"  # 张三, USD 1200.50, DORMANT
ACC_EMPTY = "6222020200334455667"  # 李四, CNY 0.00
ACC_CORP = "110060776018800099999"  # company, CNY 2650000.00
ACC_CLOSED = "110060776018800088888"  # company, CLOSED
CASE_NO = "(2024)京0105执1234号"
PDF = b"%PDF-1.4\n% test document\n%%EOF\n"
PAYEE = {"accountName": "示例区人民法院执行款专户", "accountNo": "110060776018800012345",
         "bankName": "示例银行示例支行"}  # fmt: skip
REPEATED = frozenset({"account", "freeze"})


def fixture() -> dict[str, Any]:
    """A private copy of the example fixture (examples/cbas/fixture.json, unchanged)."""
    return json.loads(FIXTURE_PATH.read_text(encoding="utf-8"))


def new_id() -> str:
    return str(uuid.uuid4())


def make_certificate(
    *, days: tuple[int, int] = (-1, 365), digital_signature: bool = True
) -> tuple[Any, x509.Certificate]:
    """A fresh self-signed RSA-2048 certificate valid from/until ``days`` relative to now."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test court (TEST)")])
    usage = x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False,
        key_encipherment=not digital_signature, data_encipherment=False, key_agreement=False,
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


# -- building requests (independently of the mock's writer) ------------------------------------


def document(doc_id: str, *, content: bytes | None = None, sha: str | None = None) -> dict:
    import base64

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
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "requestId": request_id or new_id(),
        "court": {"code": court, "name": "示例区人民法院"},
        "caseNo": case_no,
        "officer": {"name": "王明", "credentialNo": "J110105000123"},
        "assistanceNotice": notice or document("NOTICE-1"),
    }
    if ruling:
        out["ruling"] = document("RULING-1")
    return out


def inquire(subject: Mapping[str, str] = PERSON, **kw: Any) -> dict[str, Any]:
    return {**context(ruling=False, **kw), "subject": dict(subject)}


def freeze(
    account: str = ACC_MAIN, amount: str = "1000.00", days: int | str = 365, *,
    subject: Mapping[str, str] = PERSON, currency: str | None = "CNY", **kw: Any,
) -> dict[str, Any]:  # fmt: skip
    return {**context(**kw), "subject": dict(subject), "accountNo": account,
            "amount": (amount, currency), "freezeDays": days}  # fmt: skip


def unfreeze(freeze_id: str, **kw: Any) -> dict[str, Any]:
    return {**context(**kw), "freezeId": freeze_id}


def renew(freeze_id: str, days: int | str = 365, **kw: Any) -> dict[str, Any]:
    return {**context(**kw), "freezeId": freeze_id, "freezeDays": days}


def deduct(
    account: str = ACC_MAIN, amount: str = "100.00", freeze_id: str | None = None, *,
    subject: Mapping[str, str] = PERSON, currency: str | None = "CNY", **kw: Any,
) -> dict[str, Any]:  # fmt: skip
    return {**context(**kw), "subject": dict(subject), "accountNo": account,
            "freezeId": freeze_id, "amount": (amount, currency),
            "payeeAccount": dict(PAYEE)}  # fmt: skip


def _add(parent: etree._Element, name: str, value: Any) -> None:
    if value is None:
        return
    el = etree.SubElement(parent, f"{{{CBAS}}}{name}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _add(el, k, v)
    elif isinstance(value, tuple):  # (amount, currency or None)
        el.text = value[0]
        if value[1] is not None:
            el.set("currency", value[1])
    else:
        el.text = str(value)


def payload(operation: str, members: Mapping[str, Any]) -> etree._Element:
    root = etree.Element(f"{{{CBAS}}}{operation}", nsmap={"cbas": CBAS})
    for k, v in members.items():
        _add(root, k, v)
    return root


def envelope(body_payload: etree._Element | None) -> etree._Element:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap=NSMAP)
    etree.SubElement(env, f"{{{SOAP}}}Header")
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    if body_payload is not None:
        body.append(body_payload)
    return env


# -- reading answers ----------------------------------------------------------------------------


def to_data(el: etree._Element) -> Any:
    """A payload as plain data: leaves are text, money leaves (text, currency), ``account`` and
    ``freeze`` lists; element order within a parent is kept by dict order."""
    children = [c for c in el if isinstance(c.tag, str)]
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
    verify_error: WsSecurityError | None
    envelope: etree._Element | None

    @property
    def payload(self) -> etree._Element:
        assert self.envelope is not None, self.body[:300]
        body = self.envelope.find(f"{{{SOAP}}}Body")
        assert body is not None
        children = [c for c in body if isinstance(c.tag, str)]
        assert len(children) == 1
        return children[0]

    @property
    def data(self) -> Any:
        return to_data(self.payload)

    @property
    def fault(self) -> str:
        """The fault code, after checking the fault's shape (bank ICD §5, CBAS-01)."""
        assert self.status == 500, (self.status, self.body[:500])
        el = self.payload
        assert el.tag == f"{{{SOAP}}}Fault"
        names = [c.tag for c in el]
        assert names == ["faultcode", "faultstring", "detail"], names
        detail = el.find("detail/{urn:cbas:v1}FaultDetail")
        assert detail is not None
        XSD.assertValid(etree.ElementTree(copy.deepcopy(detail)))
        code = detail.findtext("{urn:cbas:v1}code")
        server = code == "SERVICE_UNAVAILABLE"
        qname = el.findtext("faultcode")
        assert qname == f"{el.prefix}:{'Server' if server else 'Client'}", qname
        assert el.findtext("faultstring") == detail.findtext("{urn:cbas:v1}message")
        retry = detail.find("{urn:cbas:v1}retryAfterSeconds")
        if code == "RATE_LIMITED":
            assert retry is not None
        elif code != "SERVICE_UNAVAILABLE":
            assert retry is None
        return str(code)

    @property
    def message(self) -> str:
        return str(self.payload.findtext("detail/{urn:cbas:v1}FaultDetail/{urn:cbas:v1}message"))

    @property
    def retry_after(self) -> int:
        text = self.payload.findtext(".//{urn:cbas:v1}retryAfterSeconds")
        return int(text or 0)


class SignedClient:
    """Signs as a court (bank ICD §4) and verifies each answer as the court side would."""

    def __init__(
        self,
        client: Any,
        clock: Callable[[], float],
        key: Any = COURT_KEY,
        cert: Any = COURT_CERT,
        path: str = "/cbas/v1",
    ) -> None:
        self.client = client
        self.clock = clock
        self.key, self.cert = key, cert
        self.signer = WsSecuritySigner(key, cert)
        self.path = path
        self.verifier = WsSecurityVerifier({cert_sha256(BANK_CERT): "bank"}, clock=self.now)

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)

    def with_cert(self, key: Any, cert: Any) -> SignedClient:
        return SignedClient(self.client, self.clock, key, cert, self.path)

    def sign(self, env: etree._Element, created: float | None = None) -> bytes:
        at = self.clock() if created is None else created
        return self.signer.sign(env, created=datetime.datetime.fromtimestamp(at, datetime.UTC))

    async def send(
        self,
        data: bytes,
        *,
        action: str | None,
        content_type: str | None = "text/xml; charset=utf-8",
        check_signature: bool = True,
        path: str | None = None,
    ) -> Reply:
        headers = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if action is not None:
            headers["SOAPAction"] = action
        body_data: Any = io.BytesIO(data) if len(data) > 1 << 20 else data  # no loop stall
        async with self.client.post(path or self.path, data=body_data, headers=headers) as resp:
            status, resp_headers, body = resp.status, resp.headers, await resp.read()
        reply = Reply(status, resp_headers, body, None, None)
        try:
            verified = self.verifier.verify(body)
            reply.envelope = verified.envelope
        except WsSecurityError as exc:
            reply.verify_error = exc
            with contextlib.suppress(etree.XMLSyntaxError):
                reply.envelope = etree.fromstring(body)
        if check_signature:
            assert reply.verify_error is None, (reply.verify_error, body[:300])  # CBAS-02
            assert resp_headers["Content-Type"] == "text/xml; charset=utf-8"  # CBAS-01
            assert status in (200, 500)
            if status == 200:  # CBAS-01: every answer validates against the XSD
                XSD.assertValid(etree.ElementTree(copy.deepcopy(reply.payload)))
        return reply

    async def call(
        self,
        operation: str,
        members: Mapping[str, Any],
        *,
        action: str | None = "auto",
        tamper: Callable[[etree._Element], None] | None = None,
        after: Callable[[bytes], bytes] | None = None,
        created: float | None = None,
        **kw: Any,
    ) -> Reply:
        """Build, sign and send one request; ``tamper`` edits the envelope before signing,
        ``after`` the signed bytes."""
        env = envelope(payload(operation, members))
        if tamper is not None:
            tamper(env)
        data = self.sign(env, created)
        if after is not None:
            data = after(data)
        if action == "auto":
            action = f'"urn:cbas:v1:{operation}"'
        return await self.send(data, action=action, **kw)

    async def fetch(self, ticket_id: str, **kw: Any) -> Reply:
        return await self.call("FetchResult", {"requestId": new_id(), "ticketId": ticket_id}, **kw)

    async def run(self, operation: str, members: Mapping[str, Any]) -> Reply:
        """Send, poll past PENDING (waiting retryAfterSeconds on the manual clock, CBAS-23)
        and return the final FetchResultResponse."""
        receipt = await self.call(operation, members)
        assert receipt.status == 200, receipt.body[:600]
        ticket = receipt.data["ticketId"]
        wait = int(receipt.data["retryAfterSeconds"])
        for _ in range(20):
            if isinstance(self.clock, ManualClock):
                self.clock.advance(wait)
            reply = await self.fetch(ticket)
            assert reply.status == 200, reply.body[:600]
            if reply.data["status"] != "PENDING":
                return reply
            wait = int(reply.data["retryAfterSeconds"])
        raise AssertionError("still PENDING after 20 polls")

    async def result(self, operation: str, members: Mapping[str, Any]) -> dict[str, Any]:
        """The final result's members (COMPLETED), or {"rejection": code} (REJECTED)."""
        data = (await self.run(operation, members)).data
        if data["status"] == "REJECTED":
            return {"rejection": data["rejection"]["code"]}
        assert data["status"] == "COMPLETED"
        (name,) = [k for k in data if k.endswith("Result")]
        return dict(data[name])


@dataclass
class Harness:
    app: web.Application
    mock: CbasMock
    client: SignedClient
    clock: ManualClock
    test_client: TestClient

    @property
    def ledger(self) -> list[dict[str, Any]]:
        return self.mock.bank.ledger_entries()

    def events(self) -> list[tuple[str, str | None]]:
        return [(e["event"], e.get("freezeId")) for e in self.ledger]


async def start(
    aiohttp_client: Callable[..., Any],
    fixture_data: Mapping[str, Any] | None = None,
    *,
    clock: ManualClock | None = None,
    seed: int | None = 1,
    **app_kw: Any,
) -> Harness:
    """The bank on a loopback test server with a manual clock, and a signed client for it."""
    clock = clock or ManualClock(float(int(time.time())))  # whole seconds: exact boundaries
    data = copy.deepcopy(dict(fixture_data)) if fixture_data is not None else fixture()
    app = create_app(data, BANK_KEY, BANK_CERT, clock=clock, faults=new_faults(seed), **app_kw)
    test_client = await aiohttp_client(app)
    return Harness(app, app[CBAS_KEY], SignedClient(test_client, clock), clock, test_client)
