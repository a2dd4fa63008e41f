"""The README §9 middle stages both SOAP mocks apply alike: authorization, identifiers,
documents and the period limit.

The rules are README §2-§8's, the same for the bank and the land registry, and so are the fault
codes the two ICDs give them; only the exception type differs. Each function therefore returns
a :data:`Problem` (code, message) or None, and the agency raises its own fault from it, so the
two mocks cannot drift apart on, say, which caseNo designators are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.model.rules import (
    case_matches_court,
    decode_document_content,
    document_digest_error,
    resident_id_ok,
    uscc_ok,
)
from mock_agencies.common.fixture import Caller

__all__ = [
    "DOCUMENTS",
    "Problem",
    "authorization_problem",
    "decode_documents",
    "document_problem",
    "identifier_problem",
    "period_problem",
]

Problem = tuple[str, str]  # (fault code, message)
DOCUMENTS = ("assistanceNotice", "ruling")  # README §6


def authorization_problem(caller: Caller, request: Mapping[str, Any]) -> Problem | None:
    """README §8: the request's court/code must be listed for the signer."""
    code = request["court"]["code"]
    if caller.may_act_for(code):
        return None
    return "COURT_NOT_AUTHORIZED", f"Court {code} is not listed for this certificate."


def identifier_problem(request: Mapping[str, Any]) -> Problem | None:
    """README §2-§3: the subject's check character, and a caseNo designator that is the
    request's court's."""
    subject = request.get("subject")
    if subject is not None:
        ok = resident_id_ok if subject["idType"] == "RESIDENT_ID" else uscc_ok
        if not ok(subject["idNumber"]):
            return (
                "INVALID_IDENTIFIER",
                f"subject/idNumber {subject['idNumber']} is not a valid {subject['idType']}.",
            )
    code = request["court"]["code"]
    if not case_matches_court(request["caseNo"], code):
        return "INVALID_IDENTIFIER", f"caseNo {request['caseNo']} is not a case of court {code}."
    return None


def decode_documents(request: Mapping[str, Any]) -> tuple[dict[str, bytes], str | None]:
    """The decoded ``content`` of each document reference that has one, and the first
    decoding error (README §6: strict base64 of at most 5 MiB), a schema matter."""
    contents: dict[str, bytes] = {}
    for name in DOCUMENTS:
        doc = request.get(name)
        if doc is not None and "content" in doc:
            try:
                contents[name] = decode_document_content("".join(doc["content"].split()))
            except ValueError as exc:
                return contents, f"{name}/content: {exc}"
    return contents, None


def document_problem(request: Mapping[str, Any], contents: Mapping[str, bytes]) -> Problem | None:
    """README §6: ``content``, where present, must hash to ``sha256``."""
    for name, data in contents.items():
        error = document_digest_error(request[name]["sha256"], data)
        if error is not None:
            return "DOCUMENT_DIGEST_MISMATCH", f"{name}: {error}."
    return None


def period_problem(request: Mapping[str, Any], member: str, limit: int) -> Problem | None:
    """README §5: a period above the maximum is rejected, never shortened; the maximum itself
    is accepted."""
    days = request.get(member)
    if days is None or days <= limit:
        return None
    return "PERIOD_EXCEEDS_LIMIT", f"{member} {days} exceeds the limit of {limit} days."
