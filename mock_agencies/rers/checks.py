"""The mock registry's request checks that need no state, one function per README §9 stage.

Kept apart from the server so the order of the stages is visible in one place there
(:meth:`mock_agencies.rers.server.RersMock._pipeline`) and each rule here can cite the line
of the ICD it enforces. Every failure raises :class:`RersFault`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree
from multidict import CIMultiDictProxy

from mock_agencies.common.checks import (
    Problem,
    authorization_problem,
    decode_documents,
    document_problem,
    identifier_problem,
    period_problem,
)
from mock_agencies.common.fixture import Caller
from mock_agencies.common.soapxml import MediaTypeError, XsdSchema, media_type, single_payload
from mock_agencies.rers.fixture import MAX_SEAL_DAYS, OPERATIONS
from mock_agencies.rers.problems import RersFault
from mock_agencies.rers.soap import RERS_NS, SOAP12_NS, parse_request

__all__ = [
    "ACTION_PREFIX",
    "MEDIA_TYPE",
    "XSD_PATH",
    "Payload",
    "RequestSchema",
    "check_authorized",
    "check_content_type",
    "check_documents",
    "check_identifiers",
    "check_period",
]

XSD_PATH = Path(str(resources.files("mock_agencies.rers") / "land-registry-rers-v1.xsd"))
MEDIA_TYPE = "application/soap+xml"  # ICD §1, SOAP 1.2
ACTION_PREFIX = "urn:rers:v1:"
_EXPECTED = f'{MEDIA_TYPE}; charset=utf-8; action="{ACTION_PREFIX}<Operation>"'
_MUST_UNDERSTAND = f"{{{SOAP12_NS}}}mustUnderstand"


def _schema_invalid(message: str) -> RersFault:
    return RersFault("SCHEMA_INVALID", message)


def _raise(problem: Problem | None) -> None:
    if problem is not None:
        raise RersFault(*problem)


def check_content_type(headers: CIMultiDictProxy[str]) -> str | None:
    """ICD §1, RERS-01: ``application/soap+xml`` with ``charset=utf-8`` and, optionally here,
    ``action`` (case-insensitive names, quoted or bare values); returns the action or None.

    Answered SCHEMA_INVALID at the well-formedness stage: a body declared as anything else is
    no RERS message the registry could parse. The action is judged later, against the verified
    payload (:meth:`RequestSchema.validate`): the header is outside the signature.
    """
    values = headers.getall("Content-Type", [])
    if len(values) != 1:
        raise _schema_invalid(f"Content-Type must be {_EXPECTED}.")
    try:
        media, params = media_type(values[0])
    except MediaTypeError as exc:
        raise _schema_invalid(f"Content-Type must be {_EXPECTED}: {exc}.") from None
    unknown = sorted(set(params) - {"charset", "action"})
    if media != MEDIA_TYPE or params.get("charset", "").lower() != "utf-8" or unknown:
        raise _schema_invalid(f"Content-Type must be {_EXPECTED}, not {values[0]!r}.")
    return params.get("action")


@dataclass(frozen=True, slots=True)
class Payload:
    """A schema-valid request: its operation, element, members and decoded documents."""

    operation: str
    element: etree._Element
    request: dict[str, Any]
    contents: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class RequestSchema:
    """Stage "schema" (RERS-02, RERS-08): the verified payload against the packaged XSD copy."""

    xsd: XsdSchema = field(default_factory=lambda: XsdSchema(XSD_PATH))

    def validate(
        self, envelope: etree._Element, payload: etree._Element, action: str | None
    ) -> Payload:
        """A request element of ``urn:rers:v1`` alone in the Body (document/literal wrapped),
        no header block that must be understood, the ``action`` naming that operation, valid
        against the XSD, with base64 document content of at most 5 MiB decoded (README §6).

        ``payload`` is the verifier's: the element whose last child is the verified signature,
        the only one read (RERS-04). A missing or mismatching action is a malformed request,
        hence SCHEMA_INVALID (the ICD has no other code for it).
        """
        body = envelope.find(f"{{{SOAP12_NS}}}Body")
        try:
            if body is None or single_payload(body) is not payload:
                raise ValueError("the Body must hold the signed payload")
        except ValueError as exc:
            raise _schema_invalid(f"env:Body: {exc}.") from None
        header = envelope.find(f"{{{SOAP12_NS}}}Header")
        for block in header if header is not None else ():
            # ICD §1: RERS defines no header blocks, so none can be understood (SOAP 1.2 §5.2.3).
            if isinstance(block.tag, str) and block.get(_MUST_UNDERSTAND) in ("true", "1"):
                raise _schema_invalid(
                    f"Header block {block.tag} must be understood; RERS has none."
                )
        qname = etree.QName(payload)
        if qname.namespace != RERS_NS or qname.localname not in OPERATIONS:
            raise _schema_invalid(f"{qname.text} is not a RERS v1 request.")
        operation = qname.localname
        if action is None:
            raise _schema_invalid(f'Content-Type needs action="{ACTION_PREFIX}{operation}".')
        if action != f"{ACTION_PREFIX}{operation}":
            raise _schema_invalid(f"The action {action!r} does not name {operation}.")
        error = self.xsd.error(payload)
        if error is not None:
            raise _schema_invalid(f"{operation} does not match the schema: {error}")
        request = parse_request(payload)
        contents, error = decode_documents(request)
        if error is not None:
            raise _schema_invalid(error)
        return Payload(operation, payload, request, contents)


def check_authorized(caller: Caller, request: Mapping[str, Any]) -> None:
    """README §8, RERS-09: the request's court/code must be listed for the signer."""
    _raise(authorization_problem(caller, request))


def check_identifiers(request: Mapping[str, Any]) -> None:
    """README §2-§3, RERS-09: the subject's check character (QueryProperties, SealProperty),
    and a caseNo designator that is the request's court's."""
    _raise(identifier_problem(request))


def check_documents(request: Mapping[str, Any], contents: Mapping[str, bytes]) -> None:
    """README §6, RERS-09: ``content``, where present, must hash to ``sha256``."""
    _raise(document_problem(request, contents))


def check_period(request: Mapping[str, Any]) -> None:
    """README §5, RERS-10: sealDays above 1095 is rejected, never shortened (SealProperty and
    RenewSeal alike); 1095 is accepted."""
    _raise(period_problem(request, "sealDays", MAX_SEAL_DAYS))
