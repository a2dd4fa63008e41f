"""The mock bank's request checks that need no state, one function per README §9 stage.

Kept apart from the server so the order of the stages is visible in one place there
(:meth:`mock_agencies.cbas.server.CbasMock._pipeline`) and each rule here can cite the spec line
it enforces. Every failure raises :class:`CbasFault`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree
from multidict import CIMultiDictProxy

from gateway.model.types import MAX_PERIOD_DAYS, AgencyKind
from mock_agencies.cbas.problems import CbasFault
from mock_agencies.cbas.soap import CBAS_NS, parse_request
from mock_agencies.common.checks import (
    Problem,
    authorization_problem,
    decode_documents,
    document_problem,
    identifier_problem,
    period_problem,
)
from mock_agencies.common.fixture import Caller
from mock_agencies.common.soapxml import XsdSchema, single_payload

__all__ = [
    "CONTENT_TYPE",
    "MAX_FREEZE_DAYS",
    "REQUESTS",
    "XSD_PATH",
    "Payload",
    "RequestSchema",
    "check_authorized",
    "check_content_type",
    "check_documents",
    "check_identifiers",
    "check_period",
    "soap_action",
]

XSD_PATH = Path(str(resources.files("mock_agencies.cbas") / "bank-cbas-v1.xsd"))
CONTENT_TYPE = "text/xml; charset=utf-8"  # bank ICD §1
MAX_FREEZE_DAYS = MAX_PERIOD_DAYS[AgencyKind.BANK]  # README §5: 365
# Bank ICD §2: the request elements a Body may carry (responses and FaultDetail may not).
REQUESTS = frozenset(
    {"InquireAccounts", "FreezeFunds", "UnfreezeFunds", "RenewFreeze", "DeductFunds", "FetchResult"}
)


def _schema_invalid(message: str) -> CbasFault:
    return CbasFault("SCHEMA_INVALID", message)


def check_content_type(headers: CIMultiDictProxy[str]) -> None:
    """Bank ICD §1, CBAS-01: ``text/xml; charset=utf-8`` (case-insensitive, the charset value
    may be quoted), nothing else. Answered SCHEMA_INVALID at the well-formedness stage: a body
    declared as anything else is not a CBAS message the bank could parse."""
    values = headers.getall("Content-Type", [])
    if len(values) != 1:
        raise _schema_invalid(f"Content-Type must be {CONTENT_TYPE}.")
    media, *params = (p.strip() for p in values[0].split(";"))
    charsets = []
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset":
            raise _schema_invalid(f"Content-Type must be {CONTENT_TYPE}.")
        charsets.append(value.strip().strip('"').lower())
    if media.lower() != "text/xml" or charsets != ["utf-8"]:
        raise _schema_invalid(f"Content-Type must be {CONTENT_TYPE}, not {values[0]!r}.")


def soap_action(headers: CIMultiDictProxy[str]) -> str | None:
    """The operation a ``SOAPAction: "urn:cbas:v1:<Operation>"`` header names (quoted, bank
    ICD §1), or None when it is missing, repeated, unquoted or not a CBAS operation."""
    values = headers.getall("SOAPAction", [])
    if len(values) != 1:
        return None
    value = values[0].strip()
    prefix = '"urn:cbas:v1:'
    if not (value.startswith(prefix) and value.endswith('"') and len(value) > len(prefix) + 1):
        return None
    op = value[len(prefix) : -1]
    return op if op in REQUESTS else None


@dataclass(frozen=True, slots=True)
class Payload:
    """A schema-valid request: its operation, element, members and decoded documents."""

    operation: str
    element: etree._Element
    request: dict[str, Any]
    contents: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class RequestSchema:
    """Stage "schema" (CBAS-01, CBAS-08): the verified Body against the packaged XSD copy."""

    path: Path = XSD_PATH
    _schema: XsdSchema | None = None

    @property
    def xsd(self) -> XsdSchema:
        if self._schema is None:
            self._schema = XsdSchema(self.path)
        return self._schema

    def validate(self, body: etree._Element, headers: CIMultiDictProxy[str]) -> Payload:
        """Exactly one request element in the Body (document/literal wrapped), valid against
        the XSD, named by the SOAPAction header, with base64 document content that decodes to
        at most 5 MiB (README §6). Raises SCHEMA_INVALID.

        The SOAPAction header is judged here, against the verified Body, rather than before the
        signature: it is not covered by the signature, so only after verification is there a
        trustworthy operation to compare it with. A missing, unquoted or mismatching
        SOAPAction is a malformed request, hence SCHEMA_INVALID (bank ICD §5 has no other
        code for it).
        """
        try:
            payload = single_payload(body)
        except ValueError as exc:
            raise _schema_invalid(f"soap:Body: {exc}.") from None
        qname = etree.QName(payload)
        if qname.namespace != CBAS_NS or qname.localname not in REQUESTS:
            raise _schema_invalid(f"{qname.text} is not a CBAS v1 request.")
        operation = qname.localname
        action = soap_action(headers)
        if action is None:
            raise _schema_invalid(f'SOAPAction must be "urn:cbas:v1:{operation}" (quoted).')
        if action != operation:
            raise _schema_invalid(f"SOAPAction names {action} but the Body holds {operation}.")
        error = self.xsd.error(payload)  # validated as a document of its own
        if error is not None:
            raise _schema_invalid(f"{operation} does not match the schema: {error}")
        request = parse_request(payload)
        contents, error = decode_documents(request)
        if error is not None:
            raise _schema_invalid(error)
        return Payload(operation, payload, request, contents)


def _raise(problem: Problem | None) -> None:
    if problem is not None:
        raise CbasFault(*problem)


def check_authorized(caller: Caller, request: Mapping[str, Any]) -> None:
    """README §8, CBAS-09: the request's court/code must be listed for the signer."""
    _raise(authorization_problem(caller, request))


def check_identifiers(request: Mapping[str, Any]) -> None:
    """README §2-3, CBAS-10: the subject's check character, and a caseNo designator that is
    the request's court's."""
    _raise(identifier_problem(request))


def check_documents(request: Mapping[str, Any], contents: Mapping[str, bytes]) -> None:
    """README §6, CBAS-11: ``content``, where present, must hash to ``sha256``."""
    _raise(document_problem(request, contents))


def check_period(request: Mapping[str, Any]) -> None:
    """README §5, CBAS-12: freezeDays above 365 is rejected, never shortened (FreezeFunds and
    RenewFreeze alike); 365 is accepted."""
    _raise(period_problem(request, "freezeDays", MAX_FREEZE_DAYS))
