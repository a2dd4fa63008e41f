"""SOAP 1.1 and 1.2 over the REST transport: zeep builds and reads payloads, hooks do security.

CBAS (SOAP 1.1, WS-Security) and RERS (SOAP 1.2, enveloped signature) share everything but the
signature profile, so this transport knows neither: the caller passes a signing hook (envelope
-> bytes) and a verifying hook (bytes -> something with the verified ``body``). HTTP goes
through :class:`gateway.protocols.rest.RestTransport` (pool, timeouts, TLS, throttle, error
translation), composed rather than copied.

zeep is used for what it is good at, the WSDL and XSD binding of Python values, and nothing
else: its HTTP and its WS-Security are not used. The WSDL the adapter package carries is
loaded by :class:`LocalFilesTransport`, which reads files under the WSDL's folder only and
refuses any network load, with zeep's DTD, entity and external-reference guards on. Responses
are parsed by :func:`gateway.security.xmlsafe.parse_xml` inside the verifier, and zeep only
ever sees the verified Body.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, Literal, Protocol, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import zeep
import zeep.exceptions
from lxml import etree
from zeep.wsdl.bindings.soap import (
    Soap11Binding,
    Soap12Binding,
)
from zeep.xsd.context import XmlParserContext

from gateway.config import AgencyConfig
from gateway.errors import ConfigError, ResponseVerificationError, TransientError
from gateway.protocols.rest import RestResponse, RestTransport
from gateway.security.xmldsig import XmlSecurityError, children
from gateway.security.xmlsafe import XmlRejected, parse_xml

__all__ = [
    "SOAP11_NS",
    "SOAP12_NS",
    "EnvelopeSigner",
    "EnvelopeVerifier",
    "LocalFilesTransport",
    "NetworkLoadForbidden",
    "SoapFault",
    "SoapReply",
    "SoapTransport",
    "SoapVersion",
    "VerifiedBody",
    "hardened_zeep_settings",
    "parse_fault",
]

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
SoapVersion = Literal["1.1", "1.2"]

_NS: Final[dict[str, str]] = {"1.1": SOAP11_NS, "1.2": SOAP12_NS}
_BINDINGS: Final[dict[str, type]] = {"1.1": Soap11Binding, "1.2": Soap12Binding}
# SOAP 1.1 §6.2: faults come with 500. SOAP 1.2 HTTP binding: Sender 400, Receiver 500.
_FAULT_STATUSES: Final[dict[str, frozenset[int]]] = {
    "1.1": frozenset({500}),
    "1.2": frozenset({400, 500}),
}
_DELAY_SECONDS: Final = re.compile(r"[0-9]{1,9}")
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"


class VerifiedBody(Protocol):
    """What a verifying hook returns: at least the signed soap:Body, the only part to read."""

    @property
    def body(self) -> etree._Element: ...


V = TypeVar("V", bound=VerifiedBody)
# Returns the complete message to send: the envelope with its signature, serialised.
EnvelopeSigner = Callable[[etree._Element], bytes]
# Raises XmlSecurityError (WsSecurityError, ...) when the response fails the profile's checks.
EnvelopeVerifier = Callable[[bytes], V]


class NetworkLoadForbidden(Exception):
    """zeep tried to fetch a WSDL or XSD from the network, or a file outside the WSDL folder."""


@dataclass(frozen=True, slots=True)
class SoapFault:
    """A SOAP fault, either version. Codes are Clark names: ``{ns}Client``, ``{urn:rers:v1}BUSY``.

    ``detail_element`` is the application's detail element (the first element inside
    ``detail``/``env:Detail``, e.g. ``cbas:FaultDetail``), or None.
    """

    code: str
    subcode: str | None
    reason: str
    detail_element: etree._Element | None

    @property
    def code_local(self) -> str:
        """The fault code without its namespace: ``Client``, ``Server``, ``Sender``..."""
        return str(etree.QName(self.code).localname)


@dataclass(frozen=True, slots=True)
class SoapReply(Generic[V]):
    """A verified SOAP answer: a payload (HTTP 200) or a fault (HTTP 500, or 400 in SOAP 1.2).

    A fault is returned, not raised: whether it is transient or permanent is agency knowledge,
    decided by the adapter from ``fault.detail_element``.
    """

    status: int
    verified: V  # what the verifying hook returned
    body: etree._Element  # verified.body: the signed soap:Body
    payload: etree._Element | None  # the Body's one child when not a fault
    fault: SoapFault | None
    http: RestResponse


def hardened_zeep_settings() -> zeep.Settings:
    """zeep settings for reading our own WSDL: strict, no DTDs, entities or external fetches."""
    return zeep.Settings(
        strict=True,
        raw_response=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
        xsd_ignore_sequence_order=False,
    )


class LocalFilesTransport:
    """A zeep transport that only reads local files under ``root`` and never uses the network.

    zeep calls ``load`` for the WSDL and every XSD it imports. The HTTP methods exist because
    zeep's interface has them; calling one is a bug, so they raise.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.cache = None  # zeep reads this attribute

    def load(self, url: str) -> bytes:
        parts = urlsplit(str(url))
        if parts.scheme == "file":
            path = Path(url2pathname(parts.path))
        elif parts.scheme and len(parts.scheme) > 1:  # one letter: a Windows drive, a path
            raise NetworkLoadForbidden(f"refusing to load {url}: only local files are read")
        else:
            path = Path(str(url))
        path = path.resolve()
        if not path.is_relative_to(self.root):
            raise NetworkLoadForbidden(f"refusing to load {path}: outside {self.root}")
        data = path.read_bytes()
        try:
            parse_xml(data)  # the same DTD/entity/PI refusal as for messages, before zeep
        except XmlRejected as exc:
            raise NetworkLoadForbidden(f"refusing {path}: {exc.reason}") from None
        return data

    def get(self, address: str, params: Any, headers: Any) -> Any:
        raise NetworkLoadForbidden(f"zeep must not send requests (GET {address})")

    def post(self, address: str, message: Any, headers: Any) -> Any:
        raise NetworkLoadForbidden(f"zeep must not send requests (POST {address})")

    def post_xml(self, address: str, envelope: Any, headers: Any) -> Any:
        raise NetworkLoadForbidden(f"zeep must not send requests (POST {address})")


