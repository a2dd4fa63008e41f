"""RERS message shapes in XML: reading a request payload, writing responses and SOAP 1.2 faults,
and the README §7 content key that decides whether a resend is a duplicate.

Kept free of state and keys so the registry rules (:mod:`mock_agencies.rers.state`) deal in
plain values and the server only wires the pieces together. Envelopes are laid out as
``examples/rers/`` are (prefixes ``env`` and ``rers`` declared once on the Envelope, two-space
indentation), so the signer's ``ds:Signature`` lands where the examples have it (RERS-02).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lxml import etree

from mock_agencies.common.soapxml import content_key as common_content_key
from mock_agencies.common.soapxml import read_members, render
from mock_agencies.rers.problems import RersFault

__all__ = [
    "NSMAP",
    "RERS_NS",
    "SOAP12_NS",
    "UUID_RE",
    "content_key",
    "envelope",
    "fault_envelope",
    "parse_request",
    "readable_request_id",
    "response_envelope",
]

SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
RERS_NS = "urn:rers:v1"
NSMAP = {"env": SOAP12_NS, "rers": RERS_NS}
XML_NS = "http://www.w3.org/XML/1998/namespace"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_BASE64_ELEMENTS = frozenset({f"{{{RERS_NS}}}content"})  # xs:base64Binary in the XSD
# README §7: for RERS, sentAt is no part of the content (a resend carries a new one, ICD §1).
_IGNORED = frozenset({f"{{{RERS_NS}}}sentAt"})
# Request members that are structures of leaf elements (XSD RequestContext, DocumentRef, ...).
_GROUPS = frozenset({"court", "officer", "subject", "assistanceNotice", "ruling"})


def _env(name: str) -> str:
    return f"{{{SOAP12_NS}}}{name}"


# -- reading requests -------------------------------------------------------------------------


def parse_request(payload: etree._Element) -> dict[str, Any]:
    """The members of a schema-valid request payload, ``sealDays`` as an int."""
    return read_members(payload, groups=_GROUPS, integers=("sealDays",))


def content_key(payload: etree._Element) -> Any:
    """README §7 content equality for a RERS request (RERS-11, RERS-12): the payload without
    ``ds:Signature`` and ``sentAt``, rers:content compared as decoded bytes."""
    return common_content_key(payload, base64_tags=_BASE64_ELEMENTS, ignored=_IGNORED)


def readable_request_id(root: etree._Element | None) -> str | None:
    """The requestId of a parsed (not necessarily verified) message, if one can be read.

    ICD §5: a fault carries ``requestId`` "whenever it could be read", so a court can match even
    a SIGNATURE_INVALID fault to its request. Only a value valid as rers:Uuid is taken, so the
    fault stays schema-valid whatever the request held; it is echoed, never acted upon.
    """
    if root is None or root.tag != _env("Envelope"):
        return None
    body = root.find(_env("Body"))
    payload = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
    if payload is None:
        return None
    found = payload.findall(f"{{{RERS_NS}}}requestId")
    text = found[0].text if len(found) == 1 else None
    return text if text is not None and UUID_RE.match(text) else None


# -- writing responses ------------------------------------------------------------------------


def envelope() -> tuple[etree._Element, etree._Element]:
    """An empty ``env:Envelope`` (no ``env:Header``: RERS defines none, ICD §1) and its Body."""
    env = etree.Element(_env("Envelope"), nsmap=NSMAP)
    return env, etree.SubElement(env, _env("Body"))


def response_envelope(
    operation: str,
    request_id: str,
    responded_at: str,
    members: Mapping[str, Any],
    *,
    replayed: bool,
) -> etree._Element:
    """``<Operation>Response``: requestId, respondedAt, replayed (only on a replay, README §7,
    RERS-11), then the operation's members; the signer appends ``ds:Signature`` (ICD §2)."""
    env, body = envelope()
    payload = etree.SubElement(body, f"{{{RERS_NS}}}{operation}Response")
    head = {"requestId": request_id, "respondedAt": responded_at, "replayed": replayed or None}
    for key, value in {**head, **members}.items():
        render(payload, RERS_NS, key, value)
    etree.indent(env, space="  ")
    return env


def fault_envelope(fault: RersFault, request_id: str | None, responded_at: str) -> etree._Element:
    """An ``env:Fault`` as in ICD §5 (RERS-18): Code ``env:Sender``/``env:Receiver`` with the
    Subcode ``rers:<code>``, the message as Reason, and ``rers:FaultDetail`` in the XSD's order:
    code, message, retryAfterSeconds (BUSY, RATE_LIMITED), requestId (if read), respondedAt."""
    env, body = envelope()
    el = etree.SubElement(body, _env("Fault"))
    code = etree.SubElement(el, _env("Code"))
    etree.SubElement(code, _env("Value")).text = f"env:{fault.soap_code}"
    sub = etree.SubElement(code, _env("Subcode"))
    etree.SubElement(sub, _env("Value")).text = f"rers:{fault.code}"
    reason = etree.SubElement(etree.SubElement(el, _env("Reason")), _env("Text"))
    reason.set(f"{{{XML_NS}}}lang", "en")
    reason.text = fault.message
    detail = etree.SubElement(el, _env("Detail"))
    members = {
        "code": fault.code,
        "message": fault.message,
        "retryAfterSeconds": fault.retry_after,
        "requestId": request_id,
        "respondedAt": responded_at,
    }
    render(detail, RERS_NS, "FaultDetail", members)
    etree.indent(env, space="  ")
    return env
