"""CBAS message shapes in XML: reading a validated request payload, writing Receipts, FetchResult
answers and faults, and the README §7 content key that decides whether a resend is a duplicate.

Kept free of state and of security so the money rules (:mod:`mock_agencies.cbas.state`) deal in
plain values and the server only wires the pieces together. Signing happens after
:func:`envelope`; nothing here knows about keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lxml import etree

from mock_agencies.cbas.model import Ticket
from mock_agencies.cbas.problems import CbasFault
from mock_agencies.common.clock import utc_timestamp
from mock_agencies.common.soapxml import DS_NS, local, read_members
from mock_agencies.common.soapxml import content_key as common_content_key
from mock_agencies.common.soapxml import render as common_render

__all__ = [
    "CBAS_NS",
    "DS_NS",
    "SOAP11_NS",
    "WSSE_NS",
    "WSU_NS",
    "content_key",
    "envelope",
    "fault_payload",
    "fetch_payload",
    "local",
    "parse_request",
    "receipt_payload",
    "render",
]

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
CBAS_NS = "urn:cbas:v1"
# The prefixes of examples/cbas/, declared once on the Envelope as there.
NSMAP = {"soap": SOAP11_NS, "wsse": WSSE_NS, "wsu": WSU_NS, "cbas": CBAS_NS}
_BASE64_ELEMENTS = frozenset({f"{{{CBAS_NS}}}content"})  # xs:base64Binary in the XSD
# Request members that are structures of leaf elements (README §6, XSD RequestContext etc.).
_GROUPS = frozenset({"court", "officer", "subject", "payeeAccount", "assistanceNotice", "ruling"})


def _q(name: str) -> str:
    return f"{{{CBAS_NS}}}{name}"


# -- reading requests -------------------------------------------------------------------------


def parse_request(payload: etree._Element) -> dict[str, Any]:
    """The members of a schema-valid request payload as plain values.

    Leaves become their text exactly as received (agencies echo values as received, README §3),
    groups become dicts of their leaves, ``amount`` becomes (text, currency) with the README §4
    default ``CNY``, and ``freezeDays`` an int (xs:positiveInteger collapses whitespace).
    """
    out = read_members(payload, groups=_GROUPS, integers=("freezeDays",))
    amount = payload.find(_q("amount"))
    if amount is not None:
        out["amount"] = (amount.text or "", amount.get("currency", "CNY"))
    return out


def content_key(element: etree._Element) -> Any:
    """README §7 content equality for a CBAS payload, as a hashable value (CBAS-13, CBAS-14):
    :func:`mock_agencies.common.soapxml.content_key` with cbas:content compared as decoded
    bytes."""
    return common_content_key(element, base64_tags=_BASE64_ELEMENTS)


# -- writing responses ------------------------------------------------------------------------


def render(parent: etree._Element, name: str, value: Any) -> None:
    """Append ``value`` under ``parent`` as cbas:``name`` (see
    :func:`mock_agencies.common.soapxml.render`)."""
    common_render(parent, CBAS_NS, name, value)


def envelope(payload: etree._Element) -> etree._Element:
    """``soap:Envelope`` with an empty ``soap:Header`` (the signer fills it) and the payload."""
    env = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap=NSMAP)
    etree.SubElement(env, f"{{{SOAP11_NS}}}Header")
    body = etree.SubElement(env, f"{{{SOAP11_NS}}}Body")
    body.append(payload)
    return env


def _payload(name: str, members: Mapping[str, Any]) -> etree._Element:
    root = etree.Element(_q(name), nsmap=NSMAP)
    for key, value in members.items():
        render(root, key, value)
    return root


def receipt_payload(ticket: Ticket, *, replayed: bool) -> etree._Element:
    """``<Operation>Response`` (bank ICD §2): the recorded ids and times, ``replayed`` on resends
    (README §7, CBAS-13)."""
    return _payload(
        f"{ticket.operation}Response",
        {
            "requestId": ticket.request_id,
            "ticketId": ticket.ticket_id,
            "acceptedAt": utc_timestamp(ticket.accepted_at),
            "retryAfterSeconds": ticket.retry_after,
            "replayed": True if replayed else None,
        },
    )


def fetch_payload(ticket: Ticket, status: str, retry_after: int) -> etree._Element:
    """``FetchResultResponse`` in the shape bank ICD §2 gives each status (CBAS-15): PENDING has
    retryAfterSeconds and nothing else optional; the final ones completedAt and exactly one of
    the operation's result element or ``rejection``."""
    members: dict[str, Any] = {
        "ticketId": ticket.ticket_id,
        "requestId": ticket.request_id,
        "operation": ticket.operation,
        "status": status,
    }
    if status == "PENDING":
        members["retryAfterSeconds"] = retry_after
    else:
        members["completedAt"] = utc_timestamp(ticket.completed_at)
        if ticket.rejection is not None:
            code, message = ticket.rejection
            members["rejection"] = {"code": code, "message": message}
        else:
            assert ticket.result is not None
            name, content = ticket.result
            members[name] = content
    return _payload("FetchResultResponse", members)


def fault_payload(fault: CbasFault) -> etree._Element:
    """``soap:Fault`` as in bank ICD §5: faultcode a QName in the envelope namespace, faultstring
    the message, and ``detail/cbas:FaultDetail``."""
    el = etree.Element(f"{{{SOAP11_NS}}}Fault", nsmap=NSMAP)
    etree.SubElement(el, "faultcode").text = f"soap:{fault.faultcode}"
    etree.SubElement(el, "faultstring").text = fault.message
    detail = etree.SubElement(el, "detail")
    render(
        detail,
        "FaultDetail",
        {"code": fault.code, "message": fault.message, "retryAfterSeconds": fault.retry_after},
    )
    return el