def _qname_text(element: etree._Element) -> str:
    """The QName in an element's text (``soap:Client``) as a Clark name, prefix resolved."""
    text = (element.text or "").strip()
    prefix, sep, local = text.rpartition(":")
    namespace = element.nsmap.get(prefix if sep else None)
    if sep and namespace is None:
        raise ValueError(f"undeclared prefix in {text!r}")
    return f"{{{namespace}}}{local}" if namespace else local


def parse_fault(fault: etree._Element) -> SoapFault:
    """A ``soap:Fault`` (1.1 or 1.2) as a :class:`SoapFault`; ValueError if it is malformed."""
    ns = etree.QName(fault).namespace
    if ns == SOAP11_NS:
        code_el, reason_el = fault.find("faultcode"), fault.find("faultstring")
        if code_el is None or reason_el is None:
            raise ValueError("SOAP 1.1 fault without faultcode or faultstring")
        detail = fault.find("detail")
        return SoapFault(
            code=_qname_text(code_el),
            subcode=None,
            reason=(reason_el.text or "").strip(),
            detail_element=_first_child(detail),
        )
    if ns == SOAP12_NS:
        value = fault.find(f"{{{ns}}}Code/{{{ns}}}Value")
        if value is None:
            raise ValueError("SOAP 1.2 fault without Code/Value")
        sub = fault.find(f"{{{ns}}}Code/{{{ns}}}Subcode/{{{ns}}}Value")
        texts = fault.findall(f"{{{ns}}}Reason/{{{ns}}}Text")
        if not texts:
            raise ValueError("SOAP 1.2 fault without Reason/Text")
        chosen = next((t for t in texts if t.get(_XML_LANG, "").startswith("en")), texts[0])
        return SoapFault(
            code=_qname_text(value),
            subcode=_qname_text(sub) if sub is not None else None,
            reason=(chosen.text or "").strip(),
            detail_element=_first_child(fault.find(f"{{{ns}}}Detail")),
        )
    raise ValueError(f"not a SOAP fault: {fault.tag}")


def _first_child(element: etree._Element | None) -> etree._Element | None:
    if element is None:
        return None
    kids = children(element)
    return kids[0] if kids else None


def _retry_after(value: str | None) -> float | None:
    if value is None or not _DELAY_SECONDS.fullmatch(value.strip()):
        return None
    return float(value.strip())


class SoapTransport(Generic[V]):
    """One agency's SOAP endpoint: build with zeep, sign, POST, verify, read with zeep.

    The endpoint is ``agency.endpoint`` (its path is the POST target). ``rest`` may be given to
    share a RestTransport whose ``base_url`` is the endpoint's origin; it is then not closed here.
    ``clock`` stamps each response's ``received`` (the RestTransport's, when one is made here).
    """

    def __init__(
        self,
        agency: AgencyConfig,
        *,
        version: SoapVersion,
        wsdl_path: Path,
        signer: EnvelopeSigner,
        verifier: EnvelopeVerifier[V],
        rest: RestTransport | None = None,
        prefixes: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if version not in _NS:
            raise ValueError(f"SOAP version must be 1.1 or 1.2, not {version!r}")
        self.version: SoapVersion = version
        self.soap_ns = _NS[version]
        self._agency_id = agency.id
        self._signer = signer
        self._verifier = verifier
        self._settings = hardened_zeep_settings()
        self._client, self._service = self._load_wsdl(Path(wsdl_path), version, prefixes or {})

        parts = urlsplit(agency.endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if rest is None:
            self.rest = RestTransport(dataclasses.replace(agency, endpoint=origin), clock=clock)
            self._owns_rest = True
        else:
            if rest.base_url != origin:
                raise ValueError(f"rest.base_url must be {origin}, not {rest.base_url}")
            self.rest, self._owns_rest = rest, False

    def _load_wsdl(
        self, wsdl_path: Path, version: SoapVersion, prefixes: Mapping[str, str]
    ) -> tuple[Any, Any]:
        try:
            client = zeep.Client(  # type: ignore[no-untyped-call]
                str(wsdl_path.resolve()),
                transport=LocalFilesTransport(wsdl_path.resolve().parent),
                settings=self._settings,
            )
        except (OSError, NetworkLoadForbidden, zeep.exceptions.Error) as exc:
            raise ConfigError("wsdl_path", f"cannot load {wsdl_path}: {exc}") from exc
        for prefix, namespace in prefixes.items():
            client.set_ns_prefix(prefix, namespace)  # type: ignore[no-untyped-call]
        for service in client.wsdl.services.values():
            for port in service.ports.values():
                if isinstance(port.binding, _BINDINGS[version]):
                    return client, client.bind(service.name, port.name)
        raise ConfigError("wsdl_path", f"{wsdl_path} has no SOAP {version} port")

    def _operation(self, name: str) -> Any:
        try:
            return self._service._binding.get(name)
        except ValueError:
            raise ValueError(f"the WSDL has no operation {name!r}") from None

    def build(self, operation: str, /, **payload: Any) -> etree._Element:
        """The unsigned request envelope for ``operation`` with ``payload`` as its fields.

        Laid out with two-space indentation like the agencies' examples. Raises ValueError when
        zeep cannot bind the values (a programming error: canonical requests are validated).
        """
        self._operation(operation)
        try:
            envelope: etree._Element = self._client.create_message(
                self._service, operation, **payload
            )
        except (TypeError, zeep.exceptions.Error) as exc:
            raise ValueError(f"{operation}: cannot build the request: {exc}") from exc
        etree.indent(envelope, space="  ")
        return envelope

    def headers(self, operation: str) -> dict[str, str]:
        """HTTP headers for ``operation``: CBAS-01 for 1.1; the action parameter for 1.2."""
        action = self._operation(operation).soapaction or ""
        if self.version == "1.1":
            return {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
        return {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}

    async def call(self, operation: str, envelope: etree._Element) -> SoapReply[V]:
        """Sign ``envelope``, POST it, and return the verified answer.

        Raises what RestTransport raises for the exchange itself; ``TransientError`` for an HTTP
        status the SOAP binding does not use or a body that is not a SOAP message;
        ``ResponseVerificationError`` for a SOAP message failing the profile's checks (CBAS-07).
        """
        headers = self.headers(operation)
        body = self._signer(envelope)
        response = await self.rest.request("POST", self.path, body=body, headers=headers)
        return self.read_reply(operation, response)

    def read_reply(self, operation: str, response: RestResponse) -> SoapReply[V]:
        """Classify one HTTP response (split from :meth:`call` so it can be tested alone)."""
        what = f"{self._agency_id}: {operation}"
        status = response.status
        is_fault_status = status in _FAULT_STATUSES[self.version]
        if status != 200 and not is_fault_status:
            raise TransientError(
                f"{what}: HTTP {status} is not a SOAP answer",
                code=f"http-{status}",
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        try:
            verified = self._verifier(response.body)
        except XmlSecurityError as exc:
            # Not a SOAP envelope at all: the transport says so with its own code and leaves the
            # verdict to the adapter (both SOAP adapters discard it as a security event, since a
            # 200 or 500 from the agency's endpoint must be a signed envelope; CBAS-07).
            if exc.code == "SCHEMA_INVALID":
                raise TransientError(
                    f"{what}: HTTP {status} without a SOAP envelope: {exc.message}",
                    code="not-soap",
                ) from None
            raise ResponseVerificationError(
                f"{what}: response discarded: {exc}", code=exc.code
            ) from None
        body = verified.body
        kids = children(body)
        fault_el = kids[0] if len(kids) == 1 and kids[0].tag == f"{{{self.soap_ns}}}Fault" else None
        if status == 200:
            if len(kids) != 1 or fault_el is not None:
                raise TransientError(
                    f"{what}: HTTP 200 whose Body is not one payload element",
                    code="invalid-response",
                )
            return SoapReply(status, verified, body, kids[0], None, response)
        if fault_el is None:
            raise TransientError(f"{what}: HTTP {status} without a SOAP fault",
                                 code="invalid-response")
        try:
            fault = parse_fault(fault_el)
        except ValueError as exc:
            raise TransientError(f"{what}: malformed fault: {exc}",
                                 code="invalid-response") from None
        return SoapReply(status, verified, body, None, fault, response)

    def parse(self, operation: str, body_element: etree._Element) -> Any:
        """The operation's output payload as zeep objects (attribute access, ``Decimal``...).

        ``body_element`` is the verified soap:Body (or its one child). A payload that does not
        match the WSDL's output element is not a protocol answer: ``TransientError``.
        """
        output = self._operation(operation).output.body
        payload = body_element
        if body_element.tag == f"{{{self.soap_ns}}}Body":
            kids = children(body_element)
            if len(kids) != 1:
                raise TransientError(
                    f"{self._agency_id}: {operation}: Body holds {len(kids)} elements",
                    code="invalid-response",
                )
            payload = kids[0]
        if etree.QName(payload).text != output.qname.text:
            raise TransientError(
                f"{self._agency_id}: {operation}: expected {output.qname.text}, got {payload.tag}",
                code="invalid-response",
            )
        return self._parse_element(output, payload, operation)

    def parse_element(self, element: etree._Element) -> Any:
        """Any global element of the WSDL's schemas (e.g. a fault's detail) as zeep objects."""
        try:
            declaration = self._client.get_element(etree.QName(element).text)
        except (LookupError, zeep.exceptions.Error) as exc:
            raise TransientError(
                f"{self._agency_id}: unknown element {element.tag}: {exc}", code="invalid-response"
            ) from None
        return self._parse_element(declaration, element, element.tag)

    def _parse_element(self, declaration: Any, element: etree._Element, what: str) -> Any:
        try:
            return declaration.parse(
                element,
                self._client.wsdl.types,
                context=XmlParserContext(settings=self._settings),  # type: ignore[no-untyped-call]
            )
        except (zeep.exceptions.Error, ValueError, TypeError, ArithmeticError) as exc:
            raise TransientError(
                f"{self._agency_id}: {what}: payload does not match the WSDL: {exc}",
                code="invalid-response",
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP pool if this transport opened it."""
        if self._owns_rest:
            await self.rest.aclose()
